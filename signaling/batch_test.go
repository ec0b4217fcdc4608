package signaling

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// gatedEngine is the memory engine as a Batcher whose batches the test
// can hold back, so that a result comes after the session moved on.
type gatedEngine struct {
	Engine
	gate sync.Mutex // held by the test: Do waits
	mu   sync.Mutex // one call at a time into the memory engine
}

func (g *gatedEngine) Do(ops []Op) []OpResult {
	g.gate.Lock()
	g.gate.Unlock() //nolint:staticcheck // only waits for the test to open the gate
	g.mu.Lock()
	defer g.mu.Unlock()
	return DoEach(g.Engine, ops)
}

func (g *gatedEngine) Counts() (EngineCounts, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Engine.Counts()
}

// A pairing made for a session that stopped before the result came is
// refused; its partner on this node, which still waits, is never told of
// it and goes back into the pool, where the next stranger meets it.
func TestBatchedPairingForAStoppedSessionIsRefused(t *testing.T) {
	g := &gatedEngine{Engine: NewMemoryEngine(MemoryConfig{})}
	cfg := testConfig()
	cfg.Engine = g
	e := newEnv(t, cfg)
	var open sync.Once
	t.Cleanup(func() { open.Do(g.gate.Unlock) }) // before Shutdown, which flushes the batches

	a := e.dial()
	a.hello()
	a.find(ModeVideo)
	a.expect(TypeWaiting)

	g.gate.Lock()
	b := e.dial()
	b.hello()
	b.find(ModeVideo) // pairs b with a, once the gate opens
	b.send(Stop{Type: TypeStop})
	b.barrier() // b has stopped before the pairing comes back
	open.Do(g.gate.Unlock)

	eventually(t, func() bool { return counter(e.hub.m.refused) == 1 })
	c := e.dial()
	c.hello()
	c.find(ModeVideo)
	mc := c.expect(TypeMatched)
	if ma := a.expect(TypeMatched); ma.Match != mc.Match {
		t.Fatalf("a told of match %s, c of %s", ma.Match, mc.Match)
	}
	b.barrier()
	if !b.quiet() {
		t.Fatal("b, stopped, heard of a match")
	}
	if n := counter(e.hub.m.matches); n != 1 {
		t.Fatalf("matches_total %v, want 1 (the refused one is not counted)", n)
	}
}

// slowCounts is the memory engine as a Batcher whose Counts waits until
// the test lets it answer: a shared engine whose backend is slow.
type slowCounts struct {
	Engine
	mu      sync.Mutex
	entered chan struct{} // a value per Counts call, while it has room
	answer  chan struct{} // closed by the test
}

func (s *slowCounts) Do(ops []Op) []OpResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return DoEach(s.Engine, ops)
}

func (s *slowCounts) Counts() (EngineCounts, error) {
	select {
	case s.entered <- struct{}{}:
	default: // the test has stopped counting: never block the hub's shutdown
	}
	<-s.answer
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Engine.Counts()
}

// While a shared engine takes its time over the cluster's figures (for
// the stats push, or for an operator), the hub goes on relaying: the
// figures are asked for off the owner goroutine. Once they come, they
// are pushed.
func TestSlowCountsDoNotHoldUpMessages(t *testing.T) {
	s := &slowCounts{Engine: NewMemoryEngine(MemoryConfig{}), entered: make(chan struct{}, 16), answer: make(chan struct{})}
	cfg := testConfig()
	cfg.Engine = s
	cfg.StatsInterval = 320 * time.Millisecond
	e := newEnv(t, cfg)
	var open sync.Once
	t.Cleanup(func() { open.Do(func() { close(s.answer) }) }) // before Shutdown, which waits for the asking goroutine

	a, b, ma, _ := e.pair()
	select {
	case <-s.entered: // the stats push asked, and waits
	case <-time.After(10 * time.Second):
		t.Fatal("the hub never asked for the figures")
	}
	operator := make(chan Counts, 1)
	go func() { operator <- e.hub.Counts() }()
	select {
	case <-s.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the operator's question never reached the engine")
	}

	for i := range 3 {
		a.send(Chat{Type: TypeChat, Match: ma.Match, Text: fmt.Sprint("line ", i)})
		if got := b.expect(TypeChat); got.Text != fmt.Sprint("line ", i) {
			t.Fatalf("b got %q, want line %d", got.Text, i)
		}
	}
	a.barrier()

	open.Do(func() { close(s.answer) })
	if c := <-operator; c.Online != 2 {
		t.Fatalf("operator's figures %+v, want 2 online", c)
	}
	// The push starts once the figures came: a hears them.
	testsupport.WaitFor(t, 10*time.Second, "a stats message", func() bool {
		for {
			select {
			case m := <-a.in:
				if m.Type == TypeStats && m.Online == 2 {
					return true
				}
			default:
				return false
			}
		}
	})
}
