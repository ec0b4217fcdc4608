package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestNewSockaddr(t *testing.T) {
	t.Parallel()
	v4 := netip.MustParseAddrPort("192.0.2.1:3478")
	tests := []struct {
		name   string
		family int
		ap     netip.AddrPort
		ok     bool
		want   []byte // the bytes sendto gets
	}{
		{"IPv4 on IPv4", unix.AF_INET, v4, true, sockaddr4(t, [4]byte{192, 0, 2, 1}, 3478)},
		{"mapped IPv4 on IPv4", unix.AF_INET, netip.MustParseAddrPort("[::ffff:192.0.2.1]:3478"), true,
			sockaddr4(t, [4]byte{192, 0, 2, 1}, 3478)},
		{"IPv4 on IPv6 is mapped", unix.AF_INET6, v4, true,
			sockaddr6(t, netip.MustParseAddr("::ffff:192.0.2.1").As16(), 3478)},
		{"IPv6 on IPv6", unix.AF_INET6, netip.MustParseAddrPort("[2001:db8::1]:65535"), true,
			sockaddr6(t, netip.MustParseAddr("2001:db8::1").As16(), 65535)},
		{"IPv6 on IPv4", unix.AF_INET, netip.MustParseAddrPort("[2001:db8::1]:1"), false, nil},
		{"zoned", unix.AF_INET6, netip.MustParseAddrPort("[fe80::1%eth0]:1"), false, nil},
		{"invalid", unix.AF_INET6, netip.AddrPort{}, false, nil},
	}
	for _, tt := range tests {
		sa, ok := newSockaddr(tt.family, tt.ap)
		if ok != tt.ok {
			t.Errorf("%s: ok %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		got := unsafe.Slice((*byte)(unsafe.Pointer(&sa.raw)), sa.len)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("%s: % x, want % x", tt.name, got, tt.want)
		}
	}
}

func sockaddr4(t *testing.T, ip [4]byte, port uint16) []byte {
	t.Helper()
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip}
	sa.Port = ntohs(port) // the same swap both ways
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)...)
}

func sockaddr6(t *testing.T, ip [16]byte, port uint16) []byte {
	t.Helper()
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip}
	sa.Port = ntohs(port)
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet6)...)
}

// TestSenderSends sends through IPv4 and dual-stack IPv6 sockets to an
// IPv4 receiver, which must see the datagram from the sending socket.
func TestSenderSends(t *testing.T) {
	t.Parallel()
	rcv := listenUDP(t, "udp4", "127.0.0.1:0")
	to := rcv.LocalAddr().(*net.UDPAddr).AddrPort()
	snd := newSender()
	for _, network := range []string{"udp4", "udp"} {
		pc := listenUDP(t, network, ":0")
		u := newRawUDP(pc)
		if u == nil {
			t.Fatalf("%s: no raw sender", network)
		}
		if want := map[string]int{"udp4": unix.AF_INET, "udp": unix.AF_INET6}[network]; u.family != want {
			t.Skipf("%s socket has family %d, want %d (no IPv6?)", network, u.family, want)
		}
		sa, ok := newSockaddr(u.family, to)
		if !ok {
			t.Fatalf("%s: no socket address for %v", network, to)
		}
		if err := snd.send(u, []byte(network), &sa); err != nil {
			t.Fatalf("%s: send: %v", network, err)
		}
		_ = rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, from, err := rcv.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != network {
			t.Fatalf("%s: received %q, %v", network, buf[:n], err)
		}
		if int(from.Port()) != pc.LocalAddr().(*net.UDPAddr).Port {
			t.Errorf("%s: datagram from %v, want port %d", network, from, pc.LocalAddr().(*net.UDPAddr).Port)
		}
	}
	pc := listenUDP(t, "udp4", "127.0.0.1:0")
	u := newRawUDP(pc)
	pc.Close()
	sa, _ := newSockaddr(unix.AF_INET, to)
	if err := snd.send(u, []byte("closed"), &sa); err == nil {
		t.Error("send on a closed socket succeeded")
	}
}

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
		tc, _ := st.fast.owner.(*turnPacketConn)
		if tc == nil || tc.rawOut == nil || tc.rawOut.family != unix.AF_INET6 {
			s.mu.Unlock()
			t.Skip("the wildcard listener is not a dual-stack IPv6 socket here")
		}
		if !st.fast.rawOK {
			t.Errorf("no raw sends to client %v", st.fast.client)
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
		return ra.fastTo.Load() == 2 && ra.fastFrom.Load() == 1 && ra.counters.handed.Load() == 1
	})
}
