package tlsmux

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// testCA is a throwaway certificate authority for the mux's TLS tests.
type testCA struct {
	ca   *testsupport.CA
	pool *x509.CertPool // trusts only this CA
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := testsupport.NewCA("tlsmux test CA")
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca, pool: ca.Pool}
}

// serverCert issues a currently valid server certificate for names (DNS
// names or IPs).
func (ca *testCA) serverCert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	cert, err := ca.ca.ServerCert(names...)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
