package moderation

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
)

// propagation bounds how long a change made through one instance may
// take to reach another (the product promises a few seconds).
const propagation = 10 * time.Second

// redisPlace is a fresh redis-server (skipped without one unless
// STRANGERS_TEST_REQUIRE=all); each open is a new connection to it.
func redisPlace(t *testing.T) place {
	srv := testsupport.StartRedis(t, testsupport.RedisOptions{Password: "test-password"})
	return place{open: func(t *testing.T) Store { return openRedis(t, srv.URL()) }}
}

func openRedis(t *testing.T, url string) *RedisStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := OpenRedis(ctx, RedisConfig{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitStats waits until the service's figures satisfy ok: with a shared
// store, they follow the store a moment after each write.
func waitStats(t *testing.T, s *Service, ok func(Stats) bool) {
	t.Helper()
	if !testsupport.Eventually(propagation, func() bool { return ok(s.Stats()) }) {
		t.Fatalf("stats %+v", s.Stats())
	}
}

// The Store contract, on both stores: listings oldest first (by id, or
// by client), frames beside reports, deletion of old reports with their
// frames and the count of open ones, secrets kept.
func TestStoreConformance(t *testing.T) {
	eachBackend(t, func(t *testing.T, p place) {
		st := p.open(t)
		defer st.Close()
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

		key, err := st.Secret("identity", 32)
		if err != nil || len(key) != 32 {
			t.Fatalf("secret: %x %v", key, err)
		}
		if again, err := st.Secret("identity", 32); err != nil || !bytes.Equal(again, key) {
			t.Fatalf("the secret changed: %x %v", again, err)
		}
		if other, _ := st.Secret("other", 32); bytes.Equal(other, key) {
			t.Fatal("two names, one secret")
		}

		var ids []string
		for i := range 5 {
			ids = append(ids, newID(t0.Add(time.Duration(i)*time.Minute), uint64(i)))
		}
		for _, i := range []int{3, 0, 4, 1, 2} { // stored out of order
			b := Ban{ID: ids[i], Client: fmt.Sprint("c", i), Reason: "r", Created: t0, Until: t0.Add(time.Hour)}
			if err := st.PutBan(b); err != nil {
				t.Fatal(err)
			}
			r := Report{ID: ids[i], Time: t0.Add(time.Duration(i) * time.Minute), Status: StatusOpen, Chat: []signaling.ChatLine{}}
			if i == 1 {
				r.Status = StatusDismissed
			}
			var frame []byte
			if i%2 == 0 {
				frame, r.HasFrame = []byte{byte(i), 0xFF}, true
			}
			if err := st.PutReport(r, frame); err != nil {
				t.Fatal(err)
			}
			if err := st.AppendAudit(AuditEntry{ID: ids[i], Time: r.Time, Action: "ban"}); err != nil {
				t.Fatal(err)
			}
		}
		bans, err := st.Bans()
		if err != nil || !slices.Equal(banIDs(bans), ids) {
			t.Fatalf("bans %v (%v), want %v", banIDs(bans), err, ids)
		}
		audit, err := st.Audit()
		if err != nil || len(audit) != 5 || audit[0].ID != ids[0] || audit[4].ID != ids[4] {
			t.Fatalf("audit %+v (%v)", audit, err)
		}
		reports, err := st.Reports()
		if err != nil || len(reports) != 5 || reports[0].ID != ids[0] || reports[4].ID != ids[4] {
			t.Fatalf("reports %+v (%v)", reports, err)
		}
		// A report updated without a frame keeps the one it has.
		r, frame, err := st.Report(ids[2])
		if err != nil || !bytes.Equal(frame, []byte{2, 0xFF}) {
			t.Fatalf("report %s: %x %v", ids[2], frame, err)
		}
		r.Status = StatusDismissed
		if err := st.PutReport(r, nil); err != nil {
			t.Fatal(err)
		}
		if r, frame, err := st.Report(ids[2]); err != nil || r.Status != StatusDismissed || !bytes.Equal(frame, []byte{2, 0xFF}) {
			t.Fatalf("updated report: %+v %x %v", r, frame, err)
		}
		if _, frame, err := st.Report(ids[1]); err != nil || frame != nil {
			t.Fatalf("a report without a frame: %x %v", frame, err)
		}
		if _, _, err := st.Report("nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an unknown report: %v", err)
		}

		// Before t0+2m: reports 0 (open) and 1 (dismissed).
		n, open, err := st.DeleteReportsBefore(t0.Add(2 * time.Minute))
		if err != nil || n != 2 || open != 1 {
			t.Fatalf("deleted %d (%d open), %v; want 2 (1 open)", n, open, err)
		}
		if n, _, err := st.DeleteReportsBefore(t0.Add(2 * time.Minute)); err != nil || n != 0 {
			t.Fatalf("deleted %d again, %v", n, err)
		}
		if _, _, err := st.Report(ids[0]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a deleted report: %v", err)
		}
		if reports, _ := st.Reports(); len(reports) != 3 || reports[0].ID != ids[2] {
			t.Fatalf("after deletion: %+v", reports)
		}
		if r, ok := st.(*RedisStore); ok {
			if n, err := r.OpenReports(); err != nil || n != 2 {
				t.Fatalf("open reports %d (%v), want 2", n, err)
			}
		}

		for _, c := range []string{"b", "a", "c"} {
			if err := st.PutPool(PoolEntry{Client: c, Since: t0, Until: t0.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if err := st.PutReporter(Reporter{Client: c, Reports: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.DeletePool("b"); err != nil {
			t.Fatal(err)
		}
		pool, err := st.Pool()
		if err != nil || len(pool) != 2 || pool[0].Client != "a" || pool[1].Client != "c" {
			t.Fatalf("pool %+v (%v)", pool, err)
		}
		reporters, err := st.Reporters()
		if err != nil || len(reporters) != 3 || reporters[0].Client != "a" || reporters[2].Client != "c" {
			t.Fatalf("reporters %+v (%v)", reporters, err)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func banIDs(bans []Ban) []string {
	var out []string
	for _, b := range bans {
		out = append(out, b.ID)
	}
	return out
}

// Every instance sharing a Redis gets the same secret, so all sign and
// check client keys alike.
func TestRedisSecretShared(t *testing.T) {
	srv := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := openRedis(t, srv.URL()), openRedis(t, srv.URL())
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	keys := make([][]byte, 8)
	for i := range keys {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			k, err := st.Secret("identity", signaling.IdentityKeyLen)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if len(k) != signaling.IdentityKeyLen || !bytes.Equal(k, keys[0]) {
			t.Fatalf("secrets differ: %x and %x", keys[0], k)
		}
	}
	// Asked for another length, it is replaced, once for everyone.
	long, err := a.Secret("identity", 64)
	if err != nil || len(long) != 64 {
		t.Fatal(long, err)
	}
	if again, _ := b.Secret("identity", 64); !bytes.Equal(again, long) {
		t.Fatal("the replaced secret differs between instances")
	}
}

func TestOpenRedisErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := OpenRedis(ctx, RedisConfig{URL: "http://user:hunter2@host"}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a wrong scheme: %v", err)
	}
	if _, err := OpenRedis(ctx, RedisConfig{URL: "redis://user:hunter2@ho st:1\x7f"}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a URL that does not parse: %v", err)
	}
	if _, err := OpenRedis(ctx, RedisConfig{URL: "redis://127.0.0.1:1", TLS: &tls.Config{}}); err == nil || !strings.Contains(err.Error(), "rediss://") {
		t.Fatalf("TLS with a redis:// URL: %v", err)
	}
	// Nothing listens on the port of a stopped server.
	srv := testsupport.StartRedis(t, testsupport.RedisOptions{Password: "hunter2"})
	url := srv.URL()
	srv.Stop()
	_, err := OpenRedis(ctx, RedisConfig{URL: url, Timeout: 2 * time.Second})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), srv.Addr()) {
		t.Fatalf("no server: %v", err)
	}
}

// banLog records the bans OnBan hands over.
type banLog struct {
	mu   sync.Mutex
	bans []Ban
}

func (l *banLog) onBan(b Ban, n signaling.BanNotice) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n.Reason != b.Reason || !n.Until.Equal(b.Until) {
		panic(fmt.Sprintf("notice %+v for ban %+v", n, b))
	}
	l.bans = append(l.bans, b)
}

func (l *banLog) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return banIDs(l.bans)
}

// Two instances sharing a Redis: a ban, a lift and the shadow pool made
// through one hold on the other within moments; the other's OnBan is
// handed the new ban (to end its live sessions), the first's is not.
func TestSharedAcrossInstances(t *testing.T) {
	p := redisPlace(t)
	clk := &clock{t: time.Now()}
	var logA, logB banLog
	a := newService(t, p, clk, Config{OnBan: logA.onBan, ReportThreshold: 2, AppealContact: "appeals@example.com"})
	defer a.Close()
	b := newService(t, p, clk, Config{OnBan: logB.onBan, ReportThreshold: 2, AppealContact: "appeals@example.com"})
	defer b.Close()
	bad := id("bad", "addr-bad")

	ban, _, err := a.Ban(BanRequest{Client: "bad", Reason: "spam", Duration: time.Hour}, "tok")
	if err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, propagation, "the ban on the other instance", func() bool {
		_, banned := b.Banned(bad, clk.now())
		return banned && slices.Equal(logB.ids(), []string{ban.ID})
	})
	if n, _ := b.Banned(bad, clk.now()); n.Reason != "spam" || n.Appeal != "appeals@example.com" {
		t.Fatalf("notice on the other instance: %+v", n)
	}
	if _, err := b.Lift(ban.ID, "tok2"); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, propagation, "the lift on the first instance", func() bool {
		_, banned := a.Banned(bad, clk.now())
		return !banned
	})
	// A ban made on b after the lift: a learns of it, b's own OnBan is
	// not called for it.
	ban2, _, err := b.Ban(BanRequest{Addr: "addr-bad", Reason: "again", Duration: time.Hour}, "tok")
	if err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, propagation, "the second ban on the first instance", func() bool {
		_, banned := a.Banned(id("other-key", "addr-bad"), clk.now())
		return banned && slices.Equal(logA.ids(), []string{ban2.ID})
	})
	if got := logB.ids(); !slices.Equal(got, []string{ban.ID}) {
		t.Fatalf("b's OnBan got %v, want only %s", got, ban.ID)
	}

	// Reports through a put a client in the shadow pool: b has it too.
	shady := id("shady", "addr-shady")
	a.Reported(report(clk, id("r1", "a1"), shady))
	a.Reported(report(clk, id("r2", "a2"), shady))
	if !a.Shadowed(shady, clk.now()) {
		t.Fatal("not shadowed where reported")
	}
	testsupport.WaitFor(t, propagation, "the shadow pool on the other instance", func() bool {
		return b.Shadowed(shady, clk.now()) && b.Shadowed(id("new-key", "addr-shady"), clk.now())
	})
	waitStats(t, b, func(st Stats) bool { return st.ReportsOpen == 2 && st.ShadowPool == 1 && st.BansInForce == 1 })
	if err := b.Unshadow("shady", "tok"); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, propagation, "the unshadow on the first instance", func() bool {
		return !a.Shadowed(shady, clk.now())
	})

	// Reports made through a are listed and dismissed through b; the
	// reporter's dismissal weighs on a's count too.
	a.flush()
	reports, err := b.Reports()
	if err != nil || len(reports) != 2 {
		t.Fatalf("reports on b: %d (%v)", len(reports), err)
	}
	if _, err := b.Dismiss(reports[0].ID, "tok"); err != nil {
		t.Fatal(err)
	}
	reporter := reports[0].Reporter.Client
	testsupport.WaitFor(t, propagation, "the reporter's record on the first instance", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		r := a.reporters[reporter]
		return r != nil && r.Dismissed == 1
	})
	waitStats(t, a, func(st Stats) bool { return st.ReportsOpen == 1 })
}

