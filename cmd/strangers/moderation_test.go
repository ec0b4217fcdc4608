package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

const testAdminToken = "moderation-test-token-0123456789"

// adminEnv is the environment of a server with the admin API on an
// ephemeral loopback port and its state in dir.
func adminEnv(t *testing.T, dir string) map[string]string {
	t.Helper()
	token := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(token, []byte(testAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"STRANGERS_STATE_DIR":        dir,
		"STRANGERS_ADMIN_TOKEN_FILE": token,
		"STRANGERS_ADMIN_ADDR":       "127.0.0.1:0",
		"STRANGERS_APPEAL_CONTACT":   "appeals@example.com",
	}
}

// adminCall sends one admin API request with the token and decodes a JSON
// answer into out (when not nil); it returns the status.
func adminCall(t *testing.T, adminAddr, method, path, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+adminAddr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

// proc is the real binary, started by startBinary.
type proc struct {
	cmd         *exec.Cmd
	http, admin string
	mu          sync.Mutex
	logs        bytes.Buffer
	exited      chan error
}

func startBinary(t *testing.T, extra map[string]string) *proc {
	t.Helper()
	bin := buildBinary(t)
	p := &proc{cmd: exec.Command(bin), exited: make(chan error, 1)}
	p.cmd.Env = processEnv(extra)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(sc.Bytes())
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				listening <- m
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case m := <-listening:
		p.http, _ = m["http"].(string)
		p.admin, _ = m["admin"].(string)
	case <-time.After(30 * time.Second):
		t.Fatalf("binary did not start; logs: %s", p.output())
	}
	return p
}

// lockedWriter appends the binary's stderr to its logs under the lock.
type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.logs.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; logs: %s", err, p.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("binary did not exit after SIGTERM")
	}
}

// hello dials /ws and says hello with a client key (may be empty).
func hello(t *testing.T, httpAddr, key string) (*wsclient.Conn, *signaling.Welcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, "ws://"+httpAddr+"/ws", wsclient.Options{Origin: "http://" + httpAddr})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	if err := c.Send(ctx, signaling.Hello{Version: signaling.ProtocolVersion, ClientKey: key}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := m.(*signaling.Welcome); ok {
		return c, w
	}
	if b, ok := m.(*signaling.Banned); ok {
		return c, &signaling.Welcome{Type: signaling.TypeBanned, Session: b.Reason}
	}
	t.Fatalf("answer to hello: %+v", m)
	return nil, nil
}

func waitFor[T any](t *testing.T, c *wsclient.Conn, typ signaling.MsgType) *T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := wsclient.Wait[T](ctx, c, typ)
	if err != nil {
		t.Fatalf("waiting for %s: %v", typ, err)
	}
	return m
}

func send(t *testing.T, c *wsclient.Conn, msg any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
}

// testJPEG is a 1×1 JPEG.
var testJPEG = []byte{
	0xff, 0xd8, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06, 0x05, 0x08, 0x07, 0x07,
	0x07, 0x09, 0x09, 0x08, 0x0a, 0x0c, 0x14, 0x0d, 0x0c, 0x0b, 0x0b, 0x0c, 0x19, 0x12, 0x13, 0x0f,
	0x14, 0x1d, 0x1a, 0x1f, 0x1e, 0x1d, 0x1a, 0x1c, 0x1c, 0x20, 0x24, 0x2e, 0x27, 0x20, 0x22, 0x2c,
	0x23, 0x1c, 0x1c, 0x28, 0x37, 0x29, 0x2c, 0x30, 0x31, 0x34, 0x34, 0x34, 0x1f, 0x27, 0x39, 0x3d,
	0x38, 0x32, 0x3c, 0x2e, 0x33, 0x34, 0x32, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x01, 0x00, 0x01,
	0x01, 0x01, 0x11, 0x00, 0xff, 0xc4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0xff, 0xda, 0x00, 0x08,
	0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, 0x2a, 0x9f, 0xff, 0xd9,
}

type adminReport struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Note   string `json:"note"`
	Chat   []struct {
		From, Text string
	} `json:"chat"`
	Frame []byte `json:"frame"`
	Ban   string `json:"ban"`
}

