package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/moderation"
	"github.com/strangers-chat/strangers/signaling"
)

// modNode is one instance's moderation and hub, as run wires them.
type modNode struct {
	mod  *modState
	hub  *signaling.Hub
	addr string // host:port of its /ws
}

// syncBuffer is a log both nodes write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startModNode(t *testing.T, cfg settings, logs *syncBuffer) *modNode {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(logs, nil))
	m, err := openModeration(cfg, func(string) string { return "" }, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.close(); err != nil {
			t.Error(err)
		}
	})
	hub, err := signaling.New(signaling.Config{Moderator: m.svc, IdentityKey: m.key})
	if err != nil {
		t.Fatal(err)
	}
	m.enforceOn(hub)
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		srv.Close()
	})
	return &modNode{mod: m, hub: hub, addr: strings.TrimPrefix(srv.URL, "http://")}
}

// With STRANGERS_REDIS_URL, nodes keep their moderation records in the
// shared Redis: a client key one node signed is good on another, and a
// ban made through one node ends the banned browser's session on another
// and keeps it out there. The password is never logged.
func TestModerationSharedThroughRedis(t *testing.T) {
	srv := testsupport.StartRedis(t, testsupport.RedisOptions{Password: "hunter2-password"})
	var cfg settings
	cfg.redisURL = srv.URL()
	cfg.AppealContact = "appeals@example.com"
	var logs syncBuffer
	a, b := startModNode(t, cfg, &logs), startModNode(t, cfg, &logs)
	if a.mod.dir != "" || !bytes.Equal(a.mod.key, b.mod.key) {
		t.Fatalf("state dir %q; keys equal: %v", a.mod.dir, bytes.Equal(a.mod.key, b.mod.key))
	}

	_, wa := hello(t, a.addr, "")
	cb, wb := hello(t, b.addr, wa.ClientKey)
	if wb.ClientKey != wa.ClientKey {
		t.Fatalf("node b did not take node a's client key: %q, then %q", wa.ClientKey, wb.ClientKey)
	}

	// Banned through node a by address (the hash of 127.0.0.1, which
	// both nodes compute alike).
	addr := a.hub.AddrHash(netip.MustParseAddr("127.0.0.1"))
	if addr != b.hub.AddrHash(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("the nodes hash addresses differently")
	}
	if _, _, err := a.mod.svc.Ban(moderation.BanRequest{Addr: addr, Reason: "spam", Duration: time.Hour}, "tok"); err != nil {
		t.Fatal(err)
	}
	banned := waitFor[signaling.Banned](t, cb, signaling.TypeBanned)
	if banned.Reason != "spam" || banned.Appeal != "appeals@example.com" {
		t.Fatalf("banned on node b: %+v", banned)
	}
	if _, w := hello(t, b.addr, wa.ClientKey); w.Type != signaling.TypeBanned {
		t.Fatalf("a new hello on node b: %+v, want banned", w)
	}

	out := logs.String()
	if !strings.Contains(out, "moderation store: Redis") || !strings.Contains(out, srv.Addr()) {
		t.Errorf("the log does not say the moderation store is Redis at %s:\n%s", srv.Addr(), out)
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("the Redis password was logged:\n%s", out)
	}
}
