package enginetest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
)

// The rules of a cluster (three nodes): what one node's calls do to
// another node's sessions, claims, ends and closes.

// sendCount is how many messages the ordering test sends each way.
const sendCount = 1000

func clusterRules() []rule {
	short := Options{RecentPartners: 3, ResumeGrace: 2 * time.Second}
	return []rule{
		{"pairing across nodes", defaults, testAcross},
		{"a pairing made elsewhere is returned as earlier", defaults, testEarlier},
		{"send in order across nodes", defaults, testSendOrder},
		{"claim moves a matched session", defaults, testClaimMatched},
		{"claim moves a waiting session", defaults, testClaimWaiting},
		{"end tells the other nodes", defaults, testEndTells},
		{"close without drain ends the node's sessions", defaults, testCloseNoDrain},
		{"close with drain keeps sessions claimable", defaults, testCloseDrain},
		{"a drained session nobody claims ends after the grace", short, testDrainExpires},
		{"concurrent churn on every node", Options{RecentPartners: 2, ResumeGrace: defaults.ResumeGrace}, testChurn},
		{"random batches on every node", Options{RecentPartners: 2, ResumeGrace: defaults.ResumeGrace}, testRandomBatches},
	}
}

func testAcross(t *testing.T, f *fixture) {
	a, b, c := f.sessionOn(0), f.sessionOn(1), f.sessionOn(2)
	f.wait(a, a.tags(false, "x", "y", "z"))
	f.pair(b, b.tags(false, "z", "x"), a) // views, roles, match id and Common of both sides
	f.wait(c, c.tags(true, "x"))
	f.waiting(1, 0)
	d := f.sessionOn(0)
	f.pair(d, d.ticket(), c)
	f.waiting(0, 0)
}

func testEarlier(t *testing.T, f *fixture) {
	a, b := f.sessionOn(0), f.sessionOn(1)
	f.wait(a, a.tags(false, "x", "y"))
	m := f.pair(b, b.tags(false, "y", "x"), a)
	told := f.hosts[0].WaitKind(t, Patience, Paired, a.id, m).Pairing
	// a's hub withdraws it (or queues it again) before it handled Paired:
	// the engine answers with the match a is in.
	p, err := f.engines[0].Withdraw(a.id)
	if err != nil {
		t.Fatalf("%s: Withdraw(%s): %v", f.name, a, err)
	}
	told.Earlier = true
	if !samePairing(p, told) {
		t.Errorf("%s: Withdraw of a session another node paired = %+v; want %+v", f.name, p, told)
	}
	p, err = f.engines[0].Queue(a.ticket())
	if err != nil {
		t.Fatalf("%s: Queue(%s): %v", f.name, a, err)
	}
	if !samePairing(p, told) {
		t.Errorf("%s: Queue of a session another node paired = %+v; want %+v", f.name, p, told)
	}
	f.waiting(0, 0)
	f.endMatch(m, a, b, signaling.LeftNext)
}

func samePairing(p, q signaling.Pairing) bool {
	return p.Match == q.Match && p.Partner == q.Partner && p.Remote == q.Remote && p.Role == q.Role &&
		slices.Equal(p.Common, q.Common) && (p.Common == nil) == (q.Common == nil) &&
		p.PartnerIdent == q.PartnerIdent && p.Earlier == q.Earlier
}

// matched pairs a (waiting first) and b and returns the match.
func (f *fixture) matched(a, b sess) string {
	f.t.Helper()
	tag := "m-" + a.id[:8]
	f.wait(a, a.tags(false, tag))
	return f.pair(b, b.tags(false, tag), a)
}

func testSendOrder(t *testing.T, f *fixture) {
	a, b := f.sessionOn(0), f.sessionOn(1)
	m := f.matched(a, b)
	msg := func(from string, i int) []byte {
		return fmt.Appendf(nil, `{"type":"chat","from":%q,"seq":%d}`, from, i)
	}
	for i := range sendCount {
		f.engines[0].Send(b.id, m, msg("a", i))
		f.engines[1].Send(a.id, m, msg("b", i))
	}
	for _, tc := range []struct {
		to   sess
		from string
	}{{b, "a"}, {a, "b"}} {
		h := f.hosts[tc.to.node]
		testsupport.WaitFor(t, Patience, fmt.Sprintf("%d messages delivered to %s", sendCount, tc.to), func() bool {
			return len(h.Delivered(tc.to.id, m)) >= sendCount
		})
		got := h.Delivered(tc.to.id, m)
		if len(got) != sendCount {
			t.Errorf("%s: %s got %d messages, want %d", f.name, tc.to, len(got), sendCount)
		}
		for i, data := range got {
			if want := msg(tc.from, i); string(data) != string(want) {
				t.Fatalf("%s: message %d to %s is %s, want %s (in order)", f.name, i, tc.to, data, want)
			}
		}
	}
	// Nothing to anyone else, nothing under another match.
	for i, h := range f.hosts {
		for _, e := range h.Select(Deliver, "") {
			if e.Match != m || (e.Session != a.id && e.Session != b.id) || (i != a.node && e.Session == a.id) || (i != b.node && e.Session == b.id) {
				t.Fatalf("%s: node%d was handed %s", f.name, i, e)
			}
		}
	}
}

