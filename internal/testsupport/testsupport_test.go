package testsupport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestCAIssuesCertificatesItsPoolVerifies(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, err := ca.WriteFiles(dir, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "example.com"}); err == nil {
		t.Error("verified for a name it was not issued for")
	}
	caFile, err := ca.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(ca.PEM); block == nil || block.Type != "CERTIFICATE" || !strings.HasSuffix(caFile, "ca.pem") {
		t.Errorf("CA PEM %q at %s", ca.PEM, caFile)
	}
	if _, _, err := ca.Issue(time.Now(), time.Now().Add(time.Hour)); err == nil {
		t.Error("issued a certificate without a name")
	}
}

func TestEventually(t *testing.T) {
	n := 0
	WaitFor(t, 10*time.Second, "the third poll", func() bool { n++; return n == 3 })
	if Eventually(10*time.Millisecond, func() bool { return false }) {
		t.Error("a condition that never holds held")
	}
}

func TestChromiumSwitches(t *testing.T) {
	got := HostResolverRules("198.51.100.1")
	if want := "MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE ::1 , EXCLUDE 198.51.100.1"; got != want {
		t.Errorf("HostResolverRules = %q, want %q", got, want)
	}
	features := Chromium{DisableFeatures: []string{"Extra", "Translate"}}.DisabledFeatures()
	if want := "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns,OptimizationHints,MediaRouter,DialMediaRouteProvider,Extra"; features != want {
		t.Errorf("DisabledFeatures = %q, want %q", features, want)
	}
	if _, err := (Chromium{Path: "/bin/true"}).Options(); err == nil {
		t.Error("Options without a UserDataDir: no error")
	}
}
