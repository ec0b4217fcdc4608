package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// distinctSource returns a loopback UDP socket whose address does not share
// a relay socket's source-address cache slot with c's, so alternating
// between the two does not measure cache misses.
func distinctSource(t *testing.T, c *net.UDPConn) *net.UDPConn {
	t.Helper()
	for range 20 {
		o := listenUDP(t, "udp4", "127.0.0.1:0")
		if !sockio.SameCacheSlot(c.LocalAddr().(*net.UDPAddr).AddrPort(), o.LocalAddr().(*net.UDPAddr).AddrPort(), relayAddrCache) {
			return o
		}
	}
	t.Skip("no loopback port outside the peer's address cache slot")
	return nil
}

// TestFastPathAllocs checks that the fast path allocates nothing per
// datagram in either direction over UDP, nor when it hands a datagram over
// to another relay socket of ours. Each run relays one ChannelData
// datagram on the fast path and then returns one that pion must handle.
func TestFastPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful with -race (sync.Pool drops items)")
	}
	cfg := testConfig()
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s := newServer(t, cfg)
	buf := make([]byte, 1600)
	const runs = 200

	big := func(c *net.UDPConn) *net.UDPConn {
		if _, err := sockio.SetReceiveBuffer(c, 4<<20); err != nil {
			t.Fatal(err)
		}
		return c
	}
	client := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	peer := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	other := big(distinctSource(t, peer))
	rc := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	relaySock := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	tc := newTurnPacketConn(rc, s)
	rl := s.newRelayConn(relaySock, relaySock.LocalAddr().(*net.UDPAddr).Port)
	t.Cleanup(func() {
		tc.Close()
		_, _, _ = tc.ReadFrom(buf) // lets the tracker know the read loop is done
		rl.Close()
	})

	peerAddr := peer.LocalAddr().(*net.UDPAddr)
	clientAP := client.LocalAddr().(*net.UDPAddr).AddrPort()
	rl.pl.Bind(0x4000, peerAddr, peerAddr.AddrPort(), nil)
	rl.pl.Permit(peerAddr.AddrPort().Addr())
	rl.pl.Permit(other.LocalAddr().(*net.UDPAddr).AddrPort().Addr())
	// A second allocation on the same socket, at a relay address the first
	// one's channel 0x4001 points at: the handover.
	client2 := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	client2AP := client2.LocalAddr().(*net.UDPAddr).AddrPort()
	relaySock2 := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	rl2 := s.newRelayConn(relaySock2, relaySock2.LocalAddr().(*net.UDPAddr).Port)
	t.Cleanup(func() { rl2.Close() })
	rlSelf := netip.AddrPortFrom(s.cfg.PublicIP, uint16(rl.port))
	rl2.pl.Bind(0x4001, net.UDPAddrFromAddrPort(rlSelf), rlSelf, rl.pl)
	rl2.pl.Permit(rlSelf.Addr())
	rl2Addr := relaySock2.LocalAddr().(*net.UDPAddr)
	rl.pl.Bind(0x4001, rl2Addr, rl2Addr.AddrPort(), rl2.pl)
	rl.pl.Permit(rl2Addr.AddrPort().Addr())
	rl.pl.Serve(tc, tc.sio.Dest(client.LocalAddr(), clientAP))
	rl2.pl.Serve(tc, tc.sio.Dest(client2.LocalAddr(), client2AP))
	tc.clients.Set(clientAP, rl.pl)
	tc.clients.Set(client2AP, rl2.pl)

	frame := make([]byte, 4+1000)
	binary.BigEndian.PutUint16(frame, 0x4000)
	binary.BigEndian.PutUint16(frame[2:], 1000)
	handFrame := append([]byte(nil), frame...)
	binary.BigEndian.PutUint16(handFrame, 0x4001)
	stunish := make([]byte, 20) // a Binding request header, for pion

	for _, tt := range []struct {
		name       string
		fast, slow *net.UDPConn
		msg        []byte
		dst        net.Addr
		read       func([]byte) (int, net.Addr, error)
		fastCount  func() uint64
	}{
		{"client to peer", client, client, frame, rc.LocalAddr(), tc.ReadFrom, rl.pl.Counters.FastTo.Load},
		{"peer to client", peer, other, frame[4:], relaySock.LocalAddr(), rl.ReadFrom, rl.pl.Counters.FastFrom.Load},
		{"handover", client, client, handFrame, rc.LocalAddr(), tc.ReadFrom, rl.pl.Counters.Handed.Load},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for range runs + 1 {
				if _, err := tt.fast.WriteTo(tt.msg, tt.dst); err != nil {
					t.Fatal(err)
				}
				if _, err := tt.slow.WriteTo(stunish, tt.dst); err != nil {
					t.Fatal(err)
				}
			}
			start := tt.fastCount()
			allocs := testing.AllocsPerRun(runs, func() {
				if n, _, err := tt.read(buf); err != nil || n != len(stunish) {
					t.Fatalf("read %d bytes, %v; want the %d-byte message for pion", n, err, len(stunish))
				}
			})
			if got := tt.fastCount() - start; got != runs+1 {
				t.Errorf("fast path relayed %d datagrams, want %d", got, runs+1)
			}
			if allocs != 0 {
				t.Errorf("%.1f allocations per datagram, want 0", allocs)
			}
		})
	}
}
