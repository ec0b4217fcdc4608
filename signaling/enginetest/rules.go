package enginetest

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/strangers-chat/strangers/signaling"
)

// The pairing rules of Engine.Queue, Withdraw, EndMatch, Block, Register,
// End and Counts, with sessions on one node or spread over two.

func testPairs(t *testing.T, f *fixture) {
	a, b, c := f.newSession(), f.newSession(), f.newSession()
	f.wait(a, a.ticket())
	f.waiting(1, 0)
	f.pair(b, b.ticket(), a)
	f.waiting(0, 0)
	// Both left the pool: a third waits.
	f.wait(c, c.ticket())
	f.waiting(1, 0)
}

func testNodeNames(t *testing.T, f *fixture) {
	seen := map[string]bool{}
	for i, e := range f.engines {
		name := e.Node()
		switch {
		case !f.shared && name != "":
			t.Errorf("%s: Node() = %q; an engine not shared has no name", f.name, name)
		case f.shared && (name == "" || seen[name]):
			t.Errorf("%s: node%d: Node() = %q; want a name of its own", f.name, i, name)
		}
		seen[name] = true
	}
}

func testNeverItself(t *testing.T, f *fixture) {
	a := f.newSession()
	f.wait(a, a.ticket())
	f.wait(a, a.ticket())
	f.wait(a, a.settled())
	f.waiting(1, 0)
}

func testQueueReplaces(t *testing.T, f *fixture) {
	a, b, c := f.newSession(), f.newSession(), f.newSession()
	f.wait(a, a.ticket())
	text := a.ticket()
	text.Mode = signaling.ModeText
	f.wait(a, text)
	f.waiting(0, 1) // one entry, in text only
	f.wait(b, b.ticket())
	ct := c.ticket()
	ct.Mode = signaling.ModeText
	f.pair(c, ct, a)
	f.waiting(1, 0)

	// Interests replaced too: d waits on y only.
	d, e, g := f.newSession(), f.newSession(), f.newSession()
	f.wait(d, d.tags(false, "x"))
	f.wait(d, d.tags(false, "y"))
	f.wait(e, e.tags(false, "x"))
	f.pair(g, g.tags(false, "y"), d)
	f.waiting(2, 0) // b and e
}

func testModesApart(t *testing.T, f *fixture) {
	a, b, c, d := f.newSession(), f.newSession(), f.newSession(), f.newSession()
	text := func(s sess, settled bool) signaling.Ticket {
		tk := s.ticket()
		tk.Mode, tk.Settled = signaling.ModeText, settled
		return tk
	}
	f.wait(a, a.settled())
	f.wait(b, text(b, true))
	f.waiting(1, 1)
	f.pair(c, text(c, false), b)
	f.pair(d, d.ticket(), a)
	f.waiting(0, 0)
}

func testShadowApart(t *testing.T, f *fixture) {
	a, b, c, d := f.newSession(), f.newSession(), f.newSession(), f.newSession()
	shadow := func(s sess) signaling.Ticket {
		tk := s.settled()
		tk.Shadow = true
		return tk
	}
	f.wait(a, shadow(a))
	f.wait(b, b.settled())
	f.counts("2 waiting for video (one of them shadowed), 1 shadowed", func(c signaling.EngineCounts) bool {
		return c.WaitingVideo == 2 && c.Shadowed == 1
	})
	f.pair(c, shadow(c), a)
	f.pair(d, d.ticket(), b)
	f.counts("nobody waiting, nobody shadowed", func(c signaling.EngineCounts) bool {
		return c.WaitingVideo == 0 && c.Shadowed == 0
	})
}

