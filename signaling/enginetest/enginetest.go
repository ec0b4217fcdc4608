// Package enginetest is the conformance suite of signaling.Engine: the
// rules every matchmaker engine follows, run the same way against each
// (the memory engine in this package's tests, the Redis engine in
// redisengine's, against a real redis-server). Run takes a Harness that
// makes engines; Host is a recording EngineHost the suite (and other
// tests) use to see what an engine tells its hub.
//
// Each subtest makes its own engines (for a shared engine: its own
// cluster of nodes) and sessions, and drives them as hubs would: one call
// at a time per engine, a session registered before it is queued, a match
// ended before its sessions end. The batch rules make the calls in
// batches, through Do for a signaling.Batcher and signaling.DoEach for
// another engine.
package enginetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/sessionid"
	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
)

// Harness makes the engines under test.
type Harness struct {
	// Name names the engine in failure messages.
	Name string
	// Shared: the engine is shared by several nodes (New may make more
	// than one), and the cross-node rules apply.
	Shared bool
	// New makes len(hosts) engines that share one cluster (more than one
	// only if Shared), each already Started with its host, on a backend of
	// their own (no other test's sessions). The suite closes them
	// (Close(false)) when the test ends, unless the test closed them
	// itself; anything else New started it stops with t.Cleanup.
	New func(t *testing.T, hosts []signaling.EngineHost, opts Options) []signaling.Engine
	// Outage, if set, returns how to stop the backend of the engines New
	// made last in t, and how to bring it back, with or without its data.
	// Nil: the outage rules are skipped.
	Outage func(t *testing.T) (stop func(), start func(keepData bool))
	// Kill, if set, stops engine e (one New made) as a crash would: its
	// background work stops without a word to the backend or the other
	// nodes, its lease left to run out. The suite does not Close it
	// after. Nil: the rules of a dead node are skipped.
	Kill func(e signaling.Engine)
}

// Options configure the engines of one test.
type Options struct {
	// RecentPartners is signaling.Config.RecentPartners.
	RecentPartners int
	// ResumeGrace is signaling.Config.ResumeGrace: how long the sessions
	// of a drained or dead node stay claimable.
	ResumeGrace time.Duration
}

// Patience bounds every wait for something an engine does on its own
// (a call to a host, a figure catching up, a backend coming back). Only a
// broken engine ever waits this long.
const Patience = 60 * time.Second

// defaults are the Options of a test that does not say.
var defaults = Options{RecentPartners: 3, ResumeGrace: 15 * time.Second}

type rule struct {
	name string
	opts Options
	fn   func(t *testing.T, f *fixture)
}

// Run runs the conformance suite against the engines h makes. With a
// shared engine every rule runs twice: with all sessions on one node, and
// with them spread over two (partners on different nodes); then the rules
// of a cluster (forwarding, claims, closes, concurrent churn), of a dead
// node (with Harness.Kill) and of an outage (with Harness.Outage) run.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("enginetest: Harness.New is nil")
	}
	layouts := []struct {
		name  string
		nodes int
	}{{"one node", 1}}
	if h.Shared {
		layouts = append(layouts, struct {
			name  string
			nodes int
		}{"two nodes", 2})
	}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			for _, r := range rules() {
				t.Run(r.name, func(t *testing.T) {
					t.Parallel()
					r.fn(t, newFixture(t, h, l.nodes, r.opts))
				})
			}
		})
	}
	t.Run("cluster", func(t *testing.T) {
		if !h.Shared {
			t.Skipf("%s is not shared by several nodes", h.Name)
		}
		for _, r := range clusterRules() {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				r.fn(t, newFixture(t, h, 3, r.opts))
			})
		}
	})
	t.Run("dead node", func(t *testing.T) {
		if !h.Shared || h.Kill == nil {
			t.Skipf("%s cannot kill a node", h.Name)
		}
		for _, r := range deathRules() {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, h, 3, r.opts)
				f.kill = h.Kill
				r.fn(t, f)
			})
		}
	})
	t.Run("outage", func(t *testing.T) {
		if h.Outage == nil {
			t.Skipf("%s has no backend to stop", h.Name)
		}
		for _, r := range outageRules() {
			t.Run(r.name, func(t *testing.T) {
				nodes := 1
				if h.Shared {
					nodes = 2
				}
				f := newFixture(t, h, nodes, r.opts)
				f.stop, f.start = h.Outage(t)
				r.fn(t, f)
			})
		}
	})
}

