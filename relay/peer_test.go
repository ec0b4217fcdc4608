package relay

import (
	"net/netip"
	"testing"
)

func TestPeerPolicy(t *testing.T) {
	t.Parallel()
	own := netip.MustParseAddr("203.0.113.7") // documentation range: denied unless it is ours
	policy := peerPolicy{own: own}
	allowLoop := peerPolicy{own: own, allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

	tests := []struct {
		peer    string
		allowed bool
	}{
		// Public unicast.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::808:808", true},   // NAT64 of 8.8.8.8
		{"2002:808:808::1", true},    // 6to4 of 8.8.8.8
		{"::8.8.8.8", true},          // IPv4-compatible 8.8.8.8
		{"203.0.113.7", true},        // our own relay address
		{"::ffff:203.0.113.7", true}, // our own, mapped
		// IPv4 special-purpose ranges.
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"10.0.0.5", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"169.254.169.254", false},
		{"169.254.0.1", false},
		{"192.0.0.8", false},
		{"192.0.2.1", false},
		{"198.18.0.1", false},
		{"198.19.255.255", false},
		{"198.51.100.1", false},
		{"203.0.113.8", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		// IPv6 special-purpose ranges.
		{"::", false},
		{"::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fe80::1", false},
		{"fec0::1", false},
		{"ff02::1", false},
		{"2001:db8::1", false},
		{"100::1", false},
		// Every IPv4-in-IPv6 encoding of a denied address.
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.5", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:0.0.0.0", false},
		{"::127.0.0.1", false},
		{"::10.0.0.5", false},
		{"::169.254.169.254", false},
		{"64:ff9b::7f00:1", false},
		{"64:ff9b::a00:5", false},
		{"64:ff9b::a9fe:a9fe", false},
		{"64:ff9b::e000:1", false},
		{"64:ff9b:1::7f00:1", false},
		{"64:ff9b:1:7f00:0:100::", false}, // RFC 6052 /48 embedding of 127.0.0.1
		{"64:ff9b:1::808:808", false},     // local-use NAT64 is denied whatever it embeds
		{"2002:7f00:1::", false},
		{"2002:a00:5::1", false},
		{"2002:a9fe:a9fe::", false},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", false}, // Teredo, client 127.0.0.1
		{"2001:0:7f00:1:8000:63bf:f7f7:f7f7", false},    // Teredo, server 127.0.0.1
		{"2001:0:4136:e378:8000:63bf:f7f7:f7f7", true},  // Teredo, public client and server
		{"fe80::1%eth0", false},
	}
	for _, tc := range tests {
		t.Run(tc.peer, func(t *testing.T) {
			t.Parallel()
			a := netip.MustParseAddr(tc.peer)
			if got := policy.allowed(a); got != tc.allowed {
				t.Errorf("allowed(%s) = %v, want %v", tc.peer, got, tc.allowed)
			}
			canon, _ := CanonicalPeer(a)
			if canon.Is4() && canon.IsLoopback() && !allowLoop.allowed(a) {
				t.Errorf("AllowPeers 127.0.0.0/8 does not lift the deny for %s", tc.peer)
			}
		})
	}
	if policy.allowed(netip.Addr{}) {
		t.Error("the zero address is allowed")
	}
}

func TestCanonicalPeer(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, teredo string }{
		{"8.8.8.8", "8.8.8.8", ""},
		{"::ffff:10.0.0.5", "10.0.0.5", ""},
		{"::10.0.0.5", "10.0.0.5", ""},
		{"64:ff9b::a00:5", "10.0.0.5", ""},
		{"2002:a00:5::", "10.0.0.5", ""},
		{"2001:0:4136:e378:8000:63bf:f5ff:fffa", "10.0.0.5", "65.54.227.120"},
		{"::", "::", ""},
		{"::1", "::1", ""},
		{"2001:db8::1", "2001:db8::1", ""},
		{"fe80::1%eth0", "fe80::1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, teredo := CanonicalPeer(netip.MustParseAddr(tc.in))
			if got.String() != tc.want {
				t.Errorf("CanonicalPeer(%s) = %s, want %s", tc.in, got, tc.want)
			}
			if (tc.teredo == "") != !teredo.IsValid() || (tc.teredo != "" && teredo.String() != tc.teredo) {
				t.Errorf("Teredo server of %s = %v, want %q", tc.in, teredo, tc.teredo)
			}
		})
	}
}

func FuzzCanonicalPeer(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1",
		"2002:7f00:1::", "2001:0:4136:e378:8000:63bf:80ff:fffe", "::1", "8.8.8.8"} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:])
	}
	policy := peerPolicy{own: netip.MustParseAddr("198.51.100.1")}
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			return
		}
		canon, teredo := CanonicalPeer(a)
		if !canon.IsValid() {
			t.Fatalf("CanonicalPeer(%s) is invalid", a)
		}
		// Canonicalisation is idempotent for everything but Teredo (whose
		// client address is the one that matters).
		if again, _ := CanonicalPeer(canon); again != canon {
			t.Fatalf("CanonicalPeer not idempotent: %s -> %s -> %s", a, canon, again)
		}
		// An encoding is never more permissive than what it embeds.
		if policy.allowed(a) && canon != policy.own && !publicUnicast(canon) {
			t.Fatalf("%s allowed but embeds non-public %s", a, canon)
		}
		if policy.allowed(a) && teredo.IsValid() && !publicUnicast(teredo) {
			t.Fatalf("%s allowed but its Teredo server %s is not public", a, teredo)
		}
		// Never allow loopback, private or link-local in any encoding.
		if policy.allowed(a) && (canon.IsLoopback() || canon.IsPrivate() || canon.IsLinkLocalUnicast() ||
			canon.IsUnspecified() || canon.IsMulticast()) {
			t.Fatalf("%s (canonical %s) allowed", a, canon)
		}
	})
}
