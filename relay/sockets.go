package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/strangers-chat/strangers/relay/internal/plane"
	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

const (
	// udpReceiveBuffer is the receive buffer asked for on each UDP socket,
	// client-facing or relay. The kernel default (~200 KiB) overflows at a few tens of
	// thousands of datagrams per second; 4 MiB absorbs scheduling hiccups.
	udpReceiveBuffer = 4 << 20
	// listenerAddrCache and relayAddrCache size the source-address caches
	// of batched readers: a client-facing socket hears from many clients, a
	// relay socket from a few peers.
	listenerAddrCache = 256
	relayAddrCache    = 4
	// freePortAttempts bounds the search for a port number free on both UDP
	// and TCP when ListenAddr asks for port 0.
	freePortAttempts = 10
	// maxReadFailures is how many consecutive read errors a client-facing
	// UDP socket tolerates before giving up.
	maxReadFailures = 100
)

// openSockets opens cfg.UDPSockets SO_REUSEPORT UDP sockets and one TCP
// listener on the same port of ListenAddr. It returns the granted receive
// buffer size of the UDP sockets.
func openSockets(ctx context.Context, cfg Config) (udp []net.PacketConn, tcp net.Listener, rcvbuf int, err error) {
	host, portStr, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%w %s: %w", ErrListen, cfg.ListenAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%w %s: %w", ErrListen, cfg.ListenAddr, err)
	}
	attempts := 1
	if port == 0 {
		attempts = freePortAttempts
	}
	var plain net.ListenConfig
	for range attempts {
		p := port
		if port == 0 {
			// Find a free UDP port without SO_REUSEPORT (binding port 0 with
			// it could share a port another socket of ours holds), then bind
			// TCP on it while holding the probe.
			probe, perr := plain.ListenPacket(ctx, "udp", net.JoinHostPort(host, "0"))
			if perr != nil {
				return nil, nil, 0, fmt.Errorf("%w udp %s: %w", ErrListen, cfg.ListenAddr, perr)
			}
			p = probe.LocalAddr().(*net.UDPAddr).Port
			tcp, err = plain.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
			probe.Close()
		} else {
			tcp, err = plain.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		}
		if err != nil {
			err = fmt.Errorf("%w tcp %s: %w", ErrListen, net.JoinHostPort(host, strconv.Itoa(p)), err)
			continue
		}
		udp, rcvbuf, err = openUDP(ctx, host, p, cfg.UDPSockets)
		if err != nil {
			tcp.Close()
			continue
		}
		return udp, tcp, rcvbuf, nil
	}
	return nil, nil, 0, err
}

// openUDP binds n UDP sockets on host:port with SO_REUSEPORT.
func openUDP(ctx context.Context, host string, port, n int) ([]net.PacketConn, int, error) {
	lc := net.ListenConfig{}
	if n > 1 {
		lc.Control = sockio.ReusePortControl
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	conns := make([]net.PacketConn, 0, n)
	rcvbuf := 0
	for range n {
		c, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, 0, fmt.Errorf("%w udp %s: %w", ErrListen, addr, err)
		}
		got, err := sockio.SetReceiveBuffer(c, udpReceiveBuffer)
		if err != nil {
			c.Close()
			for _, c := range conns {
				c.Close()
			}
			return nil, 0, fmt.Errorf("%w udp %s: receive buffer: %w", ErrListen, addr, err)
		}
		if rcvbuf == 0 || got < rcvbuf {
			rcvbuf = got
		}
		conns = append(conns, c)
	}
	return conns, rcvbuf, nil
}

