package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDeniedPeersGetNothing drives a real allocation at denied loopback
// peers in every way TURN allows and checks that a loopback sink receives
// nothing: the first datagram it sees is a canary sent after the server has
// provably finished with every attempt.
func TestDeniedPeersGetNothing(t *testing.T) {
	t.Parallel()
	eachPath(t, testDeniedPeersGetNothing)
}

func testDeniedPeersGetNothing(t *testing.T, path dataPath) {
	t.Parallel()
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "udp", true: "tcp"}[tcp], func(t *testing.T) {
			t.Parallel()
			cfg := path.config()
			cfg.PublicIP = netip.MustParseAddr("127.0.0.2") // our "own" address, allowed but port-guarded
			s := newServer(t, cfg)
			sid := newSID(t)
			s.SessionStarted(sid)
			user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
			c := dialRaw(t, s, user, pass, tcp)
			if resp := c.allocate(); !isSuccess(resp) {
				t.Fatalf("Allocate: error %d", errorCode(resp))
			}
			target := newSink(t, "127.0.0.1")
			own := newSink(t, "127.0.0.2")
			mapped := netip.AddrPortFrom(netip.AddrFrom16(target.addr().Addr().As16()), target.addr().Port())
			denied := deniedTotal(s)

			for _, peer := range []netip.AddrPort{
				target.addr(),
				mapped, // ::ffff:127.0.0.1 sent with the IPv6 family
				netip.AddrPortFrom(netip.MustParseAddr("::127.0.0.1"), target.addr().Port()),
				netip.AddrPortFrom(netip.MustParseAddr("64:ff9b::7f00:1"), target.addr().Port()),
				netip.AddrPortFrom(netip.MustParseAddr("2002:7f00:1::"), target.addr().Port()),
			} {
				if resp := c.permit(peer); isSuccess(resp) {
					t.Errorf("CreatePermission to %s succeeded", peer)
				}
				if resp := c.bind(0x4000, peer); isSuccess(resp) {
					t.Errorf("ChannelBind to %s succeeded", peer)
				}
				c.indicate(peer, []byte("leak via send"))
			}
			c.channelData(0x4000, []byte("leak via channel"))
			// Our own address is allowed (relay to relay) but only its relay ports.
			if resp := c.permit(own.addr()); !isSuccess(resp) {
				t.Fatalf("CreatePermission to our own address: error %d", errorCode(resp))
			}
			c.indicate(own.addr(), []byte("leak to own address"))
			if resp := c.bind(0x4001, own.addr()); !isSuccess(resp) {
				t.Fatalf("ChannelBind to our own address: error %d", errorCode(resp))
			}
			c.channelData(0x4001, []byte("leak to own address via channel"))

			// Requests are handled in order: once this answer is back, every
			// datagram above has been relayed or dropped.
			if resp := c.refresh(10 * time.Minute); !isSuccess(resp) {
				t.Fatalf("Refresh: error %d", errorCode(resp))
			}
			canary, err := net.Dial("udp4", target.addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer canary.Close()
			canaryOwn, err := net.Dial("udp4", own.addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer canaryOwn.Close()
			canary.Write([]byte("canary"))
			canaryOwn.Write([]byte("canary"))
			for _, sk := range []*sink{target, own} {
				if got := sk.next(5 * time.Second); string(got) != "canary" {
					t.Errorf("sink %s received %q before the canary", sk.addr(), got)
				}
			}
			if got := deniedTotal(s); got < denied+10 {
				t.Errorf("peer_denied_total went %v -> %v, want at least +10", denied, got)
			}
		})
	}
}

// TestAllowedPeersRelay relays both ways between a pion client and a loopback
// peer once 127.0.0.0/8 is in AllowPeers.
func TestAllowedPeersRelay(t *testing.T) {
	t.Parallel()
	eachPath(t, testAllowedPeersRelay)
}

