package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"

	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

// startTLSRun runs the server with a certificate for localhost from
// sharedCA on a loopback TLS port.
func startTLSRun(t *testing.T, extra map[string]string) *server {
	t.Helper()
	certFile, keyFile := sharedCA.writeFiles(t, t.TempDir(), time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), "localhost", "127.0.0.1")
	env := map[string]string{
		"STRANGERS_TLS_ADDR":      "127.0.0.1:0",
		"STRANGERS_TLS_CERT_FILE": certFile,
		"STRANGERS_TLS_KEY_FILE":  keyFile,
	}
	for k, v := range extra {
		env[k] = v
	}
	return startRun(t, env)
}

// tlsPort returns "localhost:<port>" of the shared TLS port.
func (s *server) tlsHost(t *testing.T) string {
	t.Helper()
	addr, ok := s.addrs["tls"].(string)
	if !ok {
		t.Fatalf("no tls address in %v", s.addrs)
	}
	_, port, _ := net.SplitHostPort(addr)
	return "localhost:" + port
}

func TestTLSServesPageOverHTTP1AndH2(t *testing.T) {
	s := startTLSRun(t, nil)
	host := s.tlsHost(t)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sharedCA.pool}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := c.Get("https://" + host + "/")
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		wantProto := "HTTP/1.1"
		if h2 {
			wantProto = "HTTP/2.0"
		}
		if resp.StatusCode != 200 || resp.Proto != wantProto || !strings.Contains(string(body), "Strangers") {
			t.Errorf("h2=%v: %d %s, body %.60q", h2, resp.StatusCode, resp.Proto, body)
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("h2=%v: no CSP header", h2)
		}
	}

	// The plain port redirects to HTTPS but still answers probes.
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(s.url("/some/page?x=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != "https://"+host+"/some/page?x=1" {
		t.Errorf("plain HTTP: %d Location %q, want 301 to https://%s/some/page?x=1", resp.StatusCode, loc, host)
	}
	if code, _ := get(t, s.url("/healthz")); code != 200 {
		t.Errorf("plain /healthz = %d", code)
	}
}

// dialTLSPeer is dialPeer over wss on the shared TLS port.
func dialTLSPeer(t *testing.T, host string) *wsPeer {
	t.Helper()
	return openPeer(t, "wss://"+host+"/ws", wsclient.Options{Origin: "https://" + host, TLS: &tls.Config{RootCAs: sharedCA.pool}})
}

