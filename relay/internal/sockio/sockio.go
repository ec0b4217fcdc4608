// Package sockio is the relay's socket I/O, chosen once per socket when it
// is wrapped and used through one interface per kind of socket, so that
// nothing above it asks what the platform can do.
//
// On Linux a UDP socket is read with recvmmsg (one system call fetches
// what is queued; later reads are served from that batch, borrowed from a
// Pool only while it holds datagrams). A reader's Handler sees each
// datagram first, where it lies, and ReadFrom returns only those it
// leaves, so a reader whose datagrams the data plane relays waits for the
// socket again without returning, or asking the kernel for a queue it
// already found drained. The data plane sends on a socket with
// raw sendto calls to destinations converted once (Dest), or queues
// datagrams in its Sender and sends them with one sendmmsg per socket
// (Flush); a TCP
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
	// SetHandler makes ReadFrom offer every datagram it reads to h
	// before returning it. It is called before the first ReadFrom.
	SetHandler(h Handler)
	// Close closes the socket; a blocked ReadFrom returns an error
	// wrapping net.ErrClosed, and datagrams still buffered are dropped.
	Close() error
}

// Handler takes the datagrams a UDP socket reads before its reader sees
// them. Its methods are called by the reading goroutine, inside ReadFrom.
type Handler interface {
	// Handle is offered each datagram b, from from, in the order read. b
	// is valid only during the call. It reports whether it dealt with the
	// datagram; ReadFrom returns those it did not.
	Handle(b []byte, from net.Addr) bool
	// Flush is called once every datagram of a batch read has been
	// offered, before ReadFrom waits for the socket and before it returns:
	// what the handler queued while handling the batch must leave.
	Flush()
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

// portableUDP reads and writes through the net package, one datagram per
// read. It is used through a pointer, so that a Sender's queue can tell
// sockets apart by comparing them.
type portableUDP struct {
	pc net.PacketConn
	h  Handler // set before the first read; nil when none
}

func (u *portableUDP) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := u.pc.ReadFrom(p)
		if u.h == nil {
			return n, addr, err
		}
		taken := err == nil && u.h.Handle(p[:n], addr)
		u.h.Flush()
		if !taken {
			return n, addr, err
		}
	}
}

func (u *portableUDP) SetHandler(h Handler) { u.h = h }

func (u *portableUDP) Dest(addr net.Addr, _ netip.AddrPort) Dest { return Dest{addr: addr} }

func (u *portableUDP) Send(_ *Sender, b []byte, d *Dest) error {
	_, err := u.pc.WriteTo(b, d.addr)
	return err
}

func (u *portableUDP) Close() error { return u.pc.Close() }

// portableStream reads through the net package and leaves every write to
// the connection's writer.
type portableStream struct{ c net.Conn }

func (s portableStream) Read(p []byte) (int, error) { return s.c.Read(p) }

func (portableStream) TryWrite([]byte) (int, error) { return 0, nil }

// SendBatch is the most datagrams a Sender queues: one receive batch's
// worth. Flush reports which were sent as a bit mask of this many bits.
const SendBatch = 16

// queueSlot is the largest datagram a Sender queues: ChannelData carrying
// the largest datagram the relay reads (1600 bytes), padded, fits.
const queueSlot = 2048

// Sender is one goroutine's state for sends: the arguments of an
// immediate send, bound once so that a send allocates nothing, and,
// when it was made with a Pool, a queue of datagrams that Flush sends
// with one sendmmsg per socket where the platform has it. A Sender must
// not be used by two goroutines at once.
//
// The queue keeps the order of the datagrams queued for each socket (and
// so for each destination); datagrams for different sockets may leave in
// another order. Whoever queues must Flush before sending anything by
// other means that must not overtake what is queued.
type Sender struct {
	sendState // the platform's, for immediate sends and sendmmsg

	pool *Pool     // lends queues; nil: the Sender does not queue
	q    *outQueue // the queued datagrams, nil when none (borrowed from pool)
}

// NewSender returns a Sender for one goroutine. With a pool it queues
// (Queue); without, every send is immediate.
func NewSender(pool *Pool) *Sender {
	s := &Sender{pool: pool}
	s.init()
	return s
}

// outQueue is a Sender's queue: the datagrams, copied, and where each
// goes. It is borrowed from a Pool only while it holds datagrams.
type outQueue struct {
	n    int
	msgs [SendBatch]outMsg
	bufs [SendBatch][queueSlot]byte
	sys  outSys // the platform's system-call memory
}

// outMsg is one queued datagram: bufs[i][:n], to d through u.
type outMsg struct {
	u UDP
	d *Dest
	n int
}

// Queue queues a copy of b, to leave through u (one of this package's
// sockets) for d, a Dest of u, at the next Flush, and returns its index in
// the queue. It reports false, queuing nothing, when the Sender does not
// queue, b is larger than a queue slot or the queue is full.
func (s *Sender) Queue(u UDP, d *Dest, b []byte) (int, bool) {
	if s.pool == nil || len(b) > queueSlot {
		return 0, false
	}
	if s.q == nil {
		s.q = s.pool.getOut()
	}
	q := s.q
	if q.n == SendBatch {
		return 0, false
	}
	i := q.n
	q.msgs[i] = outMsg{u: u, d: d, n: copy(q.bufs[i][:], b)}
	q.n++
	return i, true
}

// Queued returns how many datagrams are queued.
func (s *Sender) Queued() int {
	if s.q == nil {
		return 0
	}
	return s.q.n
}

// Flush sends the queued datagrams, those for one socket together in
// their order, and empties the queue. Bit i of sent is set when datagram
// i of the queue was sent; one the socket refused (as a plain send would
// fail) is dropped and the others still go.
func (s *Sender) Flush() (sent uint32) {
	q := s.q
	if q == nil {
		return 0
	}
	var done uint32
	for i := range q.n {
		if done&(1<<i) != 0 {
			continue
		}
		u := q.msgs[i].u
		var group uint32
		for j := i; j < q.n; j++ {
			if q.msgs[j].u == u {
				group |= 1 << j
			}
		}
		done |= group
		sent |= s.sendGroup(q, u, group)
	}
	clear(q.msgs[:q.n]) // keep no socket or destination alive
	q.n = 0
	s.q = nil
	s.pool.putOut(q)
	return sent
}

// sendEach sends the datagrams of group (bits of q's indexes) through u
// one at a time, in order, and reports which were sent.
func (s *Sender) sendEach(q *outQueue, u UDP, group uint32) (sent uint32) {
	for i := range q.n {
		if group&(1<<i) == 0 {
			continue
		}
		m := &q.msgs[i]
		if u.Send(s, q.bufs[i][:m.n], m.d) == nil {
			sent |= 1 << i
		}
	}
	return sent
}

func newOutQueue() any { return new(outQueue) }
