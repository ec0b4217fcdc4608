//go:build linux

// Command strangers-relaybench measures the embedded relay side by side with
// coturn on loopback. It starts our relay in-process and coturn's turnserver
// as a child process, drives both alternately with coturn's
// turnutils_uclient (REST credentials minted from the shared secret) and
// prints, per run, per round (with the ratio of CPU per message to
// coturn's) and as a summary over rounds: loss, kernel UDP receive-buffer
// drops (host-wide: every UDP socket of the machine counts), round-trip
// latency and server CPU per relayed message; for our in-process relays
// also their packet counters per run (relayed, handed over, dropped and
// why), to tell drops by the relay from datagrams lost around it.
//
// Profiles: client to client (25k, 50k: pairs of uclient clients through
// the relay; "kernel" is our relay without the in-process handover);
// one-sided (1s-25k, 1s-50k: each client relayed to turnutils_peer, a plain
// UDP echo endpoint, as when one stranger is behind a symmetric NAT); scale
// (5,000 live allocations made by pion clients of this process against a
// fresh server process, ours too, traffic on 50 of them: allocations per
// second, RSS per allocation). -noise keeps one core busy with a busy loop
// in a child process during every server's runs alike.
//
// It needs the Debian package coturn. Everything stays on 127.0.0.0/8;
// every run is bounded in messages and time, and every child (turnserver,
// turnutils_peer, the busy loop, our relay for the scale profile) is
// stopped by PID and dies with the bench (Pdeathsig).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/relay"
)

// profile is one load level. Client-to-client profiles pair uclient's
// clients through the relay; one-sided ones relay each client to a plain
// UDP echo endpoint (turnutils_peer); the scale profile holds allocs live
// allocations from pion clients and sends traffic on active of them.
type profile struct {
	name               string
	kind               profileKind
	clients, msgs, gap int // gap in ms between a client's messages
	size               int
	allocs, active     int // scale profiles
}

type profileKind int

const (
	clientToClient profileKind = iota
	oneSided
	scale
)

var profiles = map[string]profile{
	"25k":         {name: "25k", kind: clientToClient, clients: 50, msgs: 5000, gap: 2, size: 1000},
	"50k":         {name: "50k", kind: clientToClient, clients: 50, msgs: 10000, gap: 1, size: 1000},
	"smoke":       {name: "smoke", kind: clientToClient, clients: 10, msgs: 200, gap: 20, size: 200},
	"1s-25k":      {name: "1s-25k", kind: oneSided, clients: 50, msgs: 5000, gap: 2, size: 1000},
	"1s-50k":      {name: "1s-50k", kind: oneSided, clients: 50, msgs: 10000, gap: 1, size: 1000},
	"1s-smoke":    {name: "1s-smoke", kind: oneSided, clients: 10, msgs: 200, gap: 20, size: 200},
	"scale":       {name: "scale", kind: scale, allocs: 5000, active: 50, msgs: 1000, gap: 5, size: 1000},
	"scale-smoke": {name: "scale-smoke", kind: scale, allocs: 200, active: 10, msgs: 100, gap: 10, size: 200},
}

// profileAliases name groups of profiles.
var profileAliases = map[string][]string{
	"smoke":    {"smoke", "1s-smoke", "scale-smoke"},
	"onesided": {"1s-25k", "1s-50k"},
}

