package redisengine

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// BenchmarkMatchCost measures what Redis spends per match (b.N matches),
// as the load tool's crowd makes them: sessions on two nodes, no
// interests, each pairing ended by its seeker's node (EndMatch) and both
// sides queued again, every node's calls in batches (Engine.Do) of up to
// 64 ops, as the hub sends them. One goroutine runs the nodes' batches in
// turn, so the figures are Redis's own, not contention's. From INFO after
// CONFIG RESETSTAT it reports per match: Redis CPU (µs, user + sys),
// the script runs' time (µs, evalsha's usec), the commands the scripts
// call; and per op the commands called and the script's µs. With -v it
// logs each command's calls and µs per match. Timing figures are noisy on
// a shared machine; the command counts are not.
func BenchmarkMatchCost(b *testing.B) {
	const perNode, size = 256, 64
	r := testsupport.StartRedis(b, testsupport.RedisOptions{})
	nodes := [2]*node{startNode(b, r, "a", nil), startNode(b, r, "b", nil)}
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer func() { _ = rdb.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	nodeOf := map[string]int{} // session -> index in nodes
	var requeue [2][]string    // sessions to queue, per node
	var ends [2][]signaling.Op // EndMatch ops to send, per node
	for i, n := range nodes {
		regs := make([]signaling.Op, perNode)
		for j := range regs {
			id := sessionid.New()
			nodeOf[id] = i
			requeue[i] = append(requeue[i], id)
			regs[j] = signaling.Op{Kind: signaling.OpRegister, Record: signaling.SessionRecord{ID: id, Token: sessionid.New(), State: signaling.StateIdle}}
		}
		for _, res := range n.Do(regs) {
			if res.Err != nil {
				b.Fatal(res.Err)
			}
		}
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	cpu0 := redisCPU(ctx, b, rdb)
	b.ResetTimer()
	matches, ops := 0, 0
	for turn := 0; matches < b.N; turn++ {
		i := turn % 2
		batch := ends[i][:min(size, len(ends[i]))]
		ends[i] = ends[i][len(batch):]
		k := min(size-len(batch), len(requeue[i]))
		for _, id := range requeue[i][:k] {
			batch = append(batch, signaling.Op{Kind: signaling.OpQueue, Ticket: signaling.Ticket{Session: id, Mode: signaling.ModeText, Anyone: true, WaitSince: time.Now()}})
		}
		requeue[i] = requeue[i][k:]
		if len(batch) == 0 {
			if turn > 4*b.N+16 {
				b.Fatalf("no progress: %d matches of %d", matches, b.N)
			}
			continue
		}
		ops += len(batch)
		for j, res := range nodes[i].Do(batch) {
			op := batch[j]
			if res.Err != nil {
				b.Fatal(res.Err)
			}
			switch {
			case op.Kind == signaling.OpEndMatch:
				requeue[i] = append(requeue[i], op.Session)
				requeue[nodeOf[op.Other]] = append(requeue[nodeOf[op.Other]], op.Other)
			case !res.Pairing.Zero():
				if res.Pairing.Earlier {
					b.Fatalf("an earlier pairing for %s", op.Ticket.Session)
				}
				matches++
				ends[i] = append(ends[i], signaling.Op{Kind: signaling.OpEndMatch, Match: res.Pairing.Match,
					Session: op.Ticket.Session, Other: res.Pairing.Partner, Why: signaling.LeftNext})
			}
		}
	}
	b.StopTimer()
	cpu := redisCPU(ctx, b, rdb) - cpu0
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var evalUsec, inner float64
	var each []string // command: calls per match, for -v
	for line := range strings.Lines(stats) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		f := map[string]float64{}
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f[k], _ = strconv.ParseFloat(v, 64)
		}
		switch name {
		case "evalsha", "eval":
			evalUsec += f["usec"]
		case "info", "config|resetstat", "publish", "ping", "subscribe", "client|setinfo", "hello":
		default:
			inner += f["calls"]
			each = append(each, fmt.Sprintf("%s %.2f (%.2fµs)", name, f["calls"]/float64(matches), f["usec"]/float64(matches)))
		}
	}
	m := float64(matches)
	if testing.Verbose() {
		b.Logf("commands per match: %s", strings.Join(each, ", "))
	}
	b.ReportMetric(cpu/m, "redis-cpu-µs/match")
	b.ReportMetric(evalUsec/m, "script-µs/match")
	b.ReportMetric(inner/m, "calls/match")
	b.ReportMetric(inner/float64(ops), "calls/op")
	b.ReportMetric(evalUsec/float64(ops), "script-µs/op")
}

