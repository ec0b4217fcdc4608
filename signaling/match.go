package signaling

import (
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
	h.withdraw(s)
	if s.state == StateMatched {
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
	if s.state == StateWaiting {
		h.withdraw(s)
		if s.state == StateWaiting {
			s.state = StateIdle
			s.gen++
		}
	}
	if s.state == StateMatched {
		h.endMatch(s, LeftStop)
	}
}

// withdraw takes s out of the pool, if it may be in it. If another node
// had paired it meanwhile, s is put in that match when the engine says so:
// at once with the memory engine, later with a Batcher (see pairedLate).
func (h *Hub) withdraw(s *session) {
	if !s.inPool {
		return
	}
	h.setInPool(s, false)
	id := s.id
	h.call("withdraw", Op{Kind: OpWithdraw, Session: id}, func(r OpResult) {
		if r.Err == nil && !r.Pairing.Zero() {
			h.pairedLate(id, r.Pairing, false)
		}
	})
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
	h.queue(s, now, true)
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
//
// With a Batcher the result comes later (see batch.go): s counts as in the
// pool from the call on, so that a stop or a disconnect meanwhile withdraws
// it; if s has moved on by the time the result comes (its gen changed),
// only a pairing is taken (pairedLate decides whether s can have it).
// announce: tell s it is waiting, unless it is paired at once.
func (h *Hub) queue(s *session, now time.Time, announce bool) {
	if !now.Before(s.fallbackAt) {
		s.settled = true
	}
	h.setInPool(s, true)
	gen, mode := s.gen, s.mode
	h.call("queue", Op{Kind: OpQueue, Ticket: h.ticket(s)}, func(r OpResult) {
		current := h.byID[s.id] == s && s.gen == gen && s.state == StateWaiting
		switch {
		case r.Err != nil:
			if !current {
				return
			}
			h.setInPool(s, false)
			s.state = StateIdle
			s.gen++
			h.deliver(s, encode(&Error{Type: TypeError, Code: CodeUnavailable, Message: "matching is unavailable for now; try again in a few seconds"}), false)
		case !r.Pairing.Zero():
			if !current && s.mode != mode && s.match == nil && h.byID[s.id] == s {
				// A pairing for a find s has replaced with another mode.
				h.refuse(s.id, r.Pairing)
				return
			}
			h.pairedLate(s.id, r.Pairing, true)
		case current:
			if !s.settled {
				h.schedule(s, s.fallbackAt, dlFallback)
			}
			if announce {
				w := &Waiting{Type: TypeWaiting, Mode: s.mode}
				if len(s.interests) > 0 && !s.interestsOnly {
					w.FallbackIn = max(0, s.fallbackAt.Sub(now).Milliseconds())
				}
				h.deliver(s, encode(w), false)
			}
		}
	})
}

// settle is s's fallback: see queue.
func (h *Hub) settle(s *session, now time.Time) {
	s.settled = true
	h.queue(s, now, false)
}

// pairedLate takes a pairing the engine returned for session id (made:
// by this node's Queue) or that another node made: s is put in it if it
// still waits for one, else the pairing is refused.
func (h *Hub) pairedLate(id string, p Pairing, made bool) {
	s := h.byID[id]
	if s == nil {
		if _, moved := h.away[id]; moved {
			return // its new node has it now
		}
		h.refuse(id, p)
		return
	}
	if s.match == nil && s.state == StateWaiting {
		h.setInPool(s, false)
	}
	h.applyPairing(s, p, made, time.Now())
}

// applyPairing puts s in the match p an engine made (made: by this node's
// Queue, not told by another node). A partner on this
// node is matched too; one on another node is a stand-in (its node tells
// it). A pairing that would put s in a second match is refused: that match
// ends at once.
func (h *Hub) applyPairing(s *session, p Pairing, made bool, now time.Time) {
	if s.match == nil && s.lastMatch == p.Match || s.refused == p.Match {
		return // told twice (Queue returned it as earlier, then its notice came): s has left it, or refused it, since
	}
	if s.match != nil || s.state != StateWaiting {
		if s.match == nil || s.match.id != p.Match {
			h.refuse(s.id, p)
		}
		return
	}
	var partner *session
	if !p.Remote {
		partner = h.byID[p.Partner]
		if partner == nil || partner.match != nil || partner.state != StateWaiting {
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
// take (the session is in another match, no longer waiting, or gone). A
// side on this node that still waits goes back into the pool: the engine
// took it out for this match.
func (h *Hub) refuse(id string, p Pairing) {
	h.m.refused.Inc()
	h.call("end refused match", Op{Kind: OpEndMatch, Match: p.Match, Session: id, Other: p.Partner, Why: LeftDisconnected}, nil)
	now := time.Now()
	for _, x := range [2]string{id, p.Partner} {
		s := h.byID[x]
		if s == nil {
			continue
		}
		s.refused = p.Match
		if s.state == StateWaiting && s.match == nil && s.conn != nil {
			h.queue(s, now, false)
		}
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
	h.call("end match", Op{Kind: OpEndMatch, Match: m.id, Session: s.id, Other: p.id, Why: why}, nil)
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