// An instance that starts while the others have made bans finds them, and
// a change notice missed (a restarted subscription) is made up for.
func TestSharedReloadAfterMissedChanges(t *testing.T) {
	srv := testsupport.StartRedis(t, testsupport.RedisOptions{})
	p := place{open: func(t *testing.T) Store { return openRedis(t, srv.URL()) }}
	clk := &clock{t: time.Now()}
	var logB banLog
	a := newService(t, p, clk, Config{})
	defer a.Close()
	if _, _, err := a.Ban(BanRequest{Client: "early", Reason: "spam", Duration: time.Hour}, "tok"); err != nil {
		t.Fatal(err)
	}
	b := newService(t, p, clk, Config{OnBan: logB.onBan, ReloadEvery: time.Hour})
	defer b.Close()
	if _, banned := b.Banned(id("early", ""), clk.now()); !banned {
		t.Fatal("a ban made before the start is not loaded")
	}
	// b's subscription is up, and the reload that follows its start is
	// done, once b sees a ban made after its start.
	if _, _, err := a.Ban(BanRequest{Client: "probe", Reason: "spam", Duration: time.Hour}, "tok"); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 3*propagation, "b to see a ban made after it started", func() bool {
		_, banned := b.Banned(id("probe", ""), clk.now())
		return banned
	})
	// Written behind the services' back (no notice), then the
	// subscriptions' connections are cut: they resume, and everything is
	// reloaded.
	st := openRedis(t, srv.URL())
	defer st.Close()
	silent := Ban{ID: newID(clk.now(), 1), Client: "silent", Reason: "r", Created: clk.now(), Until: clk.now().Add(time.Hour)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.c.HSet(ctx, rBans, silent.ID, mustJSON(t, silent)).Err(); err != nil {
		t.Fatal(err)
	}
	if _, banned := b.Banned(id("silent", ""), clk.now()); banned {
		t.Fatal("banned without a notice or a reload")
	}
	if err := st.c.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 3*propagation, "the reload after the subscription resumed", func() bool {
		_, banned := b.Banned(id("silent", ""), clk.now())
		return banned && slices.Contains(logB.ids(), silent.ID)
	})
}

