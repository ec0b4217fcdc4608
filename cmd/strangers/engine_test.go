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

	"github.com/strangers-chat/strangers/internal/testsupport"
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

// TestRunWithRedis runs the server with a real Redis (with a password):
// it logs the Redis host, never the password; /readyz is ready while Redis
// answers, not ready (with the reason) while it is down, ready again when
// it is back, with no restart; and SIGTERM drains.
func TestRunWithRedis(t *testing.T) {
	rds := testsupport.StartRedis(t, testsupport.RedisOptions{Password: "hunter2-redis-password"})
	s := startRun(t, map[string]string{
		"STRANGERS_REDIS_URL":   rds.URL(),
		"STRANGERS_TURN_SECRET": "0123456789abcdef0123",
		"STRANGERS_NODE_ID":     "node-a",
	})
	if s.addrs["engine"] != "redis" || s.addrs["redis"] != rds.Addr() || s.addrs["node"] != "node-a" {
		t.Errorf("listening line %v: want engine=redis redis=%s node=node-a", s.addrs, rds.Addr())
	}
	readyz := func() (int, string) {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(s.url("/readyz"))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitReadyz := func(want int, what string) {
		t.Helper()
		var code int
		var body string
		if !testsupport.Eventually(30*time.Second, func() bool {
			code, body = readyz()
			return code == want
		}) {
			t.Fatalf("%s: /readyz = %d %q, want %d", what, code, body, want)
		}
	}
	waitReadyz(http.StatusOK, "Redis up")
	if n := gaugeOf(t, s, "strangers_redis_up"); n != 1 {
		t.Errorf("strangers_redis_up = %v with Redis up", n)
	}

	rds.Stop()
	waitReadyz(http.StatusServiceUnavailable, "Redis stopped")
	if _, body := readyz(); !strings.Contains(body, "matchmaking backend unavailable") {
		t.Errorf("/readyz with Redis down says %q", body)
	}
	if code, _ := get(t, s.url("/healthz")); code != http.StatusOK {
		t.Errorf("/healthz = %d with Redis down: the node stays up", code)
	}
	rds.Start()
	waitReadyz(http.StatusOK, "Redis back")

	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.logs.waitFor(func(m map[string]any) bool { return m["msg"] == "shutting down" && m["drain"] == true }, time.Second); !ok {
		t.Errorf("no shutting-down line with drain=true")
	}
	if strings.Contains(s.logs.String(), "hunter2") {
		t.Errorf("the Redis password was logged:\n%s", s.logs.String())
	}
}

// gaugeOf returns the value of the unlabelled gauge name on the server's
// /metrics.
func gaugeOf(t *testing.T, s *server, name string) float64 {
	t.Helper()
	f, ok := metricFamilies(t, s)[name]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge() == nil {
		t.Fatalf("/metrics has no gauge %s", name)
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}