func testAllowedPeersRelay(t *testing.T, path dataPath) {
	t.Parallel()
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "udp", true: "tcp"}[tcp], func(t *testing.T) {
			t.Parallel()
			cfg := path.config()
			cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			s := newServer(t, cfg)
			sid := newSID(t)
			s.SessionStarted(sid)
			user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
			client := dialPion(t, s, user, pass, tcp)
			relayed, err := client.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			peer, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()

			// Client to peer: the first writes go as Send indications, later
			// ones over the channel pion binds in the background. (Messages
			// are kept above 4 bytes: pion's TCP framer waits for 9 bytes
			// before it looks at a frame.)
			const msgs, size = 20, 100
			buf := make([]byte, 1500)
			var from *net.UDPAddr
			for i := range msgs {
				msg := bytes.Repeat([]byte{'c', byte(i)}, size/2)
				if _, err := relayed.WriteTo(msg, peer.LocalAddr()); err != nil {
					t.Fatalf("WriteTo: %v", err)
				}
				peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, addr, err := peer.ReadFromUDP(buf)
				if err != nil {
					t.Fatalf("peer read %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], msg) {
					t.Fatalf("peer got %q, want %q", buf[:n], msg)
				}
				from = addr
			}
			if from.Port != relayed.LocalAddr().(*net.UDPAddr).Port {
				t.Errorf("peer saw source port %d, relayed port %d", from.Port, relayed.LocalAddr().(*net.UDPAddr).Port)
			}
			// Peer to client.
			for i := range msgs {
				msg := bytes.Repeat([]byte{'p', byte(i)}, size/2)
				if _, err := peer.WriteToUDP(msg, from); err != nil {
					t.Fatal(err)
				}
				relayed.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err := relayed.ReadFrom(buf)
				if err != nil {
					t.Fatalf("client read %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], msg) {
					t.Fatalf("client got %q, want %q", buf[:n], msg)
				}
			}
			want := func(tot trafficSnapshot) bool {
				return tot.packetsTo == msgs && tot.bytesTo == size*msgs && tot.packetsFrom == msgs && tot.bytesFrom == size*msgs
			}
			eventually(func() bool { return want(s.traffic.total()) })
			if tot := s.traffic.total(); !want(tot) {
				t.Errorf("traffic counters %+v, want %d packets of %d bytes each way", tot, msgs, size)
			}
		})
	}
}

func TestPermissionAndChannelCaps(t *testing.T) {
	t.Parallel()
	eachPath(t, testPermissionAndChannelCaps)
}

func testPermissionAndChannelCaps(t *testing.T, path dataPath) {
	t.Parallel()
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "udp", true: "tcp"}[tcp], func(t *testing.T) {
			t.Parallel()
			cfg := path.config()
			cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			cfg.MaxPermissionsPerAllocation = 2
			cfg.MaxChannelsPerAllocation = 2
			s := newServer(t, cfg)
			sid := newSID(t)
			s.SessionStarted(sid)
			user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
			c := dialRaw(t, s, user, pass, tcp)
			if resp := c.allocate(); !isSuccess(resp) {
				t.Fatalf("Allocate: error %d", errorCode(resp))
			}
			p := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
			steps := []struct {
				name string
				do   func() *stun.Message
				ok   bool
				code stun.ErrorCode
			}{
				{"permission 1", func() *stun.Message { return c.permit(p("127.0.0.3:1")) }, true, 0},
				{"permission 2", func() *stun.Message { return c.permit(p("127.0.0.4:1")) }, true, 0},
				{"permission 3 over cap", func() *stun.Message { return c.permit(p("127.0.0.5:1")) }, false, 0},
				{"permission 1 refresh", func() *stun.Message { return c.permit(p("127.0.0.3:9")) }, true, 0},
				{"channel 1", func() *stun.Message { return c.bind(0x4000, p("127.0.0.3:1")) }, true, 0},
				{"channel 2", func() *stun.Message { return c.bind(0x4001, p("127.0.0.3:2")) }, true, 0},
				{"channel 3 over cap", func() *stun.Message { return c.bind(0x4002, p("127.0.0.4:1")) }, false, stun.CodeInsufficientCapacity},
				{"channel 1 refresh", func() *stun.Message { return c.bind(0x4000, p("127.0.0.3:1")) }, true, 0},
				{"channel number too low", func() *stun.Message { return c.bind(0x3FFF, p("127.0.0.3:3")) }, false, stun.CodeBadRequest},
				{"channel number too high", func() *stun.Message { return c.bind(0x8000, p("127.0.0.3:3")) }, false, stun.CodeBadRequest},
				{"channel number zero", func() *stun.Message { return c.bind(0, p("127.0.0.3:3")) }, false, stun.CodeBadRequest},
			}
			for _, st := range steps {
				resp := st.do()
				if isSuccess(resp) != st.ok {
					t.Errorf("%s: success = %v (error %d), want %v", st.name, isSuccess(resp), errorCode(resp), st.ok)
				}
				if st.code != 0 && errorCode(resp) != st.code {
					t.Errorf("%s: error %d, want %d", st.name, errorCode(resp), st.code)
				}
			}
			if got := testutil.ToFloat64(s.metrics.quotaHits.WithLabelValues(quotaPermissions)); got != 1 {
				t.Errorf("permission quota hits = %v, want 1", got)
			}
			if got := testutil.ToFloat64(s.metrics.quotaHits.WithLabelValues(quotaChannels)); got != 1 {
				t.Errorf("channel quota hits = %v, want 1", got)
			}
		})
	}
}

// deniedTotal sums peer_denied_total over its reasons.
func deniedTotal(s *Server) float64 {
	return testutil.ToFloat64(s.metrics.peerDeniedReserved) + testutil.ToFloat64(s.metrics.peerDeniedHost)
}
