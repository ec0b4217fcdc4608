//go:build linux

package relay

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fast path sends with sendto(2) issued as a raw system call on the
// socket's descriptor, through syscall.RawConn.Write, instead of
// net.UDPConn.WriteTo:
//
//   - the destination is converted to a socket address once, when the
//     allocation or channel is set up, not once per datagram;
//   - the sockets are non-blocking, so sendto never blocks and does not
//     need the scheduler's system-call bookkeeping. With it, every send
//     that found the runtime idle woke its monitor thread, which then
//     polled at its shortest interval: under relay traffic that was a
//     large share of the process's own CPU time.
//
// RawConn.Write holds the descriptor's write lock, so a send never races
// with Close, and waits for the socket to be writable when sendto reports
// EAGAIN, as WriteTo would.

// sockaddr is a destination in the form sendto takes.
type sockaddr struct {
	raw unix.RawSockaddrInet6 // a RawSockaddrInet4 when len says so
	len uint32
}

// newSockaddr returns ap as a destination for a socket of family, and
// false when such a socket cannot send to it as plainly (an IPv6 address
// on an IPv4 socket, a zoned address).
func newSockaddr(family int, ap netip.AddrPort) (sockaddr, bool) {
	var sa sockaddr
	a := ap.Addr()
	if !ap.IsValid() || a.Zone() != "" {
		return sa, false
	}
	port := (*[2]byte)(unsafe.Pointer(&sa.raw.Port))
	switch {
	case family == unix.AF_INET && a.Unmap().Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		sa4.Family = unix.AF_INET
		sa4.Addr = a.Unmap().As4()
		sa.len = unix.SizeofSockaddrInet4
	case family == unix.AF_INET6:
		sa.raw.Family = unix.AF_INET6
		sa.raw.Addr = a.As16() // IPv4 as ::ffff:a.b.c.d, as the net package sends it
		sa.len = unix.SizeofSockaddrInet6
	default:
		return sockaddr{}, false
	}
	// The port sits at the same offset in both layouts, in network order.
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())
	return sa, true
}

// rawUDP is a UDP socket the fast path sends on with raw sendto calls.
type rawUDP struct {
	raw    syscall.RawConn
	family int
}

// newRawUDP returns a rawUDP for pc, or nil when pc is not a UDP socket.
func newRawUDP(pc net.PacketConn) *rawUDP {
	_, raw, ok := udpSyscallConn(pc)
	if !ok {
		return nil
	}
	family := 0
	if err := raw.Control(func(fd uintptr) {
		family, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || (family != unix.AF_INET && family != unix.AF_INET6) {
		return nil
	}
	return &rawUDP{raw: raw, family: family}
}

// sender holds one goroutine's sendto arguments, so that a send allocates
// nothing: the callback is bound once. A sender must not be used by two
// goroutines at once.
type sender struct {
	b     []byte
	sa    *sockaddr
	errno syscall.Errno
	f     func(fd uintptr) bool
}

func newSender() *sender {
	s := &sender{}
	s.f = s.sendto
	return s
}

// send sends b to sa on u.
func (s *sender) send(u *rawUDP, b []byte, sa *sockaddr) error {
	s.b, s.sa, s.errno = b, sa, 0
	err := u.raw.Write(s.f)
	s.b, s.sa = nil, nil
	if err == nil && s.errno != 0 {
		err = os.NewSyscallError("sendto", s.errno)
	}
	return err
}

// sendto is the RawConn.Write callback. It returns false, to wait until
// the socket is writable, on EAGAIN.
func (s *sender) sendto(fd uintptr) bool {
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(s.b))), uintptr(len(s.b)), 0,
			uintptr(unsafe.Pointer(&s.sa.raw)), uintptr(s.sa.len))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.errno = errno
		return true
	}
}

// rawStream reads and writes a TCP connection with raw read and write
// calls on its non-blocking descriptor, through syscall.RawConn: a read
// waits for data under the connection's read deadline as Read does; a
// write never waits and reports how much the socket took. Each is used by
// one goroutine at a time (the connection's reader; whoever holds its
// write turn).
type rawStream struct {
	raw syscall.RawConn

	rp     []byte
	rn     int
	rerrno syscall.Errno
	rf     func(fd uintptr) bool

	wp     []byte
	wn     int
	werrno syscall.Errno
	wf     func(fd uintptr) bool
}

// newRawStream returns a rawStream for c, or nil when c is not a TCP
// connection.
func newRawStream(c net.Conn) *rawStream {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawStream{raw: raw}
	r.rf, r.wf = r.readFD, r.writeFD
	return r
}

// read reads into p, waiting for data; at end of stream it returns io.EOF.
func (r *rawStream) read(p []byte) (int, error) {
	r.rp, r.rn, r.rerrno = p, 0, 0
	err := r.raw.Read(r.rf)
	r.rp = nil
	switch {
	case err != nil:
		return 0, err
	case r.rerrno != 0:
		return 0, os.NewSyscallError("read", r.rerrno)
	case r.rn == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return r.rn, nil
}

func (r *rawStream) readFD(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(r.rp))), uintptr(len(r.rp)))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.rn, r.rerrno = int(n), errno
		return true
	}
}

// tryWrite writes what the socket takes of p at once, without waiting.
func (r *rawStream) tryWrite(p []byte) (int, error) {
	r.wp, r.wn, r.werrno = p, 0, 0
	err := r.raw.Write(r.wf)
	r.wp = nil
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The writer goroutine's last deadline has passed: nothing was
		// written, and the writer sets a fresh one for what is queued.
		return 0, nil
	case err == nil && r.werrno != 0:
		err = os.NewSyscallError("write", r.werrno)
	}
	return r.wn, err
}

func (r *rawStream) writeFD(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(r.wp))), uintptr(len(r.wp)))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return true // nothing taken; the caller queues it
		case 0:
			r.wn = int(n)
		default:
			r.werrno = errno
		}
		return true
	}
}
