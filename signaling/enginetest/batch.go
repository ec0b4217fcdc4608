package enginetest

import (
	"errors"
	"testing"

	"github.com/strangers-chat/strangers/signaling"
)

// The randomized test of batches: testRandom's calls, made in batches of
// one node's calls (Batcher.Do; signaling.DoEach for an engine that is not
// a Batcher), planned as a hub plans them: without the results of the
// calls before in the same batch. A session queued in a batch may be
// paired by a later call of it, or was paired by an earlier one; a call
// for it after that gets the pairing (Earlier). The results are checked in
// order against the model, as if the calls had been made one by one.

const (
	batchRounds = 150 // batches in all
	batchMost   = 48  // calls in one batch, at most
)

// do makes ops on node n and returns one result per op.
func (f *fixture) do(n int, ops []signaling.Op) []signaling.OpResult {
	f.t.Helper()
	var res []signaling.OpResult
	if b, ok := f.engines[n].(signaling.Batcher); ok {
		res = b.Do(ops)
	} else {
		res = signaling.DoEach(f.engines[n], ops)
	}
	if len(res) != len(ops) {
		f.t.Fatalf("%s: node%d: Do of %d ops returned %d results", f.name, n, len(ops), len(res))
	}
	return res
}

// known is what the planner of a batch knows of a session, which the
// batch's earlier calls may have changed without its knowing.
type known int

const (
	knownIdle    known = iota // idle, for sure
	knownOpen                 // waiting, or paired by a call of the batch
	knownMatched              // in the match the model has
	knownGone                 // ended in this batch
)

// planned is one op of a batch, with what the model needs for it.
type planned struct {
	op  signaling.Op
	new *mSess // OpRegister: the session, added when it is registered
}

func testRandomBatches(t *testing.T, f *fixture) {
	m := newModel(t, f)
	calls, earlier, gone := 0, 0, 0
	for i := range batchRounds {
		n := m.rng.IntN(len(f.engines))
		plan := m.plan(n, 1+m.rng.IntN(batchMost))
		ops := make([]signaling.Op, len(plan))
		for j, p := range plan {
			ops[j] = p.op
		}
		res := f.do(n, ops)
		for j, p := range plan {
			switch m.applied(n, p, res[j]) {
			case "earlier":
				earlier++
			case "gone":
				gone++
			}
			if t.Failed() {
				t.Fatalf("%s: stopped at op %d of batch %d on node%d (seed %d)", f.name, j, i, n, m.seed)
			}
		}
		calls += len(plan)
		if i%10 == 0 {
			m.checkCounts()
		}
	}
	m.finish()
	t.Logf("%s: %d calls in %d batches: %d pairings (%d of settled recent partners), %d earlier pairings returned, %d ended matches ended again, %d waits, %d sessions ended, %d reports",
		f.name, calls, batchRounds, m.pairings, m.recentAgain, earlier, gone, m.waits, len(m.ended), len(m.blocked))
}

// plan makes a batch of about size calls for the sessions of node n.
func (m *model) plan(n, size int) []planned {
	var out []planned
	state := map[*mSess]known{}
	tickets := map[*mSess]signaling.Ticket{}
	var mine []*mSess
	for _, id := range m.ids {
		x := m.live[id]
		if x.s.node != n {
			continue
		}
		mine = append(mine, x)
		switch x.state {
		case signaling.StateIdle:
			state[x] = knownIdle
		case signaling.StateWaiting:
			state[x] = knownOpen
			tickets[x] = x.tk
		default:
			state[x] = knownMatched
		}
	}
	// other is a live session of any node, not x, for a report.
	other := func(x *mSess) string {
		o := m.live[m.ids[m.rng.IntN(len(m.ids))]]
		if o == x {
			return ""
		}
		return o.s.id
	}
	add := func(op signaling.Op) { out = append(out, planned{op: op}) }
	for len(out) < size {
		if len(mine) == 0 {
			s, rec := m.f.unregistered(n)
			x := &mSess{s: s, shadow: m.rng.IntN(100) < 15, state: signaling.StateIdle}
			out = append(out, planned{op: signaling.Op{Kind: signaling.OpRegister, Record: rec}, new: x})
			mine = append(mine, x)
			state[x] = knownIdle
			continue
		}
		x := mine[m.rng.IntN(len(mine))]
		id := x.s.id
		r := m.rng.IntN(100)
		switch state[x] {
		case knownGone:
			continue
		case knownMatched:
			// x.match and x.mate are the model's at the start of the batch;
			// nothing in the batch but this changes them.
			switch {
			case r < 55:
				add(signaling.Op{Kind: signaling.OpEndMatch, Match: x.match, Session: id, Other: x.mate, Why: signaling.LeftNext})
				state[x] = knownIdle
				if y := m.live[x.mate]; y.s.node == n && m.rng.IntN(5) == 0 {
					// Its partner's hub ends it too, before it hears.
					add(signaling.Op{Kind: signaling.OpEndMatch, Match: x.match, Session: y.s.id, Other: id, Why: signaling.LeftStop})
				}
				if y := m.live[x.mate]; y.s.node == n {
					state[y] = knownIdle
				}
			case r < 70:
				add(signaling.Op{Kind: signaling.OpEndMatch, Match: x.match, Session: id, Other: x.mate, Why: signaling.LeftReported})
				add(signaling.Op{Kind: signaling.OpBlock, Session: id, Other: x.mate})
				state[x] = knownIdle
				if y := m.live[x.mate]; y.s.node == n {
					state[y] = knownIdle
				}
			case r < 80:
				// A hub that has not heard of the pairing yet.
				add(signaling.Op{Kind: signaling.OpQueue, Ticket: m.ticket(x)})
			case r < 90:
				add(signaling.Op{Kind: signaling.OpWithdraw, Session: id})
			default:
				if o := other(x); o != "" {
					add(signaling.Op{Kind: signaling.OpBlock, Session: id, Other: o})
				}
			}
		case knownIdle, knownOpen:
			switch {
			case r < 50:
				tk := m.ticket(x)
				if last, ok := tickets[x]; ok && r < 15 {
					// Its fallback: it waits on, settled.
					tk = last
					tk.Settled = true
					tk.Anyone = tk.Anyone || m.rng.IntN(2) == 0
				}
				add(signaling.Op{Kind: signaling.OpQueue, Ticket: tk})
				tickets[x] = tk
				state[x] = knownOpen
			case r < 70:
				add(signaling.Op{Kind: signaling.OpWithdraw, Session: id})
			case r < 85 && state[x] == knownIdle:
				// It leaves; another comes.
				add(signaling.Op{Kind: signaling.OpEnd, Session: id, Revoke: m.rng.IntN(4) == 0})
				state[x] = knownGone
				s, rec := m.f.unregistered(n)
				y := &mSess{s: s, shadow: m.rng.IntN(100) < 15, state: signaling.StateIdle}
				out = append(out, planned{op: signaling.Op{Kind: signaling.OpRegister, Record: rec}, new: y})
				mine = append(mine, y)
				state[y] = knownIdle
			default:
				if o := other(x); o != "" {
					add(signaling.Op{Kind: signaling.OpBlock, Session: id, Other: o})
				}
			}
		}
	}
	return out
}

