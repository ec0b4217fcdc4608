package enginetest

import (
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
)

// The rules of a dead node (killed, not closed): its lease runs out and
// another node's reaper ends its sessions, once, unless a client resumes
// one elsewhere within the resume grace.

func deathRules() []rule {
	short := Options{RecentPartners: 3, ResumeGrace: time.Second}
	return []rule{
		{"a dead node's sessions end, once", short, testDeadNode},
		{"a dead node's session resumed elsewhere keeps its match", Options{RecentPartners: 3, ResumeGrace: 2 * time.Second}, testDeadResume},
	}
}

// killNode crashes node n.
func (f *fixture) killNode(n int) {
	f.t.Helper()
	f.closed[n] = true
	f.kill(f.engines[n])
}

func testDeadNode(t *testing.T, f *fixture) {
	base := f.counts("figures", func(signaling.EngineCounts) bool { return true }).Online
	a, b, c := f.sessionOn(0), f.sessionOn(0), f.sessionOn(1)
	f.wait(a, a.ticket())
	m := f.matched(b, c)
	f.killNode(0)
	// b's partner is told; every live node hears both end; the pool and
	// the figures forget them, and the node.
	f.hosts[1].WaitKind(t, Patience, PartnerLeft, c.id, m)
	for _, n := range []int{1, 2} {
		for _, s := range []sess{a, b} {
			f.hosts[n].WaitKind(t, Patience, Ended, s.id, "")
		}
	}
	f.counts("the dead node's sessions and lease gone", func(x signaling.EngineCounts) bool {
		return x.Online == base+1 && x.WaitingVideo == 0 && x.Nodes == 2
	})
	// Nobody meets a ghost.
	d := f.sessionOn(2)
	f.wait(d, d.ticket())
	if _, ok, err := f.engines[2].Claim(a.token); ok || err != nil {
		t.Errorf("%s: Claim of a reaped session = ok %v, %v; want not found", f.name, ok, err)
	}
	// One reaper acted, once.
	if n := len(f.hosts[1].Select(PartnerLeft, c.id)); n != 1 {
		t.Errorf("%s: %s was told %d times that its partner left, want once", f.name, c, n)
	}
	for _, n := range []int{1, 2} {
		for _, s := range []sess{a, b} {
			if k := len(f.hosts[n].Select(Ended, s.id)); k != 1 {
				t.Errorf("%s: node%d was told %d times that %s ended, want once", f.name, n, k, s)
			}
		}
	}
}

func testDeadResume(t *testing.T, f *fixture) {
	b, c, d := f.sessionOn(0), f.sessionOn(1), f.sessionOn(0)
	m := f.matched(b, c)
	f.killNode(0)
	// b's client reconnects to node2 within the grace.
	rec, ok, err := f.engines[2].Claim(b.token)
	if err != nil || !ok {
		t.Fatalf("%s: Claim of a dead node's session within the grace = ok %v, %v; want it", f.name, ok, err)
	}
	if rec.State != signaling.StateMatched || rec.Match != m || rec.Partner != c.id {
		t.Errorf("%s: the resumed record %+v; want matched in %s with %s", f.name, rec, m, c)
	}
	b.node = 2
	// Its partner's node learns where it is (in its own time) and the
	// match goes on: what c sends reaches b.
	sent := 0
	if !testsupport.Eventually(Patience, func() bool {
		f.engines[1].Send(b.id, m, []byte("still there?"))
		sent++
		return len(f.hosts[2].Delivered(b.id, m)) > 0
	}) {
		t.Fatalf("%s: none of the %d messages node1 sent %s in %v reached node2, which claimed it from dead node0 (before node0's lease ran out): node1 was never told where it went",
			f.name, sent, b, Patience)
	}
	t.Logf("%s: %d messages sent before the first reached the resumed session", f.name, sent)
	// The dead node's lease runs out and the grace passes (the reaper
	// ends d, which nobody resumed); b's match stands.
	f.hosts[1].WaitKind(t, Patience, Ended, d.id, "")
	f.endMatch(m, c, b, signaling.LeftStop) // nil: the match was still there; node2 told
	for _, e := range f.hosts[1].Select(PartnerLeft, c.id) {
		if e.Match == m {
			t.Errorf("%s: %s was told its partner left, though it resumed on node2", f.name, c)
		}
	}
}
