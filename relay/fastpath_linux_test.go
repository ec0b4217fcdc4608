package relay

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/relay/internal/plane"
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

// TestFastPathBatches checks the queued sends of the data plane's UDP
// readers: when one batch of reads relays datagrams to several sockets
// and destinations, each destination gets all of its datagrams, in order,
// from the right relay address, and the counters count each once; the
// same for a relay socket's batch, from two peers, to its client.
func TestFastPathBatches(t *testing.T) {
	cfg := testConfig()
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s := newServer(t, cfg)
	buf := make([]byte, 1600)
	big := func(c *net.UDPConn) *net.UDPConn {
		if _, err := sockio.SetReceiveBuffer(c, 4<<20); err != nil {
			t.Fatal(err)
		}
		return c
	}
	rc := big(listenUDP(t, "udp4", "127.0.0.1:0"))
	tc := newTurnPacketConn(rc, s)
	t.Cleanup(func() {
		tc.Close()
		_, _, _ = tc.ReadFrom(buf) // lets the tracker know the read loop is done
	})
	clients := []*net.UDPConn{big(listenUDP(t, "udp4", "127.0.0.1:0")), big(listenUDP(t, "udp4", "127.0.0.1:0"))}
	peers := []*net.UDPConn{big(listenUDP(t, "udp4", "127.0.0.1:0")), big(listenUDP(t, "udp4", "127.0.0.1:0"))}
	var rls []*relayConn
	for i, client := range clients {
		sock := big(listenUDP(t, "udp4", "127.0.0.1:0"))
		rl := s.newRelayConn(sock, sock.LocalAddr().(*net.UDPAddr).Port)
		t.Cleanup(func() { rl.Close() })
		// Client i's allocation: channel 0x4000+j to peer j (client 1 has
		// only peer 0).
		for j, peer := range peers[:len(peers)-i] {
			pa := peer.LocalAddr().(*net.UDPAddr)
			rl.pl.Bind(uint16(0x4000+j), pa, pa.AddrPort(), nil)
			rl.pl.Permit(pa.AddrPort().Addr())
		}
		ap := client.LocalAddr().(*net.UDPAddr).AddrPort()
		rl.pl.Serve(tc, tc.sio.Dest(client.LocalAddr(), ap))
		tc.clients.Set(ap, rl.pl)
		rls = append(rls, rl)
	}
	const n = 3*sockio.SendBatch + 5 // several batches, the last one partial
	stunish := make([]byte, 20)      // a Binding request header: for pion
	channelData := func(number uint16, payload string) []byte {
		b := make([]byte, 4, 4+len(payload))
		binary.BigEndian.PutUint16(b, number)
		binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
		return append(b, payload...)
	}
	readAll := func(t *testing.T, c *net.UDPConn, want map[int][]string, source func(netip.AddrPort) int, decode func([]byte) (int, string)) {
		t.Helper()
		total := 0
		for _, w := range want {
			total += len(w)
		}
		got := map[int][]string{}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for range total {
			k, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%v: after %v: %v", c.LocalAddr(), got, err)
			}
			key, payload := decode(buf[:k])
			key += 10 * source(from)
			got[key] = append(got[key], payload)
		}
		for key, w := range want {
			if fmt.Sprint(got[key]) != fmt.Sprint(w) {
				t.Errorf("%v, flow %d: received %q, want %q", c.LocalAddr(), key, got[key], w)
			}
		}
	}

	t.Run("client to peers", func(t *testing.T) {
		// Clients 0 and 1 interleaved; client 0 alternates between its
		// two channels: each batch mixes relay sockets and peers.
		want := make([]map[int][]string, len(peers)) // by peer: by 10*relay: payloads
		for j := range want {
			want[j] = map[int][]string{}
		}
		for i := range n {
			c, j := i%2, 0
			if c == 0 {
				j = (i / 2) % 2
			}
			payload := fmt.Sprintf("c%d-%d", c, i)
			if _, err := clients[c].WriteTo(channelData(uint16(0x4000+j), payload), rc.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			want[j][10*c] = append(want[j][10*c], payload)
		}
		if _, err := clients[0].WriteTo(stunish, rc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if k, _, err := tc.ReadFrom(buf); err != nil || k != len(stunish) {
			t.Fatalf("read %d bytes, %v; want the %d-byte message for pion", k, err, len(stunish))
		}
		relayOf := func(from netip.AddrPort) int {
			for i, rl := range rls {
				if int(from.Port()) == rl.port {
					return i
				}
			}
			return 9
		}
		for j, peer := range peers {
			readAll(t, peer, want[j], relayOf, func(b []byte) (int, string) { return 0, string(b) })
		}
		// A datagram is counted once it has left, which may be just
		// after its peer read it.
		eventually(func() bool { return rls[0].pl.Counters.PacketsTo.Load()+rls[1].pl.Counters.PacketsTo.Load() >= n })
		if got := rls[0].pl.Counters.FastTo.Load() + rls[1].pl.Counters.FastTo.Load(); got != n {
			t.Errorf("FastTo counted %d datagrams, want %d", got, n)
		}
		if got := rls[0].pl.Counters.PacketsTo.Load() + rls[1].pl.Counters.PacketsTo.Load(); got != n {
			t.Errorf("PacketsTo counted %d datagrams, want %d", got, n)
		}
	})

	t.Run("peers to client", func(t *testing.T) {
		rl := rls[0]
		dst := rl.PacketConn.LocalAddr()
		want := map[int][]string{} // by channel index
		for i := range n {
			j := i % 2
			payload := fmt.Sprintf("p%d-%d-%s", j, i, strings.Repeat("x", i)) // sizes vary: padding
			if _, err := peers[j].WriteTo([]byte(payload), dst); err != nil {
				t.Fatal(err)
			}
			want[j] = append(want[j], payload)
		}
		other := distinctSource(t, peers[0])
		rl.pl.Permit(other.LocalAddr().(*net.UDPAddr).AddrPort().Addr())
		if _, err := other.WriteTo(stunish, dst); err != nil {
			t.Fatal(err)
		}
		before := rl.pl.Counters.FastFrom.Load()
		if err := rl.PacketConn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if k, _, err := rl.ReadFrom(buf); err != nil || k != len(stunish) {
			t.Fatalf("read %d bytes, %v; want the %d-byte datagram for pion", k, err, len(stunish))
		}
		if got := rl.pl.Counters.FastFrom.Load() - before; got != n {
			t.Errorf("FastFrom counted %d datagrams, want %d", got, n)
		}
		fromUs := func(from netip.AddrPort) int {
			if from != rc.LocalAddr().(*net.UDPAddr).AddrPort() {
				return 9
			}
			return 0
		}
		readAll(t, clients[0], want, fromUs, func(b []byte) (int, string) {
			number, data, ok := plane.ParseChannelData(b)
			if !ok || len(b) != plane.Pad(len(data)) {
				return 8, fmt.Sprintf("bad ChannelData % x", b)
			}
			return int(number - 0x4000), string(data)
		})
	})
}
