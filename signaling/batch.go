package signaling

import (
	"errors"
	"sync"
)

// Engine calls in batches. With an engine that is a Batcher (Redis), the
// owner goroutine does not wait for a round trip per call: call queues the
// op here and returns; the batcher's goroutine passes whatever has
// gathered to Batcher.Do and posts the results back to the owner, which
// runs each op's done in the order the ops were made. The backend sees
// the ops in the order the owner made them, so a Withdraw made after a
// Queue finds the session where that Queue left it.
//
// What this changes for the owner: the result of Queue and Withdraw comes
// later, after other events may have moved the session on (match.go says
// how each result is taken then). With the memory engine, call makes the
// op at once and runs done before it returns, as a plain method call
// would.

// maxBatch bounds one Do.
const maxBatch = 256

// pendingOp is an op on its way to the engine, and what the owner does
// with its result.
type pendingOp struct {
	name string // for engine_errors_total{op}
	op   Op
	done func(OpResult) // on the owner goroutine; nil: only a failure is counted
}

// batcher feeds a Batcher from one goroutine, which it owns: the hub
// starts it with the owner goroutine and closes it (close) after the
// owner has stopped, before the engine closes.
type batcher struct {
	eng Batcher
	h   *Hub

	mu     sync.Mutex
	queue  []pendingOp // guarded by mu: made by the owner, not yet taken
	closed bool        // guarded by mu

	wake chan struct{} // capacity 1: queue has ops, or closed
	done chan struct{} // closed when the goroutine returns
}

func newBatcher(h *Hub, eng Batcher) *batcher {
	b := &batcher{eng: eng, h: h, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go b.run()
	return b
}

// add queues p; it never blocks.
func (b *batcher) add(p pendingOp) {
	b.mu.Lock()
	b.queue = append(b.queue, p)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take removes up to maxBatch ops from the queue; closed reports whether
// close was called and nothing is left.
func (b *batcher) take(buf []pendingOp) (ops []pendingOp, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.queue), maxBatch)
	ops = append(buf[:0], b.queue[:n]...)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return ops, b.closed && n == 0
}

func (b *batcher) run() {
	defer close(b.done)
	var buf []pendingOp
	var ops []Op
	for range b.wake {
		for {
			batch, closed := b.take(buf)
			if closed {
				return
			}
			if len(batch) == 0 {
				break
			}
			ops = ops[:0]
			for _, p := range batch {
				ops = append(ops, p.op)
			}
			res := b.eng.Do(ops)
			// The owner runs the dones; after it stopped (Shutdown), the
			// ops still go to the engine but their results are dropped.
			done := make([]pendingOp, len(batch))
			copy(done, batch)
			b.h.post(event{kind: evCall, call: func() {
				for i, p := range done {
					r := OpResult{Err: errors.New("signaling: engine returned too few results")}
					if i < len(res) {
						r = res[i]
					}
					b.h.finish(p, r)
				}
			}})
			buf = batch
		}
	}
}

// close makes what is queued and stops the goroutine; the owner goroutine
// must have stopped (nothing more is added).
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	<-b.done
}

// call makes op: through the batcher if there is one, else at once.
func (h *Hub) call(name string, op Op, done func(OpResult)) {
	p := pendingOp{name: name, op: op, done: done}
	if h.batch != nil {
		h.batch.add(p)
		return
	}
	h.finish(p, DoOne(h.engine, op))
}

// finish takes an op's result on the owner goroutine.
func (h *Hub) finish(p pendingOp, r OpResult) {
	if r.Err != nil && !errors.Is(r.Err, ErrMatchGone) {
		h.engineError(p.name, r.Err)
	}
	if p.done != nil {
		p.done(r)
	}
}

// eachBatcher makes an engine's calls one by one as a Batcher (tests:
// Config.batchAll). Its lock keeps Counts, which the hub then asks from
// other goroutines, apart from Do's.
type eachBatcher struct {
	Engine
	mu sync.Mutex
}

func (e *eachBatcher) Do(ops []Op) []OpResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	return DoEach(e.Engine, ops)
}

func (e *eachBatcher) Counts() (EngineCounts, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.Engine.Counts()
}
