//go:build linux

package relay

import (
	"net"
	"net/netip"
	"testing"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// listenUDP opens a UDP socket on network/addr, closed when the test ends.
func listenUDP(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// TestPacketPathAllocs checks that the wrappers add no allocation per
// datagram: batched reads on client-facing and relay sockets, and relay
// socket writes.
func TestPacketPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful with -race (sync.Pool drops items)")
	}
	cfg := testConfig()
	// Writes to snd, at an address of this host outside our relay ports,
	// pass the own-address guard (and exercise it) because AllowPeers
	// covers it.
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s := newServer(t, cfg)
	snd := listenUDP(t, "udp4", "127.0.0.1:0")
	msg := make([]byte, 1000)
	buf := make([]byte, 1600)
	const runs = 200

	rc := listenUDP(t, "udp4", "127.0.0.1:0")
	if _, err := sockio.SetReceiveBuffer(rc, 4<<20); err != nil {
		t.Fatal(err)
	}
	tc := newTurnPacketConn(rc, s)
	relaySock := listenUDP(t, "udp4", "127.0.0.1:0")
	if _, err := sockio.SetReceiveBuffer(relaySock, 4<<20); err != nil {
		t.Fatal(err)
	}
	rl := s.newRelayConn(relaySock, relaySock.LocalAddr().(*net.UDPAddr).Port)
	rl.pl.Permit(netip.MustParseAddr("127.0.0.1")) // snd's: admission passes its datagrams
	t.Cleanup(func() {
		tc.Close()
		_, _, _ = tc.ReadFrom(buf) // lets the tracker know the read loop is done
		rl.Close()
	})

	for _, tt := range []struct {
		name string
		dst  net.Addr
		read func([]byte) (int, net.Addr, error)
	}{
		{"client-facing read", rc.LocalAddr(), tc.ReadFrom},
		{"relay read", relaySock.LocalAddr(), rl.ReadFrom},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for range runs + 1 {
				if _, err := snd.WriteTo(msg, tt.dst); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(runs, func() {
				if _, _, err := tt.read(buf); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations per datagram, want 0", allocs)
			}
		})
	}
	t.Run("relay write", func(t *testing.T) {
		to := snd.LocalAddr().(*net.UDPAddr)
		allocs := testing.AllocsPerRun(runs, func() {
			if _, err := rl.WriteTo(msg, to); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%.1f allocations per datagram, want 0", allocs)
		}
	})
}
