package plane

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// InboundMTU is pion's read buffer on client-facing sockets: it drops
// datagrams of this size or more.
const InboundMTU = 1600

// Owner is the client-facing side serving an allocation's client: a UDP
// socket (many clients) or a stream connection (one client).
type Owner interface {
	// SendToClient sends b to the client at to (a Dest of the owner's UDP
	// socket; stream owners ignore it), with w, the caller's. With wait
	// false it may refuse, sending nothing, rather than wait for room.
	SendToClient(w *IO, b []byte, to *sockio.Dest, wait bool) bool
}

// Stream is a client's stream connection as the data plane writes to it.
// What one reader relays to a stream between two Flushes is joined and
// written with one Deliver (QueueStream), so that the frames of one read
// cost one write rather than one each.
type Stream interface {
	// Room reports whether n more bytes can be written or queued without
	// waiting for the connection.
	Room(n int) bool
	// Deliver writes b, whole frames; with wait false it may refuse,
	// writing nothing, rather than wait for room.
	Deliver(b []byte, wait bool) bool
}

// streamJoinMax is the most bytes an IO joins for one stream before it
// writes them.
const streamJoinMax = 32 << 10

// IO is one reader's reusable state for sends. It must not be used by two
// goroutines at once.
//
// An IO made with a Pool queues what this package relays over UDP
// (Queue) until its reader calls Flush, which sends the datagrams queued
// for one socket with one system call where the platform allows: a
// reader of a batched socket flushes when it has handled the datagrams of
// one batch, and before it hands one to pion, so that pion's sends never
// overtake the queue. Admission happens when a datagram is queued; one
// to a peer is counted sent when Flush sent it.
//
// Frames for a stream connection are joined the same way (QueueStream),
// for one stream at a time: Flush, or a frame for another stream, writes
// them.
type IO struct {
	Sender *sockio.Sender
	out    []byte // ChannelData being sent to a client

	st    Stream // the stream sbuf is for; nil: none
	sbuf  []byte // frames joined for st
	swait bool   // one of them may wait for room

	// Of each datagram queued: the Relay it is sent on behalf of, when it
	// goes to a peer (nil: to a client), and its size.
	to   [sockio.SendBatch]*Relay
	size [sockio.SendBatch]int
}

// NewIO returns an IO for one reader; with a pool it queues its sends
// until Flush.
func NewIO(pool *sockio.Pool) IO { return IO{Sender: sockio.NewSender(pool)} }

// Queue queues b to leave through u, one of the owner's sockets, for d at
// the next Flush. It reports false when it did not (the IO does not
// queue, or b is too large), having sent what was queued, so that the
// caller's immediate send keeps the order.
func (w *IO) Queue(u sockio.UDP, d *sockio.Dest, b []byte) bool {
	return w.queue(u, d, b, nil)
}

// queue is Queue for a datagram sent to a peer on behalf of to (nil: to a
// client), counted to it once sent.
func (w *IO) queue(u sockio.UDP, d *sockio.Dest, b []byte, to *Relay) bool {
	if w.Sender.Queued() == sockio.SendBatch {
		w.Flush()
	}
	i, ok := w.Sender.Queue(u, d, b)
	if !ok {
		w.Flush()
		return false
	}
	w.to[i], w.size[i] = to, len(b)
	return true
}

// QueueStream joins b, a frame for s, to what w writes to s at the next
// Flush, and reports true; with wait false it reports false, joining
// nothing, when s has no room for it at once. b is copied.
func (w *IO) QueueStream(s Stream, b []byte, wait bool) bool {
	if w.st != nil && (w.st != s || len(w.sbuf)+len(b) > streamJoinMax) {
		w.flushStream()
	}
	if !wait && !s.Room(len(w.sbuf)+len(b)) {
		return false
	}
	w.st = s
	w.sbuf = append(w.sbuf, b...)
	w.swait = w.swait || wait
	return true
}

// flushStream writes what QueueStream joined. Frames a stream refuses at
// this point (it filled up since they were joined, all of them offered
// without waiting) are lost, as the connection is backlogged by more than
// its bound.
func (w *IO) flushStream() {
	if w.st == nil {
		return
	}
	w.st.Deliver(w.sbuf, w.swait)
	w.st, w.swait = nil, false
	if cap(w.sbuf) > 2*streamJoinMax {
		w.sbuf = nil
	} else {
		w.sbuf = w.sbuf[:0]
	}
}

// Flush sends what is queued and counts the datagrams to peers that left.
func (w *IO) Flush() {
	w.flushStream()
	n := w.Sender.Queued()
	if n == 0 {
		return
	}
	sent := w.Sender.Flush()
	for i := range n {
		r := w.to[i]
		if r == nil {
			continue
		}
		w.to[i] = nil
		if sent&(1<<i) != 0 {
			r.CountTo(w.size[i])
			r.Counters.FastTo.Add(1)
		}
	}
}

// client is the client side of an allocation this package serves.
type client struct {
	owner Owner
	to    sockio.Dest
}

// Relay is the data plane of one allocation, in its relay socket. The
// relay socket wrapper owns it; the fields below say who writes what.
type Relay struct {
	// Static after NewRelay.
	io   sockio.UDP
	self netip.AddrPort // our public address and this socket's port, as peers see it
	lim  *Limits

	closed atomic.Bool            // set by MarkClosed
	client atomic.Pointer[client] // set by Serve, cleared by Unserve; nil: pion relays
	bind   Binding                // written by the control plane's events
	tat    [2]atomic.Int64        // per direction: the bucket's theoretical arrival time

	Counters Counters
}

