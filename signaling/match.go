package signaling

import (
	"errors"
	"time"
)

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
	if h.withdraw(s) {
		return // another node paired it meanwhile: that match stands
	}
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
	if s.state == StateWaiting && !h.withdraw(s) {
		s.state = StateIdle
		s.gen++
	}
	if s.state == StateMatched {
		h.endMatch(s, LeftStop)
	}
}

// withdraw takes s out of the pool, if it is in it, and reports whether
// another node had paired it meanwhile: then s is in that match now.
func (h *Hub) withdraw(s *session) bool {
	if !s.inPool {
		return false
	}
	h.setInPool(s, false)
	p, err := h.engine.Withdraw(s.id)
	if err != nil {
		h.engineError("withdraw", err)
		return false
	}
	if p.Zero() {
		return false
	}
	h.applyPairing(s, p, false, time.Now())
	return true
}

// setInPool records whether the engine holds s in the pool, and keeps
// this node's waiting figures.
func (h *Hub) setInPool(s *session, in bool) {
	if s.inPool == in {
		return
	}
	s.inPool = in
	d := 1
	if !in {
		d = -1
	}
	if s.mode == ModeText {
		h.waitingText += d
	} else {
		h.waitingVideo += d
	}
	if s.shadow {
		h.waitingShadow += d
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

// ticket is s as the pool sees it.
func (h *Hub) ticket(s *session) Ticket {
	return Ticket{
		Session:   s.id,
		Mode:      s.mode,
		Shadow:    s.shadow,
		Interests: s.interests,
		Anyone:    len(s.interests) == 0 || (!s.interestsOnly && s.settled),
		Settled:   s.settled,
		RelayOnly: s.relayOnly,
		Ident:     s.ident,
		WaitSince: s.waitSince,
	}
}

// queue pairs s at once if it can, else puts it in the pool and, until s has
// settled, schedules its fallback. If the engine cannot be reached, s goes
// idle and is told to try again.
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
	p, err := h.engine.Queue(h.ticket(s))
	if err != nil {
		h.engineError("queue", err)
		h.setInPool(s, false)
		s.state = StateIdle
		s.gen++
		h.deliver(s, encode(&Error{Type: TypeError, Code: CodeUnavailable, Message: "matching is unavailable for now; try again in a few seconds"}), false)
		return
	}
	if !p.Zero() {
		h.setInPool(s, false)
		h.applyPairing(s, p, true, now)
		return
	}
	h.setInPool(s, true)
	if !s.settled {
		h.schedule(s, s.fallbackAt, dlFallback)
	}
}

// settle is s's fallback: see queue.
func (h *Hub) settle(s *session, now time.Time) {
	s.settled = true
	h.queue(s, now)
}

// applyPairing puts s in the match p an engine made (made: by this node's
// Queue, not told by another node). A partner on this
// node is matched too; one on another node is a stand-in (its node tells
// it). A pairing that would put s in a second match is refused: that match
// ends at once.
func (h *Hub) applyPairing(s *session, p Pairing, made bool, now time.Time) {
	if s.match == nil && s.lastMatch == p.Match {
		return // told twice (Queue returned it as earlier, then its notice came): s has left it since
	}
	if s.match != nil || s.state == StateIdle && !p.Earlier {
		if s.match == nil || s.match.id != p.Match {
			h.refuse(s.id, p)
		}
		return
	}
	var partner *session
	if !p.Remote {
		partner = h.byID[p.Partner]
		if partner == nil || partner.match != nil {
			h.refuse(s.id, p)
			return
		}
		h.setInPool(partner, false)
	} else {
		partner = &session{id: p.Partner, remote: true, ident: p.PartnerIdent, state: StateMatched}
	}
	m := &match{id: p.Match, a: s, b: partner}
	if !p.Earlier && (!p.Remote || made) {
		h.m.matches.Inc() // on the node that made it only
	}
	if h.cfg.onMatch != nil {
		h.cfg.onMatch(m.id, s.id, partner.id)
	}
	partner.match = m
	h.matched(s, m, p.Role, p.Common, now)
	if !partner.remote {
		h.matched(partner, m, p.Role.other(), commonInterests(partner.interests, s.interests), now)
	}
}

// refuse ends a match an engine made for session id that the hub cannot
// take (the session is in another match, or gone).
func (h *Hub) refuse(id string, p Pairing) {
	h.m.refused.Inc()
	if err := h.engine.EndMatch(p.Match, id, p.Partner, LeftDisconnected); err != nil && !errors.Is(err, ErrMatchGone) {
		h.engineError("end refused match", err)
	}
}

// matched tells s it is in m.
func (h *Hub) matched(s *session, m *match, role Role, common []string, now time.Time) {
	s.state = StateMatched
	s.match = m
	s.gen++
	h.m.timeToMatch.Observe(now.Sub(s.waitSince).Seconds())
	h.deliver(s, encode(&Matched{
		Type:       TypeMatched,
		Match:      m.id,
		Role:       role,
		ICEServers: h.iceServers(s),
		Interests:  common,
		Mode:       s.mode,
		RelayOnly:  s.relayOnly,
	}), false)
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
// remembering each other so they are not paired again right away. A
// partner on another node is told by the engine.
func (h *Hub) endMatch(s *session, why LeftReason) {
	m := s.match
	p := m.other(s)
	if err := h.engine.EndMatch(m.id, s.id, p.id, why); err != nil && !errors.Is(err, ErrMatchGone) {
		h.engineError("end match", err)
	}
	for _, x := range [2]*session{s, p} {
		if !x.remote {
			h.leave(x, m)
		}
	}
	if !p.remote {
		h.deliver(p, encode(&PartnerLeft{Type: TypePartnerLeft, Match: m.id, Reason: why}), true)
	}
}

// leave takes s, on this node, out of its match m.
func (h *Hub) leave(s *session, m *match) {
	s.match = nil
	s.state = StateIdle
	s.lastMatch = m.id
	s.lastEnded = m
	s.lastPartner = m.other(s).id
}

// other is the role of the other side of a match.
func (r Role) other() Role {
	if r == RoleOfferer {
		return RoleAnswerer
	}
	return RoleOfferer
}
