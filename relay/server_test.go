package relay

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAllocateWithMintedCredentials(t *testing.T) {
	t.Parallel()
	eachPath(t, testAllocateWithMintedCredentials)
}

func testAllocateWithMintedCredentials(t *testing.T, path dataPath) {
	t.Parallel()
	for _, tcp := range []bool{false, true} {
		name := map[bool]string{false: "udp", true: "tcp"}[tcp]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, path.config())
			sid := newSID(t)
			s.SessionStarted(sid)
			servers, err := s.ICEServers(sid)
			if err != nil {
				t.Fatal(err)
			}
			turnSrv := servers[1]
			client := dialPion(t, s, turnSrv.Username, turnSrv.Credential, tcp)
			relayConn, err := client.Allocate()
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			ra := relayConn.LocalAddr().(*net.UDPAddr)
			if !ra.IP.Equal(net.IP(loopback.AsSlice())) || ra.Port < testPortMin || ra.Port > testPortMax {
				t.Errorf("relayed address %v, want 127.0.0.1 in %d-%d", ra, testPortMin, testPortMax)
			}
			if n := s.AllocationCount(); n != 1 {
				t.Errorf("AllocationCount = %d, want 1", n)
			}
			if got := testutil.ToFloat64(s.metrics.allocCreated); got != 1 {
				t.Errorf("allocations_created_total = %v, want 1", got)
			}
			if err := relayConn.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "allocation deleted", func() bool { return s.AllocationCount() == 0 })
			if total, _ := s.quota.counts(sid); total != 0 {
				t.Errorf("quota still holds %d slots after deallocation", total)
			}
		})
	}
}

