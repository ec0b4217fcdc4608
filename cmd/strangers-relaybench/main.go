//go:build linux

// Command strangers-relaybench measures the embedded relay side by side with
// coturn on loopback. It starts our relay in-process and coturn's turnserver
// as a child process, drives both alternately with coturn's
// turnutils_uclient (client to client through the relay, REST credentials
// minted from the shared secret) and prints, per run and as a summary:
// loss, kernel UDP receive-buffer drops, round-trip latency and server CPU
// seconds per relayed message.
//
// It needs the Debian package coturn. Everything stays on 127.0.0.1; every
// run is bounded in messages and time, and the turnserver child is killed by
// PID at the end.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strangers-chat/strangers/relay"
)

// profile is one load level: clients × messages at an interval.
type profile struct {
	name               string
	clients, msgs, gap int // gap in ms between a client's messages
	size               int
}

var profiles = map[string]profile{
	"25k":   {"25k msgs/s", 50, 5000, 2, 1000},
	"50k":   {"50k msgs/s", 50, 10000, 1, 1000},
	"smoke": {"smoke", 10, 200, 20, 200},
}

// result is one uclient run against one server.
type result struct {
	server, transport, profile string
	sent, recv                 int
	rcvbufErrors               int64
	rttMs                      float64
	cpu                        time.Duration
	wall                       time.Duration
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "strangers-relaybench:", err)
		os.Exit(1)
	}
}

