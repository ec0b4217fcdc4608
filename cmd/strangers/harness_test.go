package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// server is one in-process run of the binary, started by startRun.
type server struct {
	addrs  map[string]any // the attributes of the "listening" log line
	cancel context.CancelFunc
	done   chan error
	logs   *logTail
}

// testEnv is the environment every in-process test run starts from:
// loopback, ephemeral ports, JSON logs.
func testEnv() map[string]string {
	return map[string]string{
		"STRANGERS_HTTP_ADDR":  "127.0.0.1:0",
		"STRANGERS_TURN_ADDR":  "127.0.0.1:0",
		"STRANGERS_PUBLIC_IP":  "127.0.0.1",
		"STRANGERS_LOG_FORMAT": "json",
		"STRANGERS_LOG_LEVEL":  "debug",
	}
}

// startRun runs the server in-process with testEnv plus extra, waits until
// it logs that it is listening, and stops it when the test ends.
func startRun(t *testing.T, extra map[string]string) *server {
	t.Helper()
	env := testEnv()
	env["STRANGERS_STATE_DIR"] = t.TempDir()
	maps.Copy(env, extra)
	ctx, cancel := context.WithCancel(context.Background())
	logs := newLogTail()
	s := &server{cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() {
		s.done <- run(ctx, func(k string) string { return env[k] }, logs)
		logs.Close()
	}()
	line, ok := logs.waitFor(func(m map[string]any) bool { return m["msg"] == "listening" }, 20*time.Second)
	if !ok {
		cancel()
		t.Fatalf("server did not start; logs:\n%s", logs.String())
	}
	s.addrs = line
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels the run and waits for it to return; it is idempotent.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not return after cancel; logs:\n%s", s.logs.String())
		return nil
	}
}

// url returns http://<http listener><path>.
func (s *server) url(path string) string { return "http://" + s.addrs["http"].(string) + path }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// logTail collects JSON log lines written by the server and lets tests wait
// for one that matches.
type logTail struct {
	mu     sync.Mutex
	buf    strings.Builder
	lines  []map[string]any
	notify chan struct{}
	pw     *io.PipeWriter
}

func newLogTail() *logTail {
	pr, pw := io.Pipe()
	l := &logTail{notify: make(chan struct{}, 1), pw: pw}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			_ = json.Unmarshal(sc.Bytes(), &m)
			l.mu.Lock()
			l.buf.Write(sc.Bytes())
			l.buf.WriteByte('\n')
			if m != nil {
				l.lines = append(l.lines, m)
			}
			l.mu.Unlock()
			select {
			case l.notify <- struct{}{}:
			default:
			}
		}
		io.Copy(io.Discard, pr)
	}()
	return l
}

func (l *logTail) Write(p []byte) (int, error) { return l.pw.Write(p) }
func (l *logTail) Close() error                { return l.pw.Close() }

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor returns the first log line for which match is true, waiting up to d.
func (l *logTail) waitFor(match func(map[string]any) bool, d time.Duration) (map[string]any, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for _, m := range l.lines {
			if match(m) {
				l.mu.Unlock()
				return m, true
			}
		}
		l.mu.Unlock()
		select {
		case <-l.notify:
		case <-deadline.C:
			return nil, false
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
