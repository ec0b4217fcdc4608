package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/strangers-chat/strangers/relay/internal/plane"
)

// fastCounts sums what the fast path relayed over the open relay sockets.
func fastCounts(s *Server) (toPeer, toClient uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.relays {
		toPeer += r.pl.Counters.FastTo.Load()
		toClient += r.pl.Counters.FastFrom.Load()
	}
	return toPeer, toClient
}

// relayed reads frames until a ChannelData message or a Data indication
// arrives and returns its payload; channel is 0 for a Data indication.
func (c *rawClient) relayed(timeout time.Duration) (channel uint16, data []byte) {
	c.t.Helper()
	if err := c.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		c.t.Fatal(err)
	}
	for {
		raw, err := c.frame()
		if err != nil {
			c.t.Fatalf("reading relayed data: %v", err)
		}
		if raw[0]&0xC0 == 0x40 {
			return binary.BigEndian.Uint16(raw), raw
		}
		m := &stun.Message{Raw: raw}
		if err := m.Decode(); err != nil {
			c.t.Fatalf("undecodable frame: %v", err)
		}
		if m.Type == stun.NewType(stun.MethodData, stun.ClassIndication) {
			v, err := m.Get(stun.AttrData)
			if err != nil {
				c.t.Fatalf("Data indication without DATA: %v", err)
			}
			return 0, v
		}
	}
}

// fastSetup starts a relay that allows loopback peers, allocates for a
// new session over UDP or TCP and binds channel 0x4000 to a sink.
func fastSetup(t *testing.T, tcp bool, tweak func(*Config)) (*Server, *rawClient, *sink, string) {
	t.Helper()
	cfg := testConfig()
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	if tweak != nil {
		tweak(&cfg)
	}
	s := newServer(t, cfg)
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	c := dialRaw(t, s, user, pass, tcp)
	if resp := c.allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate: error %d", errorCode(resp))
	}
	peer := newSink(t, "127.0.0.1")
	if resp := c.bind(0x4000, peer.addr()); !isSuccess(resp) {
		t.Fatalf("ChannelBind: error %d", errorCode(resp))
	}
	return s, c, peer, sid
}

// flush makes a request round trip, so everything the client sent before
// has been handled by the relay.
func (c *rawClient) flush() {
	c.t.Helper()
	c.refresh(10 * time.Minute)
}

// expectCanary checks that the next datagram the sink holds is a canary
// sent directly to it now: whatever the relay did before is already queued.
func expectCanary(t *testing.T, sk *sink) {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(sk.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("canary")); err != nil {
		t.Fatal(err)
	}
	if got := sk.next(5 * time.Second); string(got) != "canary" {
		t.Errorf("peer received %q before the canary", got)
	}
}

func transports() []bool { return []bool{false, true} }

// dataPath is one of the two data planes every relay end-to-end test of
// relayed traffic runs on, from the same table: ours (the fast path, the
// in-process handover) and pion's (Config.NoFastPath). The results must
// be the same, except for which path counted the datagrams.
type dataPath struct {
	name   string
	noFast bool
}

func dataPaths() []dataPath { return []dataPath{{"fastpath", false}, {"pion", true}} }

// on returns tweak with the data path set.
func (p dataPath) on(tweak func(*Config)) func(*Config) {
	return func(c *Config) {
		c.NoFastPath = p.noFast
		if tweak != nil {
			tweak(c)
		}
	}
}

// config returns the tests' configuration on this data path.
func (p dataPath) config() Config {
	c := testConfig()
	c.NoFastPath = p.noFast
	return c
}

// eachPath runs test once per data path, as subtests named after it: a
// differential test of our data plane against pion's. test calls
// t.Parallel itself.
func eachPath(t *testing.T, test func(*testing.T, dataPath)) {
	for _, path := range dataPaths() {
		t.Run(path.name, func(t *testing.T) { test(t, path) })
	}
}

// fastOr returns n on the fast path and 0 on pion's.
func (p dataPath) fastOr(n uint64) uint64 {
	if p.noFast {
		return 0
	}
	return n
}

// waitRelayed waits until s has counted packets datagrams to peers and
// from peers since before.
func waitRelayed(t *testing.T, s *Server, before trafficSnapshot, to, from uint64) {
	t.Helper()
	waitFor(t, "traffic counts", func() bool {
		now := s.traffic.total()
		return now.packetsTo-before.packetsTo >= to && now.packetsFrom-before.packetsFrom >= from
	})
}

func transportName(tcp bool) string { return map[bool]string{false: "udp", true: "tcp"}[tcp] }

