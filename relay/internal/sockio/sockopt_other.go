//go:build !linux

package sockio

import (
	"net"
	"syscall"
)

// ReusePort is false here: one UDP socket serves the TURN port.
const ReusePort = false

func ReusePortControl(_, _ string, _ syscall.RawConn) error { return nil }

// SetReceiveBuffer asks for a want-byte receive buffer; the granted size is
// not observable portably, so want is reported.
func SetReceiveBuffer(pc net.PacketConn, want int) (int, error) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return 0, nil
	}
	if err := uc.SetReadBuffer(want); err != nil {
		return 0, err
	}
	return want, nil
}
