package sockio

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
	snd := NewSender(nil)
	for _, network := range []string{"udp4", "udp"} {
		pc := listenUDP(t, network, ":0")
		lu, _ := NewUDP(pc, NewPool(), 1).(*linuxUDP)
		if lu == nil {
			t.Fatalf("%s: no raw sender", network)
		}
		u := &lu.out
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
	u := &NewUDP(pc, NewPool(), 1).(*linuxUDP).out
	pc.Close()
	sa, _ := newSockaddr(unix.AF_INET, to)
	if err := snd.send(u, []byte("closed"), &sa); err == nil {
		t.Error("send on a closed socket succeeded")
	}
}