func testInterests(t *testing.T, f *fixture) {
	// A shared interest pairs, without Anyone on either side.
	a, b := f.newSession(), f.newSession()
	f.wait(a, a.tags(false, "music", "film"))
	f.pair(b, b.tags(false, "chess", "music"), a)

	// Different interests and no Anyone: apart.
	c, d := f.newSession(), f.newSession()
	f.wait(c, c.tags(false, "music"))
	f.wait(d, d.tags(false, "art"))
	// Anyone on one side only: still apart.
	e := f.newSession()
	f.wait(e, e.tags(true))
	f.waiting(3, 0)

	// Anyone on both sides: paired without a shared interest (e, the only
	// other session that accepts anyone), Common empty but not nil.
	g := f.newSession()
	f.pair(g, g.tags(true, "chess"), e)

	// A shared interest pairs whether or not either side accepts anyone.
	h, i, j := f.newSession(), f.newSession(), f.newSession()
	f.wait(h, h.tags(true, "go"))
	f.pair(i, i.tags(false, "art", "zen"), d)
	f.pair(j, j.tags(false, "go"), h)
	f.waiting(1, 0) // c
}

func testCommonOrder(t *testing.T, f *fixture) {
	a, b := f.newSession(), f.newSession()
	f.wait(a, a.tags(false, "a", "b", "c", "d"))
	f.pair(b, b.tags(false, "d", "x", "b"), a) // checks [d b] for b, and [b d] for a if told
	c, d := f.newSession(), f.newSession()
	f.wait(c, c.tags(true, "p"))
	f.pair(d, d.tags(true, "q"), c)
	// As many interests as a find may have, in any script.
	many := []string{"café", "日本語", "ελληνικά", "a b", "x-y_z", "emoji🙂", "k", "l", "m", "n"}
	if len(many) != signaling.MaxInterests {
		t.Fatalf("the test has %d interests, MaxInterests is %d", len(many), signaling.MaxInterests)
	}
	g, h := f.newSession(), f.newSession()
	f.wait(g, g.tags(false, many...))
	f.pair(h, h.tags(false, "n", "zzz", "日本語", "emoji🙂", "café"), g)
}

func testRoles(t *testing.T, f *fixture) {
	offers := 0
	const n = 20
	for range n {
		a, b := f.newSession(), f.newSession()
		f.wait(a, a.ticket())
		p := f.queue(b, b.ticket())
		if p.Partner != a.id {
			t.Fatalf("%s: Queue(%s) = %+v, want a match with %s", f.name, b, p, a)
		}
		f.checkPairing(b, p, a, false) // on two nodes: checks the other side has the other role
		if p.Role == signaling.RoleOfferer {
			offers++
		}
	}
	t.Logf("%s: the queued side offered in %d of %d matches", f.name, offers, n)
}

// testRandomDraw checks the partner is drawn at random among those that
// would do: neither always the first to wait nor always the last.
func testRandomDraw(t *testing.T, f *fixture) {
	// Each waits on an interest of its own (so they do not pair with each
	// other); the seeker has them all.
	const waiting, trials = 8, 20
	first, last := 0, 0
	var tags []string
	for i := range waiting {
		tags = append(tags, tag("draw-", i))
	}
	for range trials {
		ws := make([]sess, waiting)
		for i := range ws {
			ws[i] = f.newSession()
			f.wait(ws[i], ws[i].tags(false, tags[i]))
		}
		s := f.newSession()
		_, x := f.pairAny(s, s.tags(false, tags...), ws...)
		switch x {
		case ws[0]:
			first++
		case ws[waiting-1]:
			last++
		}
		for _, w := range ws {
			if w != x {
				f.withdraw(w)
			}
		}
	}
	t.Logf("%s: of %d draws among %d, %d took the first to wait, %d the last", f.name, trials, waiting, first, last)
	if first == trials || last == trials {
		t.Errorf("%s: %d draws among %d waiting sessions all took the same one (the first %d times, the last %d): not random", f.name, trials, waiting, first, last)
	}
}

