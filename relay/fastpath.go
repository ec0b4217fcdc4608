package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
)

// ChannelData fast path.
//
// pion handles every ChannelData message in its per-socket loops with a
// debug log formatted per packet, read locks, a channel-list scan and an
// allocation per datagram from a peer. The wrappers relay ChannelData
// themselves when a mirror of pion's state says pion would relay it the
// same way, and hand the datagram to pion otherwise.
//
// The mirror is kept from pion's events under Server.mu and published as
// immutable tables behind atomic pointers, so the packet path takes no
// lock. pion removes a channel or permission (expiry, allocation close)
// only after telling us, and a channel exists in pion whenever it exists in
// the mirror; so a datagram the fast path relays is one pion would relay.
// The fast path is stricter than pion where pion is lax: it also requires
// a live permission for the peer's IP (pion relays over a channel whose
// permission has expired), it leaves oversized datagrams, Data
// indications and allocations whose relay socket is closed to pion, and it
// gives up on an allocation whose client-facing socket is ambiguous.

// pionInboundMTU is pion's read buffer on client-facing sockets: it drops
// datagrams of this size or more.
const pionInboundMTU = 1600

// clientSide is a client-facing transport that sends to clients: a UDP
// socket (many clients) or a stream connection (one client).
type clientSide interface {
	sendToClient(b []byte, client net.Addr)
}

// fastAlloc mirrors one allocation for the fast path.
type fastAlloc struct {
	client net.Addr   // pion's client transport address, for UDP writes
	owner  clientSide // the socket or connection pion serves it on
	relay  *relayConn // its relay socket
	table  atomic.Pointer[bindTable]
}

// bindTable is an immutable snapshot of an allocation's channels and
// permissions. Updates replace it whole.
type bindTable struct {
	byNum  map[uint16]*net.UDPAddr   // channel number → peer (pion's address value)
	byPeer map[netip.AddrPort]uint16 // peer → channel number
	perms  map[netip.Addr]struct{}   // peer IPs with a live permission
}

var emptyTable = &bindTable{}

// clone copies t for an update.
func (t *bindTable) clone() *bindTable {
	n := &bindTable{
		byNum:  make(map[uint16]*net.UDPAddr, len(t.byNum)+1),
		byPeer: make(map[netip.AddrPort]uint16, len(t.byPeer)+1),
		perms:  make(map[netip.Addr]struct{}, len(t.perms)+1),
	}
	for k, v := range t.byNum {
		n.byNum[k] = v
	}
	for k, v := range t.byPeer {
		n.byPeer[k] = v
	}
	for k := range t.perms {
		n.perms[k] = struct{}{}
	}

	return n
}

// addrPort returns a's address and port with IPv4-in-IPv6 unwrapped, and
// false when a is not a UDP address.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ua.AddrPort()

	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}

// parseChannelData returns the channel number and payload of a ChannelData
// message as pion decodes it, or ok=false when pion would not accept it.
func parseChannelData(b []byte) (number uint16, data []byte, ok bool) {
	if len(b) < 4 {
		return 0, nil, false
	}
	number = binary.BigEndian.Uint16(b)
	l := int(binary.BigEndian.Uint16(b[2:]))
	if number < 0x4000 || number > 0x7FFF || l > len(b)-4 {
		return 0, nil, false
	}

	return number, b[4 : 4+l], true
}

// toPeer relays a ChannelData message from the client of fa to the peer
// bound to its channel. It reports false, relaying nothing, when pion
// must handle the message.
func (fa *fastAlloc) toPeer(frame []byte) bool {
	number, data, ok := parseChannelData(frame)
	if !ok || fa.relay.closed.Load() {
		return false
	}
	t := fa.table.Load()
	peer := t.byNum[number]
	if peer == nil {
		return false
	}
	ap, _ := addrPort(peer)
	if _, ok := t.perms[ap.Addr()]; !ok {
		return false
	}
	if _, err := fa.relay.WriteTo(data, peer); err == nil {
		fa.relay.fastTo.Add(1)
	}

	return true
}

