package relay

import (
	"net"
	"net/netip"

	"github.com/strangers-chat/strangers/relay/internal/plane"
	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// clientSide is a client-facing transport that sends to clients: a UDP
// socket (many clients) or a stream connection (one client).
type clientSide interface {
	plane.Owner
}

// SendToClient implements plane.Owner. A UDP send does not wait for the
// client, so wait does not matter.
func (c *turnPacketConn) SendToClient(w *plane.IO, b []byte, to *sockio.Dest, _ bool) bool {
	_ = c.sio.Send(w.Sender, b, to)
	return true
}

// SendToClient implements plane.Owner.
func (c *streamConn) SendToClient(_ *plane.IO, b []byte, _ *sockio.Dest, wait bool) bool {
	if !wait {
		return c.offer(b)
	}
	_, _ = c.Write(b)
	return true
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

// serve hands a new allocation's channel data to the data plane, through
// the client-facing side that read its Allocate. Without one (two sockets
// at once), with Config.NoFastPath, or without a relay socket, pion
// relays everything of the allocation. Called with s.mu held.
func (s *Server) serve(key string, src net.Addr, a *allocState) {
	owner := s.pendingOwner[key]
	if owner == nil || a.relay == nil || s.cfg.NoFastPath {
		return
	}
	ap, ok := addrPort(src)
	pl := a.relay.pl
	switch o := owner.(type) {
	case *turnPacketConn:
		if !ok {
			return
		}
		pl.Serve(o, o.sio.Dest(src, ap))
		o.clients.Set(ap, pl)
	case *streamConn:
		pl.Serve(o, sockio.Dest{})
		o.fast.Store(pl)
	default:
		return
	}
	a.owner, a.clientAP = owner, ap
}

// unserve undoes serve. Called with s.mu held.
func (s *Server) unserve(a *allocState) {
	if a.owner == nil {
		return
	}
	pl := a.relay.pl
	pl.Unserve()
	switch o := a.owner.(type) {
	case *turnPacketConn:
		o.clients.Delete(a.clientAP, pl)
	case *streamConn:
		o.fast.CompareAndSwap(pl, nil)
	}
	a.owner = nil
}
