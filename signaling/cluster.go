package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
)

// What other nodes do to this node's sessions, through a shared engine
// (see Engine and EngineHost). Every handler runs on the owner goroutine.

// engineHost is the hub as an EngineHost: each call becomes an event for
// the owner goroutine.
type engineHost struct{ h *Hub }

// call runs f on the owner goroutine and waits for it; false once the hub
// has stopped.
func (e engineHost) call(f func()) bool {
	done := make(chan struct{})
	if !e.h.post(event{kind: evCall, call: func() { f(); close(done) }}) {
		return false
	}
	select {
	case <-done:
		return true
	case <-e.h.ownerDone:
		return false
	}
}

// later queues f for the owner goroutine without waiting.
func (e engineHost) later(f func()) { e.h.post(event{kind: evCall, call: f}) }

func (e engineHost) Paired(id string, p Pairing) {
	e.later(func() { e.h.pairedLate(id, p, false) })
}

func (e engineHost) Deliver(id, matchID string, data []byte) {
	e.later(func() { e.h.delivered(id, matchID, data) })
}

func (e engineHost) PartnerLeft(id, matchID string, why LeftReason) {
	e.later(func() { e.h.partnerLeft(id, matchID, why) })
}

func (e engineHost) Claimed(id string) (pending [][]byte) {
	e.call(func() { pending = e.h.claimed(id) })
	return pending
}

func (e engineHost) Handover(id string, pending [][]byte) {
	e.later(func() {
		if s := e.h.byID[id]; s != nil {
			for _, data := range pending {
				e.h.deliver(s, data, false)
			}
		}
	})
}

func (e engineHost) Ended(id string, revoke bool) {
	e.later(func() { e.h.endedElsewhere(id, revoke) })
}

func (e engineHost) Resync() { e.later(e.h.resync) }

// engineError counts a failed engine call; the engine logs its own
// failures, so only the unexpected ones are logged here.
func (h *Hub) engineError(op string, err error) {
	h.m.engineErrors.WithLabelValues(op).Inc()
	if !errors.Is(err, ErrEngineUnavailable) {
		h.log.Warn("matchmaking engine call failed", "op", op, "err", err)
	}
}

// chatPrefix starts every chat message as encode writes it (the fields of
// Chat in order), on this node and on the node that forwarded it.
var chatPrefix = []byte(`{"type":"` + TypeChat + `"`)

// delivered: a message from the partner on another node.
func (h *Hub) delivered(id, matchID string, data []byte) {
	s := h.byID[id]
	if s == nil || s.match == nil || s.match.id != matchID {
		h.m.drop(dropStale)
		return
	}
	// Only a chat line is kept as evidence; the other messages (signals
	// carry whole SDPs) are not decoded here.
	if h.cfg.Moderator != nil && bytes.HasPrefix(data, chatPrefix) {
		var c Chat
		if json.Unmarshal(data, &c) == nil {
			h.keepChat(s.match.other(s), c.Text, time.Now())
		}
	}
	h.deliver(s, data, false)
}

// partnerLeft: the partner on another node ended the match (or its node
// died); the engine has already ended it.
func (h *Hub) partnerLeft(id, matchID string, why LeftReason) {
	s := h.byID[id]
	if s == nil || s.match == nil || s.match.id != matchID {
		return
	}
	m := s.match
	h.leave(s, m)
	h.deliver(s, encode(&PartnerLeft{Type: TypePartnerLeft, Match: m.id, Reason: why}), true)
}

// claimed: session id resumed on another node. Its connection here is
// closed and the session forgotten without ending it: the relay here keeps
// honouring it until it ends (endedElsewhere). What it held goes to the new
// node.
func (h *Hub) claimed(id string) [][]byte {
	s := h.byID[id]
	if s == nil {
		return nil
	}
	pending := s.pending
	if c := s.conn; c != nil {
		c.sess = nil
		pending = append(c.takeQueue(), pending...)
		c.closeWith(CloseResumed, "session resumed on another node", reasonResumed)
	}
	if s.state == StateWaiting {
		h.setInPool(s, false)
	}
	if m := s.match; m != nil {
		// A partner here now has a partner elsewhere.
		stand := &session{id: s.id, remote: true, ident: s.ident, state: StateMatched, match: m}
		if m.a == s {
			m.a = stand
		} else {
			m.b = stand
		}
	}
	s.gen++
	s.pending = nil
	h.forget(s)
	h.away[s.id] = struct{}{}
	h.m.resumes.WithLabelValues("moved").Inc()
	return pending
}

// claim resumes, on this node, a session the engine knows from another
// node; false if there is none with that token.
func (h *Hub) claim(c *conn, token string) bool {
	rec, ok, err := h.engine.Claim(token)
	if err != nil {
		h.engineError("claim", err)
		return false
	}
	if !ok {
		return false
	}
	s := &session{
		id: rec.ID, token: token, ident: rec.Ident, clientKey: rec.ClientKey,
		hasFind: rec.HasFind, mode: rec.Mode, interests: rec.Interests, relayOnly: rec.RelayOnly, interestsOnly: rec.InterestsOnly,
		state: rec.State, waitSince: rec.WaitSince, conn: c,
	}
	if s.clientKey == "" {
		s.clientKey, s.ident = h.identify("", c.ip)
	}
	s.fallbackAt = s.waitSince.Add(h.cfg.InterestWait)
	s.skips = h.skipLogFor(s.ident.Client)
	if s.state == StateMatched {
		if p := h.byID[rec.Partner]; p != nil && p.match != nil && p.match.id == rec.Match {
			m := p.match // the partner is here: s takes its stand-in's place
			if m.a.remote && m.a.id == s.id {
				m.a = s
			} else {
				m.b = s
			}
			s.match = m
		} else if rec.Partner != "" {
			stand := &session{id: rec.Partner, remote: true, ident: rec.PartnerIdent, state: StateMatched}
			s.match = &match{id: rec.Match, a: s, b: stand}
			stand.match = s.match
		} else {
			s.state = StateIdle
		}
	}
	c.sess = s
	h.add(s)
	h.m.resumes.WithLabelValues("claimed").Inc()
	if h.cfg.Sessions != nil {
		h.cfg.Sessions.SessionStarted(s.id)
	}
	c.send(h.welcome(s, true))
	if s.state == StateWaiting {
		h.queue(s, time.Now(), false)
	}
	return true
}

// endedElsewhere: a session ended on another node; if it had been here,
// the relay here stops honouring it.
func (h *Hub) endedElsewhere(id string, revoke bool) {
	if _, ok := h.away[id]; !ok {
		return
	}
	delete(h.away, id)
	if h.cfg.Sessions == nil {
		return
	}
	h.cfg.Sessions.SessionEnded(id)
	if r, ok := h.cfg.Sessions.(SessionRevoker); ok && revoke {
		r.SessionRevoked(id)
	}
}

// resync: the engine's backend came back, maybe without its data: every
// session is recorded again and every waiting one queued again.
func (h *Hub) resync() {
	for _, s := range h.sessions {
		h.call("register", Op{Kind: OpRegister, Record: s.record(h.node)}, nil)
	}
	now := time.Now()
	for _, s := range h.sessions {
		if s.state == StateWaiting && s.conn != nil {
			h.queue(s, now, false)
		}
	}
}