func rules() []rule {
	return []rule{
		{"pairs two compatible sessions", defaults, testPairs},
		{"node names", defaults, testNodeNames},
		{"never pairs a session with itself", defaults, testNeverItself},
		{"queue again replaces the entry", defaults, testQueueReplaces},
		{"modes apart", defaults, testModesApart},
		{"shadow pool apart", defaults, testShadowApart},
		{"interests", defaults, testInterests},
		{"common interests in the caller's order", defaults, testCommonOrder},
		{"one offerer per match", defaults, testRoles},
		{"the draw is random", defaults, testRandomDraw},
		{"recent partners avoided until both settled", Options{RecentPartners: 2, ResumeGrace: defaults.ResumeGrace}, testRecent},
		{"recent partners: a settled pair only if nobody else", Options{RecentPartners: 2, ResumeGrace: defaults.ResumeGrace}, testRecentNobodyElse},
		{"recent partners: only the last RecentPartners", Options{RecentPartners: 1, ResumeGrace: defaults.ResumeGrace}, testRecentRing},
		{"reported never", Options{RecentPartners: 1, ResumeGrace: defaults.ResumeGrace}, testBlock},
		{"withdraw", defaults, testWithdraw},
		{"end match", defaults, testEndMatch},
		{"register and end", defaults, testRegisterEnd},
		{"counts", defaults, testCounts},
		{"unknown ids", defaults, testUnknown},
		{"random operations keep the invariants", Options{RecentPartners: 2, ResumeGrace: defaults.ResumeGrace}, testRandom},
		{"random batches keep the invariants", Options{RecentPartners: 2, ResumeGrace: defaults.ResumeGrace}, testRandomBatches},
	}
}

// fixture is one test's engines, hosts and sessions. Owned by the test's
// goroutine.
type fixture struct {
	t       *testing.T
	name    string
	shared  bool
	engines []signaling.Engine
	hosts   []*Host
	closed  []bool
	opts    Options
	next    int                         // node of the next session, round robin
	tickets map[string]signaling.Ticket // the last ticket queued, by session

	// Outage tests: stop and start the backend.
	stop  func()
	start func(keepData bool)
	// Dead node tests: crash an engine.
	kill func(e signaling.Engine)
}

func newFixture(t *testing.T, h Harness, nodes int, opts Options) *fixture {
	t.Helper()
	f := &fixture{t: t, name: h.Name, shared: h.Shared, opts: opts, tickets: map[string]signaling.Ticket{}}
	eh := make([]signaling.EngineHost, nodes)
	for i := range nodes {
		f.hosts = append(f.hosts, NewHost(fmt.Sprintf("node%d", i)))
		eh[i] = f.hosts[i]
	}
	f.engines = h.New(t, eh, opts)
	if len(f.engines) != nodes {
		t.Fatalf("%s: New made %d engines for %d hosts", h.Name, len(f.engines), nodes)
	}
	f.closed = make([]bool, nodes)
	t.Cleanup(func() {
		for i, e := range f.engines {
			if !f.closed[i] {
				if err := e.Close(false); err != nil {
					t.Errorf("node%d: Close: %v", i, err)
				}
			}
		}
	})
	for i, e := range f.engines {
		testsupport.WaitFor(t, Patience, fmt.Sprintf("node%d ready after Start", i), e.Ready)
	}
	return f
}

// sess is a session as its hub knows it.
type sess struct {
	id, token string
	node      int
	ident     signaling.Identity
}

// newSession registers a session on the next node, round robin.
func (f *fixture) newSession() sess {
	f.t.Helper()
	n := f.next
	f.next = (f.next + 1) % len(f.engines)
	return f.sessionOn(n)
}

// sessionOn registers a session on node n.
func (f *fixture) sessionOn(n int) sess {
	f.t.Helper()
	s, rec := f.unregistered(n)
	if err := f.engines[n].Register(rec); err != nil {
		f.t.Fatalf("node%d: Register(%s): %v", n, s.id, err)
	}
	return s
}