func testRecent(t *testing.T, f *fixture) {
	a, b := f.newSession(), f.newSession()
	f.met(a, b)
	// Both unsettled: apart.
	f.wait(a, a.ticket())
	f.wait(b, b.ticket())
	// One settled: still apart, whichever queues last.
	f.wait(b, b.settled())
	f.withdraw(b)
	f.wait(a, a.settled())
	f.wait(b, b.ticket())
	f.waiting(2, 0)
	// Both settled, nobody else: together again.
	f.pair(b, b.settled(), a)
	f.waiting(0, 0)

	// A third that met neither is anyone's partner at once.
	c, d := f.newSession(), f.newSession()
	f.met(c, d)
	e := f.newSession()
	f.wait(c, c.ticket())
	f.pair(e, e.ticket(), c)
	f.wait(d, d.ticket())
}

func testRecentNobodyElse(t *testing.T, f *fixture) {
	// a and b met; c waits and shares an interest with b only. b, settled,
	// must take c over a, although a has settled too.
	for i := range 5 {
		a, b, c := f.newSession(), f.newSession(), f.newSession()
		f.met(a, b)
		x, y := tag("x", i), tag("y", i)
		at := a.tags(false, x)
		at.Settled = true
		f.wait(a, at)
		f.wait(c, c.tags(false, y))
		bt := b.tags(false, x, y)
		bt.Settled = true
		f.pair(b, bt, c)
		f.withdraw(a)
	}
	f.waiting(0, 0)
}

func tag(prefix string, i int) string { return prefix + string(rune('a'+i)) }

func testRecentRing(t *testing.T, f *fixture) {
	// RecentPartners 1: a session forgets a partner after the next one;
	// both sides remember the match.
	a, b, c, d := f.newSession(), f.newSession(), f.newSession(), f.newSession()
	f.met(a, b) // ended by a
	f.met(a, c) // a forgets b; b remembers a
	f.wait(a, a.ticket())
	f.wait(b, b.ticket())
	f.withdraw(b)
	f.met(b, d) // b forgets a
	f.pair(b, b.ticket(), a)
}

func testBlock(t *testing.T, f *fixture) {
	for _, tc := range []struct {
		name          string
		reporterFirst bool // the reporter queues first
		settled       bool
	}{
		{"reported queues last", true, false},
		{"reporter queues last", false, false},
		{"both settled, reported last", true, true},
		{"both settled, reporter last", false, true},
	} {
		a, b := f.newSession(), f.newSession()
		f.block(a, b)
		first, second := a, b
		if !tc.reporterFirst {
			first, second = b, a
		}
		tk := func(s sess) signaling.Ticket {
			x := s.ticket()
			x.Settled = tc.settled
			return x
		}
		f.wait(first, tk(first))
		if p := f.queue(second, tk(second)); !p.Zero() {
			t.Fatalf("%s: %s: %s reported %s, and they were paired (%+v)", f.name, tc.name, a, b, p)
		}
		f.withdraw(a)
		f.withdraw(b)
	}
	f.waiting(0, 0)

	// Reported after a match, then forgotten as a recent partner: still
	// never, even both settled with nobody else.
	a, b, c, d := f.newSession(), f.newSession(), f.newSession(), f.newSession()
	f.wait(a, a.ticket())
	m := f.pair(b, b.ticket(), a)
	f.endMatch(m, b, a, signaling.LeftReported)
	f.block(b, a)
	f.met(a, c)
	f.met(b, d)
	f.wait(a, a.settled())
	if p := f.queue(b, b.settled()); !p.Zero() {
		t.Fatalf("%s: %s reported %s after their match, and they were paired again (%+v)", f.name, b, a, p)
	}
	// Each still meets others.
	e, g := f.newSession(), f.newSession()
	other := a
	if _, x := f.pairAny(e, e.ticket(), a, b); x == a {
		other = b
	}
	f.pair(g, g.ticket(), other)
}

