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
// ResumeGrace with the resume token gets it back, on this node or, with a
// shared engine, on another.
//
// A partner on another node is a session too, a stand-in with remote set:
// only id, ident and match are used, and what is delivered to it goes
// through the engine (Engine.Send). It is never in Hub.sessions.
type session struct {
	// Static after creation.
	id     string // public: sent to the client, named in TURN credentials
	token  string // secret: resumes the session; never logged
	remote bool   // a stand-in for a partner on another node
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

	inPool     bool      // the engine holds it in the pool
	waitSince  time.Time // entered the queue
	fallbackAt time.Time // interests give way to anyone, and recent partners are allowed
	settled    bool      // waited past fallbackAt: may meet a settled recent partner
	gen        uint64    // bumped to void scheduled deadlines
	detaches   uint64    // bumped when it detaches or attaches: voids a grace deadline

	match       *match
	lastMatch   string // id of the match that ended last, for a late report
	lastEnded   *match // that match, for its evidence
	lastPartner string // that match's partner's session id

	pending [][]byte // messages for it while detached, delivered on resume

	// refused is the last pairing refused for it: a later notice of that
	// pairing (a Withdraw or Queue made before the refusal returns it as
	// earlier) is ignored.
	refused string

	iceBucket *tokenBucket // ice requests; nil until the first
}

// record is what the engine keeps of s for a resume on another node.
func (s *session) record(node string) SessionRecord {
	r := SessionRecord{
		ID: s.id, Token: s.token, Node: node, Ident: s.ident, ClientKey: s.clientKey,
		HasFind: s.hasFind, Mode: s.mode, Interests: s.interests, RelayOnly: s.relayOnly, InterestsOnly: s.interestsOnly,
		State: s.state, WaitSince: s.waitSince,
	}
	if s.match != nil {
		p := s.match.other(s)
		r.Match, r.Partner, r.PartnerIdent = s.match.id, p.id, p.ident
	}
	return r
}

func (h *Hub) welcome(s *session, resumed bool) []byte {
	w := &Welcome{
		Type:    TypeWelcome,
		Version: ProtocolVersion,
		Session: s.id,
		Resume:  s.token,
		Online:  h.online(),
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
		if h.claim(c, m.Resume) {
			return
		}
		h.m.resumes.WithLabelValues("unknown").Inc()
		c.sendError(CodeBadResume, "unknown or expired resume token: this is a new session")
	}
	s := &session{
		id:    sessionid.New(),
		token: newID(tokenBytes),
		state: StateIdle,
		conn:  c,
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
	h.add(s)
	h.call("register", Op{Kind: OpRegister, Record: s.record(h.node)}, nil)
	if h.cfg.Sessions != nil {
		h.cfg.Sessions.SessionStarted(s.id)
	}
	c.send(h.welcome(s, false))
}

// online is how many sessions there are: here, or in the cluster as last
// counted.
func (h *Hub) online() int {
	if h.node == "" {
		return len(h.sessions)
	}
	return max(len(h.sessions), h.lastCounts.Online)
}

// add makes s one of this hub's sessions.
func (h *Hub) add(s *session) {
	h.sessions[s.token] = s
	h.byID[s.id] = s
	delete(h.away, s.id)
	h.m.sessions.Inc()
}

// forget takes s out of this hub's sessions.
func (h *Hub) forget(s *session) {
	delete(h.sessions, s.token)
	delete(h.byID, s.id)
	h.m.sessions.Dec()
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
	s.gen++
	s.detaches++ // void the grace deadline
	s.conn = c
	c.sess = s
	c.send(h.welcome(s, true))
	if len(s.pending) > 0 {
		c.sendAll(s.pending)
		s.pending = nil
	}
	if s.state == StateWaiting && !s.inPool {
		h.queue(s, time.Now(), false)
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
		h.endSession(s, false)
		return
	}
	h.withdraw(s) // a detached session is not offered to anyone
	s.gen++       // void its fallback; queue() schedules a new one on resume
	s.detaches++
	h.schedule(s, time.Now().Add(h.cfg.ResumeGrace), dlGrace)
}

// endSession ends s for good (revoke: banned, so the relay cuts it at
// once).
func (h *Hub) endSession(s *session, revoke bool) {
	if s.state == StateWaiting {
		h.withdraw(s) // may pair it after all: then it leaves that match below
	}
	if s.state == StateMatched {
		h.endMatch(s, LeftDisconnected)
	}
	s.state = StateIdle
	s.pending = nil
	s.gen++
	// The relay first: once strangers_sessions no longer counts the
	// session, its credentials allocate nothing.
	if h.cfg.Sessions != nil {
		h.cfg.Sessions.SessionEnded(s.id)
	}
	h.forget(s)
	h.call("end", Op{Kind: OpEnd, Session: s.id, Revoke: revoke}, nil)
}

// endAll ends every session when the hub stops; with a shared engine it
// leaves them to be resumed on other nodes (Engine.Close drains).
func (h *Hub) endAll() {
	drain := h.engine.Node() != ""
	for _, s := range h.sessions {
		s.conn = nil
		if drain {
			h.withdraw(s)
		} else {
			s.match = nil
			s.state = StateIdle
			s.inPool = false
			h.call("end", Op{Kind: OpEnd, Session: s.id}, nil)
		}
		h.forget(s)
		if h.cfg.Sessions != nil {
			h.cfg.Sessions.SessionEnded(s.id)
		}
	}
	h.deadlines = nil
}
