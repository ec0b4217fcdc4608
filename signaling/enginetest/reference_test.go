package enginetest_test

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/signaling"
	"github.com/strangers-chat/strangers/signaling/enginetest"
)

// TestReference runs the suite against refEngine, the smallest shared
// engine that follows the contract (a map under one lock, a scan for a
// partner, a goroutine per node calling its host in order): the suite's
// check of itself, rules and cluster rules alike, without a Redis.
func TestReference(t *testing.T) {
	var mu sync.Mutex
	last := map[*testing.T]*refBackend{}
	enginetest.Run(t, enginetest.Harness{
		Name:   "reference",
		Shared: true,
		New: func(t *testing.T, hosts []signaling.EngineHost, opts enginetest.Options) []signaling.Engine {
			b := &refBackend{
				up:       true,
				opts:     opts,
				nodes:    map[string]*refNode{},
				sessions: map[string]*refSession{},
				matches:  map[string][2]string{},
				blocked:  map[[2]string]bool{},
			}
			mu.Lock()
			last[t] = b
			mu.Unlock()
			var out []signaling.Engine
			for i, h := range hosts {
				n := &refNode{b: b, name: "n" + string(rune('0'+i)), wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
				if err := n.Start(h); err != nil {
					t.Fatal(err)
				}
				out = append(out, n)
			}
			return out
		},
		// A crash: the sessions stay, as with a drain, until the grace.
		Kill: func(e signaling.Engine) { _ = e.Close(true) },
		Outage: func(t *testing.T) (func(), func(bool)) {
			mu.Lock()
			b := last[t]
			mu.Unlock()
			return b.stop, b.start
		},
	})
}

// refBackend is the state the nodes share. Guarded by mu.
type refBackend struct {
	mu       sync.Mutex
	up       bool
	opts     enginetest.Options
	nodes    map[string]*refNode // live nodes, by name
	sessions map[string]*refSession
	matches  map[string][2]string
	blocked  map[[2]string]bool
	timers   []*time.Timer
}

type refSession struct {
	rec     signaling.SessionRecord
	waiting bool
	tk      signaling.Ticket
	role    signaling.Role
	recent  []string
	gone    bool // its node drained: ends after the grace unless claimed
}

func (b *refBackend) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.up = false
}

func (b *refBackend) start(keep bool) {
	b.mu.Lock()
	b.up = true
	if !keep {
		b.sessions = map[string]*refSession{}
		b.matches = map[string][2]string{}
		b.blocked = map[[2]string]bool{}
	}
	for _, n := range b.nodes {
		n.post(func(h signaling.EngineHost) { h.Resync() })
	}
	b.mu.Unlock()
}

// refNode is one node's engine. Its goroutine (run) owns calls to host.
type refNode struct {
	b    *refBackend
	name string
	host signaling.EngineHost

	mu   sync.Mutex
	out  []func(signaling.EngineHost) // queued host calls, in order
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func (n *refNode) post(call func(signaling.EngineHost)) {
	n.mu.Lock()
	n.out = append(n.out, call)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *refNode) run() {
	defer close(n.done)
	for {
		n.mu.Lock()
		calls := n.out
		n.out = nil
		n.mu.Unlock()
		for _, c := range calls {
			c(n.host)
		}
		select {
		case <-n.wake:
		case <-n.quit:
			return
		}
	}
}

func (n *refNode) Start(h signaling.EngineHost) error {
	n.host = h
	n.b.mu.Lock()
	n.b.nodes[n.name] = n
	n.b.mu.Unlock()
	go n.run()
	return nil
}

func (n *refNode) Close(drain bool) error {
	b := n.b
	b.mu.Lock()
	delete(b.nodes, n.name)
	var mine []string
	for id, s := range b.sessions {
		if s.rec.Node == n.name {
			mine = append(mine, id)
			s.gone = true
		}
	}
	if drain {
		b.timers = append(b.timers, time.AfterFunc(b.opts.ResumeGrace, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, id := range mine {
				if s := b.sessions[id]; s != nil && s.gone {
					b.reap(id)
				}
			}
		}))
	} else {
		for _, id := range mine {
			b.reap(id)
		}
	}
	b.mu.Unlock()
	close(n.quit)
	<-n.done
	return nil
}

