package netkey

import (
	"net/netip"
	"testing"
)

func TestClient(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
		{"::1", "::"},
	} {
		if got := Client(netip.MustParseAddr(tt.in)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("Client(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := Client(netip.Addr{}); got.IsValid() {
		t.Errorf("Client(zero) = %s, want the zero Addr", got)
	}
	// Two addresses of one /64 are one client; of two /64s, two.
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2:0:0:1")
	c := netip.MustParseAddr("2001:db8:0:1::1")
	if Client(a) != Client(b) || Client(a) == Client(c) {
		t.Error("an IPv6 /64 is not one client")
	}
}