// claim claims s's token on node n, checks the session's old node handed
// over what it held, and returns the record.
func (f *fixture) claim(s sess, n int, held [][]byte) signaling.SessionRecord {
	f.t.Helper()
	f.hosts[s.node].Hold(s.id, held)
	from := f.hosts[s.node].Count(Claimed)
	rec, ok, err := f.engines[n].Claim(s.token)
	if err != nil || !ok {
		f.t.Fatalf("%s: node%d: Claim(%s's token) = ok %v, %v; want the session", f.name, n, s, ok, err)
	}
	if rec.ID != s.id || rec.Ident != s.ident || rec.ClientKey != "key-"+s.id {
		f.t.Errorf("%s: Claim(%s) = %+v; want its id, identity and client key", f.name, s, rec)
	}
	f.hosts[s.node].WaitKind(f.t, Patience, Claimed, s.id, "")
	if got := f.hosts[s.node].Count(Claimed); got != from+1 {
		f.t.Errorf("%s: node%d was told %d times that %s was claimed, want once", f.name, s.node, got-from, s)
	}
	e := f.hosts[n].WaitKind(f.t, Patience, Handover, s.id, "")
	if !slices.EqualFunc(e.Pending, held, func(x, y []byte) bool { return string(x) == string(y) }) {
		f.t.Errorf("%s: node%d was handed over %q for %s, want %q", f.name, n, e.Pending, s, held)
	}
	return rec
}

func testClaimMatched(t *testing.T, f *fixture) {
	a, b := f.sessionOn(0), f.sessionOn(1)
	m := f.matched(a, b)
	online := f.counts("figures", func(signaling.EngineCounts) bool { return true }).Online
	rec := f.claim(a, 2, [][]byte{[]byte("first"), []byte("second")})
	f.counts("as many online after the claim ("+strconv.Itoa(online)+")", func(x signaling.EngineCounts) bool { return x.Online == online })
	if rec.State != signaling.StateMatched || rec.Match != m || rec.Partner != b.id || rec.PartnerIdent != b.ident {
		t.Errorf("%s: the claimed record %+v; want matched in %s with %s", f.name, rec, m, b)
	}
	if !rec.HasFind || rec.Mode != signaling.ModeVideo || !slices.Equal(rec.Interests, f.tickets[a.id].Interests) {
		t.Errorf("%s: the claimed record %+v; want its last find (video, %v)", f.name, rec, f.tickets[a.id].Interests)
	}
	a.node = 2
	// Its partner's node sends to where it is now.
	f.engines[1].Send(a.id, m, []byte("after the claim"))
	_, at, ok := f.hosts[2].Wait(Patience, 0, func(e Event) bool { return e.Kind == Deliver && e.Session == a.id })
	if !ok {
		t.Fatalf("%s: node2 was not handed what node1 sent to %s after the claim", f.name, a)
	}
	evs := f.hosts[2].Events(0)
	if e := evs[at]; string(e.Data) != "after the claim" || e.Match != m {
		t.Errorf("%s: node2 was handed %s, want %q in match %s", f.name, e, "after the claim", m)
	}
	if i := slices.IndexFunc(evs, func(e Event) bool { return e.Kind == Handover && e.Session == a.id }); i > at {
		t.Errorf("%s: node2 was handed newer data for %s before what node0 held (Handover)", f.name, a)
	}
	f.endMatch(m, b, a, signaling.LeftNext) // checks node2 is told
	if n := len(f.hosts[0].Select(Deliver, a.id)) + len(f.hosts[0].Select(PartnerLeft, a.id)); n > 0 {
		t.Errorf("%s: node0 still got %d calls for %s after it was claimed away", f.name, n, a)
	}
	// Claimed back.
	rec = f.claim(a, 0, nil)
	if rec.State == signaling.StateMatched {
		t.Errorf("%s: claimed after its match ended: %+v", f.name, rec)
	}
}