// detectPublicIP returns the first non-loopback, non-link-local IPv4 address
// of the host, else 127.0.0.1.
func detectPublicIP() netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			ip = ip.Unmap()
			if ok && ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
				return ip
			}
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// turnPacketConn wraps a client-facing UDP socket, between it and pion's
// read loop (the reader). It
//   - reads through sockio (batched where it can) and retries transient
//     read errors, on which pion's loop would stop for good;
//   - passes every datagram through the interception step
//     (Server.intercept, in Handle, which sockio calls for each datagram
//     it reads), which screens ChannelBind requests, relays ChannelData
//     on the data plane and notes Allocate requests;
//   - is the socket the data plane sends to the clients it serves on
//     (clients); what the data plane relays from one batch of reads is
//     queued in io and leaves, one sendmmsg per relay socket, once the
//     batch is handled or before pion gets a datagram;
//   - tells the shutdown tracker when pion's read loop has let go of it.
type turnPacketConn struct {
	net.PacketConn
	sio      sockio.UDP // reads, and the data plane's sends
	io       plane.IO   // owned by the reader
	s        *Server
	doneOnce sync.Once
	closed   chan struct{}
	closeMu  sync.Once

	// clients maps client addresses to the data planes of their
	// allocations on this socket (those the data plane serves).
	clients plane.Clients
	// pendingKey is owned by the reader: the key noteAllocate recorded for
	// the Allocate request last returned, "" if none.
	pendingKey string
	// guard holds the request being handled, for screenReply.
	guard replyGuard
}

func newTurnPacketConn(pc net.PacketConn, s *Server) *turnPacketConn {
	s.track.add()
	c := &turnPacketConn{
		PacketConn: pc,
		sio:        sockio.NewUDP(pc, s.batches, listenerAddrCache),
		io:         plane.NewIO(s.batches),
		s:          s,
		closed:     make(chan struct{}),
	}
	c.sio.SetHandler(c)
	return c
}

// ReadFrom implements net.PacketConn.
// Transient read errors are retried (pion's read loop stops for good on the
// first error it sees); only closing the socket, or a persistent error, ends
// the loop.
func (c *turnPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.pendingKey != "" {
		c.s.forgetAllocate(c.pendingKey)
		c.pendingKey = ""
	}
	failures := 0
	for {
		n, addr, err := c.read(p)
		if err != nil {
			select {
			case <-c.closed:
				c.doneOnce.Do(c.s.track.done)
				return n, addr, err
			default:
			}
			if failures++; failures < maxReadFailures && !errors.Is(err, net.ErrClosed) {
				continue
			}
			c.s.log.Error("udp socket read failed, socket no longer served", "addr", c.LocalAddr(), "err", err)
			c.doneOnce.Do(c.s.track.done)
			return n, addr, err
		}
		return n, addr, nil
	}
}

// Handle implements sockio.Handler: every message a client sends passes
// the interception step; what it leaves goes to pion (its pending
// Allocate noted for the next ReadFrom).
func (c *turnPacketConn) Handle(b []byte, from net.Addr) bool {
	toPion, reply, pending := c.s.intercept(c, &c.io, &c.guard, from, b)
	if toPion {
		c.pendingKey = pending
		return false
	}
	if reply != nil {
		_, _ = c.WriteTo(reply, from)
	}
	return true
}

// Flush implements sockio.Handler: what the data plane queued leaves.
func (c *turnPacketConn) Flush() { c.io.Flush() }

// WriteTo implements net.PacketConn. Responses to unauthenticated requests
// go through Server.screenReply and may be trimmed or dropped (a dropped
// one still counts as written: pion need not know).
func (c *turnPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !isSTUNResponse(p) {
		return c.PacketConn.WriteTo(p, addr)
	}
	out := c.s.screenReply(&c.guard, addr, p, false)
	if out == nil {
		return len(p), nil
	}
	if _, err := c.PacketConn.WriteTo(out, addr); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *turnPacketConn) read(p []byte) (int, net.Addr, error) {
	return c.sio.ReadFrom(p)
}

// Close implements net.PacketConn; it is idempotent.
func (c *turnPacketConn) Close() error {
	var err error
	c.closeMu.Do(func() {
		close(c.closed)
		err = c.sio.Close()
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
