package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is the process under load: one we spawned, or one named by -server-pid.
type server struct {
	pid     int
	base    string // http://host:port
	cmd     *exec.Cmd
	exited  chan struct{}
	spawned bool
}

// spawn starts the strangers binary at path on loopback with limits fit for
// a load test, and waits until /readyz answers.
func spawn(ctx context.Context, path string, extraEnv []string) (*server, error) {
	httpPort, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	turnPort, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"STRANGERS_HTTP_ADDR=127.0.0.1:"+httpPort,
		"STRANGERS_TURN_ADDR=127.0.0.1:"+turnPort,
		"STRANGERS_PUBLIC_IP=127.0.0.1",
		"STRANGERS_ALLOWED_ORIGINS=*",
		"STRANGERS_WS_MAX_PER_IP=1000000",
		"STRANGERS_WS_RATE=1000",
		"STRANGERS_WS_BURST=1000",
		"STRANGERS_NEXT_RATE=0", // the crowd skips as fast as it can, by design
		"STRANGERS_LOG_LEVEL=warn",
		"STRANGERS_TURN_SECRET=load-test-secret-not-for-production",
	)
	env = append(env, extraEnv...)
	cmd := exec.Command(path)
	cmd.Env = env
	cmd.Stdout = prefixWriter("server: ")
	cmd.Stderr = prefixWriter("server: ")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the tool
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("spawn %s: %w", path, err)
	}
	s := &server{pid: cmd.Process.Pid, base: "http://127.0.0.1:" + httpPort, cmd: cmd, exited: make(chan struct{}), spawned: true}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%s exited before it was ready: %v", path, cmd.ProcessState)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("server not ready within 30s")
		}
	}
}

// stop ends a spawned server (SIGTERM, then SIGKILL after 15s).
func (s *server) stop() {
	if !s.spawned {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

func freePort(network string) (string, error) {
	var addr string
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr = c.LocalAddr().String()
		c.Close()
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr = l.Addr().String()
		l.Close()
	}
	_, port, err := net.SplitHostPort(addr)
	return port, err
}

// maxOpenFiles returns the server process's soft open-files limit, 0 if
// unknown: every connection takes one, which caps concurrent sessions.
func (s *server) maxOpenFiles() int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", s.pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// rss returns the resident set size of the server process in bytes.
func (s *server) rss() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// cpu returns the CPU time (user + system) the server process has used; 0
// if it cannot be read.
func (s *server) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// usage is a snapshot of CPU time: the server's, this tool's and the whole
// machine's (busy, in all cores).
type usage struct {
	at                 time.Time
	server, self, busy time.Duration
}

// report says how the CPU was shared since u0: the server and this tool
// compete for the same cores, and other processes may be running too.
func (u usage) report(u0 usage) string {
	wall := u.at.Sub(u0.at).Seconds()
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / wall }
	other := u.busy - u0.busy - (u.server - u0.server) - (u.self - u0.self)
	load, _ := os.ReadFile("/proc/loadavg")
	la, _, _ := strings.Cut(string(load), " ")
	return fmt.Sprintf("CPU: servers %.0f%%, this tool %.0f%%, other processes %.0f%% of one core (%d cores; load average %s)",
		pct(u.server-u0.server), pct(u.self-u0.self), max(0, pct(other)), runtime.NumCPU(), la)
}

// machineBusy returns the CPU time all cores spent not idle, from /proc/stat.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / 100
}

// metrics scrapes /metrics into a map from sample (name with labels) to value.
func (s *server) metrics() (map[string]float64, error) {
	if s.base == "" {
		return nil, errors.New("no metrics URL")
	}
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(val)[0], 64)
		if err != nil {
			continue
		}
		out[name] = v
	}
	return out, sc.Err()
}

// prefixWriter copies a child's output to stderr, line by line, prefixed.
func prefixWriter(prefix string) io.Writer {
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fmt.Fprintln(os.Stderr, prefix+sc.Text())
		}
	}()
	return w
}

// fleet is the servers under test: one node, or several sharing a Redis
// (spawned for the run, or only watched for its CPU).
type fleet struct {
	nodes []*server
	urls  []string // each node's WebSocket URL, in the order of nodes
	redis *server  // the redis-server spawned for the nodes; nil without
}

