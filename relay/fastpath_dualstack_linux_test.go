package relay

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestFastPathDualStack runs the fast path, and the handover, through a
// relay listening on the wildcard address, as it does by default: the
// client-facing sockets are dual-stack IPv6 sockets that send to IPv4
// clients at IPv4-mapped addresses.
func TestFastPathDualStack(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ListenAddr = ":0"
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s := newServer(t, cfg)
	a, b, relA, relB := relayPair(t, s, false, false)
	s.mu.Lock()
	for _, st := range s.allocs {
		tc, _ := st.owner.(*turnPacketConn)
		if tc == nil || tc.LocalAddr().(*net.UDPAddr).IP.To4() != nil {
			s.mu.Unlock()
			t.Skip("the wildcard listener is not a dual-stack IPv6 socket here")
		}
		if to, _ := st.relay.pl.Client(); !to.Raw() {
			t.Errorf("no raw sends to client %v", st.clientAP)
		}
	}
	s.mu.Unlock()
	peer := newSink(t, "127.0.0.1")
	if resp := a.bind(0x4000, peer.addr()); !isSuccess(resp) {
		t.Fatalf("ChannelBind A: error %d", errorCode(resp))
	}
	a.channelData(0x4000, []byte("to peer"))
	if got := peer.next(5 * time.Second); string(got) != "to peer" {
		t.Fatalf("peer received %q", got)
	}
	if _, err := peer.conn.WriteToUDPAddrPort([]byte("from peer"), relA); err != nil {
		t.Fatal(err)
	}
	expectRelayed(t, a, 0x4000, "from peer")

	if resp := a.bind(0x4001, relB); !isSuccess(resp) {
		t.Fatalf("ChannelBind A: error %d", errorCode(resp))
	}
	if resp := b.bind(0x4002, relA); !isSuccess(resp) {
		t.Fatalf("ChannelBind B: error %d", errorCode(resp))
	}
	a.channelData(0x4001, []byte("handed"))
	expectRelayed(t, b, 0x4002, "handed")
	ra := s.relayAt(relA)
	waitFor(t, "fast path counts", func() bool {
		return ra.pl.Counters.FastTo.Load() == 2 && ra.pl.Counters.FastFrom.Load() == 1 && ra.pl.Counters.Handed.Load() == 1
	})
}
