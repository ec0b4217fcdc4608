package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
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

func startModNode(t *testing.T, cfg settings, logs *testsupport.LogBuffer) *modNode {
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
	var logs testsupport.LogBuffer
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

// Two real nodes sharing one Redis: a browser keeps its client key from
// one to the other; a ban made through one node's admin API ends the
// browser's session on the other node too, the other's admin API lists
// it and can lift it, and the first node lets the browser in again.
func TestTwoNodesShareModeration(t *testing.T) {
	rds := testsupport.StartRedis(t, testsupport.RedisOptions{Password: "hunter2-redis-password"})
	node := func(name string) *server {
		env := adminEnv(t, t.TempDir())
		env["STRANGERS_REDIS_URL"] = rds.URL()
		env["STRANGERS_TURN_SECRET"] = "0123456789abcdef0123"
		env["STRANGERS_NODE_ID"] = name
		return startRun(t, env)
	}
	a, b := node("node-a"), node("node-b")
	for _, s := range []*server{a, b} {
		if s.addrs["moderation_store"] != "redis" || s.addrs["state_dir"] != nil {
			t.Errorf("listening line %v: want moderation_store=redis and no state_dir", s.addrs)
		}
	}
	httpA, httpB := a.addrs["http"].(string), b.addrs["http"].(string)
	adminA, adminB := a.addrs["admin"].(string), b.addrs["admin"].(string)

	ca, wa := hello(t, httpA, "")
	cb, wb := hello(t, httpB, wa.ClientKey)
	if wb.ClientKey != wa.ClientKey {
		t.Fatalf("node b replaced node a's client key %q with %q", wa.ClientKey, wb.ClientKey)
	}

	var made struct {
		Ban           struct{ ID string } `json:"ban"`
		SessionsEnded int                 `json:"sessionsEnded"`
	}
	if code := adminCall(t, adminA, "POST", "/api/v1/bans", `{"ip":"127.0.0.1","reason":"spam","duration":"1h"}`, &made); code != 201 || made.SessionsEnded != 1 {
		t.Fatalf("ban through node a: %d %+v", code, made)
	}
	waitFor[signaling.Banned](t, ca, signaling.TypeBanned)
	if got := waitFor[signaling.Banned](t, cb, signaling.TypeBanned); got.Reason != "spam" || got.Appeal != "appeals@example.com" {
		t.Fatalf("banned on node b: %+v", got)
	}
	if _, w := hello(t, httpB, wa.ClientKey); w.Type != signaling.TypeBanned {
		t.Fatalf("hello on node b after the ban: %+v", w)
	}
	var bans []struct{ ID string }
	if code := adminCall(t, adminB, "GET", "/api/v1/bans", "", &bans); code != 200 || len(bans) != 1 || bans[0].ID != made.Ban.ID {
		t.Fatalf("bans on node b: %d %+v, want %s", code, bans, made.Ban.ID)
	}
	if code := adminCall(t, adminB, "DELETE", "/api/v1/bans/"+made.Ban.ID, "", nil); code != 200 {
		t.Fatalf("lift through node b: %d", code)
	}
	testsupport.WaitFor(t, 10*time.Second, "node a to let the browser in after the lift", func() bool {
		c, w := hello(t, httpA, wa.ClientKey)
		c.Close()
		return w.Type != signaling.TypeBanned
	})
	var audit []struct{ Action string }
	if code := adminCall(t, adminA, "GET", "/api/v1/audit", "", &audit); code != 200 || len(audit) != 2 || audit[0].Action != "lift" || audit[1].Action != "ban" {
		t.Fatalf("audit on node a: %d %+v", code, audit)
	}
	for _, s := range []*server{a, b} {
		if strings.Contains(s.logs.String(), "hunter2") {
			t.Errorf("the Redis password was logged:\n%s", s.logs.String())
		}
	}
}
