//go:build !linux

package sockio

import "net"

// Batched reads and raw sends are Linux's; elsewhere every socket uses the
// portable implementations.

// Pool lends receive batches on Linux; elsewhere it is empty.
type Pool struct{}

// NewPool returns a Pool.
func NewPool() *Pool { return &Pool{} }

// NewUDP returns the portable I/O for pc.
func NewUDP(pc net.PacketConn, _ *Pool, _ int) UDP { return portableUDP{pc} }

// NewStream returns the portable I/O for c.
func NewStream(c net.Conn) Stream { return portableStream{c} }

// Sender is one goroutine's state for sends; empty here.
type Sender struct{}

// NewSender returns a Sender for one goroutine.
func NewSender() *Sender { return &Sender{} }

type sockaddr struct{}
