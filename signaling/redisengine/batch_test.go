package redisengine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/sessionid"
	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
)

func queueOp(tk signaling.Ticket) signaling.Op {
	return signaling.Op{Kind: signaling.OpQueue, Ticket: tk}
}

// The batch script compiles, and its Lua stays within what Lua allows
// (Redis compiles a script when it is loaded).
func TestBatchScriptLoads(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a := startNode(t, r, "a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	sha, err := batchScript.Load(ctx, a.rdb).Result()
	if err != nil {
		t.Fatalf("SCRIPT LOAD of the batch script: %v", err)
	}
	if sha != batchScript.Hash() {
		t.Errorf("SCRIPT LOAD = %s, want %s", sha, batchScript.Hash())
	}
}

// An op that fails in Redis (a key of the wrong type, which only this
// test's Redis has) gets its error; the ops before and after it run, and
// the engine stays up. An op with bad arguments gets its own error
// without being sent.
func TestBatchOpFailsAlone(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)
	s1, _ := a.session(t)
	s2, _ := a.session(t)
	s3, _ := a.session(t)
	s4, _ := a.session(t)
	sb, _ := b.session(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.rdb.Set(ctx, keyPrefix+"rep:"+s3, "not a set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.rdb.Set(ctx, keyPrefix+"pool:video:0:t:broken", "not a set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	res := a.Do([]signaling.Op{
		queueOp(ticket(s1, "x")),
		{Kind: signaling.OpBlock, Session: s3, Other: s1}, // fails: rep:s3 is a string
		queueOp(ticket(s4, "broken")),                     // fails half way: its pool key is a string
		queueOp(ticket(s3, "bad\ntag")),                   // refused before it is sent
		queueOp(ticket(s2, "x")),                          // pairs with s1
		{Kind: signaling.OpBlock, Session: s2, Other: sb},
		{Kind: signaling.OpWithdraw, Session: s4},
	})
	if len(res) != 7 {
		t.Fatalf("%d results for 7 ops", len(res))
	}
	if res[0].Err != nil || !res[0].Pairing.Zero() {
		t.Errorf("op 0 (Queue, waits): %+v", res[0])
	}
	for _, i := range []int{1, 2} {
		if err := res[i].Err; err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || errors.Is(err, signaling.ErrEngineUnavailable) {
			t.Errorf("op %d, failing in Redis: %v; want its WRONGTYPE error, not unavailable", i, err)
		}
	}
	if err := res[3].Err; err == nil || errors.Is(err, signaling.ErrEngineUnavailable) {
		t.Errorf("op 3, a tag with a newline: %v; want its own error", err)
	}
	if res[4].Err != nil || res[4].Pairing.Partner != s1 || res[4].Pairing.Earlier {
		t.Errorf("op 4 (Queue, pairs with %s): %+v", s1, res[4])
	}
	for _, i := range []int{5, 6} {
		if res[i].Err != nil || !res[i].Pairing.Zero() {
			t.Errorf("op %d: %+v", i, res[i])
		}
	}
	if !a.Ready() {
		t.Error("not ready after ops that failed in Redis")
	}
	if n, err := a.rdb.SIsMember(ctx, keyPrefix+"rep:"+s2, sb).Result(); err != nil || !n {
		t.Errorf("the Block after the failed ops: recorded %v, %v", n, err)
	}
	// The session whose Queue failed is in no pool (it was withdrawn
	// after), and is not in a match: it pairs later.
	if p := mustQueue(t, a, ticket(s4)); !p.Zero() {
		t.Errorf("%s paired with %s: nobody else waits", s4, p.Partner)
	}
	if c, err := a.Counts(); err != nil || c.WaitingVideo != 1 {
		t.Errorf("Counts = %+v, %v; want 1 waiting", c, err)
	}
}

// After SCRIPT FLUSH (as after a restart of Redis) a batch still works:
// the script is sent again.
func TestBatchAfterScriptFlush(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a := startNode(t, r, "a", nil)
	s1, _ := a.session(t)
	s2, _ := a.session(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	res := a.Do([]signaling.Op{queueOp(ticket(s1)), queueOp(ticket(s2))})
	if res[0].Err != nil || res[1].Err != nil || res[1].Pairing.Partner != s1 {
		t.Fatalf("a batch after SCRIPT FLUSH: %+v", res)
	}
	if ok, err := a.rdb.ScriptExists(ctx, batchScript.Hash()).Result(); err != nil || !ok[0] {
		t.Errorf("the batch script is not loaded again: %v, %v", ok, err)
	}
}

// While Redis is down a batch fails as a whole, every op with
// ErrEngineUnavailable; when it is back, batches work again.
func TestBatchOutage(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{Persist: true})
	a := startNode(t, r, "a", func(c *Config) { c.Timeout = time.Second })
	s1, _ := a.session(t)
	s2, _ := a.session(t)
	ops := []signaling.Op{
		queueOp(ticket(s1)),
		{Kind: signaling.OpBlock, Session: s1, Other: s2},
		{Kind: signaling.OpWithdraw, Session: s1},
		{Kind: signaling.OpRegister, Record: signaling.SessionRecord{ID: sessionid.New(), Token: "t", State: signaling.StateIdle}},
		queueOp(ticket(s2)),
	}
	r.Kill()
	for round := range 2 { // the first finds Redis down, the second knows
		for i, res := range a.Do(ops) {
			if !errors.Is(res.Err, signaling.ErrEngineUnavailable) {
				t.Errorf("batch %d while down, op %d: %+v, want ErrEngineUnavailable", round, i, res)
			}
		}
	}
	if a.Ready() {
		t.Error("ready while Redis is down")
	}
	r.Start()
	testsupport.WaitFor(t, wait, "ready after the outage", a.Ready)
	res := a.Do(ops)
	for i, x := range res {
		if x.Err != nil {
			t.Errorf("op %d after the outage: %v", i, x.Err)
		}
	}
	if res[4].Pairing.Partner != "" {
		t.Errorf("s2 paired with %s; s1 was withdrawn, s2 reported", res[4].Pairing.Partner)
	}
}

// A batch longer than maxBatch is made in several round trips, in order.
func TestBatchLongerThanOneRoundTrip(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a := startNode(t, r, "a", nil)
	const n = maxBatch + maxBatch/2 + 1 // sessions: registers and queues make four round trips
	var ops []signaling.Op
	ids := make([]string, n)
	for i := range ids {
		ids[i] = sessionid.New()
		ops = append(ops, signaling.Op{Kind: signaling.OpRegister, Record: signaling.SessionRecord{ID: ids[i], Token: sessionid.New(), State: signaling.StateIdle}})
	}
	for i, id := range ids {
		// Each pairs with the one before: a tag per pair.
		ops = append(ops, queueOp(ticket(id, fmt.Sprintf("pair-%d", i/2))))
	}
	res := a.Do(ops)
	for i, x := range res {
		if x.Err != nil {
			t.Fatalf("op %d: %v", i, x.Err)
		}
	}
	for i := range ids {
		p := res[n+i].Pairing
		switch {
		case i%2 == 0 && !p.Zero():
			t.Fatalf("queue %d paired with %s; want it to wait", i, p.Partner)
		case i%2 == 1 && p.Partner != ids[i-1]:
			t.Fatalf("queue %d paired with %q; want %s", i, p.Partner, ids[i-1])
		}
	}
	if c, err := a.Counts(); err != nil || c.Online != n || c.WaitingVideo != n%2 {
		t.Errorf("Counts = %+v, %v; want %d online, %d waiting", c, err, n, n%2)
	}
}

// Do runs on a goroutine of its own while the owner goroutine calls
// Counts, Send and Claim, and the engine's own goroutines deliver what the
// other node's batches publish (run with -race).
func TestDoWhileOwnerCalls(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)
	_, sb, match := pairAcross(t, a, b)
	var ids [2][]string
	for i, n := range []*node{a, b} {
		for range 20 {
			id, _ := n.session(t)
			ids[i] = append(ids[i], id)
		}
	}
	const batches = 50
	var wg sync.WaitGroup
	for i, n := range []*node{a, b} {
		wg.Go(func() {
			for k := range batches {
				var ops []signaling.Op
				for j, id := range ids[i] {
					switch (j + k) % 3 {
					case 0:
						ops = append(ops, queueOp(ticket(id)))
					case 1:
						ops = append(ops, signaling.Op{Kind: signaling.OpWithdraw, Session: id})
					}
				}
				for _, res := range n.Do(ops) {
					if res.Err != nil {
						t.Errorf("%s: Do: %v", n.Node(), res.Err)
						return
					}
				}
			}
		})
	}
	for k := range 4 * batches {
		if _, err := a.Counts(); err != nil {
			t.Errorf("Counts: %v", err)
			break
		}
		a.Send(sb, match, fmt.Appendf(nil, "m%d", k))
		if _, ok, err := a.Claim("no-such-token"); ok || err != nil {
			t.Errorf("Claim of an unknown token: %v, %v", ok, err)
			break
		}
	}
	wg.Wait()
	testsupport.WaitFor(t, wait, "every message delivered", func() (ok bool) {
		b.host.read(func() { ok = len(b.host.delivered[sb]) == 4*batches })
		return ok
	})
}