func testClaimWaiting(t *testing.T, f *fixture) {
	a := f.sessionOn(0)
	since := time.Now().Add(-3 * time.Second)
	tk := a.tags(false, "x", "y")
	tk.Mode, tk.RelayOnly, tk.WaitSince = signaling.ModeText, true, since
	f.wait(a, tk)
	rec := f.claim(a, 1, nil)
	if rec.State != signaling.StateWaiting || !rec.HasFind || rec.Mode != signaling.ModeText ||
		!slices.Equal(rec.Interests, tk.Interests) || !rec.RelayOnly || rec.WaitSince.UnixMilli() != since.UnixMilli() {
		t.Errorf("%s: the claimed record %+v; want waiting in text on %v, relay only, since %v", f.name, rec, tk.Interests, since)
	}
	// Its new hub queues it again; a partner elsewhere finds it there.
	a.node = 1
	f.queue(a, tk)
	b := f.sessionOn(2)
	bt := b.tags(false, "y")
	bt.Mode = signaling.ModeText
	f.pair(b, bt, a) // checks node1 is told
	if _, ok, err := f.engines[2].Claim("no such token"); ok || err != nil {
		t.Errorf("%s: Claim(unknown) = ok %v, %v; want not found", f.name, ok, err)
	}
}

func testEndTells(t *testing.T, f *fixture) {
	a, b, c := f.sessionOn(0), f.sessionOn(1), f.sessionOn(2)
	f.end(a, true)
	f.end(b, false)
	for _, tc := range []struct {
		s      sess
		revoke bool
	}{{a, true}, {b, false}} {
		for n, h := range f.hosts {
			if n == tc.s.node {
				continue
			}
			if e := h.WaitKind(t, Patience, Ended, tc.s.id, ""); e.Revoke != tc.revoke {
				t.Errorf("%s: node%d told %s ended with revoke %v, want %v", f.name, n, tc.s, e.Revoke, tc.revoke)
			}
		}
	}
	// After its match: its partner's node hears of the end too.
	d := f.sessionOn(0)
	m := f.matched(c, d)
	f.endMatch(m, d, c, signaling.LeftStop)
	f.end(d, true)
	f.hosts[2].WaitKind(t, Patience, Ended, d.id, "")
}

// closeNode closes node n's engine.
func (f *fixture) closeNode(n int, drain bool) {
	f.t.Helper()
	f.closed[n] = true
	if err := f.engines[n].Close(drain); err != nil {
		f.t.Fatalf("%s: node%d: Close(%v): %v", f.name, n, drain, err)
	}
}

func testCloseNoDrain(t *testing.T, f *fixture) {
	base := f.counts("figures", func(signaling.EngineCounts) bool { return true }).Online
	a, b, c := f.sessionOn(0), f.sessionOn(0), f.sessionOn(1)
	f.wait(a, a.ticket())
	m := f.matched(b, c)
	f.counts("3 more online, 1 waiting, 3 nodes", func(x signaling.EngineCounts) bool {
		return x.Online == base+3 && x.WaitingVideo == 1 && x.Nodes == 3
	})
	f.closeNode(0, false)
	// Its sessions end now: the partner is told, every node hears the
	// ends, nobody waits, and a new session is not paired with a ghost.
	f.hosts[1].WaitKind(t, Patience, PartnerLeft, c.id, m)
	for _, s := range []sess{a, b} {
		for _, n := range []int{1, 2} {
			f.hosts[n].WaitKind(t, Patience, Ended, s.id, "")
		}
	}
	f.counts("node0's sessions gone, 2 nodes", func(x signaling.EngineCounts) bool {
		return x.Online == base+1 && x.WaitingVideo == 0 && x.Nodes == 2
	})
	d := f.sessionOn(2)
	f.wait(d, d.ticket())
}

