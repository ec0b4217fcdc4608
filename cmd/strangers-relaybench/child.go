//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strangers-chat/strangers/relay"
)

// The bench re-executes itself for two helpers that must not run in its
// own process, whose CPU time is our in-process relay's:
//
//   - "hog" (-noise): one thread pinned to one core spinning in a loop, so
//     every server is measured with one core busy, as on a shared host;
//   - "relay" (scale profile): our relay alone in a process, so its RSS and
//     CPU are read from /proc like coturn's, not mixed with the 5,000 pion
//     clients of the bench.
//
// A child stops when its stdin reaches EOF (the parent closes it or dies)
// and is killed by the kernel if the parent dies first (Pdeathsig); the
// hog also stops by itself after -hog-for.

// childFlags are the flags only the child modes read.
type childFlags struct {
	mode       *string
	hogCPU     *int
	hogFor     *time.Duration
	listen     *string
	portMin    *int
	portMax    *int
	udpSockets *int
}

func registerChildFlags() childFlags {
	return childFlags{
		mode:       flag.String("child", "", "internal: run as a helper child (hog, relay)"),
		hogCPU:     flag.Int("hog-cpu", 0, "internal (-child hog): the CPU the busy loop is pinned to"),
		hogFor:     flag.Duration("hog-for", 10*time.Minute, "internal (-child hog): upper bound of the busy loop"),
		listen:     flag.String("listen", "127.0.0.1:0", "internal (-child relay): TURN listen address"),
		portMin:    flag.Int("port-min", 20000, "internal (-child relay): relay port range start"),
		portMax:    flag.Int("port-max", 29999, "internal (-child relay): relay port range end"),
		udpSockets: flag.Int("child-udp-sockets", runtime.NumCPU(), "internal (-child relay): SO_REUSEPORT UDP sockets"),
	}
}

func runChild(f childFlags, cpuProfile string) error {
	switch *f.mode {
	case "hog":
		return runHog(*f.hogCPU, *f.hogFor)
	case "relay":
		return runRelayChild(f, cpuProfile)
	}
	return fmt.Errorf("unknown child mode %q", *f.mode)
}

// runHog spins on one OS thread pinned to cpu until stdin closes or bound
// has passed.
func runHog(cpu int, bound time.Duration) error {
	var stopped atomic.Bool
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // returns at EOF: the parent is done
		stopped.Store(true)
	}()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the spinning thread is the pinned one
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- fmt.Errorf("hog: pin to CPU %d: %w", cpu, err)
			return
		}
		deadline := time.Now().Add(bound)
		var x uint64
		for !stopped.Load() && time.Now().Before(deadline) {
			for i := range uint64(1 << 20) {
				x += i ^ x>>3
			}
		}
		if x == 42 { // keeps the loop from being optimised away
			fmt.Fprint(io.Discard, x)
		}
		done <- nil
	}()
	return <-done
}

// hog is a running "-child hog" process. Owned by the goroutine that
// started it, which calls stop.
type hog struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
}

// startHog starts a busy loop pinned to the last CPU, bounded by bound.
func startHog(bound time.Duration) (*hog, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("hog: %w", err)
	}
	cpu := runtime.NumCPU() - 1
	cmd := exec.Command(self, "-child", "hog", "-hog-cpu", strconv.Itoa(cpu), "-hog-for", bound.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("hog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("hog: start: %w", err)
	}
	h := &hog{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(h.exited)
	}()
	return h, nil
}

