package enginetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/signaling"
)

// Kind names the EngineHost method an Event records.
type Kind string

// The kinds of Event, one per EngineHost method.
const (
	Paired      Kind = "paired"
	Deliver     Kind = "deliver"
	PartnerLeft Kind = "partner_left"
	Claimed     Kind = "claimed"
	Handover    Kind = "handover"
	Ended       Kind = "ended"
	Resync      Kind = "resync"
)

// Event is one call an engine made to a Host.
type Event struct {
	Kind    Kind
	Session string
	Match   string               // Deliver, PartnerLeft; Paired: Pairing.Match
	Pairing signaling.Pairing    // Paired
	Data    []byte               // Deliver
	Why     signaling.LeftReason // PartnerLeft
	Revoke  bool                 // Ended
	// Pending: for Claimed, what the host handed back (see Hold); for
	// Handover, what the engine handed over.
	Pending [][]byte
}

func (e Event) String() string {
	switch e.Kind {
	case Paired:
		p := e.Pairing
		return fmt.Sprintf("paired(%s, match %s, partner %s, remote %v, %s)", e.Session, p.Match, p.Partner, p.Remote, p.Role)
	case Deliver:
		return fmt.Sprintf("deliver(%s, match %s, %q)", e.Session, e.Match, e.Data)
	case PartnerLeft:
		return fmt.Sprintf("partner_left(%s, match %s, %s)", e.Session, e.Match, e.Why)
	case Ended:
		return fmt.Sprintf("ended(%s, revoke %v)", e.Session, e.Revoke)
	case Resync:
		return "resync"
	}
	return fmt.Sprintf("%s(%s, %d pending)", e.Kind, e.Session, len(e.Pending))
}

// Host is a signaling.EngineHost that records every call, in order, for
// tests to wait for and inspect. Claimed hands back what Hold put aside
// for the session. Safe for concurrent use.
type Host struct {
	// Name labels the host in failure messages.
	Name string

	mu      sync.Mutex                  // guards what follows
	events  []Event                     // every call, in order
	changed chan struct{}               // closed (and replaced) when events grows
	held    map[string][][]byte         // what Claimed returns, by session
	byKind  map[Kind]int                // calls per kind
	deliver map[string]map[string][]int // Deliver: session → match → indexes into events
}

var _ signaling.EngineHost = (*Host)(nil)

// NewHost returns an empty Host named name.
func NewHost(name string) *Host {
	return &Host{
		Name:    name,
		changed: make(chan struct{}),
		held:    map[string][][]byte{},
		byKind:  map[Kind]int{},
		deliver: map[string]map[string][]int{},
	}
}

// Hold sets what Claimed returns for sessionID: what this node held for
// the session when another node claimed it.
func (h *Host) Hold(sessionID string, pending [][]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held[sessionID] = pending
}

func (h *Host) record(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Kind == Deliver {
		byMatch := h.deliver[e.Session]
		if byMatch == nil {
			byMatch = map[string][]int{}
			h.deliver[e.Session] = byMatch
		}
		byMatch[e.Match] = append(byMatch[e.Match], len(h.events))
	}
	h.events = append(h.events, e)
	h.byKind[e.Kind]++
	close(h.changed)
	h.changed = make(chan struct{})
}

// Paired implements signaling.EngineHost.
func (h *Host) Paired(sessionID string, p signaling.Pairing) {
	h.record(Event{Kind: Paired, Session: sessionID, Match: p.Match, Pairing: p})
}

// Deliver implements signaling.EngineHost.
func (h *Host) Deliver(sessionID, matchID string, data []byte) {
	h.record(Event{Kind: Deliver, Session: sessionID, Match: matchID, Data: bytes.Clone(data)})
}

// PartnerLeft implements signaling.EngineHost.
func (h *Host) PartnerLeft(sessionID, matchID string, why signaling.LeftReason) {
	h.record(Event{Kind: PartnerLeft, Session: sessionID, Match: matchID, Why: why})
}

