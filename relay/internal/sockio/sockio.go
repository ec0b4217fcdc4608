// Package sockio is the relay's socket I/O, chosen once per socket when it
// is wrapped and used through one interface per kind of socket, so that
// nothing above it asks what the platform can do.
//
// On Linux a UDP socket is read with recvmmsg (one system call fetches
// what is queued; later reads are served from that batch, borrowed from a
// Pool only while it holds datagrams) and the data plane sends on it with
// raw sendto calls to destinations converted once (Dest); a TCP
// connection is read and written with raw calls on its non-blocking
// descriptor, and TryWrite writes what the socket takes without waiting.
// Elsewhere, and for sockets that are not plain UDP or TCP sockets (TLS,
// test doubles), the portable implementations use the net package's
// ReadFrom, WriteTo, Read and Write.
//
// Nothing in this package allocates per datagram once a socket is set up.
package sockio

import (
	"net"
	"net/netip"
)

// UDP is the I/O of one UDP socket. ReadFrom may be called by one
// goroutine at a time; Send by several, each with its own Sender.
type UDP interface {
	// ReadFrom reads one datagram, as net.PacketConn's ReadFrom does, with
	// the socket's read deadline.
	ReadFrom(p []byte) (int, net.Addr, error)
	// Dest converts a destination once, for Send on this socket. addr is
	// what a portable send writes to; ap is addr with IPv4-in-IPv6
	// unwrapped.
	Dest(addr net.Addr, ap netip.AddrPort) Dest
	// Send sends b to d, a Dest of this socket, using w, which belongs to
	// the calling goroutine.
	Send(w *Sender, b []byte, d *Dest) error
	// Close closes the socket; a blocked ReadFrom returns an error
	// wrapping net.ErrClosed, and datagrams still buffered are dropped.
	Close() error
}

// Stream is the I/O of one stream connection. Read is called by one
// goroutine at a time (the connection's reader), TryWrite by whoever
// holds the connection's write turn.
type Stream interface {
	// Read reads into p under the connection's read deadline, as
	// net.Conn's Read does.
	Read(p []byte) (int, error)
	// TryWrite writes what the connection takes of p at once, without
	// waiting, and reports how much that was (0 when it must be queued
	// for a writer that waits).
	TryWrite(p []byte) (int, error)
}

// Dest is a destination converted for Send on one socket.
type Dest struct {
	addr net.Addr
	sa   sockaddr
	raw  bool // sa is set: Send uses a raw sendto
}

// Addr returns the destination as the net package takes it.
func (d *Dest) Addr() net.Addr { return d.addr }

// Raw reports whether sends to d are raw sendto calls.
func (d *Dest) Raw() bool { return d.raw }

// portableUDP reads and writes through the net package.
type portableUDP struct{ pc net.PacketConn }

func (u portableUDP) ReadFrom(p []byte) (int, net.Addr, error) { return u.pc.ReadFrom(p) }

func (u portableUDP) Dest(addr net.Addr, _ netip.AddrPort) Dest { return Dest{addr: addr} }

func (u portableUDP) Send(_ *Sender, b []byte, d *Dest) error {
	_, err := u.pc.WriteTo(b, d.addr)
	return err
}

func (u portableUDP) Close() error { return u.pc.Close() }

// portableStream reads through the net package and leaves every write to
// the connection's writer.
type portableStream struct{ c net.Conn }

func (s portableStream) Read(p []byte) (int, error) { return s.c.Read(p) }

func (portableStream) TryWrite([]byte) (int, error) { return 0, nil }
