// Command strangers-load puts the signaling server under load on loopback
// and prints what it measured against the signaling targets:
//
//  1. idle: N sessions connect and say hello; peak connected sessions and
//     the server's resident memory per idle session (VmRSS before/after);
//  2. matches: a crowd does find → matched → next as fast as it can; matches
//     per second sustained, from the server's own strangers_matches_total;
//  3. latency: with the connected population cut to -connected, pairs meet
//     on a private interest tag at a paced rate; p50/p99 from the find that
//     completes a pair to each side's matched;
//  4. relay: matched pairs exchange ICE candidates at a paced rate; p50/p99
//     from sending a signal to the partner receiving it.
//
// It spawns the server itself (-spawn path/to/strangers, with loopback
// addresses and limits high enough for one machine) or measures one already
// running (-url and -server-pid). With -nodes N it spawns N servers sharing
// one redis-server (STRANGERS_REDIS_URL), or takes N comma-separated URLs
// and PIDs: sessions are spread over the nodes in turn, and the pairs of
// phases 3 and 4 always have their two sides on different nodes, so their
// figures are those of pairing and relaying across nodes. -compare runs
// the phases on one spawned node first and then on the cluster, and prints
// both sets of figures side by side. Spawned nodes share the machine's
// CPUs out between them (GOMAXPROCS, -node-procs), as nodes on boxes of
// their own would not compete for them. Connections come from several loopback
// source addresses (127.0.0.2 and up), so the ephemeral port range of one
// address does not cap them. Every phase is bounded in time. On a machine
// shared with other work, run it under nice -n -20 (the spawned server
// inherits that) and read the CPU line each phase prints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/strangers-chat/strangers/signaling"
)

