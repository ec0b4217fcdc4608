package relay

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestHostSetAndPortSet(t *testing.T) {
	for _, n := range []int{1, hostSetScanMax, hostSetScanMax + 5} {
		var addrs []netip.Addr
		for i := range n {
			addrs = append(addrs, netip.AddrFrom4([4]byte{192, 31, 196, byte(i + 1)}))
		}
		h := newHostSet(append(addrs, addrs[0])) // duplicates are fine
		for _, a := range addrs {
			if !h.has(a) {
				t.Errorf("%d addresses: %s missing", n, a)
			}
		}
		if h.has(netip.MustParseAddr("192.31.197.1")) {
			t.Errorf("%d addresses: a stranger is in the set", n)
		}
	}
	v6 := newHostSet([]netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.31.196.1")})
	if !v6.has(netip.MustParseAddr("2001:db8::1")) || v6.has(netip.MustParseAddr("2001:db8::2")) {
		t.Error("IPv6 membership wrong")
	}
	if (*hostSet)(nil).has(netip.MustParseAddr("192.31.196.1")) {
		t.Error("the nil set holds something")
	}
	var p portSet
	for _, port := range []int{0, 1, 63, 64, 49152, 65535} {
		p.add(port)
		if !p.has(uint16(port)) { //nolint:gosec // a port
			t.Errorf("port %d missing after add", port)
		}
		p.remove(port)
		if p.has(uint16(port)) { //nolint:gosec // a port
			t.Errorf("port %d present after remove", port)
		}
	}
}

// BenchmarkDeniedHost measures the guard every datagram to a peer passes.
func BenchmarkDeniedHost(b *testing.B) {
	for _, n := range []int{4, 64} {
		b.Run(fmt.Sprintf("%d_host_addresses", n), func(b *testing.B) {
			var addrs []netip.Addr
			for i := range n {
				addrs = append(addrs, netip.AddrFrom4([4]byte{192, 31, byte(i), 1}))
			}
			s := &Server{}
			s.hosts.Store(newHostSet(addrs))
			peer := netip.MustParseAddrPort("198.51.100.9:50000")
			b.ReportAllocs()
			for b.Loop() {
				if s.deniedHost(peer) {
					b.Fatal("denied a stranger")
				}
			}
		})
	}
}
