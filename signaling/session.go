package signaling

import (
	"container/heap"
	"time"
)

// Everything in this file runs on the hub's owner goroutine (run), which
// alone owns sessions, matches, the waiting pool and the deadlines. Read
// loops post events to it; it answers by queueing messages on connections
// (conn.send never blocks), so it never waits on a client.

// Lengths in bytes of the random ids, before base64url.
const (
	sessionIDBytes = 16 // 22 characters; the relay parses it in TURN usernames
	matchIDBytes   = 16
	tokenBytes     = 32 // the resume token is a secret
	maxReported    = 64 // reported partners remembered per session

	// ice requests outside a match: a few in a row, then one per 10s.
	iceRequestBurst = 3
	iceRequestEvery = 10 * time.Second
)

type evKind uint8

const (
	evHello   evKind = iota // a connection's hello (msg is *Hello)
	evMsg                   // any later client message
	evGone                  // the connection's read loop ended
	evInspect               // tests: report the state on reply
)

type event struct {
	kind  evKind
	c     *conn
	msg   any
	clean bool            // evGone: the client closed with 1000
	reply chan<- snapshot // evInspect

	// Signal, chat and typing come encoded by the decode shard, ready to
	// forward; a signal also as a relayOnly sender may send it, if the
	// shard took the sender for one (scrubbed, or scrubDrop: not at all).
	raw       []byte
	scrubbed  []byte
	scrubDrop bool
	hasScrub  bool
}

// session outlives its connections: a client that reconnects within
// ResumeGrace with the resume token gets it back.
type session struct {
	// Static after creation.
	id     string // public: sent to the client, named in TURN credentials
	token  string // secret: resumes the session; never logged
	serial uint64 // for the avoid lists

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
	fallbackAt time.Time // interests give way to anyone
	gen        uint64    // bumped to void scheduled deadlines

	match       *match
	lastMatch   string // id of the match that ended last, for a late report
	lastPartner uint64
	recent      []uint64            // ring of the last RecentPartners partners
	recentNext  int                 // next slot of recent to overwrite
	reported    map[uint64]struct{} // never paired again

	pending [][]byte // messages for it while detached, delivered on resume

	iceBucket *tokenBucket // ice requests; nil until the first
}

// avoids reports whether s must not be paired with o.
func (s *session) avoids(o *session) bool {
	for _, r := range s.recent {
		if r == o.serial {
			return true
		}
	}
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

type match struct {
	id   string
	a, b *session
}

func (m *match) other(s *session) *session {
	if m.a == s {
		return m.b
	}
	return m.a
}

// deadline is a scheduled check on a session; it is void if the session's
// gen moved on since.
type deadline struct {
	at   time.Time
	s    *session
	gen  uint64
	kind uint8
}

const (
	dlFallback uint8 = iota // interest wait over: accept anyone
	dlGrace                 // resume grace over: end the session
)

type deadlineHeap []deadline

func (d deadlineHeap) Len() int           { return len(d) }
func (d deadlineHeap) Less(i, j int) bool { return d[i].at.Before(d[j].at) }
func (d deadlineHeap) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *deadlineHeap) Push(x any)        { *d = append(*d, x.(deadline)) }
func (d *deadlineHeap) Pop() any {
	old := *d
	x := old[len(old)-1]
	old[len(old)-1] = deadline{}
	*d = old[:len(old)-1]
	return x
}

// run is the owner goroutine.
func (h *Hub) run() {
	defer close(h.ownerDone)
	stats := time.NewTicker(h.cfg.StatsInterval / statsChunks)
	defer stats.Stop()
	defer h.timer.Stop()
	for {
		select {
		case ev := <-h.events:
			h.handle(ev)
		case <-h.timer.C:
			h.timerAt = time.Time{}
			h.expire(time.Now())
		case <-stats.C:
			h.statsTick()
		case <-h.quit:
			h.endAll()
			return
		}
		h.m.waitingVideo.Set(float64(h.pool.waiting(ModeVideo)))
		h.m.waitingText.Set(float64(h.pool.waiting(ModeText)))
		h.armTimer()
	}
}

