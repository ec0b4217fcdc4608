package signaling

import (
	"testing"
	"testing/synctest"
	"time"
)

// Two people online: after one presses Next, both wait their interest wait
// (the later one's counts), then meet again rather than wait forever; stats
// meanwhile say two wait for video. After a report they never meet again.
func TestRecentPartnersMeetAgainWhenAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.InterestWait = 5 * time.Second
		cfg.StatsInterval = time.Second
		e := newPipeEnv(t, cfg)
		a, b := e.dial(), e.dial()
		a.hello()
		b.hello()
		a.find(ModeVideo)
		a.expect(TypeWaiting)
		b.find(ModeVideo)
		m1 := a.expect(TypeMatched).Match
		b.expect(TypeMatched)

		a.send(Next{Type: TypeNext})
		b.expect(TypePartnerLeft)
		a.expect(TypeWaiting)
		time.Sleep(2 * time.Second)
		b.send(Next{Type: TypeNext})
		b.expect(TypeWaiting)
		drainStats(b)
		// a's wait is over at 5s, but b's is not: nothing yet.
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		if st := drainStats(b); len(st) == 0 || st[len(st)-1].WaitingVid != 2 || st[len(st)-1].WaitingTxt != 0 || st[len(st)-1].Waiting != 2 {
			t.Fatalf("stats while both wait: %+v, want 2 waiting for video", st)
		}
		if !a.quiet() || !b.quiet() {
			t.Fatal("recent partners met again before both had waited")
		}
		time.Sleep(time.Millisecond)
		ma, mb := a.expect(TypeMatched), b.expect(TypeMatched)
		if ma.Match != mb.Match || ma.Match == m1 {
			t.Fatalf("rematch %q / %q (first match %q)", ma.Match, mb.Match, m1)
		}

		// A report keeps them apart for good.
		a.send(Report{Type: TypeReport, Match: ma.Match})
		if pl := b.expect(TypePartnerLeft); pl.Reason != LeftReported {
			t.Fatalf("%+v", pl)
		}
		b.send(Next{Type: TypeNext})
		b.expect(TypeWaiting)
		a.send(Next{Type: TypeNext})
		a.expect(TypeWaiting)
		time.Sleep(time.Hour)
		synctest.Wait()
		if !a.quiet() || !b.quiet() {
			t.Fatal("a reported partner was paired again")
		}
		if s := e.hub.inspect(); s.waiting != 2 || s.settled != 2 || s.matched != 0 {
			t.Fatalf("%+v, want both waiting, settled and unmatched", s)
		}
		// Anyone else still meets one of them at once.
		c := e.dial()
		c.hello()
		c.find(ModeVideo)
		c.expect(TypeMatched)
	})
}

// A session that just pressed Next is not handed straight back to the
// partner it left, even one that has waited long: its own wait counts. And
// a newcomer meets one of them at once.
func TestRecentPartnerWaitsItsOwnWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.InterestWait = 5 * time.Second
		e := newPipeEnv(t, cfg)
		a, b := e.dial(), e.dial()
		a.hello()
		b.hello()
		a.find(ModeText)
		a.expect(TypeWaiting)
		b.find(ModeText)
		a.expect(TypeMatched)
		b.expect(TypeMatched)
		b.send(Stop{Type: TypeStop})
		a.expect(TypePartnerLeft)
		a.send(Next{Type: TypeNext})
		a.expect(TypeWaiting)
		time.Sleep(time.Minute) // a has settled long ago
		b.send(Next{Type: TypeNext})
		b.expect(TypeWaiting)
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		if !a.quiet() || !b.quiet() {
			t.Fatal("b was handed back the partner it left before its own wait was over")
		}
		c := e.dial()
		c.hello()
		c.find(ModeText)
		mc := c.expect(TypeMatched)
		synctest.Wait()
		got := 0
		for _, x := range []*client{a, b} {
			select {
			case m := <-x.in:
				if m.Type != TypeMatched || m.Match != mc.Match {
					t.Fatalf("got %+v, want the newcomer's match", m)
				}
				got++
			default:
			}
		}
		if got != 1 {
			t.Fatalf("%d of the two met the newcomer", got)
		}
	})
}

// The same over real WebSockets on loopback: two clients match, one presses
// Next, both look again and meet again; after a report they never do.
func TestRematchOverWebSocket(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.InterestWait = 50 * time.Millisecond
	e := newEnv(t, cfg)
	a, b, ma, _ := e.pair()

	a.send(Next{Type: TypeNext})
	if pl := b.expect(TypePartnerLeft); pl.Reason != LeftNext {
		t.Fatalf("%+v", pl)
	}
	a.expect(TypeWaiting)
	b.send(Next{Type: TypeNext})
	b.expect(TypeWaiting)
	ma2, mb2 := a.expect(TypeMatched), b.expect(TypeMatched)
	if ma2.Match != mb2.Match || ma2.Match == ma.Match {
		t.Fatalf("rematch %q / %q (first match %q)", ma2.Match, mb2.Match, ma.Match)
	}

	b.send(Report{Type: TypeReport, Match: mb2.Match})
	if pl := a.expect(TypePartnerLeft); pl.Reason != LeftReported {
		t.Fatalf("%+v", pl)
	}
	a.send(Next{Type: TypeNext})
	a.expect(TypeWaiting)
	b.send(Next{Type: TypeNext})
	b.expect(TypeWaiting)
	// Once both have waited out their wait, the rematch would have been
	// made in the same step: they stay apart.
	eventually(t, func() bool { return e.hub.inspect().settled == 2 })
	a.barrier()
	b.barrier()
	if s := e.hub.inspect(); s.matched != 0 || s.waiting != 2 {
		t.Fatalf("%+v: a reported partner was paired again", s)
	}
	if !a.quiet() || !b.quiet() {
		t.Fatal("a reported partner was paired again")
	}
}
