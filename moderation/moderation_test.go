package moderation

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/strangers-chat/strangers/signaling"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time for the service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// place is where a store keeps its records (a directory, a Redis
// server); open opens a store on it, as a process starting would.
type place struct {
	open func(t *testing.T) Store
}

// backend makes places of one kind of store.
type backend struct {
	name     string
	newPlace func(t *testing.T) place
}

func boltPlace(t *testing.T) place {
	dir := t.TempDir()
	return place{open: func(t *testing.T) Store {
		st, err := OpenBolt(dir)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}}
}

// backends are the stores every Service test runs against.
var backends = []backend{{"bolt", boltPlace}, {"redis", redisPlace}}

// eachBackend runs f against each store.
func eachBackend(t *testing.T, f func(t *testing.T, p place)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.newPlace(t)) })
	}
}

func newService(t *testing.T, p place, clk *clock, cfg Config) *Service {
	t.Helper()
	st := p.open(t)
	cfg.Store = st
	cfg.Now = clk.now
	cfg.SweepEvery = time.Hour
	s, err := New(cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return s
}

func id(c, a string) signaling.Identity { return signaling.Identity{Client: c, Addr: a} }

var jpeg = []byte{0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9}

func report(clk *clock, reporter, reported signaling.Identity) signaling.ReportEvent {
	return signaling.ReportEvent{
		Time: clk.now(), Match: "m", Reporter: reporter, Reported: reported, Reason: "abuse", Note: "rude",
		Chat: []signaling.ChatLine{{Time: clk.now(), From: "reported", Text: "go away"}}, Frame: jpeg,
	}
}

// Three distinct reporters (by address) within the window put a client in
// the shadow pool for ShadowFor; two keys from one address count once;
// everything survives a restart of the service on the same directory.
func TestThresholdShadowPoolAndRestart(t *testing.T) {
	eachBackend(t, testThresholdShadowPoolAndRestart)
}

func testThresholdShadowPoolAndRestart(t *testing.T, dir place) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newService(t, dir, clk, Config{})
	bad := id("bad", "addr-bad")

	s.Reported(report(clk, id("r1", "a1"), bad))
	s.Reported(report(clk, id("r2", "a1"), bad)) // same address: one reporter
	if s.Shadowed(bad, clk.now()) {
		t.Fatal("shadowed after one reporter")
	}
	s.Reported(report(clk, id("r3", "a2"), bad))
	if s.Shadowed(bad, clk.now()) {
		t.Fatal("shadowed after two reporters")
	}
	s.Reported(report(clk, id("r4", "a3"), bad))
	if !s.Shadowed(bad, clk.now()) || !s.Shadowed(id("new-key", "addr-bad"), clk.now()) {
		t.Fatal("not shadowed after three reporters (by key and by address)")
	}
	s.flush()
	waitStats(t, s, func(st Stats) bool { return st.ShadowPool == 1 && st.ReportsOpen == 4 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = newService(t, dir, clk, Config{})
	defer s.Close()
	if !s.Shadowed(bad, clk.now()) {
		t.Fatal("the shadow pool did not survive a restart")
	}
	reports, err := s.Reports()
	if err != nil || len(reports) != 4 {
		t.Fatalf("%d reports after restart (%v)", len(reports), err)
	}
	r, frame, err := s.Report(reports[0].ID)
	if err != nil || !bytes.Equal(frame, jpeg) || r.Note != "rude" || len(r.Chat) != 1 || !r.HasFrame {
		t.Fatalf("report %+v frame %x err %v", r, frame, err)
	}
	clk.add(DefaultShadowFor)
	if s.Shadowed(bad, clk.now()) {
		t.Fatal("still shadowed after ShadowFor")
	}
}

// Reports from a reporter whose reports were dismissed count less.
func TestDismissedReportersCountLess(t *testing.T) { eachBackend(t, testDismissedReportersCountLess) }

func testDismissedReportersCountLess(t *testing.T, p place) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newService(t, p, clk, Config{ReportThreshold: 2})
	defer s.Close()
	crier := id("crier", "ac")
	s.Reported(report(clk, crier, id("x", "ax")))
	s.flush()
	reports, _ := s.Reports()
	if _, err := s.Dismiss(reports[0].ID, "tok"); err != nil {
		t.Fatal(err)
	}
	// Now the crier counts a half: with one honest reporter, 1.5 < 2.
	victim := id("v", "av")
	s.Reported(report(clk, crier, victim))
	s.Reported(report(clk, id("honest", "ah"), victim))
	if s.Shadowed(victim, clk.now()) {
		t.Fatal("a dismissed reporter counted fully")
	}
	s.Reported(report(clk, id("honest2", "ah2"), victim))
	if !s.Shadowed(victim, clk.now()) {
		t.Fatal("2.5 weighted reporters did not reach the threshold of 2")
	}
}

// Reports older than the retention are deleted with their frames.
func TestRetentionDeletesOldReports(t *testing.T) { eachBackend(t, testRetentionDeletesOldReports) }

func testRetentionDeletesOldReports(t *testing.T, p place) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newService(t, p, clk, Config{Retention: 48 * time.Hour})
	defer s.Close()
	s.Reported(report(clk, id("a", "aa"), id("b", "ab")))
	clk.add(24 * time.Hour)
	s.Reported(report(clk, id("c", "ac"), id("d", "ad")))
	s.flush()
	old, _ := s.Reports()
	clk.add(24*time.Hour + time.Second)
	s.Sweep()
	reports, err := s.Reports()
	if err != nil || len(reports) != 1 || reports[0].Reporter.Client != "c" {
		t.Fatalf("after the sweep: %+v (%v)", reports, err)
	}
	if _, _, err := s.Report(old[1].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old report is still there: %v", err)
	}
	waitStats(t, s, func(st Stats) bool { return st.ReportsOpen == 1 })
}