// Redis restarted without its data: the instances that follow it put the
// identity key back, so one started afterwards signs client keys with the
// same key as the running ones.
func TestRedisSecretRestoredAfterDataLoss(t *testing.T) {
	srv := testsupport.StartRedis(t, testsupport.RedisOptions{})
	clk := &clock{t: time.Now()}
	p := place{open: func(t *testing.T) Store { return openRedis(t, srv.URL()) }}
	running := newService(t, p, clk, Config{})
	defer running.Close()
	key, err := running.cfg.Store.Secret("identity", signaling.IdentityKeyLen)
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart(false)
	probe := openRedis(t, srv.URL())
	defer probe.Close()
	testsupport.WaitFor(t, propagation, "the identity key back in Redis", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		v, err := probe.c.Get(ctx, rSecretPrefix+"identity").Bytes()
		return err == nil && bytes.Equal(v, key)
	})
	if later, err := probe.Secret("identity", signaling.IdentityKeyLen); err != nil || !bytes.Equal(later, key) {
		t.Fatalf("a later instance's key %x (%v), want the running one's", later, err)
	}
}

// A change whose notice was lost (written without one, as if the
// subscription missed it) is found by the periodic reload, which the
// store's version starts.
func TestSharedPeriodicReload(t *testing.T) {
	srv := testsupport.StartRedis(t, testsupport.RedisOptions{})
	p := place{open: func(t *testing.T) Store { return openRedis(t, srv.URL()) }}
	clk := &clock{t: time.Now()}
	var log banLog
	s := newService(t, p, clk, Config{OnBan: log.onBan, ReloadEvery: 50 * time.Millisecond})
	defer s.Close()
	st := openRedis(t, srv.URL())
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lost := Ban{ID: newID(clk.now(), 1), Client: "lost", Reason: "r", Created: clk.now(), Until: clk.now().Add(time.Hour)}
	pool := PoolEntry{Client: "shady", Since: clk.now(), Until: clk.now().Add(time.Hour)}
	if _, err := st.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, rBans, lost.ID, mustJSON(t, lost))
		p.HSet(ctx, rPool, pool.Client, mustJSON(t, pool))
		p.Incr(ctx, rVersion)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, propagation, "the periodic reload", func() bool {
		_, banned := s.Banned(id("lost", ""), clk.now())
		return banned && s.Shadowed(id("shady", ""), clk.now()) && slices.Equal(log.ids(), []string{lost.ID})
	})
}

