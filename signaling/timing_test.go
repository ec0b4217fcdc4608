package signaling

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"
)

// These tests run in a synctest bubble over in-memory pipes, so waits of
// seconds take no time and happen exactly when the clock says.

func TestInterestsFirstThenFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.InterestWait = 5 * time.Second
		e := newPipeEnv(t, cfg)
		music, cats, gopher, plain := e.dial(), e.dial(), e.dial(), e.dial()
		for _, c := range []*client{music, cats, gopher, plain} {
			c.hello()
		}

		music.find(ModeVideo, " Music ", "GO", "go", "")
		if w := music.expect(TypeWaiting); w.FallbackIn != 5000 {
			t.Fatalf("waiting %+v: want the 5s fallback countdown", w)
		}
		cats.find(ModeVideo, "cats")
		cats.expect(TypeWaiting)
		// A newcomer sharing "go" is paired with music, not cats, and both
		// learn the common tag.
		gopher.find(ModeVideo, "rust", "go")
		mg, mm := gopher.expect(TypeMatched), music.expect(TypeMatched)
		if !slices.Equal(mg.Interests, []string{"go"}) || !slices.Equal(mm.Interests, []string{"go"}) {
			t.Fatalf("common interests %v and %v, want [go]", mg.Interests, mm.Interests)
		}

		// Someone without interests is not paired with cats before cats'
		// wait is over...
		time.Sleep(2 * time.Second)
		plain.find(ModeVideo)
		plain.expect(TypeWaiting)
		time.Sleep(3*time.Second - time.Millisecond)
		synctest.Wait()
		if !cats.quiet() || !plain.quiet() {
			t.Fatal("paired before the interest wait was over")
		}
		// ...and is, the moment it is.
		time.Sleep(time.Millisecond)
		mc, mp := cats.expect(TypeMatched), plain.expect(TypeMatched)
		if mc.Match != mp.Match || len(mc.Interests) != 0 {
			t.Fatalf("fallback match %+v / %+v", mc, mp)
		}
	})
}

func TestInterestsOnlyNeverFallsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newPipeEnv(t, testConfig())
		picky, plain := e.dial(), e.dial()
		picky.hello()
		plain.hello()
		picky.send(Find{Type: TypeFind, Mode: ModeText, Interests: []string{"chess"}, InterestsOnly: true})
		if w := picky.expect(TypeWaiting); w.FallbackIn != 0 {
			t.Fatalf("%+v: an interests-only wait has no countdown", w)
		}
		plain.find(ModeText)
		plain.expect(TypeWaiting)
		time.Sleep(time.Minute)
		synctest.Wait()
		if !picky.quiet() || !plain.quiet() {
			t.Fatal("interests-only session paired without a common interest")
		}
		chess := e.dial()
		chess.hello()
		chess.find(ModeText, "chess")
		picky.expect(TypeMatched)
		chess.expect(TypeMatched)
	})
}

func TestResumeWithinGraceKeepsMatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := newObserver()
		cfg := testConfig()
		cfg.ResumeGrace = 15 * time.Second
		cfg.Sessions = obs
		e := newPipeEnv(t, cfg)
		a, b := e.dial(), e.dial()
		wa := a.hello()
		b.hello()
		a.find(ModeVideo)
		a.expect(TypeWaiting)
		b.find(ModeVideo)
		m := a.expect(TypeMatched).Match
		b.expect(TypeMatched)

		// a's connection drops without a close frame.
		a.ws.NetConn().Close()
		synctest.Wait()
		b.send(Chat{Type: TypeChat, Match: m, Text: "are you there?"})
		b.send(Typing{Type: TypeTyping, Match: m, Typing: false})
		time.Sleep(14 * time.Second)
		synctest.Wait()
		if !b.quiet() {
			t.Fatal("partner told something while a could still resume")
		}

		a2 := e.dial()
		a2.send(Hello{Type: TypeHello, Version: ProtocolVersion, Resume: wa.Resume})
		w := a2.expect(TypeWelcome)
		if !w.Resumed || w.Session != wa.Session || w.State != StateMatched || w.Match != m {
			t.Fatalf("resume welcome %+v", w)
		}
		if got := a2.expect(TypeChat); got.Text != "are you there?" {
			t.Fatalf("kept message %+v", got)
		}
		a2.expect(TypeTyping)
		a2.send(Chat{Type: TypeChat, Match: m, Text: "back"})
		if got := b.expect(TypeChat); got.Text != "back" {
			t.Fatalf("%+v", got)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if !b.quiet() || obs.hasEnded(wa.Session) {
			t.Fatal("the resumed match was ended")
		}
	})
}