// reap ends a session of a node that is gone. b.mu held.
func (b *refBackend) reap(id string) {
	s := b.sessions[id]
	if s.rec.State == signaling.StateMatched {
		if p := b.sessions[s.rec.Partner]; p != nil {
			match := s.rec.Match
			b.endMatchLocked(s, p)
			if pn := b.nodes[p.rec.Node]; pn != nil {
				pn.post(func(h signaling.EngineHost) { h.PartnerLeft(p.rec.ID, match, signaling.LeftDisconnected) })
			}
		}
	}
	delete(b.sessions, id)
	for _, o := range b.nodes {
		o.post(func(h signaling.EngineHost) { h.Ended(id, false) })
	}
}

func (n *refNode) Node() string { return n.name }

func (n *refNode) Ready() bool {
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	return n.b.up
}

// lock takes the backend's lock, or says it is down.
func (n *refNode) lock() error {
	n.b.mu.Lock()
	if !n.b.up {
		n.b.mu.Unlock()
		return signaling.ErrEngineUnavailable
	}
	return nil
}

func (n *refNode) Register(rec signaling.SessionRecord) error {
	if err := n.lock(); err != nil {
		return err
	}
	defer n.b.mu.Unlock()
	rec.Node = n.name
	rec.State = signaling.StateIdle
	n.b.sessions[rec.ID] = &refSession{rec: rec}
	return nil
}

func (n *refNode) Claim(token string) (signaling.SessionRecord, bool, error) {
	if err := n.lock(); err != nil {
		return signaling.SessionRecord{}, false, err
	}
	var s *refSession
	for _, x := range n.b.sessions {
		if token != "" && x.rec.Token == token {
			s = x
		}
	}
	if s == nil {
		n.b.mu.Unlock()
		return signaling.SessionRecord{}, false, nil
	}
	old := n.b.nodes[s.rec.Node]
	s.rec.Node, s.gone = n.name, false
	if s.waiting {
		s.waiting = false // its new hub queues it again
	}
	rec := s.rec
	n.b.mu.Unlock()
	var held [][]byte
	if old != nil {
		held = old.host.Claimed(rec.ID)
	}
	n.post(func(h signaling.EngineHost) { h.Handover(rec.ID, held) })
	return rec, true, nil
}

func (n *refNode) End(id string, revoke bool) error {
	if err := n.lock(); err != nil {
		return err
	}
	defer n.b.mu.Unlock()
	if n.b.sessions[id] == nil {
		return nil
	}
	delete(n.b.sessions, id)
	for _, o := range n.b.nodes {
		if o != n {
			o.post(func(h signaling.EngineHost) { h.Ended(id, revoke) })
		}
	}
	return nil
}

func (b *refBackend) pairing(s, p *refSession, earlier bool) signaling.Pairing {
	common := []string{}
	for _, x := range s.tk.Interests {
		if slices.Contains(p.tk.Interests, x) {
			common = append(common, x)
		}
	}
	return signaling.Pairing{
		Match: s.rec.Match, Partner: p.rec.ID, Remote: s.rec.Node != p.rec.Node, Role: s.role,
		Common: common, PartnerIdent: p.rec.Ident, Earlier: earlier,
	}
}

func (b *refBackend) ok(s, c *refSession, recentOK bool) bool {
	if c == s || !c.waiting || c.tk.Mode != s.tk.Mode || c.tk.Shadow != s.tk.Shadow || c.gone {
		return false
	}
	shared := slices.ContainsFunc(s.tk.Interests, func(x string) bool { return slices.Contains(c.tk.Interests, x) })
	if !shared && !(s.tk.Anyone && c.tk.Anyone) {
		return false
	}
	if b.blocked[[2]string{s.rec.ID, c.rec.ID}] || b.blocked[[2]string{c.rec.ID, s.rec.ID}] {
		return false
	}
	recent := slices.Contains(s.recent, c.rec.ID) || slices.Contains(c.recent, s.rec.ID)
	return !recent || (recentOK && s.tk.Settled && c.tk.Settled)
}