// unregistered makes a new session of node n and the record its hub
// registers.
func (f *fixture) unregistered(n int) (sess, signaling.SessionRecord) {
	id := sessionid.New()
	s := sess{
		id:    id,
		token: sessionid.New() + sessionid.New(),
		node:  n,
		ident: signaling.Identity{Client: "client-" + id, Addr: "addr-" + id},
	}
	return s, signaling.SessionRecord{
		ID:        s.id,
		Token:     s.token,
		Node:      f.engines[n].Node(),
		Ident:     s.ident,
		ClientKey: "key-" + id,
		State:     signaling.StateIdle,
	}
}

// ticket is how s waits: mode video, no interests, anyone, unsettled.
func (s sess) ticket() signaling.Ticket {
	return signaling.Ticket{
		Session:   s.id,
		Mode:      signaling.ModeVideo,
		Anyone:    true,
		Ident:     s.ident,
		WaitSince: time.Now(),
	}
}

// tags is s's ticket with interests.
func (s sess) tags(anyone bool, interests ...string) signaling.Ticket {
	tk := s.ticket()
	tk.Interests = interests
	tk.Anyone = anyone
	return tk
}

func (s sess) settled() signaling.Ticket {
	tk := s.ticket()
	tk.Settled = true
	return tk
}

func (s sess) String() string { return fmt.Sprintf("%.8s@node%d", s.id, s.node) }

func (f *fixture) engine(s sess) signaling.Engine { return f.engines[s.node] }

// queue queues s with tk and returns what Queue returned.
func (f *fixture) queue(s sess, tk signaling.Ticket) signaling.Pairing {
	f.t.Helper()
	p, err := f.engine(s).Queue(tk)
	if err != nil {
		f.t.Fatalf("%s: Queue(%s): %v", f.name, s, err)
	}
	f.tickets[s.id] = tk
	return p
}

// wait queues s with tk and checks it waits.
func (f *fixture) wait(s sess, tk signaling.Ticket) {
	f.t.Helper()
	if p := f.queue(s, tk); !p.Zero() {
		f.t.Fatalf("%s: Queue(%s) paired it with %.8s; want it to wait", f.name, s, p.Partner)
	}
}

// pair queues s with tk, checks it is paired with partner, and checks
// both sides' view of the match; it returns the match id.
func (f *fixture) pair(s sess, tk signaling.Ticket, partner sess) string {
	f.t.Helper()
	p := f.queue(s, tk)
	if p.Zero() {
		f.t.Fatalf("%s: Queue(%s) left it waiting; want it paired with %s", f.name, s, partner)
	}
	if p.Partner != partner.id {
		f.t.Fatalf("%s: Queue(%s) paired it with %.8s; want %s", f.name, s, p.Partner, partner)
	}
	f.checkPairing(s, p, partner, false)
	return p.Match
}

// checkPairing checks s's view p of its match with partner and, for a
// partner on another node, the view its node was told (Paired).
func (f *fixture) checkPairing(s sess, p signaling.Pairing, partner sess, earlier bool) {
	f.t.Helper()
	remote := s.node != partner.node
	if p.Match == "" || p.Partner != partner.id {
		f.t.Fatalf("%s: %s's pairing %+v: want a match with %s", f.name, s, p, partner)
	}
	if p.Remote != remote {
		f.t.Errorf("%s: %s's pairing with %s: Remote %v, want %v", f.name, s, partner, p.Remote, remote)
	}
	if p.Role != signaling.RoleOfferer && p.Role != signaling.RoleAnswerer {
		f.t.Errorf("%s: %s's pairing: role %q", f.name, s, p.Role)
	}
	if p.PartnerIdent != partner.ident {
		f.t.Errorf("%s: %s's pairing: PartnerIdent %+v, want %+v", f.name, s, p.PartnerIdent, partner.ident)
	}
	if p.Earlier != earlier {
		f.t.Errorf("%s: %s's pairing: Earlier %v, want %v", f.name, s, p.Earlier, earlier)
	}
	want := common(f.tickets[s.id].Interests, f.tickets[partner.id].Interests)
	if p.Common == nil || !slices.Equal(p.Common, want) {
		f.t.Errorf("%s: %s's pairing: Common %#v, want %#v (the shared interests in its own order, never nil)", f.name, s, p.Common, want)
	}
	if !remote {
		return
	}
	e := f.hosts[partner.node].WaitKind(f.t, Patience, Paired, partner.id, p.Match)
	q := e.Pairing
	if q.Partner != s.id || !q.Remote || q.Earlier {
		f.t.Errorf("%s: %s was told %+v; want partner %s, Remote, not Earlier", f.name, partner, q, s)
	}
	if q.Role == p.Role || (q.Role != signaling.RoleOfferer && q.Role != signaling.RoleAnswerer) {
		f.t.Errorf("%s: match %s: roles %q (%s) and %q (%s): want exactly one offerer", f.name, p.Match, p.Role, s, q.Role, partner)
	}
	if q.PartnerIdent != s.ident {
		f.t.Errorf("%s: %s was told PartnerIdent %+v, want %+v", f.name, partner, q.PartnerIdent, s.ident)
	}
	want = common(f.tickets[partner.id].Interests, f.tickets[s.id].Interests)
	if q.Common == nil || !slices.Equal(q.Common, want) {
		f.t.Errorf("%s: %s was told Common %#v, want %#v", f.name, partner, q.Common, want)
	}
}