func (h *Hub) schedule(s *session, at time.Time, kind uint8) {
	heap.Push(&h.deadlines, deadline{at: at, s: s, gen: s.gen, kind: kind})
}

// armTimer points the owner's single timer at the earliest deadline.
func (h *Hub) armTimer() {
	if len(h.deadlines) == 0 {
		return // a stale firing is harmless: expire finds nothing due
	}
	next := h.deadlines[0].at
	if !h.timerAt.IsZero() && !next.Before(h.timerAt) {
		return
	}
	h.timer.Reset(max(0, time.Until(next)))
	h.timerAt = next
}

// expire acts on every deadline that is due.
func (h *Hub) expire(now time.Time) {
	for len(h.deadlines) > 0 && !h.deadlines[0].at.After(now) {
		d := heap.Pop(&h.deadlines).(deadline)
		s := d.s
		if d.gen != s.gen {
			continue
		}
		switch d.kind {
		case dlFallback:
			if s.state == StateWaiting && s.pos.inPool && !s.pos.inAny {
				h.pool.openToAnyone(s)
				if p := h.pool.partnerFor(s, true); p != nil {
					h.pair(s, p, now)
				}
			}
		case dlGrace:
			if s.conn == nil {
				h.endSession(s)
			}
		}
	}
}

func (h *Hub) handle(ev event) {
	switch ev.kind {
	case evHello:
		h.hello(ev.c, ev.msg.(*Hello))
		return
	case evGone:
		h.gone(ev.c, ev.clean)
		return
	case evInspect:
		ev.reply <- h.snapshot()
		return
	}
	s := ev.c.sess
	if s == nil {
		return // the connection was replaced by a resume
	}
	now := time.Now()
	switch m := ev.msg.(type) {
	case *Find:
		h.find(s, m, now)
	case *Next:
		h.next(s, now)
	case *Stop:
		h.stop(s)
	case *Signal:
		h.relay(s, m.Match, ev)
	case *Chat:
		h.relay(s, m.Match, ev)
	case *Typing:
		h.relay(s, m.Match, ev)
	case *Report:
		h.report(s, m)
	case *ICERequest:
		if s.iceBucket == nil {
			b := newTokenBucket(1/iceRequestEvery.Seconds(), iceRequestBurst, now)
			s.iceBucket = &b
		}
		if !s.iceBucket.take(now) {
			h.m.drop(dropRateLimited)
			s.conn.sendError(CodeRateLimited, "too many ice requests")
			return
		}
		h.deliver(s, encode(&ICEReply{Type: TypeICE, ICEServers: h.iceServers(s)}), false)
	}
}

// deliver queues an encoded message for s: on its connection, or, while it
// is detached, in its bounded resume queue (unless always: the one
// partner_left that ends a match always fits).
func (h *Hub) deliver(s *session, data []byte, always bool) {
	if s.conn != nil {
		if !s.conn.send(data) {
			h.m.drop(dropClosed)
		}
		return
	}
	if !always && len(s.pending) >= h.cfg.SendQueue {
		h.m.drop(dropResumeQueue)
		return
	}
	s.pending = append(s.pending, data)
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
		id:     newID(sessionIDBytes),
		token:  newID(tokenBytes),
		serial: h.serial,
		state:  StateIdle,
		conn:   c,
	}
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

func (h *Hub) find(s *session, m *Find, now time.Time) {
	if s.state == StateMatched {
		h.m.drop(dropState)
		s.conn.sendError(CodeBadState, "already in a match: send next or stop first")
		return
	}
	h.pool.remove(s)
	s.hasFind = true
	s.mode, s.interests, s.relayOnly, s.interestsOnly = m.Mode, m.Interests, m.RelayOnly, m.InterestsOnly
	h.startWaiting(s, now)
}

func (h *Hub) next(s *session, now time.Time) {
	switch {
	case s.state == StateWaiting:
		return // already queued
	case !s.hasFind:
		h.m.drop(dropState)
		s.conn.sendError(CodeBadState, "next before any find")
		return
	case s.state == StateMatched:
		h.endMatch(s, LeftNext)
	}
	h.startWaiting(s, now)
}

