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
	fa := newFastAlloc(client.LocalAddr(), tc, rl)
	fa.table.Store(&bindTable{
		byNum:  map[uint16]*chanPeer{0x4000: newChanPeer(peerAddr, peerAddr.AddrPort(), rl, nil)},
		byPeer: map[netip.AddrPort]uint16{peerAddr.AddrPort(): 0x4000},
	})
	rl.adm.permit(peerAddr.AddrPort().Addr())
	rl.adm.permit(other.LocalAddr().(*net.UDPAddr).AddrPort().Addr())
	// A second allocation on the same socket, at a relay address the first
	// one's channel 0x4001 points at: the handover.
	client2 := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	relaySock2 := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	rl2 := s.newRelayConn(relaySock2, relaySock2.LocalAddr().(*net.UDPAddr).Port)
	t.Cleanup(func() { rl2.Close() })
	fb := newFastAlloc(client2.LocalAddr(), tc, rl2)
	fb.table.Store(&bindTable{
		byPeer: map[netip.AddrPort]uint16{rl.self: 0x4001},
	})
	rl2.adm.permit(rl.self.Addr())
	rl2Addr := relaySock2.LocalAddr().(*net.UDPAddr)
	fa.table.Load().byNum[0x4001] = newChanPeer(rl2Addr, rl2Addr.AddrPort(), rl, rl2)
	rl.adm.permit(rl2Addr.AddrPort().Addr())
	tc.fast.Store(&map[netip.AddrPort]*fastAlloc{clientAP: fa, client2.LocalAddr().(*net.UDPAddr).AddrPort(): fb})
	rl.fast.Store(fa)
	rl2.fast.Store(fb)

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
		{"client to peer", client, client, frame, rc.LocalAddr(), tc.ReadFrom, rl.fastTo.Load},
		{"peer to client", peer, other, frame[4:], relaySock.LocalAddr(), rl.ReadFrom, rl.fastFrom.Load},
		{"handover", client, client, handFrame, rc.LocalAddr(), tc.ReadFrom, rl.counters.handed.Load},
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