// Reporters on different instances add up towards the shadow pool.
func TestSharedReportsAddUp(t *testing.T) {
	p := redisPlace(t)
	clk := &clock{t: time.Now()}
	a := newService(t, p, clk, Config{ReportThreshold: 3})
	defer a.Close()
	b := newService(t, p, clk, Config{ReportThreshold: 3})
	defer b.Close()
	shady := id("shady", "addr-shady")
	a.Reported(report(clk, id("r1", "a1"), shady))
	waitStats(t, b, func(st Stats) bool { return st.ReportsOpen == 1 })
	b.Reported(report(clk, id("r2", "a2"), shady))
	b.Reported(report(clk, id("r2-again", "a2"), shady)) // one reporter (one address)
	waitStats(t, a, func(st Stats) bool { return st.ReportsOpen == 3 })
	if a.Shadowed(shady, clk.now()) || b.Shadowed(shady, clk.now()) {
		t.Fatal("shadowed after two reporters")
	}
	a.Reported(report(clk, id("r3", "a3"), shady))
	if !a.Shadowed(shady, clk.now()) {
		t.Fatal("three reporters on two instances did not add up")
	}
	testsupport.WaitFor(t, propagation, "the shadow pool on the other instance", func() bool { return b.Shadowed(shady, clk.now()) })
}