func testWithdraw(t *testing.T, f *fixture) {
	a, b, c := f.newSession(), f.newSession(), f.newSession()
	f.wait(a, a.ticket())
	f.withdraw(a)
	f.waiting(0, 0)
	f.wait(b, b.ticket())
	f.waiting(1, 0)
	f.withdraw(a) // not in the pool: a no-op
	f.withdraw(c) // never queued
	f.pair(a, a.ticket(), b)
	f.waiting(0, 0)
}

func testEndMatch(t *testing.T, f *fixture) {
	a, b, c := f.newSession(), f.newSession(), f.newSession()
	f.wait(a, a.ticket())
	m := f.pair(b, b.ticket(), a)
	f.endMatch(m, a, b, signaling.LeftNext)
	f.waiting(0, 0)

	// It is gone, for either side.
	if err := f.engine(a).EndMatch(m, a.id, b.id, signaling.LeftNext); !errors.Is(err, signaling.ErrMatchGone) {
		t.Errorf("%s: EndMatch of an ended match, same side: %v, want ErrMatchGone", f.name, err)
	}
	if err := f.engine(b).EndMatch(m, b.id, a.id, signaling.LeftStop); !errors.Is(err, signaling.ErrMatchGone) {
		t.Errorf("%s: EndMatch of an ended match, other side: %v, want ErrMatchGone", f.name, err)
	}

	// Both free and recent partners.
	f.wait(a, a.ticket())
	f.wait(b, b.ticket())
	f.waiting(2, 0)
	f.withdraw(b)
	m2 := f.pair(c, c.ticket(), a)

	// A stale EndMatch does not end the match a is in now.
	if err := f.engine(b).EndMatch(m, b.id, a.id, signaling.LeftStop); !errors.Is(err, signaling.ErrMatchGone) {
		t.Errorf("%s: stale EndMatch while a is in a new match: %v, want ErrMatchGone", f.name, err)
	}
	f.endMatch(m2, c, a, signaling.LeftStop)
	if err := f.engine(a).EndMatch(m2, a.id, c.id, signaling.LeftNext); !errors.Is(err, signaling.ErrMatchGone) {
		t.Errorf("%s: EndMatch of the new match after its end: %v, want ErrMatchGone", f.name, err)
	}
	for _, e := range f.hosts[a.node].Select(PartnerLeft, a.id) {
		if e.Match == m {
			t.Errorf("%s: %s was told its partner left match %s, which it ended itself", f.name, a, m)
		}
	}
	f.waiting(0, 0)
}

// pairAny queues s, checks it is paired with one of partners, and
// returns the match and which.
func (f *fixture) pairAny(s sess, tk signaling.Ticket, partners ...sess) (string, sess) {
	f.t.Helper()
	p := f.queue(s, tk)
	for _, x := range partners {
		if p.Partner == x.id {
			f.checkPairing(s, p, x, false)
			return p.Match, x
		}
	}
	f.t.Fatalf("%s: Queue(%s) = %+v; want a match with one of %v", f.name, s, p, partners)
	return "", sess{}
}

func testRegisterEnd(t *testing.T, f *fixture) {
	base := f.counts("figures", func(signaling.EngineCounts) bool { return true }).Online
	online := func(n int) {
		f.t.Helper()
		f.counts("online "+strconv.Itoa(n), func(c signaling.EngineCounts) bool { return c.Online == n })
	}
	a, b, c := f.newSession(), f.newSession(), f.newSession()
	online(base + 3)
	f.end(a, false)
	online(base + 2)
	// A waiting session leaves the pool when it ends.
	f.wait(b, b.ticket())
	f.end(b, true)
	online(base + 1)
	f.waiting(0, 0)
	f.wait(c, c.ticket())
	f.waiting(1, 0)
	// On an engine not shared no session can be claimed: the hub that
	// has it knows it.
	if !f.shared {
		if _, ok, err := f.engines[0].Claim(c.token); ok || err != nil {
			t.Errorf("%s: Claim of a live session = ok %v, %v; an engine not shared claims nothing", f.name, ok, err)
		}
	}
	// An ended session cannot be claimed.
	for _, s := range []sess{a, b} {
		e := f.engines[(s.node+1)%len(f.engines)]
		if _, ok, err := e.Claim(s.token); ok || err != nil {
			t.Errorf("%s: Claim of ended %s: ok %v, err %v; want not found", f.name, s, ok, err)
		}
	}
	// A session whose match ended can end; its partner goes on.
	d, g := f.newSession(), f.newSession()
	m := f.pair(d, d.ticket(), c)
	f.endMatch(m, d, c, signaling.LeftStop)
	f.end(d, false)
	f.wait(c, c.ticket())
	f.pair(g, g.ticket(), c) // c met d, not g
}