// TestFastPathRelays checks that bound channels are relayed by the fast
// path in both directions, byte for byte as pion would (ChannelData padded
// to 4 bytes over UDP and TCP), and that the traffic counters count it.
func TestFastPathRelays(t *testing.T) {
	t.Parallel()
	for _, path := range dataPaths() {
		for _, tcp := range transports() {
			t.Run(path.name+"/"+transportName(tcp), func(t *testing.T) {
				t.Parallel()
				testRelays(t, path, tcp)
			})
		}
	}
}

func testRelays(t *testing.T, path dataPath, tcp bool) {
	s, c, peer, _ := fastSetup(t, tcp, path.on(nil))
	before := s.traffic.total()

	c.channelData(0x4000, []byte("hello"))
	if got := peer.next(5 * time.Second); string(got) != "hello" {
		t.Fatalf("peer received %q, want hello", got)
	}
	waitRelayed(t, s, before, 1, 0)

	relay := relayedAddrOf(t, s)
	if _, err := peer.conn.WriteToUDPAddrPort([]byte("world"), relay); err != nil {
		t.Fatal(err)
	}
	number, raw := c.relayed(5 * time.Second)
	want := []byte{0x40, 0x00, 0x00, 0x05, 'w', 'o', 'r', 'l', 'd', 0, 0, 0}
	if number != 0x4000 || !bytes.Equal(raw, want) {
		t.Fatalf("client received % x, want % x", raw, want)
	}
	waitRelayed(t, s, before, 1, 1)
	eventually(func() bool { to, from := fastCounts(s); return to == path.fastOr(1) && from == path.fastOr(1) })
	if to, from := fastCounts(s); to != path.fastOr(1) || from != path.fastOr(1) {
		t.Errorf("fast path relayed %d to the peer and %d to the client, want %d each", to, from, path.fastOr(1))
	}

	after := s.traffic.total()
	if d := after.packetsTo - before.packetsTo; d != 1 {
		t.Errorf("packets to peers counted %d, want 1", d)
	}
	if d := after.bytesTo - before.bytesTo; d != 5 {
		t.Errorf("bytes to peers counted %d, want 5", d)
	}
	if d := after.packetsFrom - before.packetsFrom; d != 1 {
		t.Errorf("packets from peers counted %d, want 1", d)
	}
	if d := after.bytesFrom - before.bytesFrom; d != 5 {
		t.Errorf("bytes from peers counted %d, want 5", d)
	}
}

// relayedAddrOf returns the address of the single relay socket of s.
func relayedAddrOf(t *testing.T, s *Server) netip.AddrPort {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for port := range s.relays {
		return netip.AddrPortFrom(loopback, uint16(port))
	}
	t.Fatal("no relay socket")
	return netip.AddrPort{}
}