func TestAuthRefusals(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	cfg := testConfig()
	cfg.Now = clock.Now
	cfg.SessionGrace = time.Millisecond
	s := newServer(t, cfg)
	live := newSID(t)
	s.SessionStarted(live)
	ended := newSID(t)
	s.SessionStarted(ended)
	s.SessionEnded(ended)
	waitFor(t, "session grace to pass", func() bool { return !s.sessionLive(ended) })
	unknown := newSID(t)
	now := clock.Now()

	mint := func(sid string, expiry time.Time) (string, string) { return Credentials(testSecret, sid, expiry) }
	valid := func(user string) (string, string) { return user, Password(testSecret, user) }
	exp := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)

	tests := []struct {
		name       string
		user, pass string
		realm      string
		reason     string
	}{
		{name: "wrong password", user: exp + ":" + live, pass: "bm90IHRoZSBwYXNzd29yZA==", reason: authIntegrity},
		{name: "password of another secret", user: exp + ":" + live,
			pass: Password([]byte("other"), exp+":"+live), reason: authIntegrity},
		{name: "wrong realm", realm: "elsewhere", reason: authRealm},
		{name: "expired", reason: authExpired},
		{name: "far future", reason: authFuture},
		{name: "ended session after grace", reason: authSession},
		{name: "unknown session", reason: authSession},
		{name: "no colon", reason: authMalformed},
		{name: "negative expiry", reason: authMalformed},
		{name: "plus sign", reason: authMalformed},
		{name: "leading zero", reason: authMalformed},
		{name: "expiry overflow", reason: authMalformed},
		{name: "hex expiry", reason: authMalformed},
		{name: "short session id", reason: authMalformed},
		{name: "long session id", reason: authMalformed},
		{name: "padded session id", reason: authMalformed},
		{name: "non-canonical session id", reason: authMalformed},
		{name: "two colons", reason: authMalformed},
		{name: "space", reason: authMalformed},
		{name: "empty", reason: authMalformed},
	}
	for i := range tests {
		tc := &tests[i]
		switch tc.name {
		case "wrong realm":
			tc.user, tc.pass = mint(live, now.Add(time.Hour))
		case "expired":
			tc.user, tc.pass = mint(live, now.Add(-time.Second))
		case "far future":
			tc.user, tc.pass = mint(live, now.Add(3*time.Hour))
		case "ended session after grace":
			tc.user, tc.pass = mint(ended, now.Add(time.Hour))
		case "unknown session":
			tc.user, tc.pass = mint(unknown, now.Add(time.Hour))
		case "no colon":
			tc.user, tc.pass = valid(exp + live)
		case "negative expiry":
			tc.user, tc.pass = valid("-" + exp + ":" + live)
		case "plus sign":
			tc.user, tc.pass = valid("+" + exp + ":" + live)
		case "leading zero":
			tc.user, tc.pass = valid("0" + exp + ":" + live)
		case "expiry overflow":
			tc.user, tc.pass = valid("99999999999999999999:" + live)
		case "hex expiry":
			tc.user, tc.pass = valid("0x6b49d200:" + live)
		case "short session id":
			tc.user, tc.pass = valid(exp + ":" + live[:21])
		case "long session id":
			tc.user, tc.pass = valid(exp + ":" + live + "A")
		case "padded session id":
			tc.user, tc.pass = valid(exp + ":" + live + "==")
		case "non-canonical session id":
			tc.user, tc.pass = valid(exp + ":" + live[:21] + "B")
		case "two colons":
			tc.user, tc.pass = valid(exp + ":" + live + ":x")
		case "space":
			tc.user, tc.pass = valid(exp + " :" + live)
		case "empty":
			tc.user, tc.pass = valid(":")
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(s.metrics.authFailures.WithLabelValues(tc.reason))
			c := dialRaw(t, s, tc.user, tc.pass, false)
			c.realm = tc.realm
			resp := c.allocate()
			if isSuccess(resp) {
				t.Fatalf("Allocate succeeded")
			}
			if code := errorCode(resp); code != stun.CodeBadRequest {
				t.Errorf("error code %d, want 400", code)
			}
			if got := testutil.ToFloat64(s.metrics.authFailures.WithLabelValues(tc.reason)); got != before+1 {
				t.Errorf("auth_failures_total{reason=%q} went %v -> %v, want +1", tc.reason, before, got)
			}
		})
	}
	if n := s.AllocationCount(); n != 0 {
		t.Errorf("AllocationCount = %d after refusals, want 0", n)
	}

	// The pion client is refused the same way.
	user, _ := mint(live, now.Add(time.Hour))
	if _, err := dialPion(t, s, user, "wrong", false).Allocate(); err == nil {
		t.Error("pion client allocated with a wrong password")
	}
	user, pass := mint(live, now.Add(-time.Minute))
	if _, err := dialPion(t, s, user, pass, true).Allocate(); err == nil {
		t.Error("pion client allocated over TCP with an expired credential")
	}
	if n := s.AllocationCount(); n != 0 {
		t.Errorf("AllocationCount = %d after refusals, want 0", n)
	}
}

func TestExpiredCredentialKeepsRefreshing(t *testing.T) {
	t.Parallel()
	eachPath(t, testExpiredCredentialKeepsRefreshing)
}

func testExpiredCredentialKeepsRefreshing(t *testing.T, path dataPath) {
	t.Parallel()
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "udp", true: "tcp"}[tcp], func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			cfg := path.config()
			cfg.Now = clock.Now
			cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			s := newServer(t, cfg)
			sid := newSID(t)
			s.SessionStarted(sid)
			user, pass := Credentials(testSecret, sid, clock.Now().Add(time.Minute))
			c := dialRaw(t, s, user, pass, tcp)
			if resp := c.allocate(); !isSuccess(resp) {
				t.Fatalf("Allocate: error %d", errorCode(resp))
			}

			clock.Advance(2 * time.Hour) // the credential is long expired
			if resp := c.refresh(10 * time.Minute); !isSuccess(resp) {
				t.Fatalf("Refresh after expiry: error %d", errorCode(resp))
			}
			peer := netip.MustParseAddrPort("127.0.0.1:9")
			if resp := c.permit(peer); !isSuccess(resp) {
				t.Fatalf("CreatePermission after expiry: error %d", errorCode(resp))
			}
			if resp := c.bind(0x4000, peer); !isSuccess(resp) {
				t.Fatalf("ChannelBind after expiry: error %d", errorCode(resp))
			}
			// A new allocation with the same expired credential is refused.
			other := dialRaw(t, s, user, pass, tcp)
			if resp := other.allocate(); isSuccess(resp) {
				t.Fatal("new allocation with an expired credential succeeded")
			}
			if n := s.AllocationCount(); n != 1 {
				t.Errorf("AllocationCount = %d, want 1", n)
			}
		})
	}
}

