package relay

import (
	"net/netip"
)

// deniedPeers are the special-purpose ranges the relay never sends to (an
// SSRF guard), checked after CanonicalPeer has unwrapped IPv4-in-IPv6.
var deniedPeers = []netip.Prefix{
	// IPv4 (RFC 6890 and friends).
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", incl. unspecified
	netip.MustParsePrefix("10.0.0.0/8"),      // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, incl. cloud metadata
	netip.MustParsePrefix("172.16.0.0/12"),   // RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("192.168.0.0/16"),  // RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, incl. broadcast
	// IPv6.
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215), any embedding
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("fc00::/7"),       // unique local
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated)
	netip.MustParsePrefix("ff00::/8"),       // multicast
}

var (
	prefixCompat = netip.MustParsePrefix("::/96")
	prefixNAT64  = netip.MustParsePrefix("64:ff9b::/96")
	prefix6to4   = netip.MustParsePrefix("2002::/16")
	prefixTeredo = netip.MustParsePrefix("2001::/32")
)

// CanonicalPeer unwraps every IPv4-in-IPv6 encoding of a peer address so the
// policy judges the IPv4 address a packet would really reach: IPv4-mapped
// (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and
// 6to4 (2002:AABB:CCDD::/48). For Teredo (2001::/32) it returns the client's
// IPv4 address (de-obfuscated); Teredo's server address is returned second so
// callers can check both. Zones are dropped. Other addresses come back
// unchanged.
func CanonicalPeer(a netip.Addr) (canon, teredoServer netip.Addr) {
	a = a.WithZone("")
	if a.Is4() || !a.Is6() {
		return a, netip.Addr{}
	}
	b := a.As16()
	switch {
	case a.Is4In6():
		return a.Unmap(), netip.Addr{}
	case prefixCompat.Contains(a) && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte(b[12:16])), netip.Addr{}
	case prefixNAT64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), netip.Addr{}
	case prefix6to4.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), netip.Addr{}
	case prefixTeredo.Contains(a):
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return netip.AddrFrom4(client), netip.AddrFrom4([4]byte(b[4:8]))
	}
	return a, netip.Addr{}
}

// peerPolicy decides which peers an allocation may relay to.
type peerPolicy struct {
	own   netip.Addr     // our advertised relay address: always allowed
	allow []netip.Prefix // operator exceptions: always allowed
}

// allowed reports whether peer may be relayed to: our own relay address
// and AllowPeers are allowed; otherwise the canonical address (and a Teredo
// server address) must be outside every denied range and global unicast.
func (p *peerPolicy) allowed(peer netip.Addr) bool {
	if !peer.IsValid() {
		return false
	}
	canon, teredo := CanonicalPeer(peer)
	if canon == p.own {
		return true
	}
	for _, pre := range p.allow {
		if pre.Contains(canon) {
			return true
		}
	}
	if !publicUnicast(canon) {
		return false
	}
	if teredo.IsValid() && !publicUnicast(teredo) {
		return false
	}
	return true
}

// publicUnicast reports whether a (already canonical) is a global unicast
// address outside deniedPeers.
func publicUnicast(a netip.Addr) bool {
	for _, pre := range deniedPeers {
		if pre.Contains(a) {
			return false
		}
	}
	return a.IsGlobalUnicast()
}