func (h *Hub) stop(s *session) {
	switch s.state {
	case StateMatched:
		h.endMatch(s, LeftStop)
	case StateWaiting:
		h.pool.remove(s)
		s.state = StateIdle
		s.gen++
	}
}

// startWaiting queues s with its last find and tells it so, unless it is
// matched at once.
func (h *Hub) startWaiting(s *session, now time.Time) {
	s.state = StateWaiting
	s.waitSince = now
	s.fallbackAt = now.Add(h.cfg.InterestWait)
	s.gen++
	h.queue(s, now)
	if s.state != StateWaiting {
		return
	}
	w := &Waiting{Type: TypeWaiting, Mode: s.mode}
	if len(s.interests) > 0 && !s.interestsOnly {
		w.FallbackIn = max(0, s.fallbackAt.Sub(now).Milliseconds())
	}
	h.deliver(s, encode(w), false)
}

// queue pairs s at once if it can, else puts it in the pool (scheduling its
// fallback to anyone).
func (h *Hub) queue(s *session, now time.Time) {
	anyone := len(s.interests) == 0 || (!s.interestsOnly && !now.Before(s.fallbackAt))
	if p := h.pool.partnerFor(s, anyone); p != nil {
		h.pair(s, p, now)
		return
	}
	h.pool.add(s, anyone)
	if !anyone && !s.interestsOnly {
		h.schedule(s, s.fallbackAt, dlFallback)
	}
}

// pair makes a match of two compatible sessions, at least one of which is
// in the pool.
func (h *Hub) pair(a, b *session, now time.Time) {
	h.pool.remove(a)
	h.pool.remove(b)
	m := &match{id: newID(matchIDBytes), a: a, b: b}
	common := commonInterests(a.interests, b.interests)
	roles := [2]Role{RoleOfferer, RoleAnswerer}
	if h.cfg.Rand.IntN(2) == 1 {
		roles[0], roles[1] = roles[1], roles[0]
	}
	h.m.matches.Inc()
	if h.cfg.onMatch != nil {
		h.cfg.onMatch(m.id, a.id, b.id)
	}
	for i, s := range [2]*session{a, b} {
		s.state = StateMatched
		s.match = m
		s.gen++
		h.m.timeToMatch.Observe(now.Sub(s.waitSince).Seconds())
		h.deliver(s, encode(&Matched{
			Type:       TypeMatched,
			Match:      m.id,
			Role:       roles[i],
			ICEServers: h.iceServers(s),
			Interests:  common,
			Mode:       s.mode,
			RelayOnly:  s.relayOnly,
		}), false)
	}
}

func (h *Hub) iceServers(s *session) []ICEServer {
	if h.cfg.ICE == nil {
		return []ICEServer{}
	}
	servers, err := h.cfg.ICE.ICEServers(s.id)
	if err != nil {
		h.m.iceErrors.Inc()
		h.log.Warn("no ICE servers for a match", "err", err)
		return []ICEServer{}
	}
	if servers == nil {
		servers = []ICEServer{}
	}
	return servers
}

// endMatch ends s's match; its partner is told why and both go idle,
// remembering each other so they are not paired again right away.
func (h *Hub) endMatch(s *session, why LeftReason) {
	m := s.match
	p := m.other(s)
	for _, x := range [2]*session{s, p} {
		o := m.other(x)
		x.match = nil
		x.state = StateIdle
		x.lastMatch = m.id
		x.lastPartner = o.serial
		x.remember(o, h.cfg.RecentPartners)
	}
	h.deliver(p, encode(&PartnerLeft{Type: TypePartnerLeft, Match: m.id, Reason: why}), true)
}

