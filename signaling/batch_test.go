package signaling

import (
	"sync"
	"testing"
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
