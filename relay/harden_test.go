package relay

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// dialRawFrom is dialRaw over UDP from a given local address (another
// 127.0.0.0/8 address is another client address).
func dialRawFrom(t *testing.T, s *Server, local, user, pass string) *rawClient {
	t.Helper()
	la, err := net.ResolveUDPAddr("udp4", net.JoinHostPort(local, "0"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp4", la, s.UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, user: user, pass: pass}
}

// TestIPQuota: one client address cannot hold more than IPQuota
// allocations, whatever sessions it uses; other addresses still allocate,
// and a released allocation frees its slot.
func TestIPQuota(t *testing.T) {
	t.Parallel()
	eachPath(t, testIPQuota)
}

func testIPQuota(t *testing.T, path dataPath) {
	t.Parallel()
	cfg := path.config()
	cfg.IPQuota = 3
	s := newServer(t, cfg)
	var clients []*rawClient
	for i := range cfg.IPQuota + 1 {
		sid := newSID(t) // a fresh session each time: the session quota is not what stops it
		s.SessionStarted(sid)
		user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
		c := dialRawFrom(t, s, "127.0.0.1", user, pass)
		resp := c.allocate()
		if i < cfg.IPQuota {
			if !isSuccess(resp) {
				t.Fatalf("Allocate %d: error %d", i, errorCode(resp))
			}
			clients = append(clients, c)
			continue
		}
		if code := errorCode(resp); code != stun.CodeAllocQuotaReached {
			t.Fatalf("Allocate beyond the client address quota: error %d, want 486", code)
		}
	}
	if got := testutil.ToFloat64(s.metrics.quotaHits.WithLabelValues(quotaClientIP)); got != 1 {
		t.Errorf("quota_hits_total{kind=client_ip} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.metrics.allocFailed.WithLabelValues(failQuotaClientIP)); got != 1 {
		t.Errorf("allocations_failed_total{reason=quota_client_ip} = %v, want 1", got)
	}

	// Another address is not affected.
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	if resp := dialRawFrom(t, s, "127.0.0.2", user, pass).allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate from another address: error %d", errorCode(resp))
	}
	// A deleted allocation gives its slot back.
	if resp := clients[0].refresh(0); !isSuccess(resp) {
		t.Fatalf("Refresh 0: error %d", errorCode(resp))
	}
	waitFor(t, "the slot to be released", func() bool {
		return s.quota.ipCount(loopback) == cfg.IPQuota-1
	})
	if resp := dialRawFrom(t, s, "127.0.0.1", user, pass).allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate after a release: error %d", errorCode(resp))
	}
}

func TestClientUnitAndIPv6Quota(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.7":                "192.0.2.7",
		"::ffff:192.0.2.7":         "192.0.2.7",
		"2001:db8:1:2:aaaa::1":     "2001:db8:1:2::",
		"2001:db8:1:2:ffff::9":     "2001:db8:1:2::",
		"2001:db8:1:3::1":          "2001:db8:1:3::",
		"fe80::1%eth0":             "fe80::",
		"2001:db8:1:2:1:2:3:4%en0": "2001:db8:1:2::",
	} {
		if got := clientUnit(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("clientUnit(%s) = %s, want %s", in, got, want)
		}
	}
	q := newQuota(100, 2, 100)
	now := time.Now()
	for i, a := range []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:2::2]:1"} {
		ip := clientUnit(netip.MustParseAddrPort(a).Addr())
		if kind := q.reserve("udp|"+a, "s"+strconv.Itoa(i), ip, now); kind != "" {
			t.Fatalf("reserve %s: %s", a, kind)
		}
	}
	third := netip.MustParseAddr("2001:db8:1:2:ffff::3")
	if kind := q.reserve("udp|third", "s3", clientUnit(third), now); kind != quotaClientIP {
		t.Errorf("a third address in the same /64: %q, want %q", kind, quotaClientIP)
	}
	other := netip.MustParseAddr("2001:db8:1:3::3")
	if kind := q.reserve("udp|other", "s4", clientUnit(other), now); kind != "" {
		t.Errorf("another /64: %q", kind)
	}
}

// TestEndedSessionAllocatesNothing: once a session has ended, its
// credential creates no allocation during the grace, while the allocations
// it already has keep working until the grace ends.
func TestEndedSessionAllocatesNothing(t *testing.T) {
	t.Parallel()
	eachPath(t, testEndedSessionAllocatesNothing)
}

