package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
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

// sharedCA is made in TestMain for the tests' TLS servers. Nothing trusts
// it implicitly: every client is handed its pool or file (RootCAs, --ca,
// STRANGERS_ACME_CA_FILE), and the tests set no process-wide variable such
// as SSL_CERT_FILE, which would reach the go command and the other
// programs they start.
var sharedCA *testCA

func makeCA() (*testCA, error) {
	ca, err := testsupport.NewCA("strangers test CA")
	if err != nil {
		return nil, err
	}
	return &testCA{ca: ca, pool: ca.Pool, pem: ca.PEM}, nil
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

// tlsDialer dials TLS trusting roots, with the host of the address as the
// server name; it is the proxy dialer pion's ICE agent uses for TURN over
// TLS when a test cannot give it roots any other way.
type tlsDialer struct {
	roots *x509.CertPool
}

// Dial implements golang.org/x/net/proxy.Dialer.
func (d tlsDialer) Dial(network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td := tls.Dialer{Config: &tls.Config{RootCAs: d.roots, ServerName: host}}
	return td.DialContext(ctx, network, addr)
}