func TestGraceExpiryTellsPartner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := newObserver()
		cfg := testConfig()
		cfg.ResumeGrace = 15 * time.Second
		cfg.Sessions = obs
		e := newPipeEnv(t, cfg)
		a, b := e.dial(), e.dial()
		wa := a.hello()
		b.hello()
		a.find(ModeVideo)
		a.expect(TypeWaiting)
		b.find(ModeVideo)
		m := a.expect(TypeMatched).Match
		b.expect(TypeMatched)

		start := time.Now()
		a.ws.NetConn().Close()
		pl := b.expect(TypePartnerLeft)
		if pl.Reason != LeftDisconnected || pl.Match != m {
			t.Fatalf("%+v", pl)
		}
		if waited := time.Since(start); waited != 15*time.Second {
			t.Fatalf("partner told after %v, want exactly the 15s grace", waited)
		}
		synctest.Wait()
		if !obs.hasEnded(wa.Session) {
			t.Fatal("observer not told the session ended")
		}
		a2 := e.dial()
		a2.send(Hello{Type: TypeHello, Version: ProtocolVersion, Resume: wa.Resume})
		a2.expectError(CodeBadResume)
		if w := a2.expect(TypeWelcome); w.Resumed || w.Session == wa.Session {
			t.Fatalf("expired session resumed: %+v", w)
		}
	})
}

// A waiting session that drops gets its queue place back on resume, and is
// not paired with anyone while it is away.
func TestResumeKeepsQueuePlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newPipeEnv(t, testConfig())
		a := e.dial()
		wa := a.hello()
		a.find(ModeText)
		a.expect(TypeWaiting)
		a.ws.NetConn().Close()
		synctest.Wait()

		b := e.dial()
		b.hello()
		b.find(ModeText)
		b.expect(TypeWaiting) // a is away: not offered

		a2 := e.dial()
		a2.send(Hello{Type: TypeHello, Version: ProtocolVersion, Resume: wa.Resume})
		if w := a2.expect(TypeWelcome); w.State != StateWaiting || !w.Resumed {
			t.Fatalf("%+v", w)
		}
		a2.expect(TypeMatched)
		b.expect(TypeMatched)
	})
}

// A second connection resuming a session still attached elsewhere takes it
// over; the first is closed with 4000.
func TestResumeTakesOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newPipeEnv(t, testConfig())
		a := e.dial()
		wa := a.hello()
		a2 := e.dial()
		a2.send(Hello{Type: TypeHello, Version: ProtocolVersion, Resume: wa.Resume})
		if w := a2.expect(TypeWelcome); !w.Resumed || w.Session != wa.Session {
			t.Fatalf("%+v", w)
		}
		a.expectClose(CloseResumed)
		synctest.Wait()
		if s := e.hub.inspect(); s.sessions != 1 || s.attached != 1 {
			t.Fatalf("%+v", s)
		}
	})
}

// When a client resumes before the server noticed its old connection die,
// what was still queued on the old connection goes to the new one.
func TestResumeTakesOverQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newPipeEnv(t, testConfig())
		// a's old connection: read by hand, then not at all (a dead network).
		old, _, err := e.dialer.Dial("ws://pipe/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		var w rx
		old.WriteJSON(Hello{Type: TypeHello, Version: ProtocolVersion})
		old.ReadJSON(&w)
		old.WriteJSON(Find{Type: TypeFind, Mode: ModeText})
		old.ReadJSON(&rx{}) // waiting
		b := e.dial()
		b.hello()
		b.find(ModeText)
		m := b.expect(TypeMatched).Match
		var matched rx
		old.ReadJSON(&matched)
		b.send(Chat{Type: TypeChat, Match: m, Text: "1"})
		synctest.Wait() // the write loop is stuck writing "1" to the dead connection
		b.send(Chat{Type: TypeChat, Match: m, Text: "2"})
		b.send(Chat{Type: TypeChat, Match: m, Text: "3"})
		synctest.Wait() // queued behind it

		a := e.dial()
		a.send(Hello{Type: TypeHello, Version: ProtocolVersion, Resume: w.Resume})
		if got := a.expect(TypeWelcome); !got.Resumed || got.Match != m {
			t.Fatalf("%+v", got)
		}
		// What was in the stuck write is lost; what was queued behind it
		// arrives, in order.
		for _, want := range []string{"2", "3"} {
			if got := a.expect(TypeChat); got.Text != want {
				t.Fatalf("got chat %q, want %q", got.Text, want)
			}
		}
	})
}