// applied checks the result r of p, made on node n, against the model,
// and updates it; it says what p did: "earlier" (a pairing made before it
// returned), "gone" (a match ended before), or "".
func (m *model) applied(n int, p planned, r signaling.OpResult) string {
	f := m.f
	op := p.op
	if op.Kind == signaling.OpRegister {
		if r.Err != nil {
			f.t.Fatalf("%s: node%d: Register(%s): %v", f.name, n, p.new.s, r.Err)
		}
		m.live[p.new.s.id] = p.new
		m.ids = append(m.ids, p.new.s.id)
		return ""
	}
	id := op.Session
	if op.Kind == signaling.OpQueue {
		id = op.Ticket.Session
	}
	x := m.live[id]
	if x == nil {
		f.t.Fatalf("%s: node%d: an op for %.8s, which the model does not have", f.name, n, id)
	}
	switch op.Kind {
	case signaling.OpEnd:
		if r.Err != nil {
			f.t.Fatalf("%s: End(%s): %v", f.name, x.s, r.Err)
		}
		m.ended = append(m.ended, x.s)
		m.revoked[id] = op.Revoke
		m.remove(id)
	case signaling.OpQueue, signaling.OpWithdraw:
		what := "Queue"
		if op.Kind == signaling.OpWithdraw {
			what = "Withdraw"
		}
		if r.Err != nil {
			f.t.Fatalf("%s: %s(%s): %v", f.name, what, x.s, r.Err)
		}
		if x.state == signaling.StateMatched {
			if op.Kind == signaling.OpWithdraw && r.Pairing.Zero() && !f.shared {
				return "" // an engine not shared: the hub knows its matches
			}
			if !samePairing(r.Pairing, x.view) {
				f.t.Errorf("%s: %s(%s) of a session in a match = %+v; want the match %+v", f.name, what, x.s, r.Pairing, x.view)
			}
			return "earlier"
		}
		if op.Kind == signaling.OpQueue {
			m.queued(x, op.Ticket, r.Pairing)
			return ""
		}
		if !r.Pairing.Zero() {
			f.t.Fatalf("%s: Withdraw(%s) returned pairing %+v; nobody paired it", f.name, x.s, r.Pairing)
		}
		x.state = signaling.StateIdle
	case signaling.OpEndMatch:
		if x.state == signaling.StateMatched && x.match == op.Match {
			if r.Err != nil {
				f.t.Fatalf("%s: EndMatch(%s) by %s: %v", f.name, op.Match, x.s, r.Err)
			}
			m.matchEnded(x, op.Why)
			return ""
		}
		if !errors.Is(r.Err, signaling.ErrMatchGone) {
			f.t.Errorf("%s: EndMatch(%s) by %s after it ended: %v, want ErrMatchGone", f.name, op.Match, x.s, r.Err)
		}
		return "gone"
	case signaling.OpBlock:
		if r.Err != nil {
			f.t.Fatalf("%s: Block(%s, %.8s): %v", f.name, x.s, op.Other, r.Err)
		}
		m.blocked[[2]string{id, op.Other}] = 1
	default:
		f.t.Fatalf("%s: an op of kind %d", f.name, op.Kind)
	}
	return ""
}