// spawnFleet starts n strangers nodes from o.spawn; more than one share a
// redis-server started first. Each node is tried up to three times, as
// the free ports picked may be taken meanwhile.
func spawnFleet(ctx context.Context, o options, n int) (*fleet, error) {
	f := &fleet{}
	var redisURL string
	if n > 1 {
		r, url, err := spawnRedis(ctx, o.redisServer)
		if err != nil {
			return nil, err
		}
		f.redis, redisURL = r, url
		fmt.Printf("spawned %s: pid %d, %s\n", o.redisServer, r.pid, url)
	}
	// The CPUs Go gives this tool: the machine's, or fewer in a container
	// with a CPU limit.
	cpus := runtime.GOMAXPROCS(0)
	procs := nodeProcs(o.nodeProcs, n, cpus, os.Getenv("GOMAXPROCS") != "")
	if procs > 0 {
		fmt.Printf("each node runs with GOMAXPROCS=%d (its share of %d CPUs; -node-procs to change)\n", procs, cpus)
	}
	for i := range n {
		env := slices.Clone(o.env)
		if procs > 0 {
			env = append(env, fmt.Sprintf("GOMAXPROCS=%d", procs))
		}
		if redisURL != "" {
			env = append(env, "STRANGERS_REDIS_URL="+redisURL, fmt.Sprintf("STRANGERS_NODE_ID=load%d", i+1))
		}
		var s *server
		var err error
		for try := 1; ; try++ {
			if s, err = spawn(ctx, o.spawn, env); err == nil || try == 3 || ctx.Err() != nil {
				break
			}
			fmt.Fprintf(os.Stderr, "strangers-load: %v; trying again\n", err)
		}
		if err != nil {
			f.stop()
			return nil, err
		}
		f.nodes = append(f.nodes, s)
		f.urls = append(f.urls, "ws"+strings.TrimPrefix(s.base, "http")+"/ws")
		fmt.Printf("spawned %s: pid %d, %s\n", o.spawn, s.pid, f.urls[i])
	}
	return f, nil
}

// nodeProcs is the GOMAXPROCS to give each of n nodes spawned on a
// machine of cpus CPUs; 0: none (Go's default). By default (flag -1) each
// node gets its share: a Go program takes every CPU of the machine as its
// own, and several on one machine then run more threads than there are
// CPUs, which costs each of them wake-ups that wait for a CPU (what a
// node on a box of its own does not pay). A GOMAXPROCS set for the tool
// (envSet) is passed on as it is.
func nodeProcs(flag, n, cpus int, envSet bool) int {
	switch {
	case flag >= 0:
		return flag
	case envSet:
		return 0
	default:
		return max(1, cpus/n)
	}
}

// spawnRedis starts a redis-server on a free loopback port, keeping
// nothing on disk, and waits until it accepts connections.
func spawnRedis(ctx context.Context, path string) (*server, string, error) {
	port, err := freePort("tcp")
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(path, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning")
	cmd.Dir = os.TempDir()
	cmd.Stderr = prefixWriter("redis: ")                               // its log (stdout) only says it started and stopped
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the tool
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("spawn %s: %w", path, err)
	}
	s := &server{pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{}), spawned: true}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	addr := net.JoinHostPort("127.0.0.1", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, "redis://" + addr + "/0", nil
		}
		select {
		case <-s.exited:
			return nil, "", fmt.Errorf("%s exited before it was ready: %v", path, cmd.ProcessState)
		case <-ctx.Done():
			s.stop()
			return nil, "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, "", fmt.Errorf("%s not accepting connections within 20s", path)
		}
	}
}

// label names the fleet in the figures.
func (f *fleet) label() string {
	if len(f.nodes) == 1 {
		return "1 node"
	}
	if f.redis != nil {
		return fmt.Sprintf("%d nodes + Redis", len(f.nodes))
	}
	return fmt.Sprintf("%d nodes", len(f.nodes))
}

// stop ends the spawned nodes, then the spawned Redis.
func (f *fleet) stop() {
	var wg sync.WaitGroup
	for _, s := range f.nodes {
		wg.Go(s.stop)
	}
	wg.Wait()
	if f.redis != nil {
		f.redis.stop()
	}
}

// cpu returns the CPU time the nodes and the spawned Redis have used.
func (f *fleet) cpu() time.Duration {
	var d time.Duration
	for _, s := range f.nodes {
		d += s.cpu()
	}
	if f.redis != nil {
		d += f.redis.cpu()
	}
	return d
}

// redisCPU returns the CPU time the spawned Redis has used; 0 without.
func (f *fleet) redisCPU() time.Duration {
	if f.redis == nil {
		return 0
	}
	return f.redis.cpu()
}

// rss returns the nodes' resident memory, summed (Redis's apart).
func (f *fleet) rss() (int64, error) {
	var sum int64
	for _, s := range f.nodes {
		n, err := s.rss()
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// metrics scrapes every node and sums each sample over them.
func (f *fleet) metrics() (map[string]float64, error) {
	out := map[string]float64{}
	for _, s := range f.nodes {
		m, err := s.metrics()
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			out[k] += v
		}
	}
	return out, nil
}

// hasSessions reports whether the nodes count want sessions: their
// strangers_sessions summed, or each node's, for nodes that count the
// whole cluster (or listeners of one server).
func (f *fleet) hasSessions(want int) (bool, error) {
	sum, each := 0, true
	for _, s := range f.nodes {
		m, err := s.metrics()
		if err != nil {
			return false, err
		}
		n := int(m["strangers_sessions"])
		sum += n
		each = each && n == want
	}
	return sum == want || each, nil
}

// maxOpenFiles returns the least open-files limit of the nodes.
func (f *fleet) maxOpenFiles() int {
	least := 0
	for _, s := range f.nodes {
		if n := s.maxOpenFiles(); n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	return least
}

func (f *fleet) usage() usage {
	return usage{at: time.Now(), server: f.cpu(), self: selfCPU(), busy: machineBusy()}
}
