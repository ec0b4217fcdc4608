package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// freePort returns a loopback TCP port that was free a moment ago (the
// ACME server must be told our TLS port before we listen on it).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// goTool builds a tool listed in go.mod (go build caches it) into dir.
// The go command may download the tool's module, so it runs in the
// environment the tests were started with: the tests set no process-wide
// variable (such as SSL_CERT_FILE) that would change whom it trusts.
func goTool(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// startProcess starts a helper process and ends it (by PID) when the test
// ends; its output is logged on failure.
func startProcess(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
}

// pebble is a local ACME server (Pebble) with a fake DNS server that
// resolves every name to 127.0.0.1, started for one test.
type pebble struct {
	directory string         // ACME directory URL
	caFile    string         // roots that Pebble's API certificate chains to
	roots     *x509.CertPool // roots of the certificates Pebble issues
	apiPort   int
}

// startPebble starts Pebble, which validates TLS-ALPN-01 on 127.0.0.1:tlsPort
// and HTTP-01 on 127.0.0.1:httpPort.
func startPebble(t *testing.T, tlsPort, httpPort int) *pebble {
	t.Helper()
	dir := t.TempDir()
	bin := goTool(t, dir, "github.com/letsencrypt/pebble/v2/cmd/pebble")
	dnsSrv := goTool(t, dir, "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv")

	dnsPort, mgmtPort := freePort(t), freePort(t)
	startProcess(t, nil, dnsSrv,
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")

	// Pebble serves its API with a certificate from our test CA, which
	// the binary is told to trust with STRANGERS_ACME_CA_FILE.
	pebbleCert, pebbleKey := sharedCA.writeFiles(t, dir, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "127.0.0.1")
	p := &pebble{caFile: filepath.Join(dir, "ca.pem"), apiPort: freePort(t)}
	os.WriteFile(p.caFile, sharedCA.pem, 0o600)
	adminPort := freePort(t)
	var cfg struct {
		Pebble map[string]any `json:"pebble"`
	}
	cfg.Pebble = map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", p.apiPort),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", adminPort),
		"certificate":             pebbleCert,
		"privateKey":              pebbleKey,
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	data, _ := json.Marshal(cfg)
	os.WriteFile(cfgFile, data, 0o600)
	startProcess(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, bin,
		"-config", cfgFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	p.directory = fmt.Sprintf("https://127.0.0.1:%d/dir", p.apiPort)

	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sharedCA.pool}}}
	defer api.CloseIdleConnections()
	testsupport.WaitFor(t, 30*time.Second, "Pebble to serve its directory", func() bool {
		resp, err := api.Get(p.directory)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// Pebble's root, to verify what the binary will serve.
	resp, err := api.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.roots = x509.NewCertPool()
	if !p.roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("no root from Pebble: %q", rootPEM)
	}
	return p
}

const acmeDomain = "chat.strangers.test"

// startACMERun starts the binary getting certificates from p for acmeDomain.
func startACMERun(t *testing.T, p *pebble, httpPort, tlsPort int) *server {
	t.Helper()
	cache := filepath.Join(t.TempDir(), "acme-cache")
	s := startRun(t, map[string]string{
		"STRANGERS_HTTP_ADDR":      fmt.Sprintf("127.0.0.1:%d", httpPort),
		"STRANGERS_TLS_ADDR":       fmt.Sprintf("127.0.0.1:%d", tlsPort),
		"STRANGERS_ACME_DOMAINS":   acmeDomain,
		"STRANGERS_ACME_EMAIL":     "ops@strangers.test",
		"STRANGERS_ACME_DIRECTORY": p.directory,
		"STRANGERS_ACME_CACHE":     cache,
		"STRANGERS_ACME_CA_FILE":   p.caFile,
	})
	if s.addrs["tls_mode"] != "acme" || s.addrs["public_host"] != acmeDomain {
		t.Errorf("startup line: tls_mode %v public_host %v", s.addrs["tls_mode"], s.addrs["public_host"])
	}
	t.Cleanup(func() {
		// The certificate was cached for the next start.
		if entries, _ := os.ReadDir(cache); !t.Failed() && len(entries) < 2 {
			t.Errorf("ACME cache holds %d entries, want the account key and the certificate", len(entries))
		}
	})
	return s
}

// expectACMECertificate makes the first handshake for acmeDomain, which
// has the binary order a certificate, then checks it is served and works
// for a page request.
func expectACMECertificate(t *testing.T, p *pebble, tlsPort int) {
	t.Helper()
	var state tls.ConnectionState
	testsupport.WaitFor(t, 90*time.Second, "a certificate issued by Pebble", func() bool {
		d := tls.Dialer{Config: &tls.Config{ServerName: acmeDomain, RootCAs: p.roots}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort))
		if err != nil {
			t.Logf("handshake: %v", err)
			return false
		}
		state = c.(*tls.Conn).ConnectionState()
		c.Close()
		return true
	})
	if leaf := state.PeerCertificates[0]; leaf.VerifyHostname(acmeDomain) != nil {
		t.Errorf("served certificate names %v, want %s", leaf.DNSNames, acmeDomain)
	}
	page := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: acmeDomain, RootCAs: p.roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", tlsPort))
		},
	}}
	defer page.CloseIdleConnections()
	resp, err := page.Get("https://" + acmeDomain + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz over the ACME certificate: %d", resp.StatusCode)
	}
}

// TestACMEOverTLSALPN has Pebble validate TLS-ALPN-01 through the shared
// TLS port's demultiplexer.
func TestACMEOverTLSALPN(t *testing.T) {
	httpPort, tlsPort := freePort(t), freePort(t)
	p := startPebble(t, tlsPort, freePort(t))
	startACMERun(t, p, httpPort, tlsPort)
	expectACMECertificate(t, p, tlsPort)
}

// TestACMEOverHTTP01 has Pebble find nothing on the TLS-ALPN-01 port, so
// the binary falls back to HTTP-01, answered by its plain HTTP listener
// (the one that otherwise redirects to HTTPS).
func TestACMEOverHTTP01(t *testing.T) {
	httpPort, tlsPort := freePort(t), freePort(t)
	p := startPebble(t, freePort(t), httpPort)
	startACMERun(t, p, httpPort, tlsPort)
	expectACMECertificate(t, p, tlsPort)
}
