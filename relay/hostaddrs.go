package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// hostRefreshInterval is how often the relay re-reads the host's interface
// addresses, so an address added while it runs is guarded within seconds.
const hostRefreshInterval = 5 * time.Second

// Reasons for peer-policy denials, the "reason" label of peer_denied_total.
const (
	deniedReserved = "reserved" // a private, reserved or special-purpose address
	deniedHost     = "host"     // an address of this host, outside our relay ports
)

// hostSet is the set of this host's own addresses the relay may send to
// only on its own relay ports: every interface address, PublicIP, BindIP
// and the TURN listeners' addresses (when not wildcards), less the ranges
// AllowPeers opens (an operator's explicit exception). Without this guard
// a peer address of the host that the peer policy lets through (a second
// public address, say) would reach any UDP service of the host bound to
// the wildcard address. Immutable once built: the server swaps in a new
// one when the addresses change, so the packet path reads it without a
// lock.
type hostSet struct {
	addrs []netip.Addr // canonical (unmapped, no zone), sorted, unique
	v4    []uint32     // the IPv4 ones as numbers, sorted: the packet path's lookup
}

// hostSetScanMax is the size up to which membership is a scan (a few
// comparisons); larger sets are searched by bisection.
const hostSetScanMax = 16

func newHostSet(addrs []netip.Addr) *hostSet {
	slices.SortFunc(addrs, netip.Addr.Compare)
	h := &hostSet{addrs: slices.Compact(addrs)}
	for _, a := range h.addrs {
		if a.Is4() {
			h.v4 = append(h.v4, v4Number(a))
		}
	}
	return h
}

func v4Number(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// has reports whether the canonical address a is one of the host's.
func (h *hostSet) has(a netip.Addr) bool {
	if h == nil {
		return false
	}
	if a.Is4() {
		x := v4Number(a)
		if len(h.v4) > hostSetScanMax {
			_, found := slices.BinarySearch(h.v4, x)
			return found
		}
		for _, y := range h.v4 {
			if y == x {
				return true
			}
		}
		return false
	}
	return slices.Contains(h.addrs, a)
}

// hostAddrs returns the addresses of this host the relay guards: see
// hostSet. If the interfaces cannot be listed, it returns ok=false.
func (s *Server) hostAddrs() (addrs []netip.Addr, ok bool) {
	add := func(a netip.Addr) {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || a.IsUnspecified() {
			return
		}
		for _, p := range s.cfg.AllowPeers {
			if p.Contains(a) {
				return
			}
		}
		addrs = append(addrs, a)
	}
	add(s.cfg.PublicIP)
	add(s.cfg.BindIP)
	add(s.udpAddr.AddrPort().Addr())
	add(s.tcpAddr.AddrPort().Addr())
	for _, l := range s.cfg.StreamListeners {
		if ta, ok := l.Addr().(*net.TCPAddr); ok {
			add(ta.AddrPort().Addr())
		}
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return addrs, false
	}
	for _, ia := range ifaddrs {
		if n, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				add(a)
			}
		}
	}
	return addrs, true
}

// refreshHosts re-reads the host's addresses and swaps in a new set when
// they changed. A failure to list the interfaces keeps the current set.
func (s *Server) refreshHosts() {
	addrs, ok := s.hostAddrs()
	if !ok && s.hosts.Load() != nil {
		return
	}
	next := newHostSet(addrs)
	if cur := s.hosts.Load(); cur != nil && slices.Equal(cur.addrs, next.addrs) {
		return
	}
	s.hosts.Store(next)
	s.log.Debug("host addresses guarded", "count", len(next.addrs))
}

// watchHosts refreshes the host set until the server stops.
func (s *Server) watchHosts() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.hostRefresh)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.refreshHosts()
		}
	}
}

// deniedHost reports whether peer is an address of this host at a port
// that is not one of our open relay sockets. Relay to relay (both sides
// of a call relayed here) stays allowed; everything else the host serves
// on that address does not get our traffic. Lock-free.
func (s *Server) deniedHost(peer netip.AddrPort) bool {
	a := peer.Addr()
	if !a.Is4() {
		a, _ = CanonicalPeer(a)
	}
	if !s.hosts.Load().has(a) {
		return false
	}
	return !s.relayPorts.has(peer.Port())
}

// portSet is a set of port numbers read without a lock.
type portSet [65536 / 64]atomic.Uint64

func (p *portSet) add(port int)         { p[port>>6].Or(1 << (port & 63)) }
func (p *portSet) remove(port int)      { p[port>>6].And(^(uint64(1) << (port & 63))) }
func (p *portSet) has(port uint16) bool { return p[port>>6].Load()&(1<<(port&63)) != 0 }
