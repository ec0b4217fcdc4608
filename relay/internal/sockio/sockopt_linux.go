//go:build linux

package sockio

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReusePort reports whether several UDP sockets can share the TURN
// port (SO_REUSEPORT), letting the kernel spread clients across them.
const ReusePort = true

// ReusePortControl is a net.ListenConfig.Control that sets SO_REUSEPORT.
func ReusePortControl(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// SetReceiveBuffer asks for a want-byte receive buffer on a UDP socket and
// returns what the kernel granted. SetReadBuffer is capped by
// net.core.rmem_max; as a privileged process we then try SO_RCVBUFFORCE.
func SetReceiveBuffer(pc net.PacketConn, want int) (int, error) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return 0, nil
	}
	if err := uc.SetReadBuffer(want); err != nil {
		return 0, err
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	got := 0
	read := func() {
		_ = raw.Control(func(fd uintptr) {
			v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
			if err == nil {
				got = v / 2 // Linux reports twice the size it was asked for (bookkeeping overhead)
			}
		})
	}
	read()
	if got < want {
		_ = raw.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, want)
		})
		read()
	}
	return got, nil
}