func testCloseDrain(t *testing.T, f *fixture) {
	a, c := f.sessionOn(0), f.sessionOn(1)
	m := f.matched(a, c)
	f.closeNode(0, true)
	rec, ok, err := f.engines[2].Claim(a.token)
	if err != nil || !ok {
		t.Fatalf("%s: Claim of a drained node's session = ok %v, %v; want it", f.name, ok, err)
	}
	if rec.ID != a.id || rec.State != signaling.StateMatched || rec.Match != m || rec.Partner != c.id {
		t.Errorf("%s: the drained session's record %+v; want matched in %s with %s", f.name, rec, m, c)
	}
	if n := len(f.hosts[1].Select(PartnerLeft, c.id)); n > 0 {
		t.Errorf("%s: c was told its partner left when a's node drained", f.name)
	}
	a.node = 2
	// The partner's node is told where a went, in its own time (nobody
	// is left on node0 to pass on what reaches it meanwhile): its hub
	// sends on, and from some message on everything arrives, in order.
	sent := 0
	send := func() {
		f.engines[1].Send(a.id, m, fmt.Appendf(nil, "after the drain %d", sent))
		sent++
	}
	held := testsupport.Eventually(Patience, func() bool {
		send()
		return len(f.hosts[2].Delivered(a.id, m)) > 0
	})
	if !held {
		t.Fatalf("%s: node2 got none of %d messages node1 sent to %s after it claimed it from a drained node", f.name, sent, a)
	}
	first := sent - 1
	for _, data := range f.hosts[2].Delivered(a.id, m) {
		var i int
		if _, err := fmt.Sscanf(string(data), "after the drain %d", &i); err == nil {
			first = min(first, i)
		}
	}
	if first > 0 {
		t.Logf("%s: the first %d messages sent to %s after its claim were lost (still routed to its drained node)", f.name, first, a)
	}
	for range 100 {
		send()
	}
	testsupport.WaitFor(t, Patience, "the messages after the first delivered", func() bool {
		return len(f.hosts[2].Delivered(a.id, m)) >= sent-first
	})
	for j, data := range f.hosts[2].Delivered(a.id, m) {
		if want := fmt.Sprintf("after the drain %d", first+j); string(data) != want {
			t.Fatalf("%s: message %d to %s after its claim: %q, want %q (all, in order, from the first delivered)", f.name, j, a, data, want)
		}
	}
	f.endMatch(m, a, c, signaling.LeftStop)
}

func testDrainExpires(t *testing.T, f *fixture) {
	base := f.counts("figures", func(signaling.EngineCounts) bool { return true }).Online
	a, b, c := f.sessionOn(0), f.sessionOn(0), f.sessionOn(1)
	f.wait(a, a.ticket())
	m := f.matched(b, c)
	f.closeNode(0, true)
	// Nobody claims them: after the grace (and the node's lease), another
	// node's reaper ends them; b's partner is told.
	f.hosts[1].WaitKind(t, Patience, PartnerLeft, c.id, m)
	f.counts("the drained sessions gone", func(x signaling.EngineCounts) bool {
		return x.Online == base+1 && x.WaitingVideo == 0
	})
	if _, ok, err := f.engines[2].Claim(a.token); ok || err != nil {
		t.Errorf("%s: Claim after the grace = ok %v, %v; want not found", f.name, ok, err)
	}
	d := f.sessionOn(2)
	f.wait(d, d.ticket())
}

// The outage rules: the backend stops and comes back.

func outageRules() []rule {
	return []rule{
		{"unavailable while down, resync after", defaults, testOutage},
		{"no double match after a restart without data", defaults, testOutageLost},
	}
}

// unavailableCalls is how many calls the outage test makes while the
// backend is down; unavailableBound bounds their total time, far above
// what an engine that answers at once takes and far below what one that
// tries its backend each time does.
const (
	unavailableCalls = 50
	unavailableBound = 10 * time.Second
)

func (f *fixture) waitReady(want bool) {
	f.t.Helper()
	for i, e := range f.engines {
		testsupport.WaitFor(f.t, Patience, fmt.Sprintf("node%d Ready() == %v", i, want), func() bool { return e.Ready() == want })
	}
}