// endMatch ends match m from s's side and checks a partner on another
// node is told.
func (f *fixture) endMatch(m string, s, partner sess, why signaling.LeftReason) {
	f.t.Helper()
	if err := f.engine(s).EndMatch(m, s.id, partner.id, why); err != nil {
		f.t.Fatalf("%s: EndMatch(%s) by %s: %v", f.name, m, s, err)
	}
	if s.node != partner.node {
		e := f.hosts[partner.node].WaitKind(f.t, Patience, PartnerLeft, partner.id, m)
		if e.Why != why {
			f.t.Errorf("%s: %s told its partner left for %q, want %q", f.name, partner, e.Why, why)
		}
	}
}

// met pairs two fresh-looking tickets of a and b (a waits, b joins) on
// tags of their own and ends the match, so that they are recent partners.
func (f *fixture) met(a, b sess) {
	f.t.Helper()
	tag := "met-" + a.id[:6] + b.id[:6]
	f.wait(a, a.tags(false, tag))
	m := f.pair(b, b.tags(false, tag), a)
	f.endMatch(m, a, b, signaling.LeftNext)
}

func (f *fixture) withdraw(s sess) {
	f.t.Helper()
	p, err := f.engine(s).Withdraw(s.id)
	if err != nil {
		f.t.Fatalf("%s: Withdraw(%s): %v", f.name, s, err)
	}
	if !p.Zero() {
		f.t.Fatalf("%s: Withdraw(%s) returned pairing %+v; nobody paired it", f.name, s, p)
	}
}

func (f *fixture) block(reporter, reported sess) {
	f.t.Helper()
	if err := f.engine(reporter).Block(reporter.id, reported.id); err != nil {
		f.t.Fatalf("%s: Block(%s, %s): %v", f.name, reporter, reported, err)
	}
}

func (f *fixture) end(s sess, revoke bool) {
	f.t.Helper()
	if err := f.engine(s).End(s.id, revoke); err != nil {
		f.t.Fatalf("%s: End(%s): %v", f.name, s, err)
	}
}

// counts waits until every node's Counts satisfy ok (the figures are the
// cluster's, the same on every node) and fails with the last ones if they
// never do; what describes the expectation.
func (f *fixture) counts(what string, ok func(signaling.EngineCounts) bool) signaling.EngineCounts {
	f.t.Helper()
	var last signaling.EngineCounts
	var lastErr error
	held := testsupport.Eventually(Patience, func() bool {
		for i, e := range f.engines {
			if f.closed[i] {
				continue
			}
			c, err := e.Counts()
			last, lastErr = c, err
			if err != nil || !ok(c) {
				return false
			}
		}
		return true
	})
	if !held {
		f.t.Fatalf("%s: Counts: want %s; got %+v (err %v)", f.name, what, last, lastErr)
	}
	return last
}

// waiting waits until the cluster counts video and text waiting sessions.
func (f *fixture) waiting(video, text int) {
	f.t.Helper()
	f.counts(fmt.Sprintf("%d waiting for video, %d for text", video, text), func(c signaling.EngineCounts) bool {
		return c.WaitingVideo == video && c.WaitingText == text
	})
}

// common returns the interests a and b share, in a's order, never nil.
func common(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// errUnavailable reports whether err is signaling.ErrEngineUnavailable.
func errUnavailable(err error) bool { return errors.Is(err, signaling.ErrEngineUnavailable) }
