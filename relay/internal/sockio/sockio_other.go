//go:build !linux

package sockio

import (
	"net"
	"sync"
)

// Batched reads and raw sends are Linux's; elsewhere every socket uses the
// portable implementations.

// Pool lends Senders' queues (on Linux also receive batches).
type Pool struct{ out sync.Pool }

// NewPool returns a Pool.
func NewPool() *Pool { return &Pool{out: sync.Pool{New: newOutQueue}} }

func (bp *Pool) getOut() *outQueue  { return bp.out.Get().(*outQueue) } // only queues are put
func (bp *Pool) putOut(q *outQueue) { bp.out.Put(q) }

// NewUDP returns the portable I/O for pc.
func NewUDP(pc net.PacketConn, _ *Pool, _ int) UDP { return &portableUDP{pc: pc} }

// NewStream returns the portable I/O for c.
func NewStream(c net.Conn) Stream { return portableStream{c} }

// sendState is empty here: sends are WriteTo calls.
type sendState struct{}

func (s *Sender) init() {}

// outSys is empty here: queued datagrams leave one WriteTo at a time.
type outSys struct{}

// sendGroup sends the datagrams of group through u, one at a time.
func (s *Sender) sendGroup(q *outQueue, u UDP, group uint32) uint32 {
	return s.sendEach(q, u, group)
}

type sockaddr struct{}
