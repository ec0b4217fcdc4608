package redisengine

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/strangers-chat/strangers/signaling"
)

// Engine.Do: many calls in one round trip. Each call is a function of the
// batch script (the body of its own script, see scripts.go); a batch is
// one run of that script, so either all of it ran or none (a NOSCRIPT
// answer, after Redis restarted, makes go-redis send the script itself),
// and its calls run in order. Every call is wrapped in pcall: one that
// fails half way (its writes up to there stay, as with a script of its
// own) does not stop those after it, and gets its error.

var _ signaling.Batcher = (*Engine)(nil)

// maxBatch bounds the calls one script run takes, so its arguments and
// the time Redis runs it (a few milliseconds, far within Config.Timeout:
// a queue's draw is bounded) stay small; Do splits a longer batch into
// runs of this many, one after another. Past a few dozen calls a batch
// makes no more pairings per second: Redis is busy running them.
const maxBatch = 256

// batchCalls are the functions of the batch script, by name.
var batchCalls = []struct{ name, body string }{
	{"register", registerBody},
	{"end", endBody},
	{"queue", queueBody},
	{"withdraw", withdrawBody},
	{"end match", endMatchBody},
	{"block", blockBody},
}

// batchScript makes the calls of a batch. ARGV: prefix, number of calls,
// then for each: its name, its number of arguments n and its n arguments
// (what its own script would take after the prefix). Returns one entry per
// call: {1, its result} ({1} for none), or {0, error message} if it
// failed (a nil inside an array would cut it short, an error reply would
// take the whole answer).
var batchScript = redis.NewScript(batchSource())

// batchPrelude is what the calls of a batch share beyond the prelude.
//
// lease(nd) is node nd's lease expiry (ms) or false for none, read once
// per batch: no call of a batch writes the nodes zset, so a second ZSCORE
// would read the same.
const batchPrelude = `
local leases = {}
local function lease(nd)
  local exp = leases[nd]
  if exp == nil then
    exp = redis.call('ZSCORE', P .. 'nodes', nd)
    exp = exp and tonumber(exp) or false
    leases[nd] = exp
  end
  return exp
end
`

func batchSource() string {
	var b strings.Builder
	b.WriteString(prelude)
	b.WriteString(batchPrelude)
	b.WriteString("local calls = {}\n")
	for _, c := range batchCalls {
		fmt.Fprintf(&b, "calls[%q] = function(ARGV)\n%s\nend\n", c.name, c.body)
	}
	b.WriteString(`
local out, at = {}, 3
for k = 1, tonumber(ARGV[2]) do
  local name, n = ARGV[at], tonumber(ARGV[at + 1])
  local a = {P, unpack(ARGV, at + 2, at + 1 + n)} -- made at its size, not grown
  at = at + 2 + n
  local fn = calls[name]
  if not fn then
    out[k] = {0, 'no such call: ' .. tostring(name)}
  else
    local ok, r = pcall(fn, a)
    if ok then
      out[k] = {1, r}
    elseif type(r) == 'table' and r.err then
      out[k] = {0, tostring(r.err)}
    else
      out[k] = {0, tostring(r)}
    end
  end
end
return out
`)
	return b.String()
}

// call is one Engine call as the batch script takes it: the name of its
// function, its arguments after the prefix, and what the engine does with
// its result (the publishes to other nodes, the route cache) and returns.
type call struct {
	name   string
	args   []any
	finish func(res any) signaling.OpResult
}

// Do makes ops in order, in one round trip per maxBatch of them (bounded
// by Config.Timeout each), with the same effects as the methods they name
// one after another: each method is Do of one op. An op whose arguments
// are wrong gets its error without being sent; an op that fails in Redis
// gets its error, and the others go on; if Redis cannot be reached, every
// op sent in that round trip fails with an error wrapping
// signaling.ErrEngineUnavailable. Called from one goroutine at a time;
// the engine's own goroutines and the other methods may run meanwhile.
func (e *Engine) Do(ops []signaling.Op) []signaling.OpResult {
	out := make([]signaling.OpResult, len(ops))
	calls := make([]call, 0, min(len(ops), maxBatch))
	at := make([]int, 0, cap(calls)) // the index in ops of each of calls
	for i, op := range ops {
		c, err := e.prepare(op)
		if err != nil {
			out[i].Err = err
			continue
		}
		calls = append(calls, c)
		at = append(at, i)
		if len(calls) == maxBatch {
			e.run(calls, at, out)
			calls, at = calls[:0], at[:0]
		}
	}
	if len(calls) > 0 {
		e.run(calls, at, out)
	}
	return out
}

// do makes one op.
func (e *Engine) do(op signaling.Op) signaling.OpResult {
	return e.Do([]signaling.Op{op})[0]
}

// prepare makes the call of op.
func (e *Engine) prepare(op signaling.Op) (call, error) {
	switch op.Kind {
	case signaling.OpRegister:
		return e.registerCall(op.Record)
	case signaling.OpEnd:
		return e.endCall(op.Session, op.Revoke), nil
	case signaling.OpQueue:
		return e.queueCall(op.Ticket)
	case signaling.OpWithdraw:
		return e.withdrawCall(op.Session), nil
	case signaling.OpEndMatch:
		return e.endMatchCall(op.Match, op.Session, op.Other, op.Why), nil
	case signaling.OpBlock:
		return e.blockCall(op.Session, op.Other), nil
	}
	return call{}, fmt.Errorf("redisengine: unknown engine op %d", op.Kind)
}

// run makes calls in one round trip and puts what each returns in
// out[at[i]], finishing them in order.
func (e *Engine) run(calls []call, at []int, out []signaling.OpResult) {
	n := 2
	for _, c := range calls {
		n += 2 + len(c.args)
	}
	args := make([]any, 0, n)
	args = append(args, keyPrefix, len(calls))
	for _, c := range calls {
		args = append(args, c.name, len(c.args))
		args = append(args, c.args...)
	}
	what := calls[0].name
	if len(calls) > 1 {
		what = fmt.Sprintf("batch of %d", len(calls))
	}
	var res []any
	err := e.roundTrip(what, func(ctx context.Context) error {
		var err error
		res, err = batchScript.Run(ctx, e.rdb, nil, args...).Slice()
		return err
	})
	if err == nil && len(res) != len(calls) {
		err = fmt.Errorf("redisengine: %s: %d results for %d calls", what, len(res), len(calls))
	}
	failed := false
	for i, c := range calls {
		if err != nil {
			out[at[i]].Err = err
			continue
		}
		r, _ := res[i].([]any)
		if len(r) > 0 && r[0] == int64(1) {
			var v any
			if len(r) > 1 {
				v = r[1]
			}
			out[at[i]] = c.finish(v)
			continue
		}
		msg := "malformed result"
		if len(r) == 2 {
			if s, ok := r[1].(string); ok {
				msg = s
			}
		}
		out[at[i]].Err = fmt.Errorf("redisengine: %s: %s", c.name, msg)
		failed = true
	}
	if failed {
		// A round trip that failed in part.
		e.m.errors.Inc()
	}
}