// stop ends the busy loop: stdin EOF, then SIGKILL by PID if it has not
// exited within a second.
func (h *hog) stop() {
	if h == nil {
		return
	}
	_ = h.stdin.Close()
	select {
	case <-h.exited:
	case <-time.After(time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
}

// runRelayChild serves our relay until stdin closes. The first stdin line
// is "<secret> <session id>" (kept off the command line); the child answers
// "ready <udp port>" on stdout.
func runRelayChild(f childFlags, cpuProfile string) error {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	if err != nil {
		return fmt.Errorf("relay child: reading secret: %w", err)
	}
	secret, sid, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok {
		return errors.New("relay child: first stdin line is not \"<secret> <session id>\"")
	}
	cfg := benchRelayConfig(secret)
	cfg.ListenAddr = *f.listen
	cfg.UDPSockets = *f.udpSockets
	cfg.PortMin, cfg.PortMax = *f.portMin, *f.portMax
	srv, err := relay.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	srv.SessionStarted(sid)
	if cpuProfile != "" {
		pf, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("relay child: cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("relay child: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("ready %d\n", srv.UDPAddr().Port)
	_, _ = io.Copy(io.Discard, in) // until the parent closes stdin
	return nil
}

// benchRelayConfig is our relay's configuration for every measurement.
func benchRelayConfig(secret string) relay.Config {
	return relay.Config{
		ListenAddr:    "127.0.0.1:0",
		PublicIP:      netip.MustParseAddr("127.0.0.1"),
		PortMin:       50000,
		PortMax:       59999,
		Secret:        []byte(secret),
		CredentialTTL: 25 * time.Hour, // turnutils_uclient mints credentials valid for a day
		SessionQuota:  10000,
		TotalQuota:    20000,  // the scale profile holds 5,000 at once
		IPQuota:       100000, // every uclient client is on 127.0.0.1
		// uclient opens one TCP connection per client, all from 127.0.0.1.
		TCPMaxConnsPerIP: 1000,
		// The per-allocation cap stays on (its check is part of every
		// datagram's cost) but above what one uclient client sends: 50k
		// msgs/s over 50 clients is 8 Mbit/s each, over the 5 Mbit/s
		// default, which would drop what coturn (no cap) relays.
		MaxBitrate: 100_000_000,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
}

// relayChild is a running "-child relay" process. Owned by the goroutine
// that started it, which calls stop.
type relayChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	port   int
	exited chan struct{}
}

func startRelayChild(ctx context.Context, secret, sid string, portMin, portMax int, cpuProfile string) (*relayChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("relay child: %w", err)
	}
	args := []string{"-child", "relay", "-port-min", strconv.Itoa(portMin), "-port-max", strconv.Itoa(portMax)}
	if cpuProfile != "" {
		args = append(args, "-cpuprofile", cpuProfile)
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("relay child: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("relay child: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("relay child: start: %w", err)
	}
	c := &relayChild{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(c.exited)
	}()
	if _, err := fmt.Fprintf(stdin, "%s %s\n", secret, sid); err != nil {
		c.stop()
		return nil, fmt.Errorf("relay child: %w", err)
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case line := <-ready:
		p, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "ready "))
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("relay child: unexpected first line %q", line)
		}
		c.port = p
		return c, nil
	case <-timer.C:
		c.stop()
		return nil, errors.New("relay child: not ready after 10s")
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

func (c *relayChild) pid() int { return c.cmd.Process.Pid }

// stop closes stdin (the child closes its relay and writes its profile),
// then kills it by PID if it has not exited within 10 s.
func (c *relayChild) stop() {
	_ = c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// procCPU returns a process's user+system CPU time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

func parseStatCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, errors.New("malformed /proc stat")
	}
	fields := strings.Fields(s[i+2:]) // after "pid (comm) "
	const utime, stime = 11, 12       // fields 14 and 15 of stat, minus pid, comm
	if len(fields) <= stime {
		return 0, errors.New("malformed /proc stat")
	}
	u, err1 := strconv.ParseInt(fields[utime], 10, 64)
	st, err2 := strconv.ParseInt(fields[stime], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat")
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(u+st) * time.Second / ticks, nil
}

// procRSS returns a process's resident set size in bytes (VmRSS of
// /proc/<pid>/status).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

func parseVmRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed VmRSS line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed VmRSS line %q", strings.TrimSpace(line))
		}
		return kb * 1024, nil
	}
	return 0, errors.New("no VmRSS in status")
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