type options struct {
	url, spawn      string
	serverPID       string
	nodes           int
	compare         bool
	redisServer     string
	nodeProcs       int
	env             stringList
	n, connected    int
	srcIPs, workers int
	settle          time.Duration
	churners        int
	matchDur        time.Duration
	groups          int
	pairRate        float64
	latDur          time.Duration
	signalRate      float64
	relayDur        time.Duration
	phases          string
	hold            time.Duration
	timeout         time.Duration
	cpuProfile      string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var o options
	flag.StringVar(&o.url, "url", "ws://127.0.0.1:8080/ws", "WebSocket URLs of the servers under test, comma-separated: one per node (ignored with -spawn)")
	flag.StringVar(&o.spawn, "spawn", "", "path of the strangers binary to start on loopback for the test (stopped afterwards)")
	flag.StringVar(&o.serverPID, "server-pid", "", "PIDs of the servers behind -url, comma-separated in the same order, for their RSS and CPU (needed without -spawn)")
	flag.IntVar(&o.nodes, "nodes", 1, "with -spawn: nodes to start; more than one share a redis-server started for the run")
	flag.BoolVar(&o.compare, "compare", false, "with -spawn and -nodes: run the phases on one node first, then on the cluster, and print both sets of figures side by side")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary started for -nodes above 1")
	flag.IntVar(&o.nodeProcs, "node-procs", -1, "with -spawn: GOMAXPROCS of each spawned node; -1: its share of this machine's CPUs (all of them for one node, at least 1 each), unless GOMAXPROCS is set; 0: leave it to Go")
	flag.Var(&o.env, "env", "extra KEY=VALUE for the spawned server (repeatable)")
	flag.IntVar(&o.n, "n", 20000, "idle sessions to connect in phase 1")
	flag.IntVar(&o.connected, "connected", 10000, "sessions kept connected for phases 2-4")
	flag.IntVar(&o.srcIPs, "src-ips", 4, "loopback source addresses to dial from (127.0.0.2 and up)")
	flag.IntVar(&o.workers, "dial-workers", 200, "concurrent dials")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "wait after connecting before measuring memory")
	flag.IntVar(&o.churners, "churners", 2000, "sessions doing find/next in phase 2")
	flag.DurationVar(&o.matchDur, "match-duration", 10*time.Second, "length of phase 2 (after 1s of warm-up)")
	flag.IntVar(&o.groups, "groups", 100, "concurrent pair groups in phases 3 and 4 (8 sessions each)")
	flag.Float64Var(&o.pairRate, "pair-rate", 1000, "pairings per second offered in phase 3 (0: as fast as possible)")
	flag.DurationVar(&o.latDur, "latency-duration", 10*time.Second, "length of phase 3")
	flag.Float64Var(&o.signalRate, "signal-rate", 2000, "signals per second offered in phase 4")
	flag.DurationVar(&o.relayDur, "relay-duration", 10*time.Second, "length of phase 4")
	flag.StringVar(&o.phases, "phases", "idle,matches,latency,relay", "phases to run")
	flag.DurationVar(&o.hold, "hold", 0, "keep the sessions connected this long after the last phase (to inspect the server)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this tool (not of the servers) to this file")
	flag.Parse()
	if os.Getenv("GOGC") == "" {
		// The tool shares the machine with the servers it measures: its
		// own garbage collection is CPU they do not get. Its heap is
		// small (buffers of idle sessions), so trade memory for it.
		debug.SetGCPercent(400)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "strangers-load:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, o.timeout)
	defer cancelTimeout()
	if o.connected > o.n {
		o.connected = o.n
	}
	if o.signalRate <= 0 || o.pairRate < 0 {
		return fmt.Errorf("-signal-rate must be above 0 and -pair-rate at least 0 (got %g and %g)", o.signalRate, o.pairRate)
	}
	if o.nodes < 1 {
		return fmt.Errorf("-nodes must be at least 1 (got %d)", o.nodes)
	}
	if o.compare && (o.spawn == "" || o.nodes < 2) {
		return errors.New("-compare needs -spawn and -nodes of 2 or more: it runs one node, then the cluster")
	}
	want := func(p string) bool { return slices.Contains(strings.Split(o.phases, ","), p) }
	if !want("matches") {
		o.churners = 0
	}
	if !want("latency") && !want("relay") {
		o.groups = 0
	}
	if need := o.churners + o.groups*groupSize; need > o.connected {
		return fmt.Errorf("-churners %d and -groups %d need %d sessions, more than -connected %d", o.churners, o.groups, need, o.connected)
	}
	limit, err := raiseNoFile(uint64(o.n + 1000))
	if err != nil {
		return err
	}
	fmt.Printf("open files limit %d, nice %d (the spawned servers inherit both)\n", limit, niceness())

	stopProfile, err := record(o.cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	stopTrace, err := record(os.Getenv("STRANGERS_LOAD_TRACE"), trace.Start, trace.Stop)
	if err != nil {
		return err
	}
	defer stopTrace()

	var runs []figures
	if o.compare {
		fmt.Printf("\n=== one node, in-process matchmaker ===\n")
		f, err := runOn(ctx, o, 1, want)
		if err != nil {
			return fmt.Errorf("one node: %w", err)
		}
		runs = append(runs, f)
		fmt.Printf("\n=== %d nodes sharing one Redis ===\n", o.nodes)
	}
	f, err := runOn(ctx, o, o.nodes, want)
	if err != nil {
		return err
	}
	runs = append(runs, f)
	printFigures(os.Stdout, runs)
	return nil
}

// record starts writing a CPU profile or an execution trace of this tool
// to path (none when path is ""); the returned func stops it and closes
// the file.
func record(path string, start func(io.Writer) error, stop func()) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return func() {
		stop()
		f.Close()
	}, nil
}

