package redisengine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/sessionid"
	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
)

// BenchmarkQueuePair has two nodes on one Redis queue sessions as fast as
// their owner goroutines would (one call at a time each, both at once):
// each b.N sessions, with two interests out of four, anyone allowed. It
// reports the pairs made per second and the share of sessions paired.
func BenchmarkQueuePair(b *testing.B) {
	r := testsupport.StartRedis(b, testsupport.RedisOptions{})
	nodes := [2]*node{startNode(b, r, "a", nil), startNode(b, r, "b", nil)}
	tags := []string{"music", "games", "films", "books"}
	ids := [2][]string{}
	for i, n := range nodes {
		ids[i] = make([]string, b.N)
		for j := range b.N {
			id := sessionid.New()
			if err := n.Register(signaling.SessionRecord{ID: id, Token: sessionid.New(), State: signaling.StateIdle}); err != nil {
				b.Fatal(err)
			}
			ids[i][j] = id
		}
	}
	var pairs atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for j, id := range ids[i] {
				t := signaling.Ticket{Session: id, Mode: signaling.ModeVideo, Anyone: true, Settled: true,
					Interests: []string{tags[j%4], tags[(j+1)%4]}, WaitSince: time.Now()}
				p, err := n.Queue(t)
				if err != nil {
					b.Error(err)
					return
				}
				if !p.Zero() {
					pairs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(pairs.Load())/elapsed.Seconds(), "pairs/s")
	b.ReportMetric(float64(2*pairs.Load())/float64(2*b.N), "paired/session")
}

// BenchmarkDo is BenchmarkQueuePair with the queues made in batches
// (Engine.Do) of 1 (one round trip per call, as Queue makes them), 16, 64
// and 256 ops, each node one batch at a time. It reports the queue ops and
// the pairs made per second over both nodes.
func BenchmarkDo(b *testing.B) {
	for _, size := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) { benchmarkDo(b, size) })
	}
}

func benchmarkDo(b *testing.B, size int) {
	r := testsupport.StartRedis(b, testsupport.RedisOptions{})
	nodes := [2]*node{startNode(b, r, "a", nil), startNode(b, r, "b", nil)}
	tags := []string{"music", "games", "films", "books"}
	queues := [2][]signaling.Op{}
	for i, n := range nodes {
		regs := make([]signaling.Op, b.N)
		queues[i] = make([]signaling.Op, b.N)
		for j := range b.N {
			id := sessionid.New()
			regs[j] = signaling.Op{Kind: signaling.OpRegister, Record: signaling.SessionRecord{ID: id, Token: sessionid.New(), State: signaling.StateIdle}}
			queues[i][j] = signaling.Op{Kind: signaling.OpQueue, Ticket: signaling.Ticket{Session: id, Mode: signaling.ModeVideo,
				Anyone: true, Settled: true, Interests: []string{tags[j%4], tags[(j+1)%4]}, WaitSince: time.Now()}}
		}
		for _, res := range n.Do(regs) {
			if res.Err != nil {
				b.Fatal(res.Err)
			}
		}
	}
	var pairs atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for ops := queues[i]; len(ops) > 0; {
				k := min(size, len(ops))
				for _, res := range n.Do(ops[:k]) {
					if res.Err != nil {
						b.Error(res.Err)
						return
					}
					if !res.Pairing.Zero() {
						pairs.Add(1)
					}
				}
				ops = ops[k:]
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(pairs.Load())/elapsed.Seconds(), "pairs/s")
	b.ReportMetric(float64(2*pairs.Load())/float64(2*b.N), "paired/session")
}
