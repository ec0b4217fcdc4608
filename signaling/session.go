package signaling

import (
	"time"

	"github.com/strangers-chat/strangers/internal/sessionid"
)

// A session's life, on the owner goroutine: hello starts it, a dropped
// connection detaches it, a resume within the grace reattaches it, and
// endSession ends it for good.

// Lengths in bytes of the random ids, before base64url.
const (
	matchIDBytes = 16
	tokenBytes   = 32 // the resume token is a secret
	maxReported  = 64 // reported partners remembered per session

	// ice requests outside a match: a few in a row, then one per 10s.
	iceRequestBurst = 3
	iceRequestEvery = 10 * time.Second
)

// session outlives its connections: a client that reconnects within
// ResumeGrace with the resume token gets it back.
type session struct {
	// Static after creation.
	id     string // public: sent to the client, named in TURN credentials
	token  string // secret: resumes the session; never logged
	serial uint64 // for the avoid lists
	// ident is who the session is, for moderation; clientKey the signed
	// key it was told to keep (see identity.go).
	ident     Identity
	clientKey string
	skips     *skipLog // shared by the sessions of one client key (skiplimit.go)
	shadow    bool     // waits in the shadow pool (decided when it starts waiting)

	// Owned by the owner goroutine.
	conn  *conn // nil while detached
	state State

	// The last find, reused by next.
	hasFind       bool
	mode          Mode
	interests     []string
	relayOnly     bool
	interestsOnly bool

	pos        poolPos   // place in the pool while waiting and attached
	waitSince  time.Time // entered the queue
	fallbackAt time.Time // interests give way to anyone, and recent partners are allowed
	settled    bool      // waited past fallbackAt: may meet a settled recent partner
	gen        uint64    // bumped to void scheduled deadlines

	match       *match
	lastMatch   string // id of the match that ended last, for a late report
	lastEnded   *match // that match, for its evidence
	lastPartner uint64
	recent      []uint64            // ring of the last RecentPartners partners
	recentNext  int                 // next slot of recent to overwrite
	reported    map[uint64]struct{} // never paired again

	pending [][]byte // messages for it while detached, delivered on resume

	iceBucket *tokenBucket // ice requests; nil until the first
}

// avoids reports whether s would rather not be paired with o: o is one of
// its last partners, or it reported o.
func (s *session) avoids(o *session) bool {
	return s.recentlyMet(o) || s.hasReported(o)
}

// recentlyMet reports whether o is one of s's last RecentPartners partners.
func (s *session) recentlyMet(o *session) bool {
	for _, r := range s.recent {
		if r == o.serial {
			return true
		}
	}
	return false
}

// hasReported reports whether s reported o: they are never paired again.
func (s *session) hasReported(o *session) bool {
	_, rep := s.reported[o.serial]
	return rep
}

func (s *session) remember(o *session, keep int) {
	if len(s.recent) < keep {
		s.recent = append(s.recent, o.serial)
		return
	}
	s.recent[s.recentNext] = o.serial
	s.recentNext = (s.recentNext + 1) % keep
}

func (s *session) block(serial uint64) {
	if s.reported == nil {
		s.reported = make(map[uint64]struct{})
	}
	if len(s.reported) >= maxReported {
		for k := range s.reported {
			delete(s.reported, k)
			break
		}
	}
	s.reported[serial] = struct{}{}
}

func (h *Hub) welcome(s *session, resumed bool) []byte {
	w := &Welcome{
		Type:    TypeWelcome,
		Version: ProtocolVersion,
		Session: s.id,
		Resume:  s.token,
		Online:  len(h.sessions),
		Resumed: resumed,
		State:   s.state,
		Limits:  h.limits,

		ClientKey: s.clientKey,
	}
	if s.match != nil {
		w.Match = s.match.id
	}
	return encode(w)
}

func (h *Hub) hello(c *conn, m *Hello) {
	if m.Resume != "" {
		if s := h.sessions[m.Resume]; s != nil {
			h.resume(s, c)
			return
		}
		h.m.resumes.WithLabelValues("unknown").Inc()
		c.sendError(CodeBadResume, "unknown or expired resume token: this is a new session")
	}
	h.serial++
	s := &session{
		id:     sessionid.New(),
		token:  newID(tokenBytes),
		serial: h.serial,
		state:  StateIdle,
		conn:   c,
	}
	s.clientKey, s.ident = h.identify(m.ClientKey, c.ip)
	if h.cfg.Moderator != nil {
		if notice, banned := h.cfg.Moderator.Banned(s.ident, time.Now()); banned {
			h.m.bansEnforced.Inc()
			c.send(encode(&Banned{Type: TypeBanned, Reason: notice.Reason, Until: notice.Until.UnixMilli(), Appeal: notice.Appeal}))
			c.closeWith(CloseBanned, "banned", reasonBanned)
			return
		}
	}
	s.skips = h.skipLogFor(s.ident.Client)
	c.sess = s
	h.sessions[s.token] = s
	h.m.sessions.Inc()
	if h.cfg.Sessions != nil {
		h.cfg.Sessions.SessionStarted(s.id)
	}
	c.send(h.welcome(s, false))
}

// resume attaches s to c: a connection still attached to it is closed and
// what it had not written yet moves to c, what was kept for the session is
// delivered, and a waiting session goes back into the pool with its
// original wait.
func (h *Hub) resume(s *session, c *conn) {
	h.m.resumes.WithLabelValues("ok").Inc()
	if old := s.conn; old != nil {
		old.sess = nil
		s.pending = append(old.takeQueue(), s.pending...)
		old.closeWith(CloseResumed, "session resumed on another connection", reasonResumed)
	}
	s.gen++ // void the grace deadline
	s.conn = c
	c.sess = s
	c.send(h.welcome(s, true))
	if len(s.pending) > 0 {
		c.sendAll(s.pending)
		s.pending = nil
	}
	if s.state == StateWaiting && !s.pos.inPool {
		h.queue(s, time.Now())
	}
}

func (h *Hub) gone(c *conn, clean bool) {
	s := c.sess
	if s == nil || s.conn != c {
		return
	}
	c.sess = nil
	s.conn = nil
	if clean || s.state == StateIdle {
		h.endSession(s)
		return
	}
	h.pool.remove(s) // a detached session is not offered to anyone
	s.gen++          // void its fallback; queue() schedules a new one on resume
	h.schedule(s, time.Now().Add(h.cfg.ResumeGrace), dlGrace)
}

// endSession ends s for good.
func (h *Hub) endSession(s *session) {
	switch s.state {
	case StateMatched:
		h.endMatch(s, LeftDisconnected)
	case StateWaiting:
		h.pool.remove(s)
	}
	s.state = StateIdle
	s.pending = nil
	s.gen++
	delete(h.sessions, s.token)
	h.m.sessions.Dec()
	if h.cfg.Sessions != nil {
		h.cfg.Sessions.SessionEnded(s.id)
	}
}

// endAll ends every session when the hub stops.
func (h *Hub) endAll() {
	for _, s := range h.sessions {
		s.conn = nil
		s.match = nil
		s.state = StateIdle
		h.pool.remove(s)
		delete(h.sessions, s.token)
		h.m.sessions.Dec()
		if h.cfg.Sessions != nil {
			h.cfg.Sessions.SessionEnded(s.id)
		}
	}
	h.deadlines = nil
}