// A report with its evidence, the ban a moderator makes from it and the
// audit log are all there after the real binary restarts on the same state
// directory; the banned browser is still refused, and the other keeps its
// client key.
func TestModerationSurvivesRestartOfTheBinary(t *testing.T) {
	t.Parallel()
	env := adminEnv(t, t.TempDir())
	p := startBinary(t, env)
	if p.admin == "" {
		t.Fatalf("no admin address in the listening line; logs: %s", p.output())
	}

	a, wa := hello(t, p.http, "")
	b, wb := hello(t, p.http, "")
	send(t, a, signaling.Find{Mode: signaling.ModeVideo})
	waitFor[signaling.Waiting](t, a, signaling.TypeWaiting)
	send(t, b, signaling.Find{Mode: signaling.ModeVideo})
	m := waitFor[signaling.Matched](t, a, signaling.TypeMatched)
	waitFor[signaling.Matched](t, b, signaling.TypeMatched)
	send(t, b, signaling.Chat{Match: m.Match, Text: "something nasty"})
	waitFor[signaling.Chat](t, a, signaling.TypeChat)
	send(t, a, signaling.Next{})
	waitFor[signaling.PartnerLeft](t, b, signaling.TypePartnerLeft)
	// After Next: the match that just ended.
	send(t, a, signaling.Report{Match: m.Match, Reason: "abuse", Note: "rude", Frame: testJPEG})

	var reports []adminReport
	testsupport.WaitFor(t, 10*time.Second, "the report in the admin API", func() bool {
		return adminCall(t, p.admin, "GET", "/api/v1/reports", "", &reports) == 200 && len(reports) == 1
	})
	var act struct {
		Ban struct {
			ID    string    `json:"id"`
			Until time.Time `json:"until"`
		} `json:"ban"`
	}
	if code := adminCall(t, p.admin, "POST", "/api/v1/reports/"+reports[0].ID+"/act", `{"reason":"abuse in chat","duration":"2h","scope":"client"}`, &act); code != 200 {
		t.Fatalf("act: %d", code)
	}
	banned := waitFor[signaling.Banned](t, b, signaling.TypeBanned)
	if banned.Reason != "abuse in chat" || banned.Appeal != "appeals@example.com" || banned.Until != act.Ban.Until.UnixMilli() {
		t.Fatalf("banned %+v, ban %+v", banned, act.Ban)
	}
	p.stop(t)

	p = startBinary(t, env)
	var bans []struct {
		ID     string `json:"id"`
		Client string `json:"client"`
	}
	adminCall(t, p.admin, "GET", "/api/v1/bans", "", &bans)
	idB, _, _ := strings.Cut(wb.ClientKey, ".")
	if len(bans) != 1 || bans[0].ID != act.Ban.ID || bans[0].Client != idB {
		t.Fatalf("bans after the restart: %+v", bans)
	}
	var rep adminReport
	if code := adminCall(t, p.admin, "GET", "/api/v1/reports/"+reports[0].ID, "", &rep); code != 200 {
		t.Fatalf("report after the restart: %d", code)
	}
	if rep.Status != "actioned" || rep.Ban != act.Ban.ID || rep.Note != "rude" || !bytes.Equal(rep.Frame, testJPEG) ||
		len(rep.Chat) != 1 || rep.Chat[0].From != "reported" || rep.Chat[0].Text != "something nasty" {
		t.Fatalf("report after the restart: %+v", rep)
	}
	var audit []struct{ Action, Token string }
	adminCall(t, p.admin, "GET", "/api/v1/audit", "", &audit)
	if len(audit) != 2 || audit[0].Action != "act" || audit[1].Action != "ban" || audit[0].Token == "" || strings.Contains(audit[0].Token, testAdminToken) {
		t.Fatalf("audit after the restart: %+v", audit)
	}

	// The banned browser is refused, reconnecting with its key; the other
	// keeps its key (the signing key was kept too).
	_, again := hello(t, p.http, wb.ClientKey)
	if again.Type != signaling.TypeBanned {
		t.Fatalf("the banned key got %+v", again)
	}
	if _, w := hello(t, p.http, wa.ClientKey); w.ClientKey != wa.ClientKey {
		t.Fatalf("client key after the restart %q, want %q", w.ClientKey, wa.ClientKey)
	}
	p.stop(t)
}