func testEndedSessionAllocatesNothing(t *testing.T, path dataPath) {
	t.Parallel()
	cfg := path.config()
	cfg.SessionGrace = time.Hour // the grace outlasts the test
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s := newServer(t, cfg)
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	kept := dialRaw(t, s, user, pass, false)
	if resp := kept.allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate: error %d", errorCode(resp))
	}
	sink := newSink(t, "127.0.0.1")

	// The attack: a session that asked for credentials and went away, its
	// credential then used for allocations while the session is in grace.
	idle := newSID(t)
	s.SessionStarted(idle)
	idleUser, idlePass := Credentials(testSecret, idle, time.Now().Add(time.Hour))
	s.SessionEnded(idle)
	s.SessionEnded(sid)
	for i := range 10 {
		for _, tcp := range []bool{false, true} {
			if resp := dialRaw(t, s, idleUser, idlePass, tcp).allocate(); isSuccess(resp) {
				t.Fatalf("Allocate %d (tcp %v) with the credential of an ended session succeeded", i, tcp)
			}
		}
	}
	if resp := dialRaw(t, s, user, pass, false).allocate(); isSuccess(resp) {
		t.Fatal("a new Allocate of a session in its grace succeeded")
	}
	if _, err := dialPion(t, s, idleUser, idlePass, false).Allocate(); err == nil {
		t.Fatal("pion client allocated with the credential of an ended session")
	}
	if got := testutil.ToFloat64(s.metrics.allocFailed.WithLabelValues(failSessionEnded)); got < 22 {
		t.Errorf("allocations_failed_total{reason=session_ended} = %v, want at least 22", got)
	}
	if n := s.AllocationCount(); n != 1 {
		t.Errorf("AllocationCount = %d, want 1 (the one made before the session ended)", n)
	}

	// The existing allocation keeps refreshing, permitting and relaying.
	if resp := kept.refresh(10 * time.Minute); !isSuccess(resp) {
		t.Fatalf("Refresh during the grace: error %d", errorCode(resp))
	}
	if resp := kept.permit(sink.addr()); !isSuccess(resp) {
		t.Fatalf("CreatePermission during the grace: error %d", errorCode(resp))
	}
	kept.indicate(sink.addr(), []byte("still here"))
	if got := sink.next(5 * time.Second); string(got) != "still here" {
		t.Fatalf("relayed %q during the grace", got)
	}

	// Revived, the session allocates again.
	s.SessionStarted(sid)
	if resp := dialRaw(t, s, user, pass, false).allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate after the session resumed: error %d", errorCode(resp))
	}
}

// bogusFlood sends n requests with a valid nonce, MESSAGE-INTEGRITY and a
// username that names no session, as a stranger (or a spoofer) would,
// without reading the answers. After every 50 it waits for the answer to a
// Binding sent on the same socket: requests from one client are handled
// in order, so the flood is then handled (and datagrams are not lost to a
// full receive buffer).
func bogusFlood(t *testing.T, c *rawClient, n int) {
	t.Helper()
	challenge := bareRequest(t, stun.MethodAllocate, stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}})
	c.sendRaw(challenge)
	m, err := c.read(time.Now().Add(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var nonce stun.Nonce
	if err := nonce.GetFrom(m); err != nil {
		t.Fatalf("no nonce in the challenge: %v", err)
	}
	exp := time.Now().Unix() + 60
	for i := range n {
		user := strconv.FormatInt(exp+int64(i), 10) + ":" + "AAAAAAAAAAAAAAAAAAAAAA" // no such session
		m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}},
			stun.NewUsername(user), stun.NewRealm(DefaultRealm), nonce,
			stun.NewLongTermIntegrity(user, DefaultRealm, "x"), stun.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		c.sendRaw(m.Raw)
		if i%50 == 49 || i == n-1 {
			if resp := c.do(stun.MethodBinding); !isSuccess(resp) {
				t.Fatalf("Binding during the flood: error %d", errorCode(resp))
			}
		}
	}
}

