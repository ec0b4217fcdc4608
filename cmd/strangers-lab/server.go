package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// serverStartTimeout bounds the wait for the server's "listening" line.
	serverStartTimeout = 30 * time.Second
	// serverStopTimeout is how long the server gets to exit after SIGTERM
	// before it is killed.
	serverStopTimeout = 20 * time.Second
	// maxServerLog caps the server log kept for error reports.
	maxServerLog = 4 << 20
)

// ErrServer is returned when the strangers server does not start or stop.
var ErrServer = errors.New("strangers-lab: server")

// serverProc is the strangers binary running in the internet namespace.
type serverProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when its output has been read to the end

	mu   sync.Mutex
	logs strings.Builder // guarded by mu
}

// serverEnv is the server's whole environment in the lab: TLS on 443 of
// its public address, TURN on 3478, relay ports on the same address.
func serverEnv(certs labCerts, debug bool) []string {
	secret := make([]byte, 16)
	rand.Read(secret)
	level := "info"
	if debug {
		level = "debug"
	}
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"STRANGERS_HTTP_ADDR=127.0.0.1:8080", // health and metrics, reachable only inside inet
		"STRANGERS_TLS_ADDR=" + serverAddr + ":443",
		"STRANGERS_TLS_CERT_FILE=" + certs.certFile,
		"STRANGERS_TLS_KEY_FILE=" + certs.keyFile,
		"STRANGERS_PUBLIC_IP=" + serverAddr,
		"STRANGERS_PUBLIC_HOST=" + serverAddr,
		"STRANGERS_TURN_ADDR=" + serverAddr + ":3478",
		"STRANGERS_RELAY_BIND_IP=" + serverAddr,
		// The lab's "public" addresses are a documentation range, which the
		// relay's peer policy denies by default like any reserved range.
		"STRANGERS_RELAY_ALLOW_PEERS=" + inetCIDR,
		"STRANGERS_TURN_SECRET=" + hex.EncodeToString(secret),
		"STRANGERS_ALLOWED_ORIGINS=https://" + serverAddr,
		"STRANGERS_LOG_FORMAT=json",
		"STRANGERS_LOG_LEVEL=" + level,
	}
}

// startServer runs bin in namespace ns and waits until it listens.
func startServer(ctx context.Context, ns, bin string, env []string) (*serverProc, error) {
	s := &serverProc{done: make(chan struct{})}
	s.cmd = exec.Command("ip", "netns", "exec", ns, bin)
	s.cmd.Env = env
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServer, err)
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting %s: %w", ErrServer, bin, err)
	}
	listening := make(chan struct{})
	go s.read(out, listening)
	t := time.NewTimer(serverStartTimeout)
	defer t.Stop()
	select {
	case <-listening:
		return s, nil
	case <-s.done:
		err = fmt.Errorf("%w: exited before listening:\n%s", ErrServer, s.Logs())
	case <-t.C:
		err = fmt.Errorf("%w: not listening after %v:\n%s", ErrServer, serverStartTimeout, s.Logs())
	case <-ctx.Done():
		err = fmt.Errorf("%w: waiting for it to listen: %w", ErrServer, ctx.Err())
	}
	_ = s.Stop() // it did not start: how it exits adds nothing to err
	return nil, err
}

// read keeps the server's log lines and signals the "listening" one.
func (s *serverProc) read(out io.Reader, listening chan struct{}) {
	defer close(s.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := false
	for sc.Scan() {
		s.mu.Lock()
		if s.logs.Len() < maxServerLog {
			s.logs.Write(sc.Bytes())
			s.logs.WriteByte('\n')
		}
		s.mu.Unlock()
		var m struct {
			Msg string `json:"msg"`
		}
		if !seen && json.Unmarshal(sc.Bytes(), &m) == nil && m.Msg == "listening" {
			seen = true
			close(listening)
		}
	}
	_, _ = io.Copy(io.Discard, out)
}

// Logs returns what the server has logged so far.
func (s *serverProc) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// Stop sends SIGTERM, waits for the server to exit and kills it if it
// does not within serverStopTimeout. It reports an unclean exit.
func (s *serverProc) Stop() error {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(serverStopTimeout)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.cmd.Process.Kill()
		<-s.done
	}
	if err := s.cmd.Wait(); err != nil {
		return fmt.Errorf("%w: exit: %w", ErrServer, err)
	}
	return nil
}