// runOn spawns nodes servers (with Redis when more than one), or takes
// those named by -url and -server-pid, and runs the phases against them.
func runOn(ctx context.Context, o options, nodes int, want func(string) bool) (figures, error) {
	var srv *fleet
	var err error
	switch {
	case o.spawn != "":
		srv, err = spawnFleet(ctx, o, nodes)
		if err != nil {
			return figures{}, err
		}
		defer srv.stop()
	default:
		urls := strings.Split(o.url, ",")
		pids := strings.Split(o.serverPID, ",")
		if o.serverPID == "" || len(pids) != len(urls) {
			return figures{}, errors.New("give -spawn path/to/strangers, or -url and -server-pid (one PID per URL)")
		}
		srv = &fleet{}
		for i, u := range urls {
			pid, err := strconv.Atoi(strings.TrimSpace(pids[i]))
			if err != nil {
				return figures{}, fmt.Errorf("-server-pid %q: %w", pids[i], err)
			}
			u = strings.TrimSpace(u)
			base := "http" + strings.TrimPrefix(strings.TrimSuffix(u, "/ws"), "ws")
			srv.nodes = append(srv.nodes, &server{pid: pid, base: base})
			srv.urls = append(srv.urls, u)
			fmt.Printf("server pid %d at %s\n", pid, u)
		}
	}
	fig := figures{label: srv.label()}
	srcs := make([]net.IP, o.srcIPs)
	for i := range srcs {
		srcs[i] = net.IPv4(127, 0, 0, byte(2+i))
	}
	d := newDialer(srv.urls, srcs)
	cpu0, self0, redis0 := srv.cpu(), selfCPU(), srv.redisCPU()
	start := time.Now()

	var clients []*client
	defer func() { closeAll(clients) }()
	if want("idle") {
		clients, err = phaseIdle(ctx, d, srv, o)
		if err != nil {
			return fig, err
		}
	}
	if want("matches") || want("latency") || want("relay") {
		clients, err = resize(ctx, d, srv, clients, o.connected, o.workers)
		if err != nil {
			return fig, err
		}
	}
	if want("matches") {
		if err := phaseMatches(ctx, srv, clients[:o.churners], o, &fig); err != nil {
			return fig, err
		}
	}
	var pairs []pair
	if want("latency") || want("relay") {
		// Groups do not reuse phase 2's sessions: the server keeps them
		// from meeting their recent partners, which the groups' schedule
		// does not know.
		groups := makeGroups(clients[o.churners:], o.groups, len(srv.nodes))
		pairs, err = phaseLatency(ctx, srv, groups, o, want("latency"), &fig)
		if err != nil {
			return fig, err
		}
	}
	if want("relay") {
		if err := phaseRelay(ctx, srv, pairs, o, &fig); err != nil {
			return fig, err
		}
	}
	for _, c := range clients {
		if c.alive() {
			fig.connected++
		}
	}
	if m, err := srv.metrics(); err == nil {
		fig.serverSessions = int(m["strangers_sessions"])
	}
	if o.hold > 0 {
		fmt.Printf("\nholding %d sessions for %v\n", len(clients), o.hold)
		select {
		case <-time.After(o.hold):
		case <-ctx.Done():
		}
	}
	var dropped int64
	for _, c := range clients {
		dropped += c.dropped.Load()
	}
	if dropped > 0 {
		fmt.Printf("\n%d server messages were lost in this tool (a client's queue was full): figures may be off\n", dropped)
	}
	wall := time.Since(start)
	if cpu := srv.cpu() - cpu0; cpu > 0 {
		fmt.Printf("\n%s CPU %.1fs over %.1fs (%.0f%% of one core on average)\n", srv.label(), cpu.Seconds(), wall.Seconds(), 100*cpu.Seconds()/wall.Seconds())
		if r := srv.redisCPU() - redis0; srv.redis != nil {
			fmt.Printf("  of which Redis %.1fs (%.0f%% of one core)\n", r.Seconds(), 100*r.Seconds()/wall.Seconds())
		}
	}
	if cpu := selfCPU() - self0; cpu > 0 {
		fmt.Printf("this tool's CPU %.1fs (%.0f%% of one core): it shares the machine with the servers\n", cpu.Seconds(), 100*cpu.Seconds()/wall.Seconds())
	}
	return fig, nil
}