// testTLSListener returns a TLS listener on 127.0.0.1 with a certificate
// from a throwaway CA.
func testTLSListener(t *testing.T) net.Listener {
	t.Helper()
	ca, err := testsupport.NewCA("relay test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCert("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
}

// TestFailuresLockNobodyOut: a flood of bogus credentials from the
// victim's own address, over UDP, TCP and TLS, changes nothing for the
// victim: its live allocations refresh and get permissions, and new
// allocations with valid credentials from that address succeed. What the
// flood gets back is limited.
func TestFailuresLockNobodyOut(t *testing.T) {
	t.Parallel()
	eachPath(t, testFailuresLockNobodyOut)
}

func testFailuresLockNobodyOut(t *testing.T, path dataPath) {
	t.Parallel()
	tlsl := testTLSListener(t)
	cfg := path.config()
	cfg.replyBurst = 0 // the real limits
	cfg.StreamListeners = []net.Listener{tlsl}
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s := newServer(t, cfg)
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	dialTLS := func() *rawClient {
		c, err := tls.Dial("tcp", tlsl.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test certificate
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &rawClient{t: t, conn: c, tcp: true, user: user, pass: pass}
	}
	victims := map[string]*rawClient{
		"udp": dialRaw(t, s, user, pass, false),
		"tcp": dialRaw(t, s, user, pass, true),
		"tls": dialTLS(),
	}
	for name, v := range victims {
		if resp := v.allocate(); !isSuccess(resp) {
			t.Fatalf("%s: Allocate: error %d", name, errorCode(resp))
		}
	}
	sink := newSink(t, "127.0.0.1")

	// The attacker: same address, every transport, far more than the
	// limits (the old limiter locked the address out after 20).
	const flood = 300
	udp := dialRaw(t, s, "", "", false)
	tcp := dialRaw(t, s, "", "", true)
	atls := dialTLS()
	for _, c := range []*rawClient{udp, tcp, atls} {
		bogusFlood(t, c, flood)
	}
	if got := testutil.ToFloat64(s.metrics.authFailures.WithLabelValues(authSession)); got < 3*flood*9/10 {
		t.Errorf("auth_failures_total{reason=session} = %v after a flood of %d", got, 3*flood)
	}
	// Beyond the burst, a few a second get an answer (the clock runs here).
	if got := testutil.ToFloat64(s.metrics.repliesDropped.WithLabelValues(dropRateLimited)); got < 3*flood/2 {
		t.Errorf("responses_dropped_total{reason=rate_limited} = %v, want at least %d", got, 3*flood/2)
	}

	for name, v := range victims {
		if resp := v.refresh(10 * time.Minute); !isSuccess(resp) {
			t.Errorf("%s: Refresh of a live allocation after the flood: error %d", name, errorCode(resp))
		}
		if resp := v.permit(sink.addr()); !isSuccess(resp) {
			t.Errorf("%s: CreatePermission after the flood: error %d", name, errorCode(resp))
		}
		if resp := v.bind(0x4001, sink.addr()); !isSuccess(resp) {
			t.Errorf("%s: ChannelBind after the flood: error %d", name, errorCode(resp))
		}
	}
	victims["udp"].indicate(sink.addr(), []byte("udp"))
	if got := sink.next(5 * time.Second); string(got) != "udp" {
		t.Errorf("relayed %q after the flood", got)
	}
	// New allocations from the flooded address, with valid credentials.
	if resp := dialRaw(t, s, user, pass, false).allocate(); !isSuccess(resp) {
		t.Errorf("new UDP Allocate after the flood: error %d", errorCode(resp))
	}
	if resp := dialRaw(t, s, user, pass, true).allocate(); !isSuccess(resp) {
		t.Errorf("new TCP Allocate after the flood: error %d", errorCode(resp))
	}
	if resp := dialTLS().allocate(); !isSuccess(resp) {
		t.Errorf("new TLS Allocate after the flood: error %d", errorCode(resp))
	}
	if _, err := dialPion(t, s, user, pass, false).Allocate(); err != nil {
		t.Errorf("pion client after the flood: %v", err)
	}
}

// sendRaw writes b on c's socket.
func (c *rawClient) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// bareRequest builds a request of method with the given attributes and no
// credentials.
func bareRequest(t *testing.T, method stun.Method, attrs ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// TestNoAmplification sends small unauthenticated requests and checks
// every answer is at most three times the request, that a minimal Allocate
// still gets a usable 401 challenge, and that challenges to one address are
// rate limited.
func TestNoAmplification(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	cfg := testConfig()
	cfg.Now = clock.Now
	cfg.replyBurst = 0 // the real limits
	s := newServer(t, cfg)
	sid := newSID(t)
	s.SessionStarted(sid)
	user, _ := Credentials(testSecret, sid, clock.Now().Add(time.Hour))
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	channel := stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x10, 0, 0, 0}}

	requests := []struct {
		name string
		raw  []byte
	}{
		{"bare Allocate", bareRequest(t, stun.MethodAllocate)},
		{"bare Refresh", bareRequest(t, stun.MethodRefresh)},
		{"bare CreatePermission", bareRequest(t, stun.MethodCreatePermission)},
		{"bare ChannelBind", bareRequest(t, stun.MethodChannelBind)},
		{"ChannelBind out of range", bareRequest(t, stun.MethodChannelBind, channel)},
		{"Binding", bareRequest(t, stun.MethodBinding)},
		{"minimal Allocate", bareRequest(t, stun.MethodAllocate, transport)},
		{"username only", bareRequest(t, stun.MethodAllocate, stun.NewUsername(user))},
		{"bad integrity", bareRequest(t, stun.MethodAllocate, transport, stun.NewUsername(user),
			stun.NewRealm(DefaultRealm), stun.NewNonce("n"), stun.NewLongTermIntegrity(user, DefaultRealm, "x"))},
	}
	for _, tcp := range []bool{false, true} {
		c := dialRaw(t, s, "", "", tcp)
		for _, r := range requests {
			c.sendRaw(r.raw)
		}
		// Requests on one socket are handled in order: once the final
		// Binding is answered, every answer to the others has been sent.
		final := bareRequest(t, stun.MethodBinding)
		c.sendRaw(final)
		sizes := map[[12]byte]int{}
		for _, r := range requests {
			sizes[[12]byte(r.raw[8:20])] = len(r.raw)
		}
		var challenge *stun.Message
		for {
			m, err := c.read(time.Now().Add(10 * time.Second))
			if err != nil {
				t.Fatalf("tcp %v: waiting for the final Binding: %v", tcp, err)
			}
			if m.TransactionID == [12]byte(final[8:20]) {
				break
			}
			req, ok := sizes[m.TransactionID]
			if !ok {
				t.Fatalf("tcp %v: answer to an unknown transaction", tcp)
			}
			if len(m.Raw) > 3*req {
				t.Errorf("tcp %v: %d-byte answer (%s) to a %d-byte request: more than 3x", tcp, len(m.Raw), m.Type, req)
			}
			if m.TransactionID == [12]byte(requests[6].raw[8:20]) {
				challenge = m
			}
		}
		if challenge == nil || errorCode(challenge) != stun.CodeUnauthorized {
			t.Fatalf("tcp %v: a minimal Allocate got no 401 challenge", tcp)
		}
		var nonce stun.Nonce
		var realm stun.Realm
		if nonce.GetFrom(challenge) != nil || realm.GetFrom(challenge) != nil || realm.String() != DefaultRealm {
			t.Errorf("tcp %v: the challenge lacks NONCE or REALM", tcp)
		}
	}
	if got := testutil.ToFloat64(s.metrics.repliesDropped.WithLabelValues(dropAmplification)); got < 2 {
		t.Errorf("responses_dropped_total{reason=amplification} = %v, want at least 2 (bare Allocate)", got)
	}

	// A reflector gets a burst of challenges sent to an address, then a
	// few per second: the clock here stands still. A fresh address has a
	// full bucket.
	c := dialRawFrom(t, s, "127.0.0.3", "", "")
	before := testutil.ToFloat64(s.metrics.repliesDropped.WithLabelValues(dropRateLimited))
	const sent = 3 * replyBurst
	for range sent {
		c.sendRaw(bareRequest(t, stun.MethodAllocate, transport))
	}
	waitFor(t, "the flood to be handled", func() bool {
		return testutil.ToFloat64(s.metrics.repliesDropped.WithLabelValues(dropRateLimited)) >= before+sent-replyBurst
	})
	clock.Advance(time.Second) // room for the Binding below
	final := bareRequest(t, stun.MethodBinding)
	c.sendRaw(final)
	answers := 0
	for {
		m, err := c.read(time.Now().Add(10 * time.Second))
		if err != nil {
			t.Fatalf("waiting for the final Binding: %v", err)
		}
		if m.TransactionID == [12]byte(final[8:20]) {
			break
		}
		answers++
	}
	if answers > replyBurst {
		t.Errorf("%d challenges answered to one address at once, want at most %d", answers, replyBurst)
	}
}

// TestWithoutReason strips the reason phrase of an error response.
func TestWithoutReason(t *testing.T) {
	t.Parallel()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.CodeUnauthorized, stun.NewNonce("abc"), stun.NewRealm("r"))
	if err != nil {
		t.Fatal(err)
	}
	out := withoutReason(m.Raw)
	got := &stun.Message{Raw: out}
	if err := got.Decode(); err != nil {
		t.Fatal(err)
	}
	var code stun.ErrorCodeAttribute
	var nonce stun.Nonce
	if code.GetFrom(got) != nil || code.Code != stun.CodeUnauthorized || len(code.Reason) != 0 {
		t.Errorf("error code %+v", code)
	}
	if nonce.GetFrom(got) != nil || nonce.String() != "abc" {
		t.Errorf("nonce %q", nonce)
	}
	if len(out) != len(m.Raw)-12 || binary.BigEndian.Uint16(out[2:4]) != uint16(len(out)-20) {
		t.Errorf("%d bytes from %d", len(out), len(m.Raw))
	}
}