func testCounts(t *testing.T, f *fixture) {
	base := f.counts("figures", func(signaling.EngineCounts) bool { return true }).Online
	ss := make([]sess, 5)
	for i := range ss {
		ss[i] = f.newSession()
	}
	tk := func(s sess, mode signaling.Mode, shadow bool) signaling.Ticket {
		x := s.ticket()
		x.Mode, x.Shadow = mode, shadow
		return x
	}
	f.wait(ss[0], tk(ss[0], signaling.ModeVideo, false))
	f.wait(ss[1], tk(ss[1], signaling.ModeText, false))
	f.wait(ss[2], tk(ss[2], signaling.ModeVideo, true))
	f.wait(ss[3], tk(ss[3], signaling.ModeText, true))
	// ss[4] is online, idle.
	want := signaling.EngineCounts{Online: base + 5, WaitingVideo: 2, WaitingText: 2, Shadowed: 2, Nodes: len(f.engines)}
	f.counts(fmt.Sprintf("%+v (waiting by mode counts the shadowed too)", want), func(c signaling.EngineCounts) bool {
		return c.Online == want.Online && c.WaitingVideo == want.WaitingVideo && c.WaitingText == want.WaitingText &&
			c.Shadowed == want.Shadowed
	})
	f.counts("Nodes "+strconv.Itoa(len(f.engines)), func(c signaling.EngineCounts) bool { return c.Nodes == len(f.engines) })
	f.withdraw(ss[2])
	f.end(ss[3], false)
	f.counts("1 waiting per mode, none shadowed, "+strconv.Itoa(base+4)+" online", func(c signaling.EngineCounts) bool {
		return c.WaitingVideo == 1 && c.WaitingText == 1 && c.Shadowed == 0 && c.Online == base+4
	})
}

func testUnknown(t *testing.T, f *fixture) {
	a := f.newSession()
	f.wait(a, a.ticket())
	e := f.engine(a)
	unknown := "unknownSessionIdxxxxxx"
	if p, err := e.Withdraw(unknown); err != nil || !p.Zero() {
		t.Errorf("%s: Withdraw(unknown) = %+v, %v; want a no-op", f.name, p, err)
	}
	if err := e.EndMatch("no-such-match", a.id, unknown, signaling.LeftNext); err != nil && !errors.Is(err, signaling.ErrMatchGone) {
		t.Errorf("%s: EndMatch(unknown match) = %v; want ErrMatchGone or nil", f.name, err)
	}
	if _, ok, err := e.Claim("no-such-token"); ok || err != nil {
		t.Errorf("%s: Claim(unknown token) = ok %v, %v; want not found", f.name, ok, err)
	}
	if _, ok, err := e.Claim(""); ok || err != nil {
		t.Errorf("%s: Claim(\"\") = ok %v, %v; want not found", f.name, ok, err)
	}
	_ = e.End(unknown, false) // any answer but a crash
	_ = e.Block(a.id, unknown)
	e.Send(unknown, "no-such-match", []byte("x"))
	f.waiting(1, 0)
	b := f.newSession()
	f.pair(b, b.ticket(), a)
}
