package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/turn/v4"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// relayGen is the pion RelayAddressGenerator: pion's port-range generator
// (bind BindIP, advertise PublicIP) whose sockets are wrapped in relayConn.
type relayGen struct {
	s     *Server
	inner *turn.RelayAddressGeneratorPortRange
}

// Validate implements turn.RelayAddressGenerator.
func (g *relayGen) Validate() error {
	if err := g.inner.Validate(); err != nil {
		return fmt.Errorf("relay: relay address generator: %w", err)
	}
	return nil
}

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (g *relayGen) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	if g.s.isClosed() {
		return nil, nil, ErrClosed
	}
	pc, addr, err := g.inner.AllocatePacketConn(network, requestedPort)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: allocating relay socket: %w", err)
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		pc.Close()
		return nil, nil, fmt.Errorf("relay: relay socket has address %T", addr)
	}
	c := g.s.newRelayConn(pc, ua.Port)
	return c, addr, nil
}

// AllocateConn implements turn.RelayAddressGenerator. RFC 6062 TCP relays
// are not offered (browsers do not use them and they reach TCP services).
func (g *relayGen) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, ErrTCPRelay
}

// relayConn wraps one allocation's relay socket, between it and pion's
// relay loop for the allocation (the reader). It counts relayed traffic
// in its own atomics, refuses to send to an address of this host at any
// port but our relay sockets' (so neither the own-address exception of the
// peer policy nor another public address of the host reaches local UDP
// services), and lets Close be called from several places:
// pion when the allocation ends, and the server when a session's grace
// expires or the server shuts down. For the data plane it also reads in
// batches with recvmmsg where it can (rd), relays a peer's datagram on a
// bound channel straight to the client when the allocation has a fast path
// (fast), sends the fast path's data to peers with raw sendto where it can
// (sendPeer, rawOut), and takes data handed over in process by another
// relay socket of ours (fastpath.go).
type relayConn struct {
	net.PacketConn
	sio      sockio.UDP // reads, and the fast path's sends
	s        *Server
	port     int
	counters connCounters
	fast     atomic.Pointer[fastAlloc] // nil: pion relays what arrives
	fastTo   atomic.Uint64             // datagrams the fast path sent to peers
	fastFrom atomic.Uint64             // datagrams the fast path sent to the client
	io       fastIO                    // owned by the reader
	self     netip.AddrPort            // our public address and this port, as peers see it
	adm      admission                 // permissions and the bitrate cap (admit.go)

	readers  atomic.Int32
	closed   atomic.Bool
	finished sync.Once
	closeErr error
	closing  sync.Once
}

func (s *Server) newRelayConn(pc net.PacketConn, port int) *relayConn {
	c := &relayConn{
		PacketConn: pc,
		sio:        sockio.NewUDP(pc, s.batches, relayAddrCache),
		io:         newFastIO(),
		self:       netip.AddrPortFrom(s.cfg.PublicIP.Unmap(), uint16(port)),
		s:          s,
		port:       port,
	}
	c.adm.init(s.limits)
	s.track.add()
	s.traffic.attach(c)
	s.mu.Lock()
	s.relays[port] = c
	s.relayPorts.add(port)
	s.mu.Unlock()
	return c
}

// ReadFrom implements net.PacketConn: a datagram from a peer. Datagrams
// the fast path relays to the client are not returned.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.readers.Add(1)
		var n int
		var addr net.Addr
		var err error
		n, addr, err = c.sio.ReadFrom(p)
		c.readers.Add(-1)
		if err != nil {
			if c.closed.Load() {
				c.finish()
			}
			return n, addr, err
		}
		c.counters.bytesFrom.Add(uint64(n))
		c.counters.packetsFrom.Add(1)
		ap, ok := addrPort(addr)
		if !ok {
			continue
		}
		if fa := c.fast.Load(); fa != nil && fa.toClient(&c.io, p[:n], ap, true) != declined {
			continue
		}
		if !c.admitFrom(ap, n) {
			continue
		}
		return n, addr, nil
	}
}

// WriteTo implements net.PacketConn: a datagram pion sends to a peer. One
// that admission drops is reported as sent, as the network would lose it;
// one to a guarded address of this host fails with ErrPeerDenied.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, ok := addrPort(addr)
	if !ok {
		return 0, ErrPeerDenied
	}
	if !c.admitTo(ap, len(p)) {
		if c.s.deniedHost(ap) {
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
		c.countTo(n)
	}
	return n, err
}

// sendPeer sends admitted data to a channel's peer for the fast path: with
// a raw sendto when the destination is converted, else with WriteTo.
func (c *relayConn) sendPeer(snd *sockio.Sender, data []byte, peer *chanPeer) error {
	if err := c.sio.Send(snd, data, &peer.dest); err != nil {
		return err
	}
	c.countTo(len(data))
	return nil
}

// countTo counts a datagram of n bytes sent to a peer.
func (c *relayConn) countTo(n int) {
	c.counters.bytesTo.Add(uint64(n))
	c.counters.packetsTo.Add(1)
}

// deny reports, and counts as a peer-policy denial, a send to an address
// of this host at a port that is not one of our relay sockets (see
// Server.deniedHost).
func (c *relayConn) deny(peer netip.AddrPort) bool {
	if !c.s.deniedHost(peer) {
		return false
	}
	c.s.metrics.peerDeniedHost.Inc()
	return true
}

// Close implements net.PacketConn; it is idempotent.
func (c *relayConn) Close() error {
	c.closing.Do(func() {
		c.closed.Store(true)
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
