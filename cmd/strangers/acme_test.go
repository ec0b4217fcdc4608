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
func goTool(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
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

// TestACMEObtainsCertificateFromLocalCA runs Pebble (a local ACME server)
// with a fake DNS server that resolves every name to 127.0.0.1, and checks
// that the binary obtains a certificate over TLS-ALPN-01 through the shared
// TLS port's demultiplexer and then serves it.
func TestACMEObtainsCertificateFromLocalCA(t *testing.T) {
	dir := t.TempDir()
	pebble := goTool(t, dir, "github.com/letsencrypt/pebble/v2/cmd/pebble")
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
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, sharedCA.pem, 0o600)
	apiPort, adminPort, tlsPort := freePort(t), freePort(t), freePort(t)
	var cfg struct {
		Pebble map[string]any `json:"pebble"`
	}
	cfg.Pebble = map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", apiPort),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", adminPort),
		"certificate":             pebbleCert,
		"privateKey":              pebbleKey,
		"httpPort":                freePort(t),
		"tlsPort":                 tlsPort, // where it validates TLS-ALPN-01: our shared TLS port
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	data, _ := json.Marshal(cfg)
	os.WriteFile(cfgFile, data, 0o600)
	startProcess(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, pebble,
		"-config", cfgFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))

	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sharedCA.pool}}}
	defer api.CloseIdleConnections()
	waitFor(t, 30*time.Second, "Pebble to serve its directory", func() bool {
		resp, err := api.Get(fmt.Sprintf("https://127.0.0.1:%d/dir", apiPort))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	const domain = "chat.strangers.test"
	s := startRun(t, map[string]string{
		"STRANGERS_TLS_ADDR":       fmt.Sprintf("127.0.0.1:%d", tlsPort),
		"STRANGERS_ACME_DOMAINS":   domain,
		"STRANGERS_ACME_EMAIL":     "ops@strangers.test",
		"STRANGERS_ACME_DIRECTORY": fmt.Sprintf("https://127.0.0.1:%d/dir", apiPort),
		"STRANGERS_ACME_CACHE":     filepath.Join(dir, "acme-cache"),
		"STRANGERS_ACME_CA_FILE":   caFile,
	})
	if s.addrs["tls_mode"] != "acme" || s.addrs["public_host"] != domain {
		t.Errorf("startup line: tls_mode %v public_host %v", s.addrs["tls_mode"], s.addrs["public_host"])
	}

	// Pebble's root, to verify what the binary serves.
	resp, err := api.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("no root from Pebble: %q", rootPEM)
	}

	// The first handshake for the domain makes the binary order a
	// certificate; Pebble validates it through our TLS port.
	var state tls.ConnectionState
	waitFor(t, 60*time.Second, "a certificate issued by Pebble", func() bool {
		d := tls.Dialer{Config: &tls.Config{ServerName: domain, RootCAs: roots}}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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
	if leaf := state.PeerCertificates[0]; leaf.VerifyHostname(domain) != nil {
		t.Errorf("served certificate names %v, want %s", leaf.DNSNames, domain)
	}

	// And the page is served with it, to a client that trusts Pebble.
	page := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: domain, RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", tlsPort))
		},
	}}
	defer page.CloseIdleConnections()
	resp, err = page.Get("https://" + domain + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz over the ACME certificate: %d", resp.StatusCode)
	}
	// The certificate was cached for the next start.
	if entries, _ := os.ReadDir(filepath.Join(dir, "acme-cache")); len(entries) < 2 {
		t.Errorf("ACME cache holds %d entries, want the account key and the certificate", len(entries))
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
