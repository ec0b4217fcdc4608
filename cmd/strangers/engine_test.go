package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/signaling"
)

// downEngine is a shared engine whose backend is down until up is set: it
// pairs nobody and says so.
type downEngine struct {
	up atomic.Bool
}

func (e *downEngine) Start(signaling.EngineHost) error { return nil }
func (e *downEngine) Close(bool) error                 { return nil }
func (e *downEngine) Node() string                     { return "node-a" }
func (e *downEngine) Ready() bool                      { return e.up.Load() }
func (e *downEngine) Register(signaling.SessionRecord) error {
	return signaling.ErrEngineUnavailable
}

func (e *downEngine) Claim(string) (signaling.SessionRecord, bool, error) {
	return signaling.SessionRecord{}, false, signaling.ErrEngineUnavailable
}
func (e *downEngine) End(string, bool) error { return signaling.ErrEngineUnavailable }
func (e *downEngine) Queue(signaling.Ticket) (signaling.Pairing, error) {
	return signaling.Pairing{}, signaling.ErrEngineUnavailable
}

func (e *downEngine) Withdraw(string) (signaling.Pairing, error) {
	return signaling.Pairing{}, signaling.ErrEngineUnavailable
}

func (e *downEngine) EndMatch(string, string, string, signaling.LeftReason) error {
	return signaling.ErrEngineUnavailable
}
func (e *downEngine) Block(string, string) error  { return signaling.ErrEngineUnavailable }
func (e *downEngine) Send(string, string, []byte) {}
func (e *downEngine) Counts() (signaling.EngineCounts, error) {
	return signaling.EngineCounts{}, signaling.ErrEngineUnavailable
}

// TestReadyzFollowsTheEngine: while the shared matchmaker's backend is
// down, /readyz says not ready (503, with the reason), so that a load
// balancer sends new visitors to another node; when it is back, ready.
func TestReadyzFollowsTheEngine(t *testing.T) {
	eng := &downEngine{}
	hub, err := signaling.New(signaling.Config{Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	a := &app{hub: hub}
	a.ready.Store(true)
	mux := http.NewServeMux()
	a.handleProbes(mux, prometheus.NewRegistry())
	probe := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(body)
	}

	if code, body := probe("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "matchmaking backend unavailable") {
		t.Errorf("engine down: /readyz = %d %q, want 503 naming the backend", code, body)
	}
	if code, _ := probe("/healthz"); code != http.StatusOK {
		t.Errorf("engine down: /healthz = %d, want 200 (the process is alive)", code)
	}
	eng.up.Store(true)
	if code, body := probe("/readyz"); code != http.StatusOK {
		t.Errorf("engine up: /readyz = %d %q, want 200", code, body)
	}
	a.ready.Store(false) // shutting down
	if code, _ := probe("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("shutting down: /readyz = %d, want 503", code)
	}
}

// TestRunNeverLogsRedisPassword: a configured Redis is logged by its host; the
// URL, which holds the password, never appears. (This build may refuse to
// start without a Redis engine; either way the password stays out.)
func TestRunNeverLogsRedisPassword(t *testing.T) {
	env := testEnv()
	env["STRANGERS_STATE_DIR"] = t.TempDir()
	env["STRANGERS_REDIS_URL"] = "redis://:hunter2-password@127.0.0.1:1"
	env["STRANGERS_TURN_SECRET"] = "0123456789abcdef"
	env["STRANGERS_NODE_ID"] = "node-a"
	ctx, cancel := context.WithCancel(context.Background())
	logs := newLogTail()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, func(k string) string { return env[k] }, logs)
		io.WriteString(logs, `{"msg":"(run returned)"}`+"\n") // ends the wait below
		done <- err
		logs.Close()
	}()
	line, _ := logs.waitFor(func(m map[string]any) bool { return m["msg"] == "listening" || m["msg"] == "(run returned)" }, 20*time.Second)
	started := line["msg"] == "listening"
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
	}
	if started {
		if line["redis"] != "127.0.0.1:1" || line["node"] != "node-a" || line["engine"] != "redis" {
			t.Errorf("listening line %v: want engine=redis redis=127.0.0.1:1 node=node-a", line)
		}
	}
	if strings.Contains(logs.String(), "hunter2") || err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the Redis password was logged or returned: %v\n%s", err, logs.String())
	}
}
