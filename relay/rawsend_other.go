//go:build !linux

package relay

import (
	"errors"
	"net"
	"net/netip"
)

// Raw sendto is used on Linux; elsewhere the fast path sends with WriteTo.
type sockaddr struct{}

func newSockaddr(int, netip.AddrPort) (sockaddr, bool) { return sockaddr{}, false }

type rawUDP struct{ family int }

func newRawUDP(net.PacketConn) *rawUDP { return nil }

type sender struct{}

func newSender() *sender { return &sender{} }

func (*sender) send(*rawUDP, []byte, *sockaddr) error {
	return errors.New("relay: raw send not supported")
}

type rawStream struct{}

func newRawStream(net.Conn) *rawStream { return nil }

func (*rawStream) read([]byte) (int, error) { return 0, errors.New("relay: raw read not supported") }

func (*rawStream) tryWrite([]byte) (int, error) {
	return 0, errors.New("relay: raw write not supported")
}
