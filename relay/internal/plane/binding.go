package plane

import (
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// Binding is one allocation's binding table: its permissions and its
// channels, the only copy the relay keeps. Writers (the control plane's
// events) are serialised by mu and replace the table whole; the packet
// path loads it without a lock. A table shares the maps an update did not
// touch with its predecessor.
type Binding struct {
	mu sync.Mutex // serialises writers
	t  atomic.Pointer[table]
}

// table is an immutable snapshot of a binding table.
type table struct {
	// perms maps the peer IPs the allocation holds a permission for to
	// when the permission lapses, in nanoseconds of Limits' clock (0: when
	// pion deletes it).
	perms  map[netip.Addr]int64
	byNum  map[uint16]*Peer          // channel number → peer
	byPeer map[netip.AddrPort]uint16 // peer → channel number
}

var emptyTable = &table{}

// Peer is the peer a channel is bound to.
type Peer struct {
	addr  net.Addr       // pion's address value
	ap    netip.AddrPort // addr, IPv4-in-IPv6 unwrapped
	dest  sockio.Dest    // addr as a destination of the relay socket
	local *Relay         // the Relay of ours at addr when bound; nil if none
}

// load returns the current table.
func (b *Binding) load() *table {
	if t := b.t.Load(); t != nil {
		return t
	}
	return emptyTable
}

// update replaces the table with edit's copy of it.
func (b *Binding) update(edit func(old, n *table)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.load()
	n := *old
	edit(old, &n)
	b.t.Store(&n)
}

// Permit records a live permission for ip (pion created it), lapsing
// after Limits' PermissionLife when that is set.
func (r *Relay) Permit(ip netip.Addr) {
	var lapse int64
	if r.lim.permLife > 0 {
		lapse = r.lim.now() + int64(r.lim.permLife)
	}
	r.bind.update(func(old, n *table) {
		n.perms = maps.Clone(old.perms)
		if n.perms == nil {
			n.perms = make(map[netip.Addr]int64, 1)
		}
		n.perms[ip] = lapse
	})
}

// Revoke forgets the permission for ip (pion deleted it).
func (r *Relay) Revoke(ip netip.Addr) {
	r.bind.update(func(old, n *table) {
		if _, ok := old.perms[ip]; ok {
			n.perms = maps.Clone(old.perms)
			delete(n.perms, ip)
		}
	})
}

// Bind records channel number bound to the peer at addr (ap unwrapped),
// local being the Relay of ours at that address, if any.
func (r *Relay) Bind(number uint16, addr net.Addr, ap netip.AddrPort, local *Relay) {
	p := &Peer{addr: addr, ap: ap, local: local, dest: r.io.Dest(addr, ap)}
	r.bind.update(func(old, n *table) {
		n.byNum = maps.Clone(old.byNum)
		n.byPeer = maps.Clone(old.byPeer)
		if n.byNum == nil {
			n.byNum = make(map[uint16]*Peer, 1)
			n.byPeer = make(map[netip.AddrPort]uint16, 1)
		}
		if prev := n.byNum[number]; prev != nil && n.byPeer[prev.ap] == number {
			delete(n.byPeer, prev.ap)
		}
		n.byNum[number] = p
		n.byPeer[ap] = number
	})
}

// Unbind forgets channel number (pion deleted it).
func (r *Relay) Unbind(number uint16) {
	r.bind.update(func(old, n *table) {
		peer := old.byNum[number]
		if peer == nil {
			return
		}
		n.byNum = maps.Clone(old.byNum)
		delete(n.byNum, number)
		if old.byPeer[peer.ap] == number {
			n.byPeer = maps.Clone(old.byPeer)
			delete(n.byPeer, peer.ap)
		}
	})
}

// Permissions returns how many peer IPs the allocation holds a
// permission for (lapsed or not: pion still holds them) and whether ip is
// one of them.
func (r *Relay) Permissions(ip netip.Addr) (n int, has bool) {
	t := r.bind.load()
	_, has = t.perms[ip]
	return len(t.perms), has
}

// Channels returns how many channels the allocation has bound and
// whether number is one of them.
func (r *Relay) Channels(number uint16) (n int, has bool) {
	t := r.bind.load()
	_, has = t.byNum[number]
	return len(t.byNum), has
}

// Live reports whether the allocation holds a live permission for ip.
func (r *Relay) Live(ip netip.Addr) bool {
	lapse, ok := r.bind.load().perms[ip]
	return ok && (lapse == 0 || r.lim.now() < lapse)
}
