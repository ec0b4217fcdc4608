package relay

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// drops returns what s counted in dropped_packets_total{direction, reason}.
func drops(s *Server, direction, reason string) float64 {
	return testutil.ToFloat64(s.metrics.dropped.WithLabelValues(direction, reason))
}

// TestPermissionEndsRelay checks that once a permission is gone, by pion's
// deletion event or by its lifetime running out, nothing is relayed
// between the client and that peer in either direction although the
// channel to it is still bound (RFC 8656), on both data paths, over UDP
// and TCP.
func TestPermissionEndsRelay(t *testing.T) {
	t.Parallel()
	peerIP := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name  string
		tweak func(*Config)
		end   func(t *testing.T, s *Server, c *rawClient, rl *relayConn)
	}{
		{
			// pion deletes a permission when it expires, after 5 minutes:
			// the test delivers pion's event.
			name: "deleted",
			end: func(t *testing.T, s *Server, c *rawClient, _ *relayConn) {
				t.Helper()
				s.onPermissionDeleted(c.conn.LocalAddr(), nil, "", "", "", nil, net.IP(peerIP.AsSlice()))
			},
		},
		{
			name:  "lapsed",
			tweak: func(c *Config) { c.permissionLifetime = 3 * time.Second },
			end: func(t *testing.T, _ *Server, _ *rawClient, rl *relayConn) {
				t.Helper()
				waitFor(t, "permission lapse", func() bool { return !rl.pl.Live(peerIP) })
			},
		},
	}
	for _, tt := range tests {
		for _, path := range dataPaths() {
			for _, tcp := range transports() {
				t.Run(tt.name+"/"+path.name+"/"+transportName(tcp), func(t *testing.T) {
					t.Parallel()
					s, c, peer, _ := fastSetup(t, tcp, path.on(tt.tweak))
					relay := relayedAddrOf(t, s)
					rl := s.relayAt(relay)
					c.channelData(0x4000, []byte("first"))
					if got := peer.next(5 * time.Second); string(got) != "first" {
						t.Fatalf("peer received %q, want first", got)
					}

					tt.end(t, s, c, rl)
					s.mu.Lock()
					a := s.allocs[transportKey(c.conn.LocalAddr())]
					_, bound := a.relay.pl.Channels(0x4000)
					s.mu.Unlock()
					if !bound {
						t.Fatal("the channel is gone too: the test shows nothing")
					}

					// Client to peer: dropped.
					toPeer := drops(s, dirToPeer, dropNoPermission)
					c.channelData(0x4000, []byte("after"))
					c.flush()
					expectCanary(t, peer)
					if d := drops(s, dirToPeer, dropNoPermission) - toPeer; d != 1 {
						t.Errorf("dropped %v datagrams to the peer for want of a permission, want 1", d)
					}

					// Peer to client: dropped; a marker from a peer with a
					// fresh permission, sent after the drop, is the first
					// thing the client gets.
					fromPeer := drops(s, dirFromPeer, dropNoPermission)
					if _, err := peer.conn.WriteToUDPAddrPort([]byte("back"), relay); err != nil {
						t.Fatal(err)
					}
					waitFor(t, "the datagram from the peer dropped", func() bool {
						return drops(s, dirFromPeer, dropNoPermission)-fromPeer >= 1
					})
					other := newSink(t, "127.0.0.2")
					if resp := c.permit(other.addr()); !isSuccess(resp) {
						t.Fatalf("CreatePermission: error %d", errorCode(resp))
					}
					// pion arms the permission's timer under no lock its
					// Close takes; a later request, which takes the
					// allocation manager's lock, orders the two for the
					// race detector.
					c.flush()
					if _, err := other.conn.WriteToUDPAddrPort([]byte("marker"), relay); err != nil {
						t.Fatal(err)
					}
					expectRelayed(t, c, 0, "marker")
				})
			}
		}
	}
}

