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
	"strconv"
	"strings"
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

func (s *server) usage() usage {
	return usage{at: time.Now(), server: s.cpu(), self: selfCPU(), busy: machineBusy()}
}

// report says how the CPU was shared since u0: the server and this tool
// compete for the same cores, and other processes may be running too.
func (u usage) report(u0 usage) string {
	wall := u.at.Sub(u0.at).Seconds()
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / wall }
	other := u.busy - u0.busy - (u.server - u0.server) - (u.self - u0.self)
	load, _ := os.ReadFile("/proc/loadavg")
	la, _, _ := strings.Cut(string(load), " ")
	return fmt.Sprintf("CPU: server %.0f%%, this tool %.0f%%, other processes %.0f%% of one core (%d cores; load average %s)",
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
