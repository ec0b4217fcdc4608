package signaling

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func newEntry(serial uint64, mode Mode, interests ...string) *entry {
	return &entry{serial: serial, mode: mode, interests: interests}
}

// checkPool verifies every index stored in a session points back at it.
func checkPool(t *testing.T, p *pool) {
	t.Helper()
	for mode, mp := range p.modes {
		seen := map[*entry]bool{}
		check := func(set *randSet, name string) {
			for i, m := range set.items {
				if got := m.s.pos.idx(int(m.slot)); got != int32(i) {
					t.Fatalf("%v/%s: member %d records index %d", mode, name, i, got)
				}
				if m.slot != anySlot && m.s.interests[m.slot] != name {
					t.Fatalf("%v: member in set %q under slot for %q", mode, name, m.s.interests[m.slot])
				}
				seen[m.s] = true
			}
		}
		check(&mp.anyone, "")
		for tag, set := range mp.tags {
			if len(set.items) == 0 {
				t.Fatalf("empty tag set %q kept", tag)
			}
			check(set, tag)
		}
		if len(seen) != mp.size {
			t.Fatalf("%v: size %d, %d distinct members", mode, mp.size, len(seen))
		}
	}
}

func TestPoolNeverSelfNorAvoided(t *testing.T) {
	p := newPool(rand.New(rand.NewPCG(1, 1)))
	a := newEntry(1, ModeVideo, "go")
	p.add(a, true)
	if got := p.partnerFor(a, true); got != nil {
		t.Fatal("paired with itself")
	}
	b := newEntry(2, ModeVideo, "go")
	b.remember(a, 3)
	if got := p.partnerFor(b, true); got != nil {
		t.Fatal("paired with a partner it just left")
	}
	c := newEntry(3, ModeVideo)
	a.remember(c, 3) // avoided from the other side
	if got := p.partnerFor(c, true); got != nil {
		t.Fatal("paired with someone who just left it")
	}
	d := newEntry(4, ModeVideo)
	a.block(d.serial)
	if got := p.partnerFor(d, true); got != nil {
		t.Fatal("paired with someone who reported it")
	}
	e := newEntry(5, ModeText)
	if got := p.partnerFor(e, true); got != nil {
		t.Fatal("text paired with video")
	}
	f := newEntry(6, ModeVideo)
	if got := p.partnerFor(f, true); got != a {
		t.Fatalf("got %v, want a", got)
	}
}

func TestPoolRememberIsBounded(t *testing.T) {
	s := newEntry(1, ModeVideo)
	others := make([]*entry, 5)
	for i := range others {
		others[i] = newEntry(uint64(10+i), ModeVideo)
		s.remember(others[i], 3)
	}
	for i, o := range others {
		if want := i >= 2; s.avoids(o) != want {
			t.Fatalf("partner %d: avoids=%v, want %v (last 3 remembered)", i, s.avoids(o), want)
		}
	}
}

func TestPoolInterestsBeforeAnyone(t *testing.T) {
	p := newPool(rand.New(rand.NewPCG(1, 2)))
	plain := newEntry(1, ModeVideo)
	p.add(plain, true)
	fan := newEntry(2, ModeVideo, "jazz")
	p.add(fan, false) // still in its interest wait
	for i := range 50 {
		s := newEntry(uint64(100+i), ModeVideo, "rock", "jazz")
		if got := p.partnerFor(s, true); got != fan {
			t.Fatalf("picked %v over the one sharing an interest", got)
		}
	}
	// Without the anyone flag, someone with no common tag is never offered.
	s := newEntry(3, ModeVideo, "opera")
	if got := p.partnerFor(s, false); got != nil {
		t.Fatal("paired without a common interest before the fallback")
	}
	// And a session still in its interest wait is not offered to anyone.
	p.remove(plain)
	if got := p.partnerFor(newEntry(4, ModeVideo), true); got != nil {
		t.Fatal("a session in its interest wait was paired without a common interest")
	}
	p.openToAnyone(fan)
	if got := p.partnerFor(newEntry(5, ModeVideo), true); got != fan {
		t.Fatal("after its fallback, the fan accepts anyone")
	}
	checkPool(t, p)
}

func TestPoolRandomChoice(t *testing.T) {
	p := newPool(rand.New(rand.NewPCG(7, 7)))
	waiting := make([]*entry, 4)
	for i := range waiting {
		waiting[i] = newEntry(uint64(i+1), ModeText)
		p.add(waiting[i], true)
	}
	counts := map[*entry]int{}
	for i := range 4000 {
		counts[p.partnerFor(newEntry(uint64(1000+i), ModeText), true)]++
	}
	for i, s := range waiting {
		if n := counts[s]; n < 800 || n > 1200 {
			t.Fatalf("waiting %d picked %d times of 4000: not uniform", i, n)
		}
	}
}