func run() error {
	rounds := flag.Int("rounds", 3, "rounds; each round runs every server, transport and profile once")
	profileList := flag.String("profiles", "25k,50k", "comma-separated load profiles: 25k, 50k, smoke")
	transports := flag.String("transports", "udp,tcp", "comma-separated client transports: udp, tcp")
	sockets := flag.Int("udp-sockets", runtime.NumCPU(), "SO_REUSEPORT UDP sockets for our relay")
	runTimeout := flag.Duration("run-timeout", 2*time.Minute, "upper bound for one uclient run")
	serverList := flag.String("servers", "strangers,strangers-kernel,coturn",
		"comma-separated servers to drive: strangers, strangers-kernel (relay-to-relay traffic through the kernel, no in-process handover), coturn")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (our relay) to this file")
	flag.Parse()

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

	ourCfg := relay.Config{
		ListenAddr:    "127.0.0.1:0",
		UDPSockets:    *sockets,
		PublicIP:      netip.MustParseAddr("127.0.0.1"),
		PortMin:       50000,
		PortMax:       59999,
		Secret:        []byte(secret),
		CredentialTTL: 25 * time.Hour, // turnutils_uclient mints credentials valid for a day
		SessionQuota:  1000,
		IPQuota:       100000, // every uclient client is on 127.0.0.1
		// uclient opens one TCP connection per client, all from 127.0.0.1.
		TCPMaxConnsPerIP: 1000,
		AllowPeers:       []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ours, err := relay.New(ourCfg)
	if err != nil {
		return err
	}
	defer ours.Close()
	ours.SessionStarted(sid)
	kernelCfg := ourCfg
	kernelCfg.NoLocalHandover = true
	kernelCfg.PortMin, kernelCfg.PortMax = 60000, 64999
	kernel, err := relay.New(kernelCfg)
	if err != nil {
		return err
	}
	defer kernel.Close()
	kernel.SessionStarted(sid)

	coturn, err := startCoturn(ctx, turnserver, secret)
	if err != nil {
		return err
	}
	defer coturn.stop()

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
	servers := map[string]bool{}
	for _, s := range strings.Split(*serverList, ",") {
		s = strings.TrimSpace(s)
		if s != "strangers" && s != "strangers-kernel" && s != "coturn" {
			return fmt.Errorf("unknown server %q", s)
		}
		servers[s] = true
	}

	fmt.Printf("relay: %d UDP sockets on %s (strangers-kernel on %s); coturn %s (pid %d) on 127.0.0.1:%d; %d CPUs\n",
		*sockets, ours.UDPAddr(), kernel.UDPAddr(), coturn.version, coturn.cmd.Process.Pid, coturn.port, runtime.NumCPU())
	fmt.Printf("%-7s %-6s %-4s %-11s %8s %8s %7s %9s %9s %11s\n",
		"round", "server", "tr", "profile", "sent", "recv", "loss%", "rcvbufErr", "rtt_ms", "cpu_us/msg")

	var results []result
	for r := 1; r <= *rounds; r++ {
		for _, pname := range strings.Split(*profileList, ",") {
			p, ok := profiles[strings.TrimSpace(pname)]
			if !ok {
				return fmt.Errorf("unknown profile %q", pname)
			}
			for _, tr := range strings.Split(*transports, ",") {
				tr = strings.TrimSpace(tr)
				order := []string{"strangers", "strangers-kernel", "coturn"}
				if r%2 == 0 {
					slices.Reverse(order) // alternate who goes first
				}
				for _, srv := range order {
					if !servers[srv] {
						continue
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
					port, cpu := ours.UDPAddr().Port, selfCPU
					switch srv {
					case "strangers-kernel":
						port = kernel.UDPAddr().Port
					case "coturn":
						port, cpu = coturn.port, coturn.cpu
					}
					res, err := drive(ctx, uclient, port, secret, sid, tr, p, cpu, *runTimeout)
					if err != nil {
						if ctx.Err() != nil {
							return ctx.Err()
						}
						fmt.Printf("%-7d %-6s %-4s %-11s FAILED: %v\n", r, shortName(srv), tr, p.name, err)
						continue
					}
					res.server, res.transport, res.profile = srv, tr, p.name
					results = append(results, res)
					printResult(strconv.Itoa(r), res)
				}
			}
		}
	}
	summarize(results)
	return nil
}

// drive runs turnutils_uclient once against port and measures the server.
func drive(ctx context.Context, uclient string, port int, secret, sid, transport string, p profile,
	cpu func() (time.Duration, error), timeout time.Duration,
) (result, error) {
	args := []string{"-y", "-c", "-m", strconv.Itoa(p.clients), "-n", strconv.Itoa(p.msgs),
		"-z", strconv.Itoa(p.gap), "-l", strconv.Itoa(p.size), "-W", secret, "-u", sid, "-p", strconv.Itoa(port)}
	if transport == "tcp" {
		args = append(args, "-t")
	}
	args = append(args, "127.0.0.1")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	rcv0, err := udpRcvbufErrors()
	if err != nil {
		return result{}, err
	}
	cpu0, err := cpu()
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, uclient, args...).CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		return result{}, fmt.Errorf("turnutils_uclient: %w\n%s", err, lastLines(out, 20))
	}
	cpu1, err := cpu()
	if err != nil {
		return result{}, err
	}
	rcv1, err := udpRcvbufErrors()
	if err != nil {
		return result{}, err
	}
	res := result{cpu: cpu1 - cpu0, rcvbufErrors: rcv1 - rcv0, wall: wall}
	totals := regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`).FindAllSubmatch(out, -1)
	if totals == nil {
		return result{}, fmt.Errorf("no totals in turnutils_uclient output:\n%s", lastLines(out, 20))
	}
	last := totals[len(totals)-1]
	res.sent, _ = strconv.Atoi(string(last[1]))
	res.recv, _ = strconv.Atoi(string(last[2]))
	if m := regexp.MustCompile(`Average round trip delay ([0-9.]+) ms`).FindSubmatch(out); m != nil {
		res.rttMs, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return res, nil
}

func (r result) loss() float64 {
	if r.sent == 0 {
		return 100
	}
	return 100 * float64(r.sent-r.recv) / float64(r.sent)
}

// cpuPerMsg is server CPU per relayed message. Each uclient message crosses
// the relay once (client -> its allocation -> peer allocation -> peer), so
// received messages are the relayed count.
func (r result) cpuPerMsg() float64 {
	if r.recv == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.recv)
}

func printResult(round string, r result) {
	fmt.Printf("%-7s %-6s %-4s %-11s %8d %8d %7.3f %9d %9.3f %11.2f\n",
		round, shortName(r.server), r.transport, r.profile, r.sent, r.recv, r.loss(), r.rcvbufErrors, r.rttMs, r.cpuPerMsg())
}

func shortName(s string) string {
	switch s {
	case "strangers":
		return "ours"
	case "strangers-kernel":
		return "kernel"
	}
	return s
}

// summarize prints medians per server, transport and profile, and the CPU
// ratio ours/coturn.
func summarize(results []result) {
	type key struct{ transport, profile string }
	groups := map[key]map[string][]result{}
	var keys []key
	for _, r := range results {
		k := key{r.transport, r.profile}
		if groups[k] == nil {
			groups[k] = map[string][]result{}
			keys = append(keys, k)
		}
		groups[k][r.server] = append(groups[k][r.server], r)
	}
	fmt.Println("\nsummary (medians over rounds)")
	fmt.Printf("%-4s %-11s %-6s %7s %9s %9s %11s %10s\n", "tr", "profile", "server", "loss%", "rcvbufErr", "rtt_ms", "cpu_us/msg", "ratio")
	for _, k := range keys {
		var coturnCPU float64
		for _, srv := range []string{"coturn", "strangers", "strangers-kernel"} {
			rs := groups[k][srv]
			if len(rs) == 0 {
				continue
			}
			loss := median(rs, func(r result) float64 { return r.loss() })
			rcv := median(rs, func(r result) float64 { return float64(r.rcvbufErrors) })
			rtt := median(rs, func(r result) float64 { return r.rttMs })
			cpu := median(rs, func(r result) float64 { return r.cpuPerMsg() })
			ratio := "-"
			if srv == "coturn" {
				coturnCPU = cpu
			} else if coturnCPU > 0 {
				ratio = fmt.Sprintf("%.2f", cpu/coturnCPU)
			}
			fmt.Printf("%-4s %-11s %-6s %7.3f %9.0f %9.3f %11.2f %10s\n",
				k.transport, k.profile, shortName(srv), loss, rcv, rtt, cpu, ratio)
		}
	}
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
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

func startCoturn(ctx context.Context, bin, secret string) (*coturnProc, error) {
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
		"--listening-port", strconv.Itoa(port), "--min-port", "40000", "--max-port", "44999",
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

// cpu returns the child's user+system CPU time from /proc/<pid>/stat.
func (c *coturnProc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	const utime, stime = 11, 12                                   // fields 14 and 15 of stat, minus pid, comm
	u, err1 := strconv.ParseInt(fields[utime], 10, 64)
	st, err2 := strconv.ParseInt(fields[stime], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", c.cmd.Process.Pid)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(u+st) * time.Second / ticks, nil
}

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
