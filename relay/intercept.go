package relay

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/pion/stun/v3"

	"github.com/strangers-chat/strangers/relay/internal/plane"
	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// The interception step: both client transports (UDP sockets in
// sockets.go, stream connections in listener.go) pass every message a
// client sends through intercept before pion may see it.

// intercept is what a client-facing side does with each message b its
// client at src sends, before pion may see it: it notes the request in g
// (for screenReply), answers a ChannelBind over our limits itself, relays
// ChannelData on the data plane when it serves the allocation, notes an
// Allocate request (for serve) and the secret a request was made with
// (noteOldSecret). It reports whether pion gets b, and a reply to send to
// the client when it does not (nil: none). pending, when not "", is the
// key to pass to forgetAllocate before side reads again. w is the side's
// reader's.
func (s *Server) intercept(side clientSide, w *plane.IO, g *replyGuard, src net.Addr, b []byte) (toPion bool, reply []byte, pending string) {
	g.note(b)
	if isChannelBindRequest(b) {
		if reply, handled := s.screenChannelBind(src, b); handled {
			return false, reply, ""
		}
	}
	if plane.IsChannelData(b) {
		if pl := side.served(src); pl != nil && pl.FromClient(w, b) {
			return false, nil, ""
		}
	}
	if isAllocateRequest(b) {
		pending = s.noteAllocate(side, src)
	}
	s.noteOldSecret(src, b)
	return true, nil, pending
}

// screenChannelBind looks at a ChannelBind request before pion does. pion
// v4 neither range-checks the channel number nor caps channels, and its
// permission handler cannot tell a ChannelBind from a CreatePermission, so
// this is where those limits live. It returns handled=false to let pion
// process the request, or handled=true with an error response to send
// (nil to drop).
func (s *Server) screenChannelBind(src net.Addr, frame []byte) (reply []byte, handled bool) {
	m := &stun.Message{Raw: frame}
	if err := m.Decode(); err != nil {
		return nil, false
	}
	if m.Type != stun.NewType(stun.MethodChannelBind, stun.ClassRequest) {
		return nil, false
	}
	v, err := m.Get(stun.AttrChannelNumber)
	if err != nil || len(v) < 2 {
		return nil, false // pion answers 400
	}
	number := binary.BigEndian.Uint16(v)
	code := stun.ErrorCode(0)
	if number < 0x4000 || number > 0x7FFF {
		code = stun.CodeBadRequest
	} else {
		s.mu.Lock()
		if a := s.allocs[transportKey(src)]; a != nil && a.relay != nil {
			if n, bound := a.relay.pl.Channels(number); !bound && n >= s.cfg.MaxChannelsPerAllocation {
				code = stun.CodeInsufficientCapacity
			}
		}
		s.mu.Unlock()
		if code != 0 {
			s.metrics.quotaHits.WithLabelValues(quotaChannels).Inc()
		}
	}
	if code == 0 {
		return nil, false
	}
	resp, err := stun.Build(
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse),
		code,
	)
	if err != nil {
		return nil, true
	}
	return resp.Raw, true
}

// clientSide is a client-facing transport that sends to clients: a UDP
// socket (many clients) or a stream connection (one client).
type clientSide interface {
	plane.Owner
	// served returns the data plane of the allocation of the client at
	// src that this side serves, nil if none.
	served(src net.Addr) *plane.Relay
}

// served implements clientSide.
func (c *turnPacketConn) served(src net.Addr) *plane.Relay {
	ap, ok := addrPort(src)
	if !ok {
		return nil
	}
	return c.clients.Get(ap)
}

// served implements clientSide.
func (c *streamConn) served(net.Addr) *plane.Relay { return c.fast.Load() }

// SendToClient implements plane.Owner: b is queued in w when w queues
// (its reader flushes it), else sent at once. A UDP send does not wait
// for the client, so wait does not matter.
func (c *turnPacketConn) SendToClient(w *plane.IO, b []byte, to *sockio.Dest, _ bool) bool {
	if !w.Queue(c.sio, to, b) {
		_ = c.sio.Send(w.Sender, b, to)
	}
	return true
}

// SendToClient implements plane.Owner: b is joined in w with the other
// frames w's reader relays to this connection until its next Flush.
func (c *streamConn) SendToClient(w *plane.IO, b []byte, _ *sockio.Dest, wait bool) bool {
	return w.QueueStream(c, b, wait)
}

// Room implements plane.Stream.
func (c *streamConn) Room(n int) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return false
	default:
	}
	return c.werr == nil && (len(c.out) == 0 || len(c.out)+n <= streamOutMax)
}

// Deliver implements plane.Stream: b, ChannelData frames, is written
// (or queued for the writer) as Write does, or with wait false only if
// that needs no wait for room.
func (c *streamConn) Deliver(b []byte, wait bool) bool {
	if !wait {
		return c.offer(b)
	}
	_, err := c.write(b)
	return err == nil
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

// isChannelBindRequest reports whether b starts like a STUN ChannelBind
// request (type 0x0009), without parsing it.
func isChannelBindRequest(b []byte) bool {
	return len(b) >= 20 && b[0] == 0x00 && b[1] == 0x09
}