// redisCPU is the CPU time redis-server has used, user + sys, in µs.
func redisCPU(ctx context.Context, b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var us float64
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			s, _ := strconv.ParseFloat(v, 64)
			us += s * 1e6
		}
	}
	return us
}

// BenchmarkPublish sends b.N messages from a session on node b to its
// partner on node a, paced at 4,000 and at 20,000 a second, and reports
// the time from Send to the host's Deliver on a (p50, p99), and the CPU
// per message of this process (both nodes) and of Redis. "pubconn" is the publisher as it
// is; "pipelined", the reference, publishes each batch as a go-redis
// pipeline and waits for its replies before the next, as it used to.
//
//	go test ./signaling/redisengine -run '^$' -bench Publish -benchtime 20000x -count 3
func BenchmarkPublish(b *testing.B) {
	for _, rate := range []int{4000, 20000} {
		b.Run(fmt.Sprintf("rate=%d/pipelined", rate), func(b *testing.B) { benchmarkPublish(b, rate, (*Engine).publishPipelined) })
		b.Run(fmt.Sprintf("rate=%d/pubconn", rate), func(b *testing.B) { benchmarkPublish(b, rate, nil) })
	}
}

// publishPipelined is the reference of BenchmarkPublish: one go-redis
// pipeline per batch, its replies awaited.
func (e *Engine) publishPipelined(_ *pubConn, batch []*outbound) *pubConn {
	err := e.roundTrip("publish", func(ctx context.Context) error {
		_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, o := range batch {
				p.Publish(ctx, o.channel, o.data)
			}
			return nil
		})
		return err
	})
	if err != nil {
		e.m.dropped.Add(float64(len(batch)))
	}
	return nil
}

func benchmarkPublish(b *testing.B, rate int, via func(*Engine, *pubConn, []*outbound) *pubConn) {
	r := testsupport.StartRedis(b, testsupport.RedisOptions{})
	a := startNode(b, r, "a", nil)
	e, err := New(Config{URL: r.URL(), Node: "b", Timeout: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if via != nil {
		e.publishVia = func(pc *pubConn, batch []*outbound) *pubConn { return via(e, pc, batch) }
	}
	h := newHost()
	if err := e.Start(h); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close(false) })
	testsupport.WaitFor(b, wait, "b ready", e.Ready)
	nb := &node{e, h}
	sa, _, match := pairAcross(b, a, nb)

	lat := make([]time.Duration, 0, b.N)
	got := make(chan struct{})
	a.host.mu.Lock()
	a.host.onDeliver = func(data []byte) {
		sent, _ := strconv.ParseInt(string(data), 10, 64)
		lat = append(lat, time.Since(time.Unix(0, sent)))
		if len(lat) == b.N {
			close(got)
		}
	}
	a.host.mu.Unlock()
	ctx := context.Background()
	every := time.Second / time.Duration(rate)
	r0, c0 := redisCPU(ctx, b, a.rdb), processCPU()
	b.ResetTimer()
	next := time.Now()
	for range b.N {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(every)
		nb.Send(sa, match, strconv.AppendInt(nil, time.Now().UnixNano(), 10))
	}
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		a.host.mu.Lock()
		n := len(lat)
		a.host.mu.Unlock()
		b.Fatalf("%d of %d messages delivered", n, b.N)
	}
	b.StopTimer()
	c1, r1 := processCPU(), redisCPU(ctx, b, a.rdb)
	a.host.mu.Lock()
	defer a.host.mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64((c1-c0).Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric((r1-r0)/float64(b.N), "redis-cpu-µs/msg")
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