const groupSize = 8

// pair is two sessions matched with each other.
type pair struct {
	a, b  *client
	match string
}

func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		// Raising the hard limit needs privilege; fall back to the hard limit.
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err == nil {
			return want, nil
		}
		want = lim.Max
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: lim.Max}); err != nil {
		return 0, fmt.Errorf("raising the open files limit: %w", err)
	}
	return want, nil
}

// parallel runs f(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

func closeAll(cs []*client) {
	parallel(len(cs), 200, func(i int) { cs[i].close() })
}

// niceness returns this process's nice value; on a machine shared with other
// work, run the tool under nice -n -20 so that it measures the server, not
// the neighbours.
func niceness() int {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if len(f) < 17 {
		return 0
	}
	n, _ := strconv.Atoi(f[16])
	return n
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func phaseIdle(ctx context.Context, d *dialer, srv *fleet, o options) ([]*client, error) {
	runtimeMetrics := func() map[string]float64 {
		m, err := srv.metrics()
		if err != nil {
			return map[string]float64{}
		}
		return m
	}
	rss0, err := srv.rss()
	if err != nil {
		return nil, err
	}
	m0 := runtimeMetrics()
	fmt.Printf("\nphase 1, idle: connecting %d sessions to %s from %d source addresses, %d at a time (server open-files limit %d)\n",
		o.n, srv.label(), len(d.srcs), o.workers, srv.maxOpenFiles())
	u0 := srv.usage()
	cs := make([]*client, o.n)
	var fails atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	parallel(o.n, o.workers, func(i int) {
		if ctx.Err() != nil {
			return
		}
		c, err := d.dial(ctx)
		if err != nil {
			if fails.Add(1) == 1 {
				firstErr.Store(err)
			}
			return
		}
		cs[i] = c
	})
	elapsed := time.Since(start)
	u1 := srv.usage()
	cs = slices.DeleteFunc(cs, func(c *client) bool { return c == nil })
	fmt.Printf("  %d connected with hello answered in %v (%.0f/s), %d failed", len(cs), elapsed.Round(time.Millisecond), float64(len(cs))/elapsed.Seconds(), fails.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf(" (first: %v)", e)
	}
	fmt.Println()
	fmt.Printf("  while connecting, %s\n", u1.report(u0))
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return cs, ctx.Err()
	}
	alive := 0
	for _, c := range cs {
		if c.alive() {
			alive++
		}
	}
	rss1, err := srv.rss()
	if err != nil {
		return cs, err
	}
	m1 := runtimeMetrics()
	per := float64(rss1-rss0) / float64(max(alive, 1))
	fmt.Printf("  peak connected: %d sessions still open after %v (server counts %.0f connections, %.0f sessions)\n",
		alive, o.settle, m1["strangers_connections"], m1["strangers_sessions"])
	fmt.Printf("  server RSS %.1f MiB -> %.1f MiB: %.1f KiB per idle session   [target <= 16 KiB: %s]\n",
		mib(rss0), mib(rss1), per/1024, verdict(per <= 16<<10))
	if len(m1) > 0 {
		delta := func(name string) float64 { return (m1[name] - m0[name]) / float64(max(alive, 1)) / 1024 }
		fmt.Printf("  per session: Go heap in use %.1f KiB, goroutine stacks %.1f KiB, goroutines %.2f; heap objects %.0f\n",
			delta("go_memstats_heap_inuse_bytes"), delta("go_memstats_stack_inuse_bytes"),
			(m1["go_goroutines"]-m0["go_goroutines"])/float64(max(alive, 1)),
			(m1["go_memstats_heap_objects"]-m0["go_memstats_heap_objects"])/float64(max(alive, 1)))
	}
	if alive < o.n {
		fmt.Printf("  [target >= %d concurrent idle sessions: %s, %d short]\n", o.n, verdict(false), o.n-alive)
		if lim := srv.maxOpenFiles(); lim > 0 && lim < o.n+100 {
			fmt.Printf("  the server may open at most %d files (one per connection, plus its listeners): raise its RLIMIT_NOFILE\n", lim)
		}
	} else {
		fmt.Printf("  [target >= %d concurrent idle sessions: %s]\n", o.n, verdict(true))
	}
	return cs, nil
}

