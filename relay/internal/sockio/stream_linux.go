//go:build linux

package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NewStream returns the I/O for c: raw reads and non-blocking writes when
// c is a TCP connection, else the portable implementation (TLS: every
// write goes to the connection's writer).
func NewStream(c net.Conn) Stream {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return portableStream{c}
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return portableStream{c}
	}
	r := &rawStream{raw: raw}
	r.rf, r.wf = r.readFD, r.writeFD
	return r
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

// Read reads into p, waiting for data; at end of stream it returns io.EOF.
func (r *rawStream) Read(p []byte) (int, error) {
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

// TryWrite writes what the socket takes of p at once, without waiting.
func (r *rawStream) TryWrite(p []byte) (int, error) {
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
