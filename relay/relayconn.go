package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/strangers-chat/strangers/relay/internal/plane"
	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// relayConn wraps one allocation's relay socket, between it and pion's
// relay loop for the allocation (the reader). Every datagram it reads
// goes through the allocation's data plane (pl.FromPeer: counted,
// relayed to the client on a bound channel, or admitted for pion; what
// one batch of reads relays to the client is queued in io and leaves in
// one sendmmsg once the batch is handled or before pion gets a datagram),
// every
// datagram pion writes through admission (pl.AdmitTo: permissions, the
// own-address guard, the cap); sockio does its I/O. Close may be called
// from several places: pion when the allocation ends, and the server when
// a session's grace expires or the server shuts down.
type relayConn struct {
	net.PacketConn
	sio  sockio.UDP // reads, and the data plane's sends
	s    *Server
	port int
	pl   *plane.Relay // the allocation's data plane: binding table, admission, counters
	io   plane.IO     // owned by the reader

	readers  atomic.Int32
	finished sync.Once
	closeErr error
	closing  sync.Once
}

func (s *Server) newRelayConn(pc net.PacketConn, port int) *relayConn {
	sio := sockio.NewUDP(pc, s.batches, relayAddrCache)
	c := &relayConn{
		PacketConn: pc,
		sio:        sio,
		pl:         plane.NewRelay(sio, netip.AddrPortFrom(s.cfg.PublicIP.Unmap(), uint16(port)), s.limits),
		io:         plane.NewIO(s.batches),
		s:          s,
		port:       port,
	}
	sio.SetHandler(c)
	s.track.add()
	s.traffic.attach(c)
	s.mu.Lock()
	s.relays[port] = c
	s.relayPorts.add(port)
	s.mu.Unlock()
	return c
}

// ReadFrom implements net.PacketConn: a datagram from a peer. Datagrams
// the data plane relays to the client are not returned: sockio offers
// each to Handle first.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.readers.Add(1)
	n, addr, err := c.sio.ReadFrom(p)
	c.readers.Add(-1)
	if err != nil && c.pl.Closed() {
		c.finish()
	}
	return n, addr, err
}

// Handle implements sockio.Handler: a datagram from a peer goes through
// the data plane, which relays it to the client (queued in io) or leaves
// it to pion. One without a UDP source is dropped.
func (c *relayConn) Handle(b []byte, from net.Addr) bool {
	ap, ok := addrPort(from)
	return !ok || !c.pl.FromPeer(&c.io, b, ap)
}

// Flush implements sockio.Handler: what the data plane queued leaves.
func (c *relayConn) Flush() { c.io.Flush() }

// WriteTo implements net.PacketConn: a datagram pion sends to a peer. One
// that admission drops is reported as sent, as the network would lose it;
// one to a guarded address of this host fails with ErrPeerDenied.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, ok := addrPort(addr)
	if !ok {
		return 0, ErrPeerDenied
	}
	if !c.pl.AdmitTo(ap, len(p)) {
		if c.pl.Guarded(ap) {
			return 0, ErrPeerDenied
		}
		return len(p), nil
	}
	return c.writePeer(p, addr)
}

// writePeer sends an admitted datagram to a peer.
func (c *relayConn) writePeer(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.pl.CountTo(n)
	}
	return n, err
}

// Close implements net.PacketConn; it is idempotent.
func (c *relayConn) Close() error {
	c.closing.Do(func() {
		c.pl.MarkClosed()
		c.closeErr = c.sio.Close()
		if errors.Is(c.closeErr, net.ErrClosed) {
			c.closeErr = nil
		}
		if c.readers.Load() == 0 {
			c.finish()
		}
	})
	return c.closeErr
}

// finish runs once the socket is closed and no reader is inside ReadFrom.
func (c *relayConn) finish() {
	c.finished.Do(func() {
		c.s.mu.Lock()
		if c.s.relays[c.port] == c {
			delete(c.s.relays, c.port)
			c.s.relayPorts.remove(c.port)
		}
		c.s.mu.Unlock()
		c.s.traffic.detach(c)
		c.s.track.done()
	})
}