// relay forwards a signal, chat or typing message to the sender's partner,
// as the decode shard re-encoded it, if it names the sender's current match.
// A relayOnly sender's signals go scrubbed (relayonly.go).
func (h *Hub) relay(s *session, matchID string, ev event) {
	switch {
	case s.match == nil:
		h.m.drop(dropNoMatch)
		return
	case s.match.id != matchID:
		h.m.drop(dropStale)
		return
	}
	data := ev.raw
	if sig, ok := ev.msg.(*Signal); ok && s.relayOnly {
		if !ev.hasScrub { // the shard did not know: a resumed connection
			ev.scrubbed, ev.scrubDrop = scrubEncoded(sig)
		}
		if ev.scrubDrop {
			h.m.drop(dropRelayOnly)
			return
		}
		data = ev.scrubbed
	}
	h.deliver(s.match.other(s), data, false)
}

// scrub applies the relayOnly rules (relayonly.go) to a signal; false means
// drop it.
func scrub(m *Signal) bool {
	if m.Candidate != nil {
		return scrubICECandidate(m.Candidate)
	}
	m.SDP.SDP = scrubSDP(m.SDP.SDP)
	return true
}

func (h *Hub) report(s *session, m *Report) {
	var reported uint64
	switch {
	case s.match != nil && s.match.id == m.Match:
		p := s.match.other(s)
		reported = p.serial
		h.log.Info("partner reported", "match", m.Match, "reporter", s.id, "reported", p.id)
		h.endMatch(s, LeftReported)
	case s.lastMatch != "" && s.lastMatch == m.Match:
		reported = s.lastPartner
		h.log.Info("past partner reported", "match", m.Match, "reporter", s.id)
	default:
		h.m.drop(dropStale)
		s.conn.sendError(CodeNotInMatch, "report names a match you are not in")
		return
	}
	s.block(reported)
	h.m.reports.Inc()
}

// statsChunks is how many pieces a stats push is cut into, sent one per
// StatsInterval/statsChunks: writing to every connection at once would be a
// burst of work that delays everything queued behind it.
const statsChunks = 32

// statsTick runs statsChunks times per StatsInterval. Once per interval it
// takes the figures and, if they changed, encodes them once and lists the
// attached sessions' connections; every tick sends to the next share of
// that list.
func (h *Hub) statsTick() {
	h.statsTicks++
	if h.statsTicks%statsChunks == 0 {
		st := Stats{Type: TypeStats, Online: len(h.sessions), Waiting: h.pool.waiting(ModeVideo) + h.pool.waiting(ModeText)}
		if st != h.lastStats {
			h.lastStats = st
			h.statsData = encode(st)
			clear(h.statsTo)
			h.statsTo, h.statsNext = h.statsTo[:0], 0
			for _, s := range h.sessions {
				if s.conn != nil {
					h.statsTo = append(h.statsTo, s.conn)
				}
			}
			h.statsChunk = (len(h.statsTo) + statsChunks - 1) / statsChunks
		}
	}
	end := min(h.statsNext+h.statsChunk, len(h.statsTo))
	for _, c := range h.statsTo[h.statsNext:end] {
		c.send(h.statsData) // false if it closed meanwhile: nothing lost
	}
	clear(h.statsTo[h.statsNext:end])
	h.statsNext = end
}

// snapshot is the owner's state as tests see it.
type snapshot struct {
	sessions, attached, waiting, matched, pending int
	broken                                        int // matched sessions whose match does not name them, or whose partner is not matched back
}

func (h *Hub) snapshot() snapshot {
	var n snapshot
	n.sessions = len(h.sessions)
	for _, s := range h.sessions {
		if s.conn != nil {
			n.attached++
		}
		n.pending += len(s.pending)
		if s.match != nil {
			n.matched++
			p := s.match.other(s)
			if (s.match.a != s && s.match.b != s) || p.match != s.match || h.sessions[p.token] != p {
				n.broken++
			}
		}
	}
	n.waiting = h.pool.waiting(ModeVideo) + h.pool.waiting(ModeText)
	return n
}

// inspect asks the owner goroutine for a snapshot (tests).
func (h *Hub) inspect() snapshot {
	reply := make(chan snapshot, 1)
	if !h.post(event{kind: evInspect, reply: reply}) {
		return snapshot{}
	}
	return <-reply
}
