package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// testCA is a throwaway certificate authority for TLS tests
// (testsupport.CA, whose methods here fail the test on error).
type testCA struct {
	ca   *testsupport.CA
	pool *x509.CertPool // trusts only this CA
	pem  []byte         // the CA certificate, PEM
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := makeCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// sharedCA is made in TestMain and installed as the process's system root
// (SSL_CERT_FILE), so clients that cannot be given roots, such as pion's
// TURN-over-TLS client, trust certificates it issues.
var sharedCA *testCA

// installSharedCA makes sharedCA and points SSL_CERT_FILE at it; it must
// run before anything loads the system roots. It returns a cleanup.
func installSharedCA() (func(), error) {
	ca, err := makeCA()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "strangers-ca-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, ca.pem, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	os.Setenv("SSL_CERT_FILE", path)
	os.Setenv("SSL_CERT_DIR", dir)
	sharedCA = ca
	return func() { os.RemoveAll(dir) }, nil
}

func makeCA() (*testCA, error) {
	ca, err := testsupport.NewCA("strangers test CA")
	if err != nil {
		return nil, err
	}
	return &testCA{ca: ca, pool: ca.Pool, pem: ca.PEM}, nil
}

// issue signs a server certificate for names (DNS names or IPs), valid
// from notBefore to notAfter.
func (ca *testCA) issue(t testing.TB, notBefore, notAfter time.Time, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.ca.Issue(notBefore, notAfter, names...)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// serverCert issues a currently valid certificate as a tls.Certificate.
func (ca *testCA) serverCert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), names...)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writeFiles issues a certificate and writes it and its key into dir,
// returning their paths.
func (ca *testCA) writeFiles(t testing.TB, dir string, notBefore, notAfter time.Time, names ...string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := ca.ca.WriteFiles(dir, notBefore, notAfter, names...)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