func testOutage(t *testing.T, f *fixture) {
	a := f.newSession()
	b := f.newSession()
	f.wait(a, a.ticket())
	var m string
	var c, d sess
	if len(f.engines) > 1 {
		c, d = f.sessionOn(0), f.sessionOn(1)
		m = f.matched(c, d)
	}
	resyncs := make([]int, len(f.hosts))
	for i, h := range f.hosts {
		resyncs[i] = h.Count(Resync)
	}

	f.stop()
	// The first call may try (an engine learns of the outage so), within
	// its timeout; it fails as unavailable, and from then on the engine
	// knows.
	for i, e := range f.engines {
		if _, err := e.Queue(b.ticket()); !errUnavailable(err) {
			t.Errorf("%s: node%d: the first Queue after the backend stopped: %v, want ErrEngineUnavailable", f.name, i, err)
		}
	}
	f.waitReady(false)
	for i, e := range f.engines {
		start := time.Now()
		for range unavailableCalls {
			if _, err := e.Queue(b.ticket()); !errUnavailable(err) {
				t.Fatalf("%s: node%d: Queue while down: %v, want ErrEngineUnavailable", f.name, i, err)
			}
		}
		took := time.Since(start)
		t.Logf("%s: node%d: %d calls while down took %v", f.name, i, unavailableCalls, took)
		if took > unavailableBound {
			t.Errorf("%s: node%d: %d calls while down took %v: not at once", f.name, i, unavailableCalls, took)
		}
		x := sess{id: "newWhileDownxxxxxxxxxx", token: "tok"}
		calls := map[string]error{
			"Register": e.Register(signaling.SessionRecord{ID: x.id, Token: x.token, Node: e.Node()}),
			"End":      e.End(b.id, false),
			"EndMatch": e.EndMatch("some-match", a.id, b.id, signaling.LeftNext),
			"Block":    e.Block(a.id, b.id),
		}
		_, calls["Withdraw"] = e.Withdraw(a.id)
		_, _, calls["Claim"] = e.Claim(b.token)
		_, calls["Counts"] = e.Counts()
		for name, err := range calls {
			if !errUnavailable(err) {
				t.Errorf("%s: node%d: %s while down: %v, want ErrEngineUnavailable", f.name, i, name, err)
			}
		}
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for range 100 {
				e.Send(b.id, "some-match", []byte("dropped"))
			}
		}()
		select {
		case <-sent:
		case <-time.After(Patience):
			t.Fatalf("%s: node%d: Send blocked while down", f.name, i)
		}
		if e.Ready() {
			t.Errorf("%s: node%d: Ready while down", f.name, i)
		}
	}

	f.start(true)
	f.waitReady(true)
	for i, h := range f.hosts {
		_, _, ok := h.Wait(Patience, 0, func(e Event) bool { return e.Kind == Resync })
		if !ok || h.Count(Resync) <= resyncs[i] {
			t.Fatalf("%s: node%d was not told to resync after the backend came back", f.name, i)
		}
	}
	// The hub queues its waiting sessions again: one entry each, and
	// pairing works.
	f.wait(a, a.ticket())
	f.waiting(1, 0)
	f.pair(b, b.ticket(), a)
	f.waiting(0, 0)
	if m != "" {
		// The match made before the outage is still there, and its two
		// nodes hear each other again.
		for i, x := range []struct{ from, to sess }{{c, d}, {d, c}} {
			f.engine(x.from).Send(x.to.id, m, fmt.Appendf(nil, "after the outage %d", i))
			f.hosts[x.to.node].WaitKind(t, Patience, Deliver, x.to.id, m)
		}
		f.endMatch(m, c, d, signaling.LeftStop)
	}
}

func testOutageLost(t *testing.T, f *fixture) {
	// w1 and w2 wait (different interests); c and d are matched.
	w1, w2 := f.newSession(), f.newSession()
	f.wait(w1, w1.tags(false, "x"))
	f.wait(w2, w2.tags(false, "y"))
	c, d := f.newSession(), f.newSession()
	m := f.matched(c, d)
	resyncs := make([]int, len(f.hosts))
	for i, h := range f.hosts {
		resyncs[i] = h.Count(Resync)
	}

	f.stop()
	f.waitReady(false)
	f.start(false)
	f.waitReady(true)
	for i, h := range f.hosts {
		testsupport.WaitFor(t, Patience, fmt.Sprintf("node%d told to resync", i), func() bool { return h.Count(Resync) > resyncs[i] })
	}
	// The hubs queue their waiting sessions again (twice, as two resyncs
	// might); the matched ones they keep.
	for range 2 {
		f.wait(w1, w1.tags(false, "x"))
		f.wait(w2, w2.tags(false, "y"))
	}
	f.waiting(2, 0)
	// Each is paired once; nobody meets a matched session or a ghost.
	x, y := f.newSession(), f.newSession()
	f.pair(x, x.tags(false, "x"), w1)
	f.pair(y, y.tags(false, "y"), w2)
	f.waiting(0, 0)
	for _, s := range []sess{f.newSession(), f.newSession()} {
		if p := f.queue(s, s.tags(true, "x", "y")); !p.Zero() && p.Partner != "" {
			// The two new ones may meet each other, nobody else.
			if p.Partner == w1.id || p.Partner == w2.id || p.Partner == c.id || p.Partner == d.id || p.Partner == x.id || p.Partner == y.id {
				t.Errorf("%s: after a restart without data, %s was paired with %.8s, who is in a match", f.name, s, p.Partner)
			}
		}
	}
	// The match the backend forgot ends without harm.
	err := f.engine(c).EndMatch(m, c.id, d.id, signaling.LeftStop)
	if err != nil && !errors.Is(err, signaling.ErrMatchGone) {
		t.Errorf("%s: EndMatch of a match the backend forgot: %v", f.name, err)
	}
}
