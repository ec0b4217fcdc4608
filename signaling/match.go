package signaling

import "time"

// Matching, on the owner goroutine: find, next and stop move a session
// between idle, waiting and matched; the waiting pool (matchmaker.go) finds
// the partner.

type match struct {
	id   string
	a, b *session
	chat []chatLine // the last MaxEvidenceLines lines, when there is a Moderator
}

func (m *match) other(s *session) *session {
	if m.a == s {
		return m.b
	}
	return m.a
}

func (h *Hub) find(s *session, m *Find, now time.Time) {
	if s.state == StateMatched {
		h.m.drop(dropState)
		s.conn.sendError(CodeBadState, "already in a match: send next or stop first")
		return
	}
	if h.checkBan(s, now) {
		return
	}
	h.pool.remove(s)
	if h.overSkipLimit(s, now) {
		return
	}
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
	if h.checkBan(s, now) || h.overSkipLimit(s, now) {
		return
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
	s.settled = false
	s.shadow = h.cfg.Moderator != nil && h.cfg.Moderator.Shadowed(s.ident, now)
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

// queue pairs s at once if it can, else puts it in the pool and, until s has
// settled, schedules its fallback.
//
// The fallback, InterestWait after s started waiting, settles s: its
// interests give way to anyone (unless it asked for interests only), and it
// may meet one of its recent partners again if nobody else is there and
// that partner has settled too. The same wait serves both because both
// trade a better partner for any partner once waiting longer would likely
// be waiting for nothing; and on a quiet instance it ends the dead end of
// two people online who just parted and would otherwise never meet again.
func (h *Hub) queue(s *session, now time.Time) {
	if !now.Before(s.fallbackAt) {
		s.settled = true
	}
	anyone := len(s.interests) == 0 || (!s.interestsOnly && s.settled)
	if p := h.pool.partnerFor(s, anyone); p != nil {
		h.pair(s, p, now)
		return
	}
	h.pool.add(s, anyone)
	if !s.settled {
		h.schedule(s, s.fallbackAt, dlFallback)
	}
}

// settle is s's fallback: see queue.
func (h *Hub) settle(s *session, now time.Time) {
	s.settled = true
	if !s.interestsOnly {
		h.pool.openToAnyone(s)
	}
	if p := h.pool.partnerFor(s, s.pos.inAny); p != nil {
		h.pair(s, p, now)
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
		x.lastEnded = m
		x.lastPartner = o.serial
		x.remember(o, h.cfg.RecentPartners)
	}
	h.deliver(p, encode(&PartnerLeft{Type: TypePartnerLeft, Match: m.id, Reason: why}), true)
}