func (n *refNode) Queue(t signaling.Ticket) (signaling.Pairing, error) {
	if err := n.lock(); err != nil {
		return signaling.Pairing{}, err
	}
	defer n.b.mu.Unlock()
	b := n.b
	s := b.sessions[t.Session]
	if s == nil {
		s = &refSession{rec: signaling.SessionRecord{ID: t.Session, Node: n.name, Ident: t.Ident}}
		b.sessions[t.Session] = s
	}
	if s.rec.State == signaling.StateMatched {
		return b.pairing(s, b.sessions[s.rec.Partner], true), nil
	}
	s.tk, s.waiting = t, false
	s.rec.HasFind, s.rec.Mode, s.rec.Interests, s.rec.RelayOnly, s.rec.WaitSince = true, t.Mode, t.Interests, t.RelayOnly, t.WaitSince
	var partner *refSession
	for _, recentOK := range []bool{false, true} {
		for _, c := range b.sessions {
			if b.ok(s, c, recentOK) {
				partner = c
				break
			}
		}
		if partner != nil {
			break
		}
	}
	if partner == nil {
		s.waiting = true
		s.rec.State = signaling.StateWaiting
		return signaling.Pairing{}, nil
	}
	var id [16]byte
	rand.Read(id[:])
	match := hex.EncodeToString(id[:])
	partner.waiting = false
	b.matches[match] = [2]string{s.rec.ID, partner.rec.ID}
	s.role, partner.role = signaling.RoleOfferer, signaling.RoleAnswerer
	for _, x := range []*refSession{s, partner} {
		o := s
		if x == s {
			o = partner
		}
		x.rec.State, x.rec.Match, x.rec.Partner, x.rec.PartnerIdent = signaling.StateMatched, match, o.rec.ID, o.rec.Ident
	}
	if pn := b.nodes[partner.rec.Node]; pn != n && pn != nil {
		view := b.pairing(partner, s, false)
		pn.post(func(h signaling.EngineHost) { h.Paired(partner.rec.ID, view) })
	}
	return b.pairing(s, partner, false), nil
}

func (n *refNode) Withdraw(id string) (signaling.Pairing, error) {
	if err := n.lock(); err != nil {
		return signaling.Pairing{}, err
	}
	defer n.b.mu.Unlock()
	s := n.b.sessions[id]
	if s == nil {
		return signaling.Pairing{}, nil
	}
	if s.rec.State == signaling.StateMatched {
		return n.b.pairing(s, n.b.sessions[s.rec.Partner], true), nil
	}
	s.waiting, s.rec.State = false, signaling.StateIdle
	return signaling.Pairing{}, nil
}

func (b *refBackend) endMatchLocked(s, p *refSession) {
	delete(b.matches, s.rec.Match)
	keep := b.opts.RecentPartners
	for _, x := range []*refSession{s, p} {
		o := p
		if x == p {
			o = s
		}
		x.recent = append(x.recent, o.rec.ID)
		if len(x.recent) > keep {
			x.recent = x.recent[1:]
		}
		x.rec.State, x.rec.Match, x.rec.Partner = signaling.StateIdle, "", ""
	}
}

func (n *refNode) EndMatch(matchID, id, partnerID string, why signaling.LeftReason) error {
	if err := n.lock(); err != nil {
		return err
	}
	defer n.b.mu.Unlock()
	b := n.b
	pair, ok := b.matches[matchID]
	if !ok || (pair[0] != id && pair[1] != id) {
		return signaling.ErrMatchGone
	}
	s, p := b.sessions[id], b.sessions[partnerID]
	b.endMatchLocked(s, p)
	if pn := b.nodes[p.rec.Node]; pn != n && pn != nil {
		pn.post(func(h signaling.EngineHost) { h.PartnerLeft(partnerID, matchID, why) })
	}
	return nil
}

func (n *refNode) Block(reporterID, reportedID string) error {
	if err := n.lock(); err != nil {
		return err
	}
	defer n.b.mu.Unlock()
	n.b.blocked[[2]string{reporterID, reportedID}] = true
	return nil
}

func (n *refNode) Send(toID, matchID string, data []byte) {
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	if !n.b.up {
		return
	}
	s := n.b.sessions[toID]
	if s == nil {
		return
	}
	if to := n.b.nodes[s.rec.Node]; to != nil {
		data = slices.Clone(data)
		to.post(func(h signaling.EngineHost) { h.Deliver(toID, matchID, data) })
	}
}

func (n *refNode) Counts() (signaling.EngineCounts, error) {
	if err := n.lock(); err != nil {
		return signaling.EngineCounts{}, err
	}
	defer n.b.mu.Unlock()
	c := signaling.EngineCounts{Online: len(n.b.sessions), Nodes: len(n.b.nodes)}
	for _, s := range n.b.sessions {
		if !s.waiting {
			continue
		}
		if s.tk.Mode == signaling.ModeVideo {
			c.WaitingVideo++
		} else {
			c.WaitingText++
		}
		if s.tk.Shadow {
			c.Shadowed++
		}
	}
	return c, nil
}