// The ladder: without a duration, bans of one client get longer; a lifted
// ban does not count.
func TestBanLadder(t *testing.T) { eachBackend(t, testBanLadder) }

func testBanLadder(t *testing.T, dir place) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newService(t, dir, clk, Config{AppealContact: "appeals@example.com"})
	for i, want := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		b, n, err := s.Ban(BanRequest{Client: "c", Reason: "spam"}, "tok")
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Until.Sub(b.Created); got != want {
			t.Fatalf("ban %d lasts %v, want %v", i+1, got, want)
		}
		if n.Appeal != "appeals@example.com" || n.Reason != "spam" {
			t.Fatalf("notice %+v", n)
		}
		if _, banned := s.Banned(id("c", ""), clk.now()); !banned {
			t.Fatal("not banned")
		}
		clk.add(want)
		if _, banned := s.Banned(id("c", ""), clk.now()); banned {
			t.Fatal("banned after the ban's end")
		}
	}
	mistake, _, err := s.Ban(BanRequest{Client: "c", Reason: "oops"}, "tok")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lift(mistake.ID, "tok"); err != nil {
		t.Fatal(err)
	}
	if _, banned := s.Banned(id("c", ""), clk.now()); banned {
		t.Fatal("banned after the lift")
	}
	s.Close()
	clk.add(time.Minute)
	s = newService(t, dir, clk, Config{})
	defer s.Close()
	b, _, err := s.Ban(BanRequest{Client: "c", Addr: "x", Reason: "spam"}, "tok")
	if err != nil || b.Until.Sub(b.Created) != 30*24*time.Hour {
		t.Fatalf("fourth ban after a restart: %+v %v", b, err)
	}
	if _, banned := s.Banned(id("other", "x"), clk.now()); !banned {
		t.Fatal("the address is not banned")
	}
	if _, _, err := s.Ban(BanRequest{Reason: "x"}, "tok"); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("a ban of nobody: %v", err)
	}
	if _, _, err := s.Ban(BanRequest{Client: "c"}, "tok"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a ban without a reason: %v", err)
	}
	audit, _ := s.Audit()
	if len(audit) != 6 || audit[0].Action != "ban" || audit[0].Token != "tok" {
		t.Fatalf("audit %+v", audit)
	}
}

func TestOpenBoltLocked(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := OpenBolt(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("a second open: %v, want ErrLocked", err)
	}
}

// fakeHub records enforcements.
type fakeHub struct {
	mu       sync.Mutex
	enforced []signaling.Identity
}