// TestOldSecrets: credentials made with an old secret keep working (new
// allocations until they expire, and refreshes of allocations made with
// them); new credentials use the current secret; other secrets fail.
func TestOldSecrets(t *testing.T) {
	t.Parallel()
	eachPath(t, testOldSecrets)
}

func testOldSecrets(t *testing.T, path dataPath) {
	t.Parallel()
	old := []byte("the-secret-before-rotation")
	older := []byte("the-secret-before-that")
	cfg := path.config()
	cfg.Secret = []byte("the-secret-after-rotation")
	cfg.OldSecrets = [][]byte{older, old}
	s := newServer(t, cfg)
	sid := newSID(t)
	s.SessionStarted(sid)
	expiry := time.Now().Add(time.Hour)

	for _, secret := range [][]byte{old, older, cfg.Secret} {
		user, pass := Credentials(secret, sid, expiry)
		for _, tcp := range []bool{false, true} {
			c := dialRaw(t, s, user, pass, tcp)
			if resp := c.allocate(); !isSuccess(resp) {
				t.Fatalf("Allocate with secret %q (tcp %v): error %d", secret, tcp, errorCode(resp))
			}
			if resp := c.refresh(10 * time.Minute); !isSuccess(resp) {
				t.Fatalf("Refresh with secret %q (tcp %v): error %d", secret, tcp, errorCode(resp))
			}
		}
		if _, err := dialPion(t, s, user, pass, false).Allocate(); err != nil {
			t.Fatalf("pion client with secret %q: %v", secret, err)
		}
	}
	user, pass := Credentials([]byte("never-configured"), sid, expiry)
	if resp := dialRaw(t, s, user, pass, false).allocate(); isSuccess(resp) {
		t.Fatal("Allocate with an unknown secret succeeded")
	}
	user, pass = Credentials(old, sid, time.Now().Add(-time.Minute))
	if resp := dialRaw(t, s, user, pass, false).allocate(); isSuccess(resp) {
		t.Fatal("Allocate with an expired old-secret credential succeeded")
	}

	servers, err := s.ICEServers(sid)
	if err != nil {
		t.Fatal(err)
	}
	turnServer := servers[1]
	if turnServer.Credential != Password(cfg.Secret, turnServer.Username) {
		t.Error("minted credential is not made with the current secret")
	}
}

