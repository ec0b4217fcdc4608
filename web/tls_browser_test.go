package web_test

import (
	"os"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// TestBrowserTURNOverTLS serves the page, /ws and TURN over TLS on one
// port (443) with a certificate from a test CA that Chromium trusts through
// its NSS database, blocks UDP and TCP to the TURN port, and checks that a
// "Hide my IP" call connects through TURN over TLS on the shared port.
// Chromium verifies a TURN server's certificate: with an untrusted one it
// would silently gather no relay candidate and the call would not connect.
func TestBrowserTURNOverTLS(t *testing.T) {
	if !inNamespace() {
		// Chromium is made to trust a test CA through its NSS database.
		testsupport.Require(t, "certutil", "libnss3-tools")
		reexec(t, false)
		return
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(ephemeralPort), 0o644); err != nil {
		t.Fatalf("setting the namespace's ephemeral ports: %v", err)
	}
	dir := t.TempDir()
	ca, err := testsupport.NewCA("strangers browser test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.WriteFiles(dir, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), relayIP)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t,
		"STRANGERS_TLS_ADDR="+relayIP+":443",
		"STRANGERS_TLS_CERT_FILE="+certFile,
		"STRANGERS_TLS_KEY_FILE="+keyFile,
	)

	// Chromium on Linux trusts what $HOME/.pki/nssdb trusts.
	home := t.TempDir()
	if err := testsupport.TrustCA(t.Context(), home, caFile); err != nil {
		t.Fatal(err)
	}
	c := chromium(false)
	c.Home = home
	root := testsupport.StartChromium(t, c)
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