func (f *fakeHub) Enforce(id signaling.Identity, _ signaling.BanNotice) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enforced = append(f.enforced, id)
	return 1
}

func (f *fakeHub) Counts() signaling.Counts { return signaling.Counts{Online: 7} }

func (f *fakeHub) AddrHash(a netip.Addr) string { return "hash-of-" + a.String() }

const testToken = "0123456789abcdef0123456789abcdef"

func newAdminServer(t *testing.T, p place) (*httptest.Server, *Service, *fakeHub, *clock) {
	t.Helper()
	clk := &clock{t: time.Now()}
	s := newService(t, p, clk, Config{})
	t.Cleanup(func() { s.Close() })
	hub := &fakeHub{}
	h, err := NewAdmin(AdminConfig{Service: s, Hub: hub, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, s, hub, clk
}

func call(t *testing.T, srv *httptest.Server, method, path, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAdminAPI(t *testing.T) { eachBackend(t, testAdminAPI) }

func testAdminAPI(t *testing.T, p place) {
	srv, s, hub, clk := newAdminServer(t, p)
	s.Reported(report(clk, id("r", "ar"), id("bad", "abad")))
	s.Reported(report(clk, id("r2", "ar2"), id("meh", "ameh")))
	s.flush()
	waitStats(t, s, func(st Stats) bool { return st.ReportsOpen == 2 })

	// No token, a wrong one, another scheme: 401 on every resource.
	for _, path := range []string{"/api/v1/stats", "/api/v1/reports", "/api/v1/bans", "/api/v1/pool", "/api/v1/audit"} {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + testToken, testToken} {
			hdr := map[string]string{"Authorization": auth}
			if code, h, _ := call(t, srv, "GET", path, "", hdr); code != http.StatusUnauthorized || h.Get("Cache-Control") != "no-store" {
				t.Errorf("GET %s with Authorization %q: %d (Cache-Control %q), want 401", path, auth, code, h.Get("Cache-Control"))
			}
		}
	}
	if code, _, _ := call(t, srv, "POST", "/api/v1/bans", `{"client":"x","reason":"r"}`, map[string]string{"Authorization": ""}); code != http.StatusUnauthorized {
		t.Errorf("POST without a token: %d", code)
	}

	// Cross-site requests are refused, with the token too.
	for _, hdr := range []map[string]string{
		{"Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
	} {
		if code, _, _ := call(t, srv, "POST", "/api/v1/bans", `{"client":"x","reason":"r"}`, hdr); code != http.StatusForbidden {
			t.Errorf("cross-site POST %v: %d, want 403", hdr, code)
		}
	}
	// A write that is not JSON (what a form could send) is refused.
	if code, _, _ := call(t, srv, "POST", "/api/v1/bans", `client=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); code != http.StatusUnsupportedMediaType {
		t.Errorf("form POST: %d, want 415", code)
	}
	// Same origin is fine.
	host := strings.TrimPrefix(srv.URL, "http://")
	if code, _, _ := call(t, srv, "GET", "/api/v1/stats", "", map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"}); code != http.StatusOK {
		t.Errorf("same-origin GET: %d", code)
	}

	// stats
	code, hdr, body := call(t, srv, "GET", "/api/v1/stats", "", nil)
	if code != 200 || hdr.Get("Cache-Control") != "no-store" || !strings.Contains(body, `"online":7`) || !strings.Contains(body, `"reportsOpen":2`) {
		t.Fatalf("stats: %d %s", code, body)
	}
	// reports: list, view with evidence, dismiss, act
	var reports []Report
	_, _, body = call(t, srv, "GET", "/api/v1/reports?status=open", "", nil)
	if err := json.Unmarshal([]byte(body), &reports); err != nil || len(reports) != 2 {
		t.Fatalf("reports: %s (%v)", body, err)
	}
	var view reportView
	_, _, body = call(t, srv, "GET", "/api/v1/reports/"+reports[1].ID, "", nil)
	if err := json.Unmarshal([]byte(body), &view); err != nil || !bytes.Equal(view.Frame, jpeg) || len(view.Chat) != 1 || view.Note != "rude" {
		t.Fatalf("report view: %s (%v)", body, err)
	}
	if code, _, _ := call(t, srv, "GET", "/api/v1/reports/nope", "", nil); code != http.StatusNotFound {
		t.Errorf("unknown report: %d", code)
	}
	meh, bad := reports[0], reports[1]
	if code, _, body := call(t, srv, "POST", "/api/v1/reports/"+meh.ID+"/dismiss", "{}", nil); code != 200 || !strings.Contains(body, `"status":"dismissed"`) {
		t.Fatalf("dismiss: %d %s", code, body)
	}
	code, _, body = call(t, srv, "POST", "/api/v1/reports/"+bad.ID+"/act", `{"reason":"nudity","duration":"24h"}`, nil)
	if code != 200 || !strings.Contains(body, `"status":"actioned"`) || !strings.Contains(body, `"sessionsEnded":1`) {
		t.Fatalf("act: %d %s", code, body)
	}
	if len(hub.enforced) != 1 || hub.enforced[0] != id("bad", "abad") {
		t.Fatalf("enforced %+v", hub.enforced)
	}
	if _, banned := s.Banned(id("bad", ""), clk.now()); !banned {
		t.Fatal("act did not ban")
	}
	// bans: create (by IP), list, lift
	code, _, body = call(t, srv, "POST", "/api/v1/bans", `{"ip":"192.0.2.7","reason":"spam"}`, nil)
	if code != http.StatusCreated || !strings.Contains(body, `"addr":"hash-of-192.0.2.7"`) {
		t.Fatalf("create ban: %d %s", code, body)
	}
	for _, bad := range []string{`{"reason":"spam"}`, `{"client":"x"}`, `{"client":"x","reason":"r","duration":"-1h"}`, `{"client":"x","reason":"r","extra":1}`, `{"ip":"nope","reason":"r"}`} {
		if code, _, body := call(t, srv, "POST", "/api/v1/bans", bad, nil); code != http.StatusBadRequest {
			t.Errorf("POST bans %s: %d %s, want 400", bad, code, body)
		}
	}
	var bans []Ban
	_, _, body = call(t, srv, "GET", "/api/v1/bans", "", nil)
	if err := json.Unmarshal([]byte(body), &bans); err != nil || len(bans) != 2 {
		t.Fatalf("bans: %s", body)
	}
	if code, _, _ := call(t, srv, "DELETE", "/api/v1/bans/"+bans[0].ID, "", nil); code != 200 {
		t.Fatalf("lift: %d", code)
	}
	if code, _, _ := call(t, srv, "DELETE", "/api/v1/bans/nope", "", nil); code != 404 {
		t.Fatalf("lift unknown: %d", code)
	}
	// pool
	for _, r := range []string{"p1", "p2", "p3"} {
		s.Reported(report(clk, id(r, "a"+r), id("shady", "ashady")))
	}
	_, _, body = call(t, srv, "GET", "/api/v1/pool", "", nil)
	if !strings.Contains(body, `"client":"shady"`) {
		t.Fatalf("pool: %s", body)
	}
	if code, _, _ := call(t, srv, "DELETE", "/api/v1/pool/shady", "", nil); code != http.StatusNoContent {
		t.Fatalf("unshadow: %d", code)
	}
	// audit: every action with its time and the token id, not the token
	_, _, body = call(t, srv, "GET", "/api/v1/audit", "", nil)
	var audit []AuditEntry
	if err := json.Unmarshal([]byte(body), &audit); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range audit {
		actions = append(actions, e.Action)
		if e.Token != TokenID(testToken) || e.Time.IsZero() {
			t.Errorf("audit entry %+v", e)
		}
	}
	if got := strings.Join(actions, ","); got != "unshadow,lift,ban,act,ban,dismiss" {
		t.Errorf("audit actions %s", got)
	}
	if strings.Contains(body, testToken) {
		t.Error("the audit log holds the token")
	}
	// The page, with its own CSP.
	code, hdr, body = call(t, srv, "GET", "/", "", map[string]string{"Authorization": ""})
	if code != 200 || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") || !strings.Contains(body, "admin.js") {
		t.Fatalf("page: %d %v", code, hdr)
	}
	if code, _, _ := call(t, srv, "GET", "/api/v1/nothing", "", nil); code != 404 {
		t.Errorf("unknown resource: %d", code)
	}
}
