// Package netkey says which address a client is counted by for per-address
// limits (connection caps, quotas, rate limits), so that every limit in the
// server agrees on what "one client" is.
package netkey

import "net/netip"

// IPv6Bits is the prefix length an IPv6 client is counted by: one
// subscriber usually gets a whole /64 and can pick any address in it, so
// counting single IPv6 addresses would give one client 2^64 quotas.
const IPv6Bits = 64

// Client returns the key a client at a is counted by: an IPv4 address
// (also in its IPv4-mapped IPv6 form) as itself, an IPv6 address as the
// first address of its /64, without zone. The zero Addr stays zero.
func Client(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if !a.Is6() {
		return a
	}
	p, _ := a.WithZone("").Prefix(IPv6Bits)
	return p.Addr()
}