func TestLimitMissingPong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.PingInterval = 20 * time.Second
		cfg.PongWait = 30 * time.Second
		e := newPipeEnv(t, cfg)
		deaf, alive := e.dial(), e.dial()
		deaf.ws.SetPingHandler(func(string) error { return nil }) // never answers pings
		deaf.hello()
		alive.hello()
		start := time.Now()
		deaf.closed()
		if waited := time.Since(start); waited != 30*time.Second {
			t.Fatalf("dropped after %v, want PongWait (30s)", waited)
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		select {
		case <-alive.end:
			t.Fatalf("a client answering pings was dropped: %v", alive.err)
		default:
		}
		if got := counter(e.hub.m.closes.WithLabelValues(string(reasonPongTimeout))); got != 1 {
			t.Fatalf("pong_timeout closes %v", got)
		}
	})
}

func TestLimitHelloTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.HelloTimeout = 10 * time.Second
		e := newPipeEnv(t, cfg)
		silent := e.dial()
		start := time.Now()
		silent.closed()
		if waited := time.Since(start); waited != 10*time.Second {
			t.Fatalf("dropped after %v, want HelloTimeout", waited)
		}
		synctest.Wait()
		if got := counter(e.hub.m.closes.WithLabelValues(string(reasonHelloTimeout))); got != 1 {
			t.Fatalf("hello_timeout closes %v", got)
		}
	})
}

func TestStatsCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.StatsInterval = 5 * time.Second
		e := newPipeEnv(t, cfg)
		a := e.dial()
		a.hello()
		others := make([]*client, 10)
		for i := range others {
			others[i] = e.dial()
			others[i].hello()
			others[i].find(ModeText)
		}
		time.Sleep(10 * time.Second) // a push is spread over the interval after it
		synctest.Wait()
		// Eleven sessions arrived, ten queued (five matches): one stats
		// message, not one per event.
		stats := drainStats(a)
		if len(stats) != 1 || stats[0].Online != 11 || stats[0].Waiting != 0 {
			t.Fatalf("stats after the first interval: %+v", stats)
		}
		time.Sleep(time.Minute) // nothing changed: nothing sent
		synctest.Wait()
		if stats := drainStats(a); len(stats) != 0 {
			t.Fatalf("unchanged stats pushed again: %+v", stats)
		}
		others[0].ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if stats := drainStats(a); len(stats) != 1 || stats[0].Online != 10 {
			t.Fatalf("stats after a session left: %+v", stats)
		}
	})
}

func drainStats(c *client) []rx {
	var out []rx
	for {
		select {
		case m := <-c.in:
			if m.Type == TypeStats {
				out = append(out, m)
			}
		default:
			return out
		}
	}
}

// Pings go out a few at a time, about pingBatch every wake-up rather than
// a burst of 1/64 of the connections; still, every connection is pinged
// once per interval.
func TestPingsSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.PingInterval = 4 * time.Second
		cfg.PongWait = time.Minute
		cfg.HelloTimeout = time.Minute
		e := newPipeEnv(t, cfg)
		const conns = 2000
		var mu sync.Mutex
		pings := make(map[int]int) // connection -> pings
		var now int                // pings since the last step
		for i := range conns {
			ws, _, err := e.dialer.Dial("ws://pipe/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			ws.SetPingHandler(func(string) error { // before the client's reader starts
				mu.Lock()
				pings[i]++
				now++
				mu.Unlock()
				return nil
			})
			startClient(t, ws)
		}
		slots := pingSlotsFor(cfg.PingInterval)
		limit := pingBatch + (conns+slots-1)/slots // a wake-up takes whole slots
		most := 0
		for elapsed := time.Duration(0); elapsed < cfg.PingInterval; elapsed += pingTick {
			time.Sleep(pingTick)
			synctest.Wait()
			mu.Lock()
			most, now = max(most, now), 0
			mu.Unlock()
		}
		if most > limit {
			t.Errorf("%d pings within %v, want at most %d", most, pingTick, limit)
		}
		if len(pings) != conns {
			t.Errorf("%d of %d connections pinged within the interval", len(pings), conns)
		}
		for i, n := range pings {
			if n != 1 {
				t.Errorf("connection %d pinged %d times within one interval", i, n)
			}
		}
	})
}

// With few connections the pinger wakes no more often than pingWakes
// times per interval; with many, it takes about pingBatch at a time.
func TestPingStride(t *testing.T) {
	for _, tc := range []struct{ slots, conns, want int }{
		{1250, 0, 1250 / pingWakes},
		{1250, 10, 1250 / pingWakes},
		{1250, 3333, 6},
		{1250, 19000, 1},
		{250, 2000, 2},
		{6, 5, 1},
		{1, 100000, 1},
	} {
		if got := pingStride(tc.slots, tc.conns); got != tc.want {
			t.Errorf("pingStride(%d slots, %d connections) = %d, want %d", tc.slots, tc.conns, got, tc.want)
		}
	}
}