// NewRelay returns the data plane of an allocation whose relay socket does
// its I/O through io and is seen by peers at self. It serves nobody and
// holds no permission until told.
func NewRelay(io sockio.UDP, self netip.AddrPort, lim *Limits) *Relay {
	return &Relay{io: io, self: self, lim: lim}
}

// Serve makes this package relay the allocation's channel data, to and
// from its client through owner (at to, for a UDP owner).
func (r *Relay) Serve(owner Owner, to sockio.Dest) {
	r.client.Store(&client{owner: owner, to: to})
}

// Unserve leaves all the allocation's data to pion.
func (r *Relay) Unserve() { r.client.Store(nil) }

// Client returns the client's destination and whether this package
// serves the allocation.
func (r *Relay) Client() (sockio.Dest, bool) {
	c := r.client.Load()
	if c == nil {
		return sockio.Dest{}, false
	}
	return c.to, true
}

// MarkClosed records that the relay socket is closed: what arrives for
// it is left to pion, which fails as a closed socket does.
func (r *Relay) MarkClosed() { r.closed.Store(true) }

// Closed reports whether MarkClosed was called.
func (r *Relay) Closed() bool { return r.closed.Load() }

// ParseChannelData returns the channel number and payload of a ChannelData
// message as pion decodes it, or ok=false when pion would not accept it.
func ParseChannelData(b []byte) (number uint16, data []byte, ok bool) {
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

// IsChannelData reports whether b, read from a client, may be ChannelData
// this package relays: small enough for pion to read it, with a channel
// number's first bits.
func IsChannelData(b []byte) bool {
	return len(b) >= 4 && len(b) < InboundMTU && b[0]&0xC0 == 0x40
}

// FromClient relays a ChannelData message from the client to the peer
// bound to its channel, if admission lets it pass (else it drops it),
// sending (or queuing) with w, the calling reader's. It reports false, relaying
// nothing, when pion must handle the message.
func (r *Relay) FromClient(w *IO, frame []byte) bool {
	number, data, ok := ParseChannelData(frame)
	if !ok || r.closed.Load() || r.client.Load() == nil {
		return false
	}
	peer := r.bind.load().byNum[number]
	if peer == nil {
		return false
	}
	if !r.AdmitTo(peer.ap, len(data)) {
		return true
	}
	if peer.local != nil && r.handOver(w, peer.local, data) {
		return true
	}
	if w.queue(r.io, &peer.dest, data, r) {
		return true
	}
	if r.io.Send(w.Sender, data, &peer.dest) == nil {
		r.CountTo(len(data))
		r.Counters.FastTo.Add(1)
	}
	return true
}

// FromPeer takes a datagram the relay socket read from peer: it counts
// it, relays it to the client as ChannelData when a channel is bound to
// peer, and otherwise admits it for pion. It reports whether pion gets
// the datagram.
func (r *Relay) FromPeer(w *IO, data []byte, peer netip.AddrPort) bool {
	r.countFrom(len(data))
	if r.toClient(w, data, peer, true) != declined {
		return false
	}
	return r.admitFrom(peer, len(data))
}

// handOver gives data, sent by r's client to dst, another Relay of ours,
// straight to dst's client, as if dst's socket had read it from r's
// public address, or drops it if dst's admission does. It reports false,
// handing over nothing, when dst's reader (and pion) must see the
// datagram or its client cannot take it at once.
func (r *Relay) handOver(w *IO, dst *Relay, data []byte) bool {
	if dst.closed.Load() || len(data) >= InboundMTU {
		return false
	}
	if dst.toClient(w, data, r.self, false) == declined {
		return false
	}
	// Sent or dropped by dst's admission: counted as the kernel would
	// have carried it.
	dst.countFrom(len(data))
	r.CountTo(len(data))
	r.Counters.Handed.Add(1)
	r.Counters.FastTo.Add(1) // last: tests wait for it, then read the others
	return true
}

// fate is what became of a datagram toClient was offered.
type fate int

const (
	declined fate = iota // nothing done: pion (or the kernel) must handle it
	sent                 // relayed
	dropped              // refused by admission
)

// Pad returns the size of ChannelData carrying n bytes, padded to 4 bytes
// as pion pads it on every transport.
func Pad(n int) int { return 4 + (n+3)&^3 }

// toClient relays a datagram from peer to the client as ChannelData if
// admission lets it pass. It declines, sending nothing and taking nothing
// from the cap, when pion must handle the datagram (nobody served here,
// no channel bound to peer), or when wait is false and the client's
// connection has no room at once.
func (r *Relay) toClient(w *IO, data []byte, peer netip.AddrPort, wait bool) fate {
	c := r.client.Load()
	if c == nil {
		return declined
	}
	number, ok := r.bind.load().byPeer[peer]
	if !ok {
		return declined
	}
	if !r.admitFrom(peer, len(data)) {
		return dropped
	}
	size := Pad(len(data))
	if cap(w.out) < size {
		w.out = make([]byte, 0, max(size, 4+InboundMTU))
	}
	out := w.out[:size]
	binary.BigEndian.PutUint16(out, number)
	binary.BigEndian.PutUint16(out[2:], uint16(len(data))) // at most the read buffer
	copy(out[4:], data)
	clear(out[4+len(data):])
	if !c.owner.SendToClient(w, out, &c.to, wait) {
		r.refund(FromPeer, len(data))
		return declined
	}
	r.Counters.FastFrom.Add(1)
	return sent
}
