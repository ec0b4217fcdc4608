package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// relayedAddr returns the XOR-RELAYED-ADDRESS of an Allocate response.
func relayedAddr(t *testing.T, m *stun.Message) netip.AddrPort {
	t.Helper()
	var a stun.XORMappedAddress
	if err := a.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		t.Fatalf("Allocate response without XOR-RELAYED-ADDRESS: %v", err)
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		t.Fatalf("relayed address %v", a.IP)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}

// relayPair allocates for two clients of one session, over UDP or TCP
// each, and returns them with their relayed addresses.
func relayPair(t *testing.T, s *Server, tcpA, tcpB bool) (a, b *rawClient, relA, relB netip.AddrPort) {
	t.Helper()
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	a, b = dialRaw(t, s, user, pass, tcpA), dialRaw(t, s, user, pass, tcpB)
	for _, c := range []*rawClient{a, b} {
		resp := c.allocate()
		if !isSuccess(resp) {
			t.Fatalf("Allocate: error %d", errorCode(resp))
		}
		if c == a {
			relA = relayedAddr(t, resp)
		} else {
			relB = relayedAddr(t, resp)
		}
	}
	return a, b, relA, relB
}

// expectRelayed checks that c next receives data on channel number (0: a
// Data indication), padded as ChannelData is.
func expectRelayed(t *testing.T, c *rawClient, number uint16, data string) {
	t.Helper()
	got, raw := c.relayed(5 * time.Second)
	if got != number || !bytes.Contains(raw, []byte(data)) {
		t.Fatalf("client received channel %#x % x, want channel %#x with %q", got, raw, number, data)
	}
	if number != 0 {
		want := make([]byte, 4+(len(data)+3)&^3)
		want[0], want[1], want[3] = byte(number>>8), byte(number), byte(len(data))
		copy(want[4:], data)
		if !bytes.Equal(raw, want) {
			t.Fatalf("client received % x, want % x", raw, want)
		}
	}
}

// TestLocalHandover checks the in-process handover between two allocations
// of this server: two clients whose channels point at each other's relayed
// address exchange data byte for byte, whichever transport each uses, the
// data is handed over without a datagram between the relay sockets, and
// the traffic counters count it as if it had gone through the kernel. With
// NoLocalHandover the same exchange goes through the kernel, and on pion's
// data path (NoFastPath) through pion.
func TestLocalHandover(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"handover", "kernel", "pion"} {
		handover, path := mode == "handover", dataPaths()[0]
		if mode == "pion" {
			path = dataPaths()[1]
		}
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			name := mode + "/" + transportName(tr[0]) + "-" + transportName(tr[1])
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				cfg := testConfig()
				cfg.NoLocalHandover = !handover
				path.on(nil)(&cfg)
				s := newServer(t, cfg)
				a, b, relA, relB := relayPair(t, s, tr[0], tr[1])
				if resp := a.bind(0x4000, relB); !isSuccess(resp) {
					t.Fatalf("ChannelBind A: error %d", errorCode(resp))
				}
				if resp := b.bind(0x4001, relA); !isSuccess(resp) {
					t.Fatalf("ChannelBind B: error %d", errorCode(resp))
				}
				before := s.traffic.total()

				// pion's TCP framing waits for a ninth byte before it
				// parses a frame, so a ChannelData message with 4 bytes
				// of data or less waits there for the next message: the
				// data is longer.
				a.channelData(0x4000, []byte("ping!"))
				expectRelayed(t, b, 0x4001, "ping!")
				b.channelData(0x4001, []byte("hello back"))
				expectRelayed(t, a, 0x4000, "hello back")

				ra, rb := s.relayAt(relA), s.relayAt(relB)
				one := path.fastOr(1)
				waitRelayed(t, s, before, 2, 2)
				waitFor(t, "fast path counts", func() bool {
					return ra.pl.Counters.FastTo.Load() == one && rb.pl.Counters.FastTo.Load() == one &&
						ra.pl.Counters.FastFrom.Load() == one && rb.pl.Counters.FastFrom.Load() == one
				})
				want := uint64(0)
				if handover {
					want = 1
				}
				if ha, hb := ra.pl.Counters.Handed.Load(), rb.pl.Counters.Handed.Load(); ha != want || hb != want {
					t.Errorf("handed over %d from A and %d from B, want %d each", ha, hb, want)
				}
				after := s.traffic.total()
				if d := after.packetsTo - before.packetsTo; d != 2 {
					t.Errorf("packets to peers counted %d, want 2", d)
				}
				if d := after.packetsFrom - before.packetsFrom; d != 2 {
					t.Errorf("packets from peers counted %d, want 2", d)
				}
				if d := after.bytesTo - before.bytesTo; d != 15 {
					t.Errorf("bytes to peers counted %d, want 15", d)
				}
				if d := after.bytesFrom - before.bytesFrom; d != 15 {
					t.Errorf("bytes from peers counted %d, want 15", d)
				}
				if d := after.handed - before.handed; d != 2*want {
					t.Errorf("handovers counted %d in the totals, want %d", d, 2*want)
				}
			})
		}
	}
}

// TestLocalHandoverDefers checks that the handover leaves to the receiving
// allocation's socket, and so to pion, what its own checks do not vouch
// for: with only a permission for the sender, the receiver gets a Data
// indication; with neither channel nor permission, nothing; once it binds
// a channel, the handover takes over.
func TestLocalHandoverDefers(t *testing.T) {
	t.Parallel()
	for _, tcp := range transports() {
		t.Run(transportName(tcp), func(t *testing.T) {
			t.Parallel()
			s := newServer(t, testConfig())
			a, b, relA, relB := relayPair(t, s, false, tcp)
			if resp := a.bind(0x4000, relB); !isSuccess(resp) {
				t.Fatalf("ChannelBind A: error %d", errorCode(resp))
			}
			ra, rb := s.relayAt(relA), s.relayAt(relB)

			// B's socket reads one datagram at a time: once it has read a
			// second one, from an address B never permits, the first has
			// been handled, before B's permission exists.
			a.channelData(0x4000, []byte("no permission"))
			other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := other.WriteToUDPAddrPort([]byte("other"), relB); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "B's relay socket to read both", func() bool { return rb.pl.Counters.PacketsFrom.Load() == 2 })
			if resp := b.permit(relA); !isSuccess(resp) {
				t.Fatalf("CreatePermission B: error %d", errorCode(resp))
			}
			a.channelData(0x4000, []byte("permission only"))
			expectRelayed(t, b, 0, "permission only") // the first thing B gets
			if h := ra.pl.Counters.Handed.Load(); h != 0 {
				t.Errorf("handed over %d datagrams without a channel at the receiver, want 0", h)
			}

			if resp := b.bind(0x4001, relA); !isSuccess(resp) {
				t.Fatalf("ChannelBind B: error %d", errorCode(resp))
			}
			a.channelData(0x4000, []byte("channel"))
			expectRelayed(t, b, 0x4001, "channel")
			eventually(func() bool { return ra.pl.Counters.Handed.Load() == 1 })
			if h := ra.pl.Counters.Handed.Load(); h != 1 {
				t.Errorf("handed over %d datagrams once the receiver bound a channel, want 1", h)
			}
		})
	}
}