// toClient relays a datagram from peer to the client of fa as ChannelData,
// padded to 4 bytes as pion pads it. buf is the caller's reused output
// buffer. It reports false, sending nothing, when pion must handle it.
func (fa *fastAlloc) toClient(buf *[]byte, data []byte, peer net.Addr) bool {
	ap, ok := addrPort(peer)
	if !ok {
		return false
	}
	t := fa.table.Load()
	number, ok := t.byPeer[ap]
	if !ok {
		return false
	}
	if _, ok := t.perms[ap.Addr()]; !ok {
		return false
	}
	size := 4 + (len(data)+3)&^3
	if cap(*buf) < size {
		*buf = make([]byte, 0, max(size, 4+pionInboundMTU))
	}
	out := (*buf)[:size]
	binary.BigEndian.PutUint16(out, number)
	binary.BigEndian.PutUint16(out[2:], uint16(len(data))) //nolint:gosec // at most the read buffer
	copy(out[4:], data)
	clear(out[4+len(data):])
	fa.owner.sendToClient(out, fa.client)
	fa.relay.fastFrom.Add(1)

	return true
}

// sendToClient implements clientSide.
func (c *turnPacketConn) sendToClient(b []byte, client net.Addr) {
	_, _ = c.PacketConn.WriteTo(b, client)
}

// sendToClient implements clientSide.
func (c *streamConn) sendToClient(b []byte, _ net.Addr) {
	_, _ = c.Write(b)
}

// fastLookup returns the fast-path allocation of client on this socket.
func (c *turnPacketConn) fastLookup(client net.Addr) *fastAlloc {
	m := c.fast.Load()
	if m == nil {
		return nil
	}
	ap, ok := addrPort(client)
	if !ok {
		return nil
	}

	return (*m)[ap]
}

// isAllocateRequest reports whether b starts like a STUN Allocate request.
func isAllocateRequest(b []byte) bool {
	return len(b) >= 20 && b[0] == 0x00 && b[1] == 0x03
}

// noteAllocate records that owner is handing pion an Allocate request from
// client, so that onAllocationCreated, which pion calls while handling it,
// knows which socket serves the allocation. It returns the key to pass to
// forgetAllocate before owner reads again.
func (s *Server) noteAllocate(owner clientSide, client net.Addr) string {
	key := transportKey(client)
	s.mu.Lock()
	if prev, ok := s.pendingOwner[key]; ok && prev != owner {
		owner = nil // two sockets at once: serve that allocation through pion only
	}
	s.pendingOwner[key] = owner
	s.mu.Unlock()

	return key
}

// forgetAllocate drops what noteAllocate recorded.
func (s *Server) forgetAllocate(key string) {
	s.mu.Lock()
	delete(s.pendingOwner, key)
	s.mu.Unlock()
}

// fastCreated sets up the mirror of a new allocation. Called with s.mu held.
func (s *Server) fastCreated(key string, src net.Addr, a *allocState) {
	owner := s.pendingOwner[key]
	if owner == nil || a.relay == nil {
		return
	}
	fa := &fastAlloc{client: src, owner: owner, relay: a.relay}
	fa.table.Store(emptyTable)
	a.fast = fa
	switch o := owner.(type) {
	case *turnPacketConn:
		ap, ok := addrPort(src)
		if !ok {
			a.fast = nil

			return
		}
		o.fastPublish(func(m map[netip.AddrPort]*fastAlloc) { m[ap] = fa })
	case *streamConn:
		o.fast.Store(fa)
	}
	a.relay.fast.Store(fa)
}

// fastDeleted removes the mirror of an allocation. Called with s.mu held.
func (s *Server) fastDeleted(src net.Addr, a *allocState) {
	fa := a.fast
	if fa == nil {
		return
	}
	a.fast = nil
	fa.relay.fast.CompareAndSwap(fa, nil)
	switch o := fa.owner.(type) {
	case *turnPacketConn:
		if ap, ok := addrPort(src); ok {
			o.fastPublish(func(m map[netip.AddrPort]*fastAlloc) {
				if m[ap] == fa {
					delete(m, ap)
				}
			})
		}
	case *streamConn:
		o.fast.CompareAndSwap(fa, nil)
	}
}

// fastPublish replaces the socket's allocation map with an edited copy.
// Called with s.mu held, which serialises writers.
func (c *turnPacketConn) fastPublish(edit func(map[netip.AddrPort]*fastAlloc)) {
	old := c.fast.Load()
	n := make(map[netip.AddrPort]*fastAlloc)
	if old != nil {
		for k, v := range *old {
			n[k] = v
		}
	}
	edit(n)
	c.fast.Store(&n)
}

// fastUpdate replaces the binding table of a with an edited copy. Called
// with s.mu held.
func fastUpdate(a *allocState, edit func(*bindTable)) {
	if a == nil || a.fast == nil {
		return
	}
	t := a.fast.table.Load().clone()
	edit(t)
	a.fast.table.Store(t)
}