func TestSessionEndClosesAllocations(t *testing.T) {
	t.Parallel()
	eachPath(t, testSessionEndClosesAllocations)
}

func testSessionEndClosesAllocations(t *testing.T, path dataPath) {
	t.Parallel()
	cfg := path.config()
	cfg.SessionGrace = 50 * time.Millisecond
	s := newServer(t, cfg)
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	c := dialRaw(t, s, user, pass, false)
	if resp := c.allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate: error %d", errorCode(resp))
	}
	pc := dialPion(t, s, user, pass, true)
	if _, err := pc.Allocate(); err != nil {
		t.Fatalf("pion Allocate over TCP: %v", err)
	}

	// Revived during the grace: nothing happens.
	s.SessionEnded(sid)
	s.SessionStarted(sid)
	if resp := c.refresh(10 * time.Minute); !isSuccess(resp) {
		t.Fatalf("Refresh of a revived session: error %d", errorCode(resp))
	}

	s.SessionEnded(sid)
	waitFor(t, "allocations closed after the grace", func() bool { return s.AllocationCount() == 0 })
	if resp := c.refresh(10 * time.Minute); isSuccess(resp) {
		t.Fatal("Refresh succeeded after the session ended")
	}
	if total, _ := s.quota.counts(sid); total != 0 {
		t.Errorf("quota still holds %d slots", total)
	}
}

func TestQuotaUnderConcurrentAllocates(t *testing.T) {
	t.Parallel()
	eachPath(t, testQuotaUnderConcurrentAllocates)
}

func testQuotaUnderConcurrentAllocates(t *testing.T, path dataPath) {
	t.Parallel()
	cfg := path.config()
	cfg.SessionQuota = 3
	cfg.TotalQuota = 5
	s := newServer(t, cfg)
	sessions := []string{newSID(t), newSID(t), newSID(t)}
	const perSession = 6
	type result struct {
		sid string
		ok  bool
	}
	var (
		wg      sync.WaitGroup
		results = make(chan result, len(sessions)*perSession)
	)
	start := make(chan struct{})
	for _, sid := range sessions {
		s.SessionStarted(sid)
		user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
		for i := range perSession {
			client := dialPion(t, s, user, pass, i%2 == 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := client.Allocate()
				results <- result{sid, err == nil}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(results)
	okBySession := map[string]int{}
	total := 0
	for r := range results {
		if r.ok {
			okBySession[r.sid]++
			total++
		}
	}
	if total != cfg.TotalQuota {
		t.Errorf("%d allocations succeeded, want exactly the total quota %d", total, cfg.TotalQuota)
	}
	for sid, n := range okBySession {
		if n > cfg.SessionQuota {
			t.Errorf("session %s got %d allocations, quota %d", sid[:4], n, cfg.SessionQuota)
		}
	}
	if n := s.AllocationCount(); n != cfg.TotalQuota {
		t.Errorf("AllocationCount = %d, want %d", n, cfg.TotalQuota)
	}
	hits := testutil.ToFloat64(s.metrics.quotaHits.WithLabelValues(quotaSession)) +
		testutil.ToFloat64(s.metrics.quotaHits.WithLabelValues(quotaTotal))
	// Retransmitted Allocates (pion's client retries after its RTO) may
	// count twice.
	if want := float64(len(sessions)*perSession - total); hits < want {
		t.Errorf("quota hits = %v, want at least %v", hits, want)
	}
	// The server stays healthy: a STUN binding still works.
	c := dialRaw(t, s, "", "", false)
	if resp := c.do(stun.MethodBinding); !isSuccess(resp) {
		t.Errorf("Binding after quota hits: error %d", errorCode(resp))
	}
}

func TestCloseIsIdempotentAndRefusesMinting(t *testing.T) {
	t.Parallel()
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.ICEServers(newSID(t)); err == nil {
		t.Error("ICEServers after Close succeeded")
	}
}
