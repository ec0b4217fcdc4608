package testsupport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of StartRedis and its methods.
const (
	redisReadyWait = 20 * time.Second // from exec to the first PONG
	redisStopWait  = 10 * time.Second // SIGTERM to exit, before SIGKILL
	redisDialWait  = time.Second      // one PING attempt
)

// RedisOptions configures StartRedis.
type RedisOptions struct {
	// Persist keeps the data in the server's directory (an append-only
	// file, fsynced on every write), so that Stop or Kill then Start
	// brings it back. False: nothing is written to disk (--save "").
	Persist bool
	// Password is required of clients (--requirepass); "" for none.
	Password string
	// TLS, if set, makes the server speak only TLS, with a certificate
	// for 127.0.0.1 from this CA (clients need not present one); URL then
	// says rediss://.
	TLS *CA
}

// Redis is a redis-server (Debian's) started for one test, listening on
// 127.0.0.1 only, with its files in the test's temporary directory.
// Cleanup stops it.
type Redis struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	opts RedisOptions
	// The server's certificate and key files, with TLS.
	certFile, keyFile string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd  // nil while stopped
	done chan struct{}
}

// StartRedis starts redis-server for tb and waits until it answers PING.
// Without redis-server it skips tb (or fails it under
// STRANGERS_TEST_REQUIRE=all).
func StartRedis(tb testing.TB, opts RedisOptions) *Redis {
	tb.Helper()
	bin := Require(tb, "redis-server", "redis-server")
	r := &Redis{tb: tb, bin: bin, dir: tb.TempDir(), opts: opts}
	if opts.TLS != nil {
		var err error
		r.certFile, r.keyFile, err = opts.TLS.WriteFiles(r.dir, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), "127.0.0.1")
		if err != nil {
			tb.Fatalf("testsupport: redis TLS certificate: %v", err)
		}
	}
	tb.Cleanup(r.Stop)
	var err error
	for range 5 { // a free port can be taken between choosing and binding it
		if r.port, err = freePort(); err != nil {
			break
		}
		if err = r.start(); err == nil {
			return r
		}
	}
	tb.Fatalf("testsupport: start redis-server: %v", err)
	return nil
}

// URL returns the server's URL for go-redis:
// redis[s]://[:password@]127.0.0.1:port/0.
func (r *Redis) URL() string {
	u := url.URL{Scheme: "redis", Host: r.Addr(), Path: "/0"}
	if r.opts.TLS != nil {
		u.Scheme = "rediss"
	}
	if r.opts.Password != "" {
		u.User = url.UserPassword("", r.opts.Password)
	}
	return u.String()
}

// Addr returns the server's address, 127.0.0.1:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Dir returns the server's working directory (its data files, its log).
func (r *Redis) Dir() string { return r.dir }

// Start starts the server again on the same port and directory after Stop
// or Kill, and waits until it answers: with Persist its data comes back,
// without it the server starts empty. A no-op while it runs.
func (r *Redis) Start() {
	r.tb.Helper()
	if r.running() {
		return
	}
	// The port was ours a moment ago; it may linger briefly.
	var err error
	for range 20 {
		if err = r.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.tb.Fatalf("testsupport: restart redis-server on %s: %v", r.Addr(), err)
}

// Stop ends the server with SIGTERM (it writes its data if it persists)
// and waits for it, killing it if it takes longer than 10s. A no-op while
// it is stopped.
func (r *Redis) Stop() { r.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (r *Redis) Kill() { r.signal(syscall.SIGKILL) }

// Pause freezes the server (SIGSTOP): it keeps its connections but
// answers nothing, as a hung server would, until Resume. Stop, Kill and
// cleanup resume it first.
func (r *Redis) Pause() { r.freeze(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (r *Redis) Resume() { r.freeze(syscall.SIGCONT) }

func (r *Redis) freeze(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(sig)
	}
}

// Restart stops the server and starts it again; without keepData its data
// files are deleted in between, as if it came back on a fresh disk.
func (r *Redis) Restart(keepData bool) {
	r.tb.Helper()
	r.Stop()
	if !keepData {
		for _, name := range []string{"dump.rdb", "appendonlydir", "appendonly.aof"} {
			if err := os.RemoveAll(filepath.Join(r.dir, name)); err != nil {
				r.tb.Fatalf("testsupport: delete redis data: %v", err)
			}
		}
	}
	r.Start()
}

func (r *Redis) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil
}

func (r *Redis) signal(sig syscall.Signal) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd, r.done = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot act on SIGTERM
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(redisStopWait):
		_ = cmd.Process.Kill()
		<-done // SIGKILL cannot be ignored
	}
}

// start execs the server and waits until it answers PING, or stops it.
func (r *Redis) start() error {
	plain := strconv.Itoa(r.port)
	if r.opts.TLS != nil {
		plain = "0" // TLS only: the port is --tls-port's
	}
	args := []string{
		"--bind", "127.0.0.1",
		"--port", plain,
		"--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"),
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--save", "",
	}
	if r.opts.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if r.opts.Password != "" {
		args = append(args, "--requirepass", r.opts.Password)
	}
	if r.opts.TLS != nil {
		args = append(args, "--tls-port", strconv.Itoa(r.port), "--tls-cert-file", r.certFile,
			"--tls-key-file", r.keyFile, "--tls-auth-clients", "no")
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = r.dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", r.bin, err)
	}
	done := make(chan struct{})
	go func() { // owned by r: ends when the process does
		_ = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(redisReadyWait)
	wait := firstPoll
	for {
		err := r.ping()
		if err == nil {
			break
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited: %w (log: %s)", r.Addr(), err, r.logTail())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on %s not ready after %v: %w", r.Addr(), redisReadyWait, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, maxPoll)
	}
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	return nil
}

// ping sends AUTH (with a password) and PING and expects PONG.
func (r *Redis) ping() error {
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: redisDialWait}
	if r.opts.TLS != nil {
		c, err = tls.DialWithDialer(d, "tcp", r.Addr(), &tls.Config{RootCAs: r.opts.TLS.Pool, ServerName: "127.0.0.1"})
	} else {
		c, err = d.Dial("tcp", r.Addr())
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(redisDialWait))
	var req strings.Builder
	if r.opts.Password != "" {
		fmt.Fprintf(&req, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(r.opts.Password), r.opts.Password)
	}
	req.WriteString("*1\r\n$4\r\nPING\r\n")
	if _, err := c.Write([]byte(req.String())); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	if r.opts.Password != "" {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+OK") {
			return errors.New("AUTH: " + strings.TrimSpace(line))
		}
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New("PING: " + strings.TrimSpace(line)) // e.g. LOADING
	}
	return nil
}

func (r *Redis) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