// TestBitrateCap checks MaxBitrate on both data paths, over UDP and TCP,
// in both directions: traffic under the cap loses nothing; a flood over it
// gets about the cap through (at most twice the cap over the flood's
// duration plus the burst) and the rest is counted as dropped.
func TestBitrateCap(t *testing.T) {
	t.Parallel()
	const (
		capBits = 400_000 // 50 kB/s; the burst is then capMinBurst
		size    = 1000
		under   = 30  // datagrams well within the burst
		flood   = 400 // 400 kB, far over the burst
		wave    = 50  // datagrams the peer sends before waiting for the relay to read them
	)
	for _, path := range dataPaths() {
		for _, tcp := range transports() {
			t.Run(path.name+"/"+transportName(tcp), func(t *testing.T) {
				t.Parallel()
				s, c, peer, _ := fastSetup(t, tcp, path.on(func(c *Config) { c.MaxBitrate = capBits }))
				relay := relayedAddrOf(t, s)
				rl := s.relayAt(relay)
				msg := make([]byte, size)

				// Under the cap: everything arrives.
				for i := range under {
					msg[0] = byte(i)
					c.channelData(0x4000, msg)
					if got := peer.next(5 * time.Second); len(got) != size || got[0] != byte(i) {
						t.Fatalf("peer received %d bytes (datagram %d), want %d", len(got), i, size)
					}
					if _, err := peer.conn.WriteToUDPAddrPort(msg, relay); err != nil {
						t.Fatal(err)
					}
					if n, raw := c.relayed(5 * time.Second); n != 0x4000 || len(raw) != 4+size || raw[4] != byte(i) {
						t.Fatalf("client received channel %#x, %d bytes (datagram %d)", n, len(raw), i)
					}
				}
				if to, from := drops(s, dirToPeer, dropBitrate), drops(s, dirFromPeer, dropBitrate); to != 0 || from != 0 {
					t.Fatalf("under the cap, dropped %v to the peer and %v to the client", to, from)
				}

				// Over the cap, client to peer. A datagram is counted once it
				// has left, which may be just after the peer got it: the
				// count starts once the last one under the cap is in.
				limit := func(d time.Duration) float64 {
					return 2 * (capBits/8*d.Seconds() + s.limits.Burst().Seconds()*capBits/8)
				}
				if !eventually(func() bool { return s.traffic.total().bytesTo >= under*size }) {
					t.Fatalf("counted %d bytes to the peer, want %d", s.traffic.total().bytesTo, under*size)
				}
				before := s.traffic.total()
				start := time.Now()
				for range flood {
					c.channelData(0x4000, msg)
				}
				c.flush()
				elapsed := time.Since(start)
				sent := float64(s.traffic.total().bytesTo - before.bytesTo)
				dropped := drops(s, dirToPeer, dropBitrate)
				if sent > limit(elapsed) || sent == 0 {
					t.Errorf("relayed %v bytes to the peer in %v, want some and at most %v", sent, elapsed, limit(elapsed))
				}
				if dropped == 0 || dropped*size+sent > flood*size {
					t.Errorf("relayed %v bytes and dropped %v datagrams of %d bytes of the %d sent", sent, dropped, size, flood)
				}

				// Over the cap, peer to client.
				read := rl.pl.Counters.PacketsFrom.Load()
				start = time.Now()
				for i := range flood {
					if _, err := peer.conn.WriteToUDPAddrPort(msg, relay); err != nil {
						t.Fatal(err)
					}
					if (i+1)%wave == 0 {
						want := read + uint64(i+1)
						waitFor(t, "the relay to read a wave", func() bool { return rl.pl.Counters.PacketsFrom.Load() >= want })
					}
				}
				elapsed = time.Since(start)
				dropped = drops(s, dirFromPeer, dropBitrate)
				passed := (flood - dropped) * size
				if dropped == 0 || passed > limit(elapsed) {
					t.Errorf("passed %v bytes to the client in %v (dropped %v datagrams), want at most %v and some dropped",
						passed, elapsed, dropped, limit(elapsed))
				}
			})
		}
	}
}
