package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
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
// lock. pion removes a channel (expiry, allocation close) only after
// telling us, so a channel exists in pion whenever it exists in the
// mirror. So a datagram the fast path relays is one pion would relay.
// Permissions, the own-address guard and the bitrate cap are admission's
// (admit.go), which pion's path applies too, in the relay socket wrapper:
// a datagram on a bound channel that admission refuses is dropped, not
// handed to pion. The fast path leaves oversized datagrams, Data
// indications and allocations whose relay socket is closed to pion, and it
// gives up on an allocation whose client-facing socket is ambiguous.
//
// When the peer of a channel is another relay address of this server (two
// relayed clients talking to each other, as two browsers that both hide
// their address do), the fast path hands the data straight to the other
// allocation as the kernel would have delivered it, from our public
// address and the sending relay port: one datagram to the receiving client
// instead of a loopback datagram between two relay sockets, and no wakeup
// of the receiving socket's reader. The receiving side applies its own
// checks (channel, permission for the sender's relay address) exactly as
// for a datagram read from its socket, and anything it would leave to
// pion goes through the kernel as before. It also works where the public
// address is a 1:1 NAT that does not hairpin.

// pionInboundMTU is pion's read buffer on client-facing sockets: it drops
// datagrams of this size or more.
const pionInboundMTU = 1600

// clientSide is a client-facing transport that sends to clients: a UDP
// socket (many clients) or a stream connection (one client).
type clientSide interface {
	// sendToClient sends b to the client of fa. With wait false it may
	// refuse, sending nothing, rather than wait for room.
	sendToClient(fio *fastIO, b []byte, fa *fastAlloc, wait bool) bool
}

// fastIO is one reader's reusable state for fast-path sends. It must not
// be used by two goroutines at once.
type fastIO struct {
	snd *sockio.Sender
	out []byte // ChannelData being sent
}

func newFastIO() fastIO { return fastIO{snd: sockio.NewSender()} }

// fastAlloc mirrors one allocation for the fast path.
type fastAlloc struct {
	client   net.Addr    // pion's client transport address, for UDP writes
	clientTo sockio.Dest // client as a destination of a UDP owner's socket
	owner    clientSide  // the socket or connection pion serves it on
	relay    *relayConn  // its relay socket
	table    atomic.Pointer[bindTable]
}

// bindTable is an immutable snapshot of an allocation's channels. Updates
// replace it whole. Permissions are the relay socket's (admit.go).
type bindTable struct {
	byNum  map[uint16]*chanPeer      // channel number → peer
	byPeer map[netip.AddrPort]uint16 // peer → channel number
}

// chanPeer is the peer a channel is bound to.
type chanPeer struct {
	addr  *net.UDPAddr   // pion's address value
	ap    netip.AddrPort // addr, IPv4-in-IPv6 unwrapped
	dest  sockio.Dest    // addr as a destination of the relay socket
	local *relayConn     // the relay socket of ours at addr when bound; nil if none
}

// newChanPeer returns the channel peer for addr on relay socket rc, with
// local the relay socket of ours at that address, if any.
func newChanPeer(addr *net.UDPAddr, ap netip.AddrPort, rc, local *relayConn) *chanPeer {
	return &chanPeer{addr: addr, ap: ap, local: local, dest: rc.sio.Dest(addr, ap)}
}

var emptyTable = &bindTable{}