func TestTLSWebSocketAndTURNOverTLS(t *testing.T) {
	s := startTLSRun(t, nil)
	host := s.tlsHost(t)
	a, b := dialTLSPeer(t, host), dialTLSPeer(t, host)
	a.send(signaling.Find{Mode: signaling.ModeText})
	b.send(signaling.Find{Mode: signaling.ModeText})
	ma, mb := expect[signaling.Matched](a, 10*time.Second), expect[signaling.Matched](b, 10*time.Second)

	// Each side's ICE servers offer TURN over TLS on the shared port.
	var creds [2]webrtc.ICEServer
	for i, m := range []*signaling.Matched{ma, mb} {
		for _, srv := range iceServersFrom(m, nil) {
			for _, u := range srv.URLs {
				if u == "turns:"+host+"?transport=tcp" {
					creds[i] = srv
				}
			}
		}
		if creds[i].Username == "" {
			t.Fatalf("matched offers no turns:%s?transport=tcp: %v", host, m.ICEServers)
		}
	}

	// Two pion TURN clients allocate over TLS and relay to each other.
	clients := make([]*turn.Client, 2)
	relays := make([]net.PacketConn, 2)
	for i := range clients {
		conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: sharedCA.pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c, err := turn.NewClient(&turn.ClientConfig{
			STUNServerAddr: host,
			TURNServerAddr: host,
			Conn:           turn.NewSTUNConn(conn),
			Username:       creds[i].Username,
			Password:       creds[i].Credential.(string),
			Realm:          "strangers",
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		relays[i], err = c.Allocate()
		if err != nil {
			t.Fatalf("allocate over TLS: %v", err)
		}
		t.Cleanup(func() { relays[i].Close() })
		clients[i] = c
	}
	// Permissions both ways, then a message from 0 to 1.
	for i, j := range []int{1, 0} {
		if err := clients[i].CreatePermission(relays[j].LocalAddr()); err != nil {
			t.Fatalf("permission %d->%d: %v", i, j, err)
		}
	}
	msg := []byte("through TURN over TLS")
	got := make([]byte, 64)
	relays[1].SetReadDeadline(time.Now().Add(10 * time.Second))
	for attempt := 0; ; attempt++ {
		if _, err := relays[0].WriteTo(msg, relays[1].LocalAddr()); err != nil {
			t.Fatal(err)
		}
		relays[1].SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := relays[1].ReadFrom(got)
		if err == nil {
			if string(got[:n]) != string(msg) {
				t.Fatalf("relayed %q, want %q", got[:n], msg)
			}
			break
		}
		if attempt == 9 {
			t.Fatalf("nothing relayed over TLS: %v", err)
		}
	}
}

func TestTLSCallWithOnlyTURNS(t *testing.T) {
	s := startTLSRun(t, nil)
	host := s.tlsHost(t)
	a, b := dialTLSPeer(t, host), dialTLSPeer(t, host)
	opt := callOptions{relayOnly: true, turnsOnly: true, turnsRoots: sharedCA.pool}
	ra, rb := call(t, a, b, opt, opt)
	for i, r := range []callResult{ra, rb} {
		if r.local != webrtc.ICECandidateTypeRelay || r.relayProtocol != "tls" {
			t.Errorf("side %d: local %s over %q, want relay over tls", i, r.local, r.relayProtocol)
		}
	}
}

func TestTLSCertificateReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t)
	now := time.Now()
	certFile, keyFile := ca.writeFiles(t, dir, now.Add(-time.Hour), now.Add(time.Hour), "old.example.com")
	files, err := loadCertFiles(certFile, keyFile, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	clock := now
	files.now = func() time.Time { return clock }
	name := func() string {
		c, err := files.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.DNSNames[0]
	}
	if got := name(); got != "old.example.com" {
		t.Fatalf("serving %s", got)
	}
	ca.writeFiles(t, dir, now.Add(-time.Hour), now.Add(time.Hour), "new.example.com")
	if got := name(); got != "old.example.com" {
		t.Fatalf("reloaded before the check interval: %s", got)
	}
	clock = clock.Add(2 * certCheckInterval)
	if got := name(); got != "new.example.com" {
		t.Fatalf("after the files changed: serving %s, want new.example.com", got)
	}
	// A half-written renewal keeps the working certificate.
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	clock = clock.Add(2 * certCheckInterval)
	if got := name(); got != "new.example.com" {
		t.Fatalf("after a broken renewal: serving %s", got)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t)
	certFile, keyFile := ca.writeFiles(t, dir, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "chat.example.com")
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"STRANGERS_TLS_CERT_FILE": certFile}, "STRANGERS_TLS_KEY_FILE: must be set with STRANGERS_TLS_CERT_FILE"},
		{map[string]string{"STRANGERS_TLS_KEY_FILE": keyFile}, "STRANGERS_TLS_CERT_FILE: must be set with STRANGERS_TLS_KEY_FILE"},
		{map[string]string{"STRANGERS_ACME_EMAIL": "ops@example.com"}, "STRANGERS_ACME_EMAIL=ops@example.com: ACME is not on: set STRANGERS_ACME_DOMAINS"},
		{map[string]string{"STRANGERS_ACME_DIRECTORY": "https://acme.example.com/dir"}, "STRANGERS_ACME_DIRECTORY=https://acme.example.com/dir: ACME is not on"},
		{map[string]string{"STRANGERS_ACME_DOMAINS": "localhost"}, `STRANGERS_ACME_DOMAINS=localhost: "localhost" is not a domain name`},
		{map[string]string{"STRANGERS_ACME_DOMAINS": "chat.example.com", "STRANGERS_TLS_CERT_FILE": certFile, "STRANGERS_TLS_KEY_FILE": keyFile}, "use either ACME or STRANGERS_TLS_CERT_FILE"},
		{map[string]string{"STRANGERS_ACME_DOMAINS": "chat.example.com", "STRANGERS_ACME_DIRECTORY": "ftp://x"}, "STRANGERS_ACME_DIRECTORY=ftp://x"},
		{map[string]string{"STRANGERS_TLS_ADDR": "443"}, "STRANGERS_TLS_ADDR=443"},
	}
	for _, c := range cases {
		if _, _, err := load(t, c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.env, err, c.want)
		}
	}

	// Problems only loading the files shows: a certificate that does not
	// cover the public host, or no files at all.
	startErr := func(env map[string]string) error {
		e := testEnv()
		e["STRANGERS_TLS_ADDR"] = "127.0.0.1:0"
		for k, v := range env {
			e[k] = v
		}
		return run(t.Context(), func(k string) string { return e[k] }, io.Discard)
	}
	err := startErr(map[string]string{"STRANGERS_TLS_CERT_FILE": certFile, "STRANGERS_TLS_KEY_FILE": keyFile, "STRANGERS_PUBLIC_HOST": "other.example.com"})
	if err == nil || !strings.Contains(err.Error(), "does not cover STRANGERS_PUBLIC_HOST=other.example.com") {
		t.Errorf("cert not covering the public host: %v", err)
	}
	err = startErr(map[string]string{"STRANGERS_TLS_CERT_FILE": filepath.Join(dir, "missing.pem"), "STRANGERS_TLS_KEY_FILE": keyFile})
	if err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing cert file: %v", err)
	}
}
