package signaling

import (
	"time"
)

// Moderation hooks, on the owner goroutine. The hub enforces; a Moderator
// (package moderation) decides, keeps the record and persists it.

// Moderator decides who is banned and who waits in the shadow pool, and is
// told of every report. The hub calls it from its owner goroutine, so every
// method must be quick (memory only, no I/O) and must not call back into
// the hub.
type Moderator interface {
	// Banned returns the ban in force on id at now, if any.
	Banned(id Identity, now time.Time) (BanNotice, bool)
	// Shadowed reports whether id is in the shadow pool at now: it is then
	// matched only with others in it, and told nothing.
	Shadowed(id Identity, now time.Time) bool
	// Reported records a report. It must not block: persist elsewhere.
	Reported(r ReportEvent)
}

// SessionRevoker is implemented by a SessionObserver (the relay) that can
// end a session at once, without its grace: its credentials stop working
// and its relay allocations are closed. A ban uses it.
type SessionRevoker interface {
	SessionRevoked(sessionID string)
}

// BanNotice is what a banned client is told.
type BanNotice struct {
	Reason string
	Until  time.Time
	Appeal string
}

// ChatLine is one line of a match's chat, kept as evidence for a report.
type ChatLine struct {
	Time time.Time `json:"time"`
	// From is "reporter" or "reported", from the report's point of view.
	From string `json:"from"`
	Text string `json:"text"`
}

// ReportEvent is a report as the hub saw it.
type ReportEvent struct {
	Time     time.Time
	Match    string
	Reporter Identity
	Reported Identity
	// Ended says the match had ended (after next or the partner leaving)
	// when it was reported.
	Ended  bool
	Reason string
	Note   string
	Chat   []ChatLine // the match's last lines, oldest first, up to MaxEvidenceLines
	Frame  []byte     // JPEG, or nil
}

// MaxEvidenceLines is how many of a match's last chat lines (both sides)
// the server keeps for a report.
const MaxEvidenceLines = 20

// chatLine is a line kept on a match: side says who sent it.
type chatLine struct {
	at   time.Time
	from *session
	text string
}

// keepChat remembers a chat line on s's match, as evidence for a report.
func (h *Hub) keepChat(s *session, text string, now time.Time) {
	m := s.match
	if h.cfg.Moderator == nil || m == nil {
		return
	}
	if len(m.chat) == MaxEvidenceLines {
		copy(m.chat, m.chat[1:])
		m.chat = m.chat[:MaxEvidenceLines-1]
	}
	m.chat = append(m.chat, chatLine{at: now, from: s, text: text})
}

// evidence returns m's chat as the reporter r sees it.
func (m *match) evidence(r *session) []ChatLine {
	out := make([]ChatLine, 0, len(m.chat))
	for _, l := range m.chat {
		from := "reported"
		if l.from == r {
			from = "reporter"
		}
		out = append(out, ChatLine{Time: l.at, From: from, Text: l.text})
	}
	return out
}

// matchesIdentity reports whether a session is the client a ban names:
// the same client key, or the same address (either may be empty in the
// ban, never both).
func matchesIdentity(s Identity, ban Identity) bool {
	return (ban.Client != "" && s.Client == ban.Client) || (ban.Addr != "" && s.Addr == ban.Addr)
}

// checkBan tells s it is banned and ends it, if it is. From the owner
// goroutine; true when s was banned.
func (h *Hub) checkBan(s *session, now time.Time) bool {
	if h.cfg.Moderator == nil {
		return false
	}
	notice, banned := h.cfg.Moderator.Banned(s.ident, now)
	if !banned {
		return false
	}
	h.banSession(s, notice)
	return true
}

// banSession tells s why it is banned, ends its match and the session at
// once, revokes its relay allocations and closes its connection with 4003.
func (h *Hub) banSession(s *session, notice BanNotice) {
	h.m.bansEnforced.Inc()
	msg := encode(&Banned{Type: TypeBanned, Reason: notice.Reason, Until: notice.Until.UnixMilli(), Appeal: notice.Appeal})
	c := s.conn
	if c != nil {
		c.send(msg)
		c.sess = nil
		c.closeWith(CloseBanned, "banned", reasonBanned)
	}
	s.conn = nil
	if s.match != nil {
		// The partner is told only that the stranger left.
		h.endMatch(s, LeftDisconnected)
	}
	h.endSession(s, true)
	if r, ok := h.cfg.Sessions.(SessionRevoker); ok {
		r.SessionRevoked(s.id)
	}
}

// Enforce ends at once every session of the client a ban names (its client
// key or its address hash), as banSession does, and returns how many there
// were. Call it after the Moderator starts reporting the ban, so that the
// client cannot come straight back. Safe from any goroutine; 0 once the
// hub has stopped.
func (h *Hub) Enforce(ban Identity, notice BanNotice) int {
	if ban.Client == "" && ban.Addr == "" {
		return 0
	}
	n := -1
	reply := make(chan struct{})
	if !h.post(event{kind: evCall, call: func() {
		n = 0
		for _, s := range h.sessions {
			if matchesIdentity(s.ident, ban) {
				h.banSession(s, notice)
				n++
			}
		}
		close(reply)
	}}) {
		return 0
	}
	select {
	case <-reply:
		return n
	case <-h.ownerDone:
		return 0
	}
}

// Counts are the hub's live figures, for an operator.
type Counts struct {
	Online       int `json:"online"`
	WaitingVideo int `json:"waitingVideo"`
	WaitingText  int `json:"waitingText"`
	Shadowed     int `json:"shadowed"` // waiting in the shadow pool (included in the waiting counts)
}

// Counts returns the live figures (of the whole cluster, with a shared
// engine); zero once the hub has stopped.
func (h *Hub) Counts() Counts {
	var c Counts
	var n EngineCounts
	var err error
	shared := h.batch != nil
	if shared { // a round trip: asked here, not on the owner goroutine
		n, err = h.engine.Counts()
	}
	reply := make(chan struct{})
	if !h.post(event{kind: evCall, call: func() {
		if !shared {
			n, err = h.engine.Counts()
		}
		n = h.tookCounts(n, err)
		c = Counts{Online: n.Online, WaitingVideo: n.WaitingVideo, WaitingText: n.WaitingText, Shadowed: n.Shadowed}
		close(reply)
	}}) {
		return Counts{}
	}
	select {
	case <-reply:
	case <-h.ownerDone:
	}
	return c
}

// maxFrame is the largest still frame that fits in a report message of
// at most maxMessage bytes (base64, with room for the rest).
func maxFrame(maxMessage int64) int {
	room := (maxMessage - 4<<10) / 4 * 3
	return int(max(0, min(room, MaxFrameBytes)))
}