// clone copies t for an update.
func (t *bindTable) clone() *bindTable {
	n := &bindTable{
		byNum:  make(map[uint16]*chanPeer, len(t.byNum)+1),
		byPeer: make(map[netip.AddrPort]uint16, len(t.byPeer)+1),
	}
	for k, v := range t.byNum {
		n.byNum[k] = v
	}
	for k, v := range t.byPeer {
		n.byPeer[k] = v
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
// bound to its channel, sending with fio, which belongs to the calling
// reader, if admission lets it pass (else it drops it). It reports false,
// relaying nothing, when pion must handle the message.
func (fa *fastAlloc) toPeer(fio *fastIO, frame []byte) bool {
	number, data, ok := parseChannelData(frame)
	rc := fa.relay
	if !ok || rc.closed.Load() {
		return false
	}
	t := fa.table.Load()
	peer := t.byNum[number]
	if peer == nil {
		return false
	}
	if !rc.admitTo(peer.ap, len(data)) {
		return true
	}
	if peer.local != nil && rc.handOver(fio, peer.local, data) {
		return true
	}
	if rc.sendPeer(fio.snd, data, peer) == nil {
		rc.fastTo.Add(1)
	}
	return true
}

// handOver gives data, sent by rc's client to dst, another relay socket of
// ours, straight to dst's client, as if dst had read it from rc's public
// address, or drops it if dst's admission does. It reports false, handing
// over nothing, when dst's reader (and pion) must see the datagram or its
// client cannot take it at once.
func (rc *relayConn) handOver(fio *fastIO, dst *relayConn, data []byte) bool {
	if dst.closed.Load() || len(data) >= pionInboundMTU {
		return false
	}
	fb := dst.fast.Load()
	if fb == nil {
		return false
	}
	if fb.toClient(fio, data, rc.self, false) == declined {
		return false
	}
	// Sent or dropped by dst's admission: counted as the kernel would have
	// carried it.
	dst.counters.bytesFrom.Add(uint64(len(data)))
	dst.counters.packetsFrom.Add(1)
	rc.countTo(len(data))
	rc.counters.handed.Add(1)
	rc.fastTo.Add(1) // last: tests wait for it, then read the others
	return true
}

// fate is what became of a datagram the fast path was offered.
type fate int

const (
	declined fate = iota // nothing done: pion (or the kernel) must handle it
	sent                 // relayed
	dropped              // refused by admission
)

// toClient relays a datagram from peer to the client of fa as ChannelData,
// padded to 4 bytes as pion pads it, if admission lets it pass. fio is the
// caller's. It declines, sending nothing and taking nothing from the
// bitrate cap, when pion must handle the datagram (no channel is bound to
// peer), or when wait is false and the client's connection has no room at
// once.
func (fa *fastAlloc) toClient(fio *fastIO, data []byte, peer netip.AddrPort, wait bool) fate {
	number, ok := fa.table.Load().byPeer[peer]
	if !ok {
		return declined
	}
	if !fa.relay.admitFrom(peer, len(data)) {
		return dropped
	}
	size := 4 + (len(data)+3)&^3
	if cap(fio.out) < size {
		fio.out = make([]byte, 0, max(size, 4+pionInboundMTU))
	}
	out := fio.out[:size]
	binary.BigEndian.PutUint16(out, number)
	binary.BigEndian.PutUint16(out[2:], uint16(len(data))) // at most the read buffer
	copy(out[4:], data)
	clear(out[4+len(data):])
	if !fa.owner.sendToClient(fio, out, fa, wait) {
		fa.relay.adm.refund(fromPeerDir, len(data))
		return declined
	}
	fa.relay.fastFrom.Add(1)
	return sent
}

// sendToClient implements clientSide. A UDP send does not wait for the
// client, so wait does not matter.
func (c *turnPacketConn) sendToClient(fio *fastIO, b []byte, fa *fastAlloc, _ bool) bool {
	_ = c.sio.Send(fio.snd, b, &fa.clientTo)
	return true
}

// sendToClient implements clientSide.
func (c *streamConn) sendToClient(_ *fastIO, b []byte, _ *fastAlloc, wait bool) bool {
	if !wait {
		return c.offer(b)
	}
	_, _ = c.Write(b)
	return true
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
	if owner == nil || a.relay == nil || s.cfg.NoFastPath {
		return
	}
	fa := newFastAlloc(src, owner, a.relay)
	if fa == nil {
		return
	}
	a.fast = fa
	switch o := owner.(type) {
	case *turnPacketConn:
		ap, _ := addrPort(src)
		o.fastPublish(func(m map[netip.AddrPort]*fastAlloc) { m[ap] = fa })
	case *streamConn:
		o.fast.Store(fa)
	}
	a.relay.fast.Store(fa)
}

// newFastAlloc returns the mirror of an allocation for client, served on
// owner and relaying through rc, with no channels or permissions yet; nil
// when a UDP owner's client address is not a UDP address.
func newFastAlloc(client net.Addr, owner clientSide, rc *relayConn) *fastAlloc {
	fa := &fastAlloc{client: client, owner: owner, relay: rc}
	fa.table.Store(emptyTable)
	if o, ok := owner.(*turnPacketConn); ok {
		ap, ok := addrPort(client)
		if !ok {
			return nil
		}
		fa.clientTo = o.sio.Dest(client, ap)
	}
	return fa
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