// parseProfiles resolves a comma-separated -profiles value.
func parseProfiles(list string) ([]profile, error) {
	var out []profile
	seen := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		names, ok := profileAliases[name]
		if !ok {
			names = []string{name}
		}
		for _, n := range names {
			p, ok := profiles[n]
			if !ok {
				return nil, fmt.Errorf("unknown profile %q", n)
			}
			if !seen[n] {
				seen[n] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// result is one run against one server.
type result struct {
	round                      int
	server, transport, profile string
	kind                       profileKind
	noise                      bool
	sent, recv                 int
	rcvbufErrors               int64
	rttMs                      float64
	cpu                        time.Duration // server CPU over the traffic
	wall                       time.Duration
	// scale profiles
	allocs     int
	allocWall  time.Duration // making the allocations
	allocCPU   time.Duration // server CPU over it
	clientCPU  time.Duration // this process's CPU over it: the pion clients
	rss0, rss1 int64         // server VmRSS before and after, bytes
	// counters are our in-process relay's packet counters over the run.
	counters string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "strangers-relaybench:", err)
		os.Exit(1)
	}
}

// servers of the bench, in the order of odd rounds.
var allServers = []string{"strangers", "strangers-kernel", "coturn"}

func run() error {
	rounds := flag.Int("rounds", 3, "rounds; each round runs every server, transport and profile once")
	profileList := flag.String("profiles", "25k,50k",
		"comma-separated load profiles: 25k, 50k (client to client); 1s-25k, 1s-50k (one-sided: one client relayed, "+
			"its peer a plain UDP endpoint); scale (5,000 live allocations, traffic on 50); smoke (= smoke, 1s-smoke, "+
			"scale-smoke: small and fast); onesided (= 1s-25k, 1s-50k)")
	transports := flag.String("transports", "udp,tcp", "comma-separated client transports: udp, tcp")
	sockets := flag.Int("udp-sockets", runtime.NumCPU(), "SO_REUSEPORT UDP sockets for our relay")
	uclientLog := flag.String("uclient-log", "", "write each turnutils_uclient run's output to a file in this directory")
	runTimeout := flag.Duration("run-timeout", 2*time.Minute, "upper bound for one uclient run or one scale measurement")
	serverList := flag.String("servers", strings.Join(allServers, ","),
		"comma-separated servers to drive: strangers, strangers-kernel (relay-to-relay traffic through the kernel, "+
			"no in-process handover; client-to-client profiles only), coturn")
	noise := flag.Bool("noise", false, "keep one core busy (a busy loop pinned to one CPU, in its own process) "+
		"during every server's runs alike, coturn's too")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (our in-process relays) to this file; "+
		"with the scale profile, our relay child's profile goes to this file with .scale-<round> appended")
	child := registerChildFlags()
	flag.Parse()
	if *child.mode != "" {
		return runChild(child, *cpuProfile)
	}

	plist, err := parseProfiles(*profileList)
	if err != nil {
		return err
	}
	servers := map[string]bool{}
	for _, s := range strings.Split(*serverList, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allServers, s) {
			return fmt.Errorf("unknown server %q", s)
		}
		servers[s] = true
	}
	uclient, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		return fmt.Errorf("turnutils_uclient not found (install the Debian package coturn): %w", err)
	}
	turnserver, err := exec.LookPath("turnserver")
	if err != nil {
		return fmt.Errorf("turnserver not found (install the Debian package coturn): %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	secretBytes := make([]byte, 24)
	if _, err := rand.Read(secretBytes); err != nil {
		return err
	}
	secret := base64.RawURLEncoding.EncodeToString(secretBytes)
	sidBytes := make([]byte, 16)
	if _, err := rand.Read(sidBytes); err != nil {
		return err
	}
	sid := base64.RawURLEncoding.EncodeToString(sidBytes)

	ourCfg := benchRelayConfig(secret)
	ourCfg.UDPSockets = *sockets
	ourReg := prometheus.NewRegistry()
	ourCfg.Registerer = ourReg
	ours, err := relay.New(ourCfg)
	if err != nil {
		return err
	}
	defer ours.Close()
	ours.SessionStarted(sid)
	kernelCfg := ourCfg
	kernelCfg.NoLocalHandover = true
	kernelCfg.PortMin, kernelCfg.PortMax = 60000, 64999
	kernelReg := prometheus.NewRegistry()
	kernelCfg.Registerer = kernelReg
	kernel, err := relay.New(kernelCfg)
	if err != nil {
		return err
	}
	defer kernel.Close()
	kernel.SessionStarted(sid)

	coturn, err := startCoturn(ctx, turnserver, secret, 40000, 44999)
	if err != nil {
		return err
	}
	defer coturn.stop()

	var peer *echoPeer
	if slices.ContainsFunc(plist, func(p profile) bool { return p.kind == oneSided }) {
		if peer, err = startPeer(); err != nil {
			return err
		}
		defer peer.stop()
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	fmt.Printf("relay: %d UDP sockets on %s (strangers-kernel on %s); coturn %s (pid %d) on 127.0.0.1:%d; %d CPUs\n",
		*sockets, ours.UDPAddr(), kernel.UDPAddr(), coturn.version, coturn.cmd.Process.Pid, coturn.port, runtime.NumCPU())
	if peer != nil {
		fmt.Printf("one-sided peer: turnutils_peer (pid %d) on 127.0.0.1:%d\n", peer.cmd.Process.Pid, peer.port)
	}
	fmt.Printf("noise: %s; load average at start: %s\n", noiseLabel(*noise), loadAvg())
	printRunHeader()

	b := &bench{
		uclient: uclient, turnserver: turnserver, secret: secret, sid: sid,
		ours: ours, kernel: kernel, coturn: coturn, peer: peer,
		noise: *noise, runTimeout: *runTimeout, cpuProfile: *cpuProfile, uclientLog: *uclientLog,
		counters: map[string]relayCounters{"strangers": {ourReg}, "strangers-kernel": {kernelReg}},
	}
	var results []result
	for r := 1; r <= *rounds; r++ {
		var round []result
		for _, p := range plist {
			trs := strings.Split(*transports, ",")
			if p.kind == scale {
				trs = []string{"udp"} // pion clients over UDP
			}
			for _, tr := range trs {
				tr = strings.TrimSpace(tr)
				order := slices.Clone(allServers)
				if r%2 == 0 {
					slices.Reverse(order) // alternate who goes first
				}
				for _, srv := range order {
					if !servers[srv] || (srv == "strangers-kernel" && p.kind != clientToClient) {
						continue // without relay-to-relay traffic the kernel variant is ours
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
					res, err := b.measure(ctx, r, srv, tr, p)
					if err != nil {
						if ctx.Err() != nil {
							return ctx.Err()
						}
						fmt.Printf("%-5d %-6s %-4s %-11s FAILED: %v\n", r, shortName(srv), tr, p.name, err)
						continue
					}
					res.round, res.server, res.transport, res.profile, res.kind, res.noise = r, srv, tr, p.name, p.kind, *noise
					round = append(round, res)
					printResult(res)
				}
			}
		}
		printRoundTables(fmt.Sprintf("round %d (noise %s; load average %s)", r, onOff(*noise), loadAvg()), round)
		results = append(results, round...)
	}
	summarize(*rounds, *noise, results)
	return nil
}

// bench is what every measurement needs. Owned by run.
type bench struct {
	uclient, turnserver string
	secret, sid         string
	ours, kernel        *relay.Server
	coturn              *coturnProc
	peer                *echoPeer // nil without one-sided profiles
	noise               bool
	runTimeout          time.Duration
	cpuProfile          string
	uclientLog          string                   // directory for uclient outputs; empty: none
	counters            map[string]relayCounters // of the in-process relays, by server name
}

// measure runs profile p over transport tr against server srv, with the
// noise (when on) started before and stopped after, alike for every server.
func (b *bench) measure(ctx context.Context, round int, srv, tr string, p profile) (result, error) {
	if p.kind == scale {
		return b.measureScale(ctx, round, srv, p)
	}
	port, cpu := b.ours.UDPAddr().Port, selfCPU
	switch srv {
	case "strangers-kernel":
		port = b.kernel.UDPAddr().Port
	case "coturn":
		port, cpu = b.coturn.port, b.coturn.cpu
	}
	peerPort := 0
	if p.kind == oneSided {
		peerPort = b.peer.port
	}
	counters, inProcess := b.counters[srv]
	var before map[string]float64
	if inProcess {
		var err error
		if before, err = counters.snapshot(); err != nil {
			return result{}, err
		}
	}
	stopNoise, err := b.startNoise()
	if err != nil {
		return result{}, err
	}
	defer stopNoise()
	res, out, err := drive(ctx, b.uclient, port, peerPort, b.secret, b.sid, tr, p, cpu, b.runTimeout)
	if b.uclientLog != "" && out != nil {
		name := filepath.Join(b.uclientLog, fmt.Sprintf("uclient-r%d-%s-%s-%s.log", round, shortName(srv), tr, p.name))
		if werr := os.WriteFile(name, out, 0o644); werr != nil {
			return result{}, fmt.Errorf("uclient log: %w", werr)
		}
	}
	if err != nil || !inProcess {
		return res, err
	}
	after, err := counters.snapshot()
	if err != nil {
		return result{}, err
	}
	res.counters = counterDelta(before, after)
	return res, nil
}

// measureScale starts a fresh server process (our relay as a child of this
// bench, or a new turnserver), so RSS and CPU are the server's alone and
// nothing of other runs is live in it.
func (b *bench) measureScale(ctx context.Context, round int, srv string, p profile) (result, error) {
	const portMin, portMax = 20000, 29999 // below the ephemeral range, wide enough for 5,000
	var port, pid int
	switch srv {
	case "strangers":
		prof := ""
		if b.cpuProfile != "" {
			prof = fmt.Sprintf("%s.scale-%d", b.cpuProfile, round)
		}
		c, err := startRelayChild(ctx, b.secret, b.sid, portMin, portMax, prof)
		if err != nil {
			return result{}, err
		}
		defer c.stop()
		port, pid = c.port, c.pid()
	case "coturn":
		c, err := startCoturn(ctx, b.turnserver, b.secret, portMin, portMax)
		if err != nil {
			return result{}, err
		}
		defer c.stop()
		port, pid = c.port, c.cmd.Process.Pid
	default:
		return result{}, fmt.Errorf("no scale measurement for %s", srv)
	}
	stopNoise, err := b.startNoise()
	if err != nil {
		return result{}, err
	}
	defer stopNoise()
	return runScale(ctx, port, pid, b.secret, b.sid, p, b.runTimeout)
}

// startNoise starts the hog when -noise is on and returns what stops it.
func (b *bench) startNoise() (stop func(), err error) {
	if !b.noise {
		return func() {}, nil
	}
	h, err := startHog(b.runTimeout + time.Minute)
	if err != nil {
		return nil, err
	}
	return h.stop, nil
}

// drive runs turnutils_uclient once against port and measures the server.
// With peerPort set, each client is relayed to that plain UDP endpoint
// (one-sided); otherwise clients are paired through the relay.
func drive(ctx context.Context, uclient string, port, peerPort int, secret, sid, transport string, p profile,
	cpu func() (time.Duration, error), timeout time.Duration,
) (res result, out []byte, err error) {
	args := []string{"-c", "-m", strconv.Itoa(p.clients), "-n", strconv.Itoa(p.msgs),
		"-z", strconv.Itoa(p.gap), "-l", strconv.Itoa(p.size), "-W", secret, "-u", sid, "-p", strconv.Itoa(port)}
	if peerPort != 0 {
		args = append(args, "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort))
	} else {
		args = append(args, "-y")
	}
	if transport == "tcp" {
		args = append(args, "-t")
	}
	args = append(args, "127.0.0.1")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	rcv0, err := udpRcvbufErrors()
	if err != nil {
		return result{}, out, err
	}
	cpu0, err := cpu()
	if err != nil {
		return result{}, out, err
	}
	start := time.Now()
	out, err = exec.CommandContext(ctx, uclient, args...).CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		return result{}, out, fmt.Errorf("turnutils_uclient: %w\n%s", err, lastLines(out, 20))
	}
	cpu1, err := cpu()
	if err != nil {
		return result{}, out, err
	}
	rcv1, err := udpRcvbufErrors()
	if err != nil {
		return result{}, out, err
	}
	res = result{cpu: cpu1 - cpu0, rcvbufErrors: rcv1 - rcv0, wall: wall}
	if res.sent, res.recv, res.rttMs, err = parseUclient(out); err != nil {
		return result{}, out, err
	}
	return res, out, nil
}

var (
	totalsRe = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	rttRe    = regexp.MustCompile(`Average round trip delay ([0-9.]+) ms`)
)

// parseUclient reads the last totals and the average round trip of a
// turnutils_uclient run.
func parseUclient(out []byte) (sent, recv int, rttMs float64, err error) {
	totals := totalsRe.FindAllSubmatch(out, -1)
	if totals == nil {
		return 0, 0, 0, fmt.Errorf("no totals in turnutils_uclient output:\n%s", lastLines(out, 20))
	}
	last := totals[len(totals)-1]
	sent, _ = strconv.Atoi(string(last[1]))
	recv, _ = strconv.Atoi(string(last[2]))
	if m := rttRe.FindSubmatch(out); m != nil {
		rttMs, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return sent, recv, rttMs, nil
}

// selfCPU returns this process's user+system CPU time (our relay runs
// in-process; uclient children are not counted).
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// udpRcvbufErrors reads the kernel's UDP RcvbufErrors counter.
func udpRcvbufErrors() (int64, error) {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var header []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = fields
			continue
		}
		for i, h := range header {
			if h == "RcvbufErrors" && i < len(fields) {
				return strconv.ParseInt(fields[i], 10, 64)
			}
		}
	}
	return 0, errors.New("no Udp RcvbufErrors in /proc/net/snmp")
}

// coturnProc is the turnserver child.
type coturnProc struct {
	cmd     *exec.Cmd
	port    int
	dir     string
	version string
	exited  chan struct{}
}

// startCoturn starts turnserver on a free port with relay ports
// minPort–maxPort. Quotas are off (0), as they are by default, so the
// scale profile's 5,000 allocations of one user fit.
func startCoturn(ctx context.Context, bin, secret string, minPort, maxPort int) (*coturnProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "relaybench-coturn-")
	if err != nil {
		return nil, err
	}
	version, _ := exec.CommandContext(ctx, bin, "--version").Output()
	cmd := exec.Command(bin, "-n", "--no-cli", "--no-tls", "--no-dtls",
		"--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
		"--listening-port", strconv.Itoa(port), "--min-port", strconv.Itoa(minPort), "--max-port", strconv.Itoa(maxPort),
		"--user-quota", "0", "--total-quota", "0",
		"--use-auth-secret", "--static-auth-secret", secret, "--realm", "strangers",
		"--allow-loopback-peers", "--no-software-attribute",
		"--db", filepath.Join(dir, "turndb"), "--pidfile", filepath.Join(dir, "turnserver.pid"),
		"--log-file", filepath.Join(dir, "turnserver.log"), "--simple-log")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting turnserver: %w", err)
	}
	c := &coturnProc{cmd: cmd, port: port, dir: dir, version: strings.TrimSpace(string(version)), exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	// Wait until it answers on its TCP port (bounded).
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			conn.Close()
			return c, nil
		}
		select {
		case <-c.exited:
			c.stop()
			return nil, errors.New("turnserver exited at start; see its log")
		default:
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("turnserver not listening on %d after 10s", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpu returns the child's user+system CPU time.
func (c *coturnProc) cpu() (time.Duration, error) { return procCPU(c.cmd.Process.Pid) }

// stop kills the child by PID and removes its files.
func (c *coturnProc) stop() {
	_ = c.cmd.Process.Kill()
	<-c.exited
	os.RemoveAll(c.dir)
}

func freePort() (int, error) {
	for range 10 {
		u, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		u.Close()
		if err == nil {
			t.Close()
			return p, nil
		}
	}
	return 0, errors.New("no port free on both UDP and TCP")
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