// resize closes or opens sessions until want are connected, and waits for
// the server to agree.
func resize(ctx context.Context, d *dialer, srv *fleet, cs []*client, want, workers int) ([]*client, error) {
	cs = slices.DeleteFunc(cs, func(c *client) bool { return !c.alive() })
	if len(cs) > want {
		extra := cs[want:]
		closeAll(extra)
		cs = cs[:want]
	}
	for len(cs) < want {
		more := make([]*client, want-len(cs))
		parallel(len(more), workers, func(i int) {
			if c, err := d.dial(ctx); err == nil {
				more[i] = c
			}
		})
		more = slices.DeleteFunc(more, func(c *client) bool { return c == nil })
		if len(more) == 0 {
			return cs, errors.New("cannot open connections")
		}
		cs = append(cs, more...)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if ok, err := srv.hasSessions(want); err != nil || ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("\n%d sessions connected for the next phases\n", len(cs))
	return cs, nil
}

func phaseMatches(ctx context.Context, srv *fleet, cs []*client, o options, fig *figures) error {
	fmt.Printf("\nphase 2, matches: %d sessions doing find -> matched -> next (text mode, no interests) for %v\n", len(cs), o.matchDur)
	const warm = time.Second
	end := time.Now().Add(warm + o.matchDur)
	var mu sync.Mutex
	var waits []time.Duration
	var seen atomic.Int64
	var errs atomic.Int64
	var wg sync.WaitGroup
	for _, c := range cs {
		c.activate()
		wg.Go(func() {
			var local []time.Duration
			defer func() {
				mu.Lock()
				waits = append(waits, local...)
				mu.Unlock()
			}()
			sent := time.Now()
			if c.send(signaling.Find{Mode: signaling.ModeText}) != nil {
				errs.Add(1)
				return
			}
			for ctx.Err() == nil {
				ev, err := c.await(end, signaling.TypeMatched)
				if err != nil {
					return
				}
				seen.Add(1)
				local = append(local, ev.at.Sub(sent))
				sent = time.Now()
				if c.send(signaling.Next{}) != nil {
					errs.Add(1)
					return
				}
			}
		})
	}
	time.Sleep(warm)
	m0, err0 := srv.metrics()
	seen0 := seen.Load()
	u0 := srv.usage()
	t0 := time.Now()
	time.Sleep(time.Until(end))
	m1, err1 := srv.metrics()
	seen1 := seen.Load()
	u1 := srv.usage()
	elapsed := time.Since(t0)
	wg.Wait()
	for _, c := range cs {
		_ = c.send(signaling.Stop{}) // a client already gone has stopped
	}
	time.Sleep(200 * time.Millisecond)
	for _, c := range cs {
		c.deactivate()
	}
	clientRate := float64(seen1-seen0) / 2 / elapsed.Seconds()
	fig.matchesPerSec = clientRate
	if len(srv.nodes) > 1 {
		// Each node counts the matches it made; clients see every one.
		msg := ""
		if err0 == nil && err1 == nil {
			msg = fmt.Sprintf("; the nodes' strangers_matches_total summed: %.0f/s", (m1["strangers_matches_total"]-m0["strangers_matches_total"])/elapsed.Seconds())
		}
		fmt.Printf("  %.0f matches/s sustained over %d nodes (as the clients saw them%s)   [target >= 5000: %s]\n",
			clientRate, len(srv.nodes), msg, verdict(clientRate >= 5000))
	} else if err0 == nil && err1 == nil {
		rate := (m1["strangers_matches_total"] - m0["strangers_matches_total"]) / elapsed.Seconds()
		fig.matchesPerSec = rate
		fmt.Printf("  %.0f matches/s sustained (server's strangers_matches_total over %v; clients saw %.0f/s)   [target >= 5000: %s]\n",
			rate, elapsed.Round(time.Millisecond), clientRate, verdict(rate >= 5000))
	} else {
		fmt.Printf("  %.0f matches/s sustained (as the clients saw them)   [target >= 5000: %s]\n", clientRate, verdict(clientRate >= 5000))
	}
	fmt.Printf("  %s\n", u1.report(u0))
	fmt.Printf("  next -> matched in this closed loop (queueing behind %d clients, not server latency): %s\n", len(cs), percentiles(waits))
	if n := errs.Load(); n > 0 {
		fmt.Printf("  %d clients failed to send\n", n)
	}
	return nil
}

// phaseLatency pairs sessions inside groups of groupSize on a private tag
// (interestsOnly), so that the find of the second is always the one that
// completes the pair. It returns one matched pair per group.
func phaseLatency(ctx context.Context, srv *fleet, groups [][]*client, o options, report bool, fig *figures) ([]pair, error) {
	dur := o.latDur
	if !report {
		dur = 0
	}
	cross := len(srv.nodes) > 1
	if report {
		where := ""
		if cross {
			where = ", the two sides always on different nodes"
		}
		fmt.Printf("\nphase 3, find -> matched at %d connected: %d groups pairing on private tags%s, %.0f pairings/s offered, for %v\n",
			o.connected, len(groups), where, o.pairRate, dur)
	}
	end := time.Now().Add(dur)
	var mu sync.Mutex
	var lat []time.Duration
	var fails atomic.Int64
	var firstErr atomic.Value
	var rounds atomic.Int64
	pairs := make([]pair, len(groups))
	interval := time.Duration(0)
	if o.pairRate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(groups)) / o.pairRate)
	}
	var wg sync.WaitGroup
	start := time.Now()
	u0 := srv.usage()
	for g, group := range groups {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			tag := fmt.Sprintf("load%d", g)
			find := signaling.Find{Mode: signaling.ModeVideo, Interests: []string{tag}, InterestsOnly: true}
			recent := make([][]int, len(group)) // the server avoids its last 3 partners, both ways
			avoid := func(a, b int) bool { return slices.Contains(recent[a], b) || slices.Contains(recent[b], a) }
			remember := func(a, b int) {
				recent[a] = append(recent[a], b)
				if len(recent[a]) > 3 {
					recent[a] = recent[a][1:]
				}
			}
			for _, c := range group {
				c.activate()
			}
			next := time.Now().Add(time.Duration(rng.Int64N(int64(max(interval, 1)))))
			for last := false; !last && ctx.Err() == nil; {
				last = !time.Now().Before(end)
				if interval > 0 && !last {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
				}
				var ai, bi int
				tries := 0
				same := func(a, b int) bool { tries++; return cross && tries < 1000 && group[a].node == group[b].node }
				for ai, bi = rng.IntN(len(group)), rng.IntN(len(group)); ai == bi || avoid(ai, bi) || same(ai, bi); ai, bi = rng.IntN(len(group)), rng.IntN(len(group)) {
				}
				a, b := group[ai], group[bi]
				deadline := time.Now().Add(10 * time.Second)
				fail := func(err error) {
					if fails.Add(1) == 1 {
						firstErr.Store(err)
					}
				}
				if err := a.send(find); err != nil {
					fail(err)
					return
				}
				if _, err := a.await(deadline, signaling.TypeWaiting); err != nil {
					fail(err)
					return
				}
				t0 := time.Now()
				if err := b.send(find); err != nil {
					fail(err)
					return
				}
				eb, err := b.await(deadline, signaling.TypeMatched)
				if err != nil {
					fail(err)
					return
				}
				ea, err := a.await(deadline, signaling.TypeMatched)
				if err != nil {
					fail(err)
					return
				}
				remember(ai, bi)
				remember(bi, ai)
				if last {
					pairs[g] = pair{a: a, b: b, match: eb.match}
					break
				}
				rounds.Add(1)
				mu.Lock()
				lat = append(lat, eb.at.Sub(t0), ea.at.Sub(t0))
				mu.Unlock()
				if err := a.send(signaling.Stop{}); err != nil {
					fail(err)
					return
				}
				if _, err := b.await(deadline, signaling.TypePartnerLeft); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return nil, fmt.Errorf("phase 3: %d failures, first: %v", fails.Load(), e)
	}
	if report {
		elapsed := time.Since(start)
		p99 := percentile(lat, 0.99)
		fig.findP50, fig.findP99, fig.findN = percentile(lat, 0.5), p99, len(lat)
		target := 20 * time.Millisecond
		if cross {
			target = 25 * time.Millisecond
		}
		fmt.Printf("  %d pairings (%.0f/s): find -> matched %s   [target p99 <= %v: %s]\n",
			rounds.Load(), float64(rounds.Load())/elapsed.Seconds(), percentiles(lat), target, verdict(p99 <= target))
		fmt.Printf("  %s\n", srv.usage().report(u0))
	}
	return pairs, nil
}