// Claimed implements signaling.EngineHost: it returns what Hold put aside
// for the session, once.
func (h *Host) Claimed(sessionID string) [][]byte {
	h.mu.Lock()
	pending := h.held[sessionID]
	delete(h.held, sessionID)
	h.mu.Unlock()
	h.record(Event{Kind: Claimed, Session: sessionID, Pending: pending})
	return pending
}

// Handover implements signaling.EngineHost.
func (h *Host) Handover(sessionID string, pending [][]byte) {
	h.record(Event{Kind: Handover, Session: sessionID, Pending: pending})
}

// Ended implements signaling.EngineHost.
func (h *Host) Ended(sessionID string, revoke bool) {
	h.record(Event{Kind: Ended, Session: sessionID, Revoke: revoke})
}

// Resync implements signaling.EngineHost.
func (h *Host) Resync() {
	h.record(Event{Kind: Resync})
}

// Len returns how many calls the host has recorded.
func (h *Host) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events)
}

// Count returns how many calls of kind the host has recorded.
func (h *Host) Count(kind Kind) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byKind[kind]
}

// Events returns a copy of the calls recorded from index from on (0: all).
func (h *Host) Events(from int) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if from >= len(h.events) {
		return nil
	}
	return append([]Event(nil), h.events[from:]...)
}

// Select returns the recorded calls of kind for sessionID ("": any
// session), in order.
func (h *Host) Select(kind Kind, sessionID string) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if e.Kind == kind && (sessionID == "" || e.Session == sessionID) {
			out = append(out, e)
		}
	}
	return out
}

// Delivered returns the data delivered to sessionID in match matchID, in
// order.
func (h *Host) Delivered(sessionID, matchID string) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	idx := h.deliver[sessionID][matchID]
	out := make([][]byte, len(idx))
	for i, j := range idx {
		out[i] = h.events[j].Data
	}
	return out
}

// Changed returns a channel closed at the next call the host records.
func (h *Host) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// Wait waits up to d for a recorded call (from index from on) for which
// match holds, and returns it and its index; ok is false if d passed
// first.
func (h *Host) Wait(d time.Duration, from int, match func(Event) bool) (e Event, at int, ok bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		h.mu.Lock()
		for i := from; i < len(h.events); i++ {
			if match(h.events[i]) {
				e := h.events[i]
				h.mu.Unlock()
				return e, i, true
			}
		}
		from = max(from, len(h.events))
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return Event{}, 0, false
		}
	}
}

// WaitFor waits up to d for a recorded call for which match holds, and
// returns the first one; it fails tb when d passes first, naming what it
// waited for and listing the calls recorded.
func (h *Host) WaitFor(tb testing.TB, d time.Duration, what string, match func(Event) bool) Event {
	tb.Helper()
	e, _, ok := h.Wait(d, 0, match)
	if !ok {
		tb.Fatalf("host %s: waited %v for %s; recorded: %s", h.Name, d, what, h.summary())
	}
	return e
}

// WaitKind is WaitFor for the first call of kind for sessionID (for
// Paired, PartnerLeft and Deliver also of match matchID, unless "").
func (h *Host) WaitKind(tb testing.TB, d time.Duration, kind Kind, sessionID, matchID string) Event {
	tb.Helper()
	what := fmt.Sprintf("%s for session %s", kind, sessionID)
	if matchID != "" {
		what += " in match " + matchID
	}
	return h.WaitFor(tb, d, what, func(e Event) bool {
		return e.Kind == kind && e.Session == sessionID && (matchID == "" || e.Match == matchID)
	})
}

// summary lists the last calls recorded, for a failure message.
func (h *Host) summary() string {
	const last = 20
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.events) == 0 {
		return "nothing"
	}
	var b bytes.Buffer
	from := max(0, len(h.events)-last)
	if from > 0 {
		fmt.Fprintf(&b, "%d calls, the last %d: ", len(h.events), last)
	}
	for i, e := range h.events[from:] {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.String())
	}
	return b.String()
}
