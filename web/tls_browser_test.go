package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserTURNOverTLS serves the page, /ws and TURN over TLS on one
// port (443) with a certificate from a test CA that Chromium trusts through
// its NSS database, blocks UDP and TCP to the TURN port, and checks that a
// "Hide my IP" call connects through TURN over TLS on the shared port.
// Chromium verifies a TURN server's certificate: with an untrusted one it
// would silently gather no relay candidate and the call would not connect.
func TestBrowserTURNOverTLS(t *testing.T) {
	if !inNamespace() {
		if _, err := exec.LookPath("certutil"); err != nil {
			missing(t, "this test needs certutil (Debian package libnss3-tools) to trust a test CA in Chromium")
		}
		reexec(t, false)
		return
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(ephemeralPort), 0o644); err != nil {
		t.Fatalf("setting the namespace's ephemeral ports: %v", err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestPKI(t, dir, relayIP)
	srv := startServer(t,
		"STRANGERS_TLS_ADDR="+relayIP+":443",
		"STRANGERS_TLS_CERT_FILE="+certFile,
		"STRANGERS_TLS_KEY_FILE="+keyFile,
	)

	// Chromium on Linux trusts what $HOME/.pki/nssdb trusts.
	home := t.TempDir()
	nssdb := "sql:" + filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(filepath.Join(home, ".pki", "nssdb"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", nssdb, "--empty-password"},
		{"-A", "-d", nssdb, "-n", "strangers test CA", "-t", "C,,", "-i", caFile},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromiumFlags(t, true), chromedp.Env("HOME="+home))...)
	t.Cleanup(cancelAlloc)
	root, cancelRoot := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelRoot)
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	base := "https://" + relayIP
	st := &stage{tb: t, srv: srv, root: root, base: base, insecureBase: base}
	st.requireSignaling(t)

	// Only TCP to 443 is left for reaching the server: no UDP (but the
	// relay's own ports, which carry relayed media between allocations)
	// and no TCP to the TURN port.
	blockUDP(t, false)

	a := st.newUser(t, "alice")
	b := st.newUser(t, "bob")
	a.start(startOptions{hideIP: true})
	b.start(startOptions{hideIP: true})
	for _, u := range []*user{a, b} {
		m := u.seesStranger()
		if m.Local != "relay" || m.RelayProto != "tls" {
			t.Errorf("%s: selected local candidate %s reaching the relay over %q, want relay over tls", u.name, m.Local, m.RelayProto)
		}
		if m.LocalAddr != relayIP {
			t.Errorf("%s: relay address %s, want our relay %s", u.name, m.LocalAddr, relayIP)
		}
		u.waitText("connection", `TLS`)
	}
	servers := eval[[]map[string]any](a, `window.__test.iceServers`)
	found := false
	for _, s := range servers {
		if urls, ok := s["urls"].([]any); ok {
			for _, u := range urls {
				found = found || u == "turns:"+relayIP+":443?transport=tcp"
			}
		}
	}
	if !found {
		t.Errorf("matched did not offer turns:%s:443?transport=tcp: %v", relayIP, servers)
	}
}

// writeTestPKI writes a throwaway CA and a server certificate for ip signed
// by it; it returns the CA, certificate and key file paths.
func writeTestPKI(t *testing.T, dir, ip string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strangers browser test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}
