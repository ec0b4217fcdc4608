package relay

import (
	"net/netip"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// A revoked session (its user was banned) loses its allocations at once,
// although the grace of an ended session would outlast the test: relaying
// stops and its credential no longer authenticates.
func TestSessionRevokedClosesAllocations(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.SessionGrace = time.Hour
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s := newServer(t, cfg)
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	c := dialRaw(t, s, user, pass, false)
	if resp := c.allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate: error %d", errorCode(resp))
	}
	sink := newSink(t, "127.0.0.1")
	if resp := c.permit(sink.addr()); !isSuccess(resp) {
		t.Fatalf("CreatePermission: error %d", errorCode(resp))
	}
	c.indicate(sink.addr(), []byte("before"))
	if got := sink.next(5 * time.Second); string(got) != "before" {
		t.Fatalf("relayed %q before the revocation", got)
	}

	s.SessionRevoked(sid)
	testsupport.WaitFor(t, 10*time.Second, "the allocation to close", func() bool { return s.AllocationCount() == 0 })
	if resp := c.refresh(10 * time.Minute); isSuccess(resp) {
		t.Fatal("a revoked session's allocation refreshed")
	}
	if resp := dialRaw(t, s, user, pass, false).allocate(); isSuccess(resp) {
		t.Fatal("a revoked session allocated again")
	}
	s.SessionRevoked(sid) // again, or unknown: nothing happens
	s.SessionRevoked("AAAAAAAAAAAAAAAAAAAAAA")
}