func phaseRelay(ctx context.Context, srv *fleet, pairs []pair, o options, fig *figures) error {
	fmt.Printf("\nphase 4, signal relay at %d connected: %d matched pairs, %.0f signals/s offered, for %v\n",
		o.connected, len(pairs), o.signalRate, o.relayDur)
	interval := time.Duration(float64(time.Second) * float64(len(pairs)) / o.signalRate)
	end := time.Now().Add(o.relayDur)
	var mu sync.Mutex
	var lat []time.Duration
	var lost atomic.Int64
	var wg sync.WaitGroup
	u0 := srv.usage()
	for i, p := range pairs {
		wg.Go(func() {
			var local []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			next := time.Now().Add(time.Duration(rng.Int64N(int64(max(interval, 1)))))
			for n := 0; ctx.Err() == nil && next.Before(end); n++ {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				from, to := p.a, p.b
				if n%2 == 1 {
					from, to = p.b, p.a
				}
				mid, index := "0", uint16(0)
				msg := signaling.Signal{Match: p.match, Candidate: &signaling.ICECandidate{
					Candidate: fmt.Sprintf("candidate:1 1 udp 2122260223 192.0.2.1 9 typ host sent %d", time.Now().UnixNano()),
					SDPMid:    &mid, SDPMLineIndex: &index,
				}}
				if from.send(msg) != nil {
					lost.Add(1)
					return
				}
				ev, err := to.await(time.Now().Add(5*time.Second), signaling.TypeSignal)
				if err != nil {
					lost.Add(1)
					continue
				}
				local = append(local, ev.at.Sub(time.Unix(0, ev.sent)))
			}
		})
	}
	wg.Wait()
	p99 := percentile(lat, 0.99)
	fig.relayP50, fig.relayP99, fig.relayN = percentile(lat, 0.5), p99, len(lat)
	fmt.Printf("  signal -> partner: %s   [target p99 <= 5ms: %s]\n", percentiles(lat), verdict(p99 <= 5*time.Millisecond && len(lat) > 0))
	fmt.Printf("  %s\n", srv.usage().report(u0))
	if n := lost.Load(); n > 0 {
		fmt.Printf("  %d signals not received within 5s\n", n)
	}
	return nil
}

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)]
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	r := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("n=%d p50 %s p90 %s p99 %s max %s", len(ds), r(percentile(ds, 0.5)), r(percentile(ds, 0.9)), r(percentile(ds, 0.99)), r(percentile(ds, 1)))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