// Random adds, removes and fallbacks keep the index bookkeeping exact.
func TestPoolBookkeeping(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := newPool(rng)
	tags := []string{"a", "b", "c", "d", "e"}
	var in []*entry
	for i := range 5000 {
		switch op := rng.IntN(10); {
		case op < 5 || len(in) == 0:
			var its []string
			for _, tg := range tags {
				if rng.IntN(3) == 0 {
					its = append(its, tg)
				}
			}
			mode := ModeVideo
			if rng.IntN(2) == 0 {
				mode = ModeText
			}
			s := newEntry(uint64(i+1), mode, its...)
			p.add(s, len(its) == 0)
			in = append(in, s)
		case op < 8:
			j := rng.IntN(len(in))
			p.remove(in[j])
			in[j] = in[len(in)-1]
			in = in[:len(in)-1]
		default:
			p.openToAnyone(in[rng.IntN(len(in))])
		}
		if i%500 == 0 {
			checkPool(t, p)
		}
	}
	checkPool(t, p)
	for _, s := range in {
		p.remove(s)
	}
	checkPool(t, p)
	if p.waiting(ModeVideo)+p.waiting(ModeText) != 0 {
		t.Fatal("pool not empty")
	}
}

func TestCommonInterests(t *testing.T) {
	got := commonInterests([]string{"a", "b", "c"}, []string{"c", "x", "a"})
	if fmt.Sprint(got) != "[a c]" {
		t.Fatal(got)
	}
	if got := commonInterests(nil, []string{"a"}); got == nil || len(got) != 0 {
		t.Fatal("want an empty, non-nil list")
	}
}

// BenchmarkPartnerFor shows the cost of a draw does not grow with the pool.
func BenchmarkPartnerFor(b *testing.B) {
	for _, n := range []int{100, 10_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 1))
			p := newPool(rng)
			for i := range n {
				p.add(newEntry(uint64(i+1), ModeVideo, fmt.Sprint("t", i%100)), true)
			}
			seeker := newEntry(uint64(n+1), ModeVideo, "t1", "t2", "x")
			b.ResetTimer()
			for b.Loop() {
				if p.partnerFor(seeker, true) == nil {
					b.Fatal("no partner")
				}
			}
		})
	}
}

// A recent partner is offered only when both sides have settled and nobody
// else will do; a reported one never.
func TestPoolRecentPartnerOnlyWhenSettled(t *testing.T) {
	p := newPool(rand.New(rand.NewPCG(5, 5)))
	a, b := newEntry(1, ModeVideo), newEntry(2, ModeVideo)
	a.remember(b, 3)
	b.remember(a, 3)
	p.add(a, true)
	if got := p.partnerFor(b, true); got != nil {
		t.Fatal("paired with a recent partner before either settled")
	}
	b.settled = true
	if got := p.partnerFor(b, true); got != nil {
		t.Fatal("paired with a recent partner that has not settled")
	}
	a.settled = true
	if got := p.partnerFor(b, true); got != a {
		t.Fatalf("got %v: two settled recent partners, alone, should meet again", got)
	}
	b.settled = false
	if got := p.partnerFor(b, true); got != nil {
		t.Fatal("an unsettled seeker was paired with a recent partner")
	}
	b.settled = true

	// Anyone else is preferred, every time.
	c := newEntry(3, ModeVideo)
	c.settled = true
	p.add(c, true)
	for range 50 {
		if got := p.partnerFor(b, true); got != c {
			t.Fatalf("got %v, want the stranger over the recent partner", got)
		}
	}
	p.remove(c)

	// The other rules still hold: one not yet open to anyone is offered
	// only through a shared tag (here there is none).
	p.remove(a)
	p.add(a, false)
	if got := p.partnerFor(b, true); got != nil {
		t.Fatal("paired without a common interest or the anyone flag")
	}
	p.remove(a)
	p.add(a, true)

	// A report, in either direction, is forever.
	b.block(a.serial)
	if got := p.partnerFor(b, true); got != nil {
		t.Fatal("paired with someone it reported")
	}
	b.reported = nil
	a.block(b.serial)
	if got := p.partnerFor(b, true); got != nil {
		t.Fatal("paired with someone who reported it")
	}
	// Nor is a settled session ever its own partner.
	if got := p.partnerFor(a, true); got != nil {
		t.Fatal("paired with itself")
	}
	checkPool(t, p)
}
