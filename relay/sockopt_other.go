//go:build !linux

package relay

import (
	"net"
	"syscall"
)

// reusePortSupported is false here: one UDP socket serves the TURN port.
const reusePortSupported = false

func reusePortControl(_, _ string, _ syscall.RawConn) error { return nil }

// setReceiveBuffer asks for a want-byte receive buffer; the granted size is
// not observable portably, so want is reported.
func setReceiveBuffer(pc net.PacketConn, want int) (int, error) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return 0, nil
	}
	if err := uc.SetReadBuffer(want); err != nil {
		return 0, err
	}
	return want, nil
}