// Redis away: the service answers the matchmaker from memory, a ban fails
// with an error, the failure is logged; Redis back (with its data): what
// other instances write reaches it again, and the log says so.
func TestSharedRedisAway(t *testing.T) {
	srv := testsupport.StartRedis(t, testsupport.RedisOptions{Persist: true})
	p := place{open: func(t *testing.T) Store { return openRedis(t, srv.URL()) }}
	clk := &clock{t: time.Now()}
	var logs testsupport.LogBuffer
	a := newService(t, p, clk, Config{ReloadEvery: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer a.Close()
	if _, _, err := a.Ban(BanRequest{Client: "before", Reason: "r", Duration: time.Hour}, "tok"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, banned := a.Banned(id("before", ""), clk.now()); !banned {
		t.Fatal("a ban forgotten while Redis is away")
	}
	if _, _, err := a.Ban(BanRequest{Client: "during", Reason: "r", Duration: time.Hour}, "tok"); err == nil || !strings.Contains(err.Error(), srv.Addr()) {
		t.Fatalf("a ban while Redis is away: %v", err)
	}
	testsupport.WaitFor(t, propagation, "the failure in the log", func() bool {
		return strings.Contains(logs.String(), "reloading moderation records from the shared store failed")
	})
	srv.Start()
	b := newService(t, p, clk, Config{})
	defer b.Close()
	if _, _, err := b.Ban(BanRequest{Client: "after", Reason: "r", Duration: time.Hour}, "tok"); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, propagation, "the ban made after Redis came back", func() bool {
		_, after := a.Banned(id("after", ""), clk.now())
		_, before := a.Banned(id("before", ""), clk.now())
		return after && before && strings.Contains(logs.String(), "the shared store answers again")
	})
}