// TestFastPathRefuses checks that the fast path relays nothing pion would
// refuse and hands pion what only pion may decide, over UDP and TCP: the
// same table runs on pion's data path, with the same results. Permissions
// that end are TestPermissionEndsRelay's.
func TestFastPathRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		tweak func(*Config)
		// spoil changes the state after a first relayed message.
		spoil func(t *testing.T, s *Server, c *rawClient, sid string)
		// number is the channel the client then sends on.
		number uint16
		// peerGets is what the peer then receives ("" nothing), and
		// clientGets how a datagram from the peer then reaches the client
		// (channel number, 0 for a Data indication, -1 not at all).
		peerGets   string
		clientGets int
		// fast is whether the fast path may relay those.
		fast bool
	}{
		{
			name:       "unknown channel",
			number:     0x4001,
			spoil:      func(*testing.T, *Server, *rawClient, string) {},
			peerGets:   "",
			clientGets: 0x4000,
			fast:       true,
		},
		{
			name:  "expired channel",
			tweak: func(c *Config) { c.channelLifetime = 300 * time.Millisecond },
			spoil: func(t *testing.T, s *Server, c *rawClient, _ string) {
				t.Helper()
				waitFor(t, "channel expiry", func() bool {
					s.mu.Lock()
					defer s.mu.Unlock()
					a := s.allocs[transportKey(c.conn.LocalAddr())]
					if a == nil || a.relay == nil {
						return false
					}
					n, _ := a.relay.pl.Channels(0)
					return n == 0
				})
			},
			number:     0x4000,
			peerGets:   "",
			clientGets: 0, // the permission lives on: pion sends a Data indication
		},
		{
			name:  "revoked session",
			tweak: func(c *Config) { c.SessionGrace = time.Millisecond },
			spoil: func(t *testing.T, s *Server, _ *rawClient, sid string) {
				t.Helper()
				s.SessionEnded(sid)
				waitFor(t, "allocation closed", func() bool { return s.AllocationCount() == 0 })
			},
			number:     0x4000,
			peerGets:   "",
			clientGets: -1,
		},
	}
	for _, tt := range tests {
		for _, path := range dataPaths() {
			for _, tcp := range transports() {
				t.Run(tt.name+"/"+path.name+"/"+transportName(tcp), func(t *testing.T) {
					t.Parallel()
					s, c, peer, sid := fastSetup(t, tcp, path.on(tt.tweak))
					relay := relayedAddrOf(t, s)
					c.channelData(0x4000, []byte("first"))
					if got := peer.next(5 * time.Second); string(got) != "first" {
						t.Fatalf("peer received %q, want first", got)
					}
					waitFor(t, "count to peer", func() bool { return s.traffic.total().packetsTo == 1 })
					rl := s.relayAt(relay)

					tt.spoil(t, s, c, sid)
					c.channelData(tt.number, []byte("data"))
					c.flush()
					if tt.peerGets != "" {
						if got := peer.next(5 * time.Second); string(got) != tt.peerGets {
							t.Errorf("peer received %q, want %q", got, tt.peerGets)
						}
					}
					expectCanary(t, peer)

					if tt.clientGets >= 0 {
						if _, err := peer.conn.WriteToUDPAddrPort([]byte("back"), relay); err != nil {
							t.Fatal(err)
						}
						number, raw := c.relayed(5 * time.Second)
						if int(number) != tt.clientGets || !bytes.Contains(raw, []byte("back")) {
							t.Errorf("client received channel %#x % x, want channel %#x", number, raw, tt.clientGets)
						}
					}
					wantTo, wantFrom := path.fastOr(1), uint64(0)
					if tt.fast {
						wantFrom = path.fastOr(1)
					}
					eventually(func() bool {
						return rl.pl.Counters.FastTo.Load() == wantTo && rl.pl.Counters.FastFrom.Load() == wantFrom
					})
					if to, from := rl.pl.Counters.FastTo.Load(), rl.pl.Counters.FastFrom.Load(); to != wantTo || from != wantFrom {
						t.Errorf("fast path relayed %d to the peer and %d to the client, want %d and %d", to, from, wantTo, wantFrom)
					}
				})
			}
		}
	}
}

// relayAt returns the relay socket at a.
func (s *Server) relayAt(a netip.AddrPort) *relayConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relays[int(a.Port())]
}

// TestFastPathBurst checks that a burst is relayed whole and in order in
// both directions, over UDP (datagrams read in batches) and TCP (frames
// sent in one write, so one read holds several), on both data paths.
func TestFastPathBurst(t *testing.T) {
	t.Parallel()
	for _, path := range dataPaths() {
		for _, tcp := range transports() {
			t.Run(path.name+"/"+transportName(tcp), func(t *testing.T) {
				t.Parallel()
				testBurst(t, path, tcp)
			})
		}
	}
}

func testBurst(t *testing.T, path dataPath, tcp bool) {
	s, c, peer, _ := fastSetup(t, tcp, path.on(nil))
	const n = 40 // fewer than the sink holds
	var burst []byte
	for i := range n {
		payload := fmt.Sprintf("to-peer-%02d", i) // 10 bytes: padded on TCP
		frame := make([]byte, 4, 16)
		binary.BigEndian.PutUint16(frame, 0x4000)
		binary.BigEndian.PutUint16(frame[2:], uint16(len(payload)))
		frame = append(frame, payload...)
		if !tcp {
			if _, err := c.conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			continue
		}
		burst = append(burst, append(frame, 0, 0)...)
	}
	if tcp {
		if _, err := c.conn.Write(burst); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if got, want := string(peer.next(5*time.Second)), fmt.Sprintf("to-peer-%02d", i); got != want {
			t.Fatalf("peer received %q, want %q", got, want)
		}
	}

	relay := relayedAddrOf(t, s)
	for i := range n {
		if _, err := peer.conn.WriteToUDPAddrPort(fmt.Appendf(nil, "to-client-%02d", i), relay); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		number, raw := c.relayed(5 * time.Second)
		_, data, ok := plane.ParseChannelData(raw)
		if want := fmt.Sprintf("to-client-%02d", i); number != 0x4000 || !ok || string(data) != want {
			t.Fatalf("client received % x, want ChannelData %q", raw, want)
		}
	}
}