// The admin listener does not start without a token, and says so; with
// one, it refuses requests without the token or from another site.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	s := startRun(t, nil)
	if _, ok := s.addrs["admin"]; ok {
		t.Fatalf("admin listener without a token: %v", s.addrs)
	}
	if _, ok := s.logs.waitFor(func(m map[string]any) bool {
		return strings.Contains(m["msg"].(string), "admin API off")
	}, 10*time.Second); !ok {
		t.Fatalf("no log line about the admin API being off:\n%s", s.logs.String())
	}

	s = startRun(t, adminEnv(t, t.TempDir()))
	admin := s.addrs["admin"].(string)
	for _, tc := range []struct {
		hdr  map[string]string
		want int
	}{
		{map[string]string{}, http.StatusUnauthorized},
		{map[string]string{"Authorization": "Bearer " + testAdminToken}, http.StatusOK},
		{map[string]string{"Authorization": "Bearer " + testAdminToken, "Origin": "http://" + s.addrs["http"].(string)}, http.StatusForbidden},
		{map[string]string{"Authorization": "Bearer " + testAdminToken, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
	} {
		req, _ := http.NewRequest("GET", "http://"+admin+"/api/v1/stats", nil)
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET /api/v1/stats with %v: %d (Cache-Control %q), want %d", tc.hdr, resp.StatusCode, resp.Header.Get("Cache-Control"), tc.want)
		}
	}
}

// A ban revokes the banned user's relay allocations at once, although an
// ended session's would live on for its grace.
func TestBanRevokesRelayAllocations(t *testing.T) {
	t.Parallel()
	env := adminEnv(t, t.TempDir())
	env["STRANGERS_TURN_SESSION_GRACE"] = "1h"
	s := startRun(t, env)
	httpAddr, admin := s.addrs["http"].(string), s.addrs["admin"].(string)

	b, wb := hello(t, httpAddr, "")
	send(t, b, signaling.ICERequest{})
	addr, cred := turnUDP(t, waitFor[signaling.ICEReply](t, b, signaling.TypeICE))
	if !allocateUDP(t, addr, cred) {
		t.Fatal("no allocation before the ban")
	}
	active := func() float64 {
		f := metricFamilies(t, s)["strangers_relay_allocations_active"]
		if f == nil {
			return -1
		}
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	if n := active(); n != 1 {
		t.Fatalf("allocations_active = %v, want 1", n)
	}
	idB, _, _ := strings.Cut(wb.ClientKey, ".")
	if code := adminCall(t, admin, "POST", "/api/v1/bans", `{"client":"`+idB+`","reason":"spam"}`, nil); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/bans: %d", code)
	}
	waitFor[signaling.Banned](t, b, signaling.TypeBanned)
	testsupport.WaitFor(t, 10*time.Second, "the banned session's allocation to close", func() bool { return active() == 0 })
	if allocateUDP(t, addr, cred) {
		t.Fatal("the banned session's credential allocated again")
	}
}

// A process without a home directory (a service started without one) and
// no STRANGERS_STATE_DIR still starts: moderation state goes to a
// temporary directory, removed on close, and the log says so.
func TestModerationWithoutHomeUsesATemporaryDirectory(t *testing.T) {
	t.Setenv("HOME", "")
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	m, err := openModeration(settings{}, func(string) string { return "" }, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("openModeration without a home directory: %v", err)
	}
	if m.tempDir == "" || m.dir != m.tempDir {
		t.Errorf("state in %q (temporary %q), want a temporary directory", m.dir, m.tempDir)
	}
	if !strings.Contains(logs.String(), "STRANGERS_STATE_DIR") {
		t.Errorf("the log does not tell to set STRANGERS_STATE_DIR: %s", logs.String())
	}
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.tempDir); !os.IsNotExist(err) {
		t.Errorf("temporary state directory %s left behind: %v", m.tempDir, err)
	}
}