// TestLiveAllocationAnswersNeverLimited: with every budget of its address
// spent by others, a live allocation's own requests still get their
// unauthenticated answers (a 438 when its nonce went stale), so it keeps
// refreshing.
func TestLiveAllocationAnswersNeverLimited(t *testing.T) {
	t.Parallel()
	eachPath(t, testLiveAllocationAnswersNeverLimited)
}

func testLiveAllocationAnswersNeverLimited(t *testing.T, path dataPath) {
	t.Parallel()
	clock := newFakeClock() // no refill while the test runs
	cfg := path.config()
	cfg.Now = clock.Now
	cfg.replyBurst = 0 // the real limits
	s := newServer(t, cfg)
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, clock.Now().Add(time.Hour))
	victim := dialRaw(t, s, user, pass, false)
	if resp := victim.allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate: error %d", errorCode(resp))
	}
	// Spend both budgets of 127.0.0.1: challenges and failures.
	attacker := dialRaw(t, s, "", "", false)
	bogusFlood(t, attacker, 2*replyBurst)
	for range 2 * replyBurst {
		attacker.sendRaw(bareRequest(t, stun.MethodAllocate, stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}))
		attacker.sendRaw(bareRequest(t, stun.MethodBinding))
	}
	waitFor(t, "both budgets to be spent", func() bool {
		return testutil.ToFloat64(s.metrics.repliesDropped.WithLabelValues(dropRateLimited)) >= 3*replyBurst
	})
	victim.nonce = "stale-nonce" // pion answers 438 with a fresh one
	if resp := victim.refresh(10 * time.Minute); !isSuccess(resp) {
		t.Fatalf("Refresh with a stale nonce: error %d", errorCode(resp))
	}
}
