//go:build linux

package sockio

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// batchSize is how many datagrams one recvmmsg call may return.
	batchSize = 16
	// batchSlot is the size of each buffered datagram slot. Callers with a
	// larger buffer get one datagram per call (so truncation stays exactly
	// that of a plain read); pion reads with 1600-byte buffers.
	batchSlot = 2048
)

// NewUDP returns the I/O for pc: batched reads and raw sends when pc is an
// IPv4 or IPv6 UDP socket, else the portable implementation. pool lends
// receive batches; cacheSize sizes the cache of source addresses (a
// client-facing socket hears from many, a relay socket from a few).
func NewUDP(pc net.PacketConn, pool *Pool, cacheSize int) UDP {
	uc, raw, ok := udpSyscallConn(pc)
	if !ok || pool == nil {
		return &portableUDP{pc: pc}
	}
	family := 0
	if err := raw.Control(func(fd uintptr) {
		family, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || (family != unix.AF_INET && family != unix.AF_INET6) {
		return &portableUDP{pc: pc}
	}
	r := &batchReader{conn: uc, raw: raw, laddr: uc.LocalAddr(), pool: pool, addrs: newAddrCache(cacheSize), h: keepAll{}}
	r.recvF = r.recv
	return &linuxUDP{batchReader: r, out: rawUDP{raw: raw, family: family}}
}

// linuxUDP reads with recvmmsg and sends with raw sendto, or sendmmsg for
// a Sender's queue.
type linuxUDP struct {
	*batchReader
	out rawUDP
}

func (u *linuxUDP) Dest(addr net.Addr, ap netip.AddrPort) Dest {
	d := Dest{addr: addr}
	d.sa, d.raw = newSockaddr(u.out.family, ap)
	return d
}

func (u *linuxUDP) Send(w *Sender, b []byte, d *Dest) error {
	if !d.raw {
		_, err := u.conn.WriteTo(b, d.addr)
		return err
	}
	return w.send(&u.out, b, &d.sa)
}

// udpSyscallConn returns pc as a UDP socket and its raw connection, or
// ok=false when it is not one.
func udpSyscallConn(pc net.PacketConn) (*net.UDPConn, syscall.RawConn, bool) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, nil, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, false
	}
	return uc, raw, true
}

// mmsghdr is struct mmsghdr: a msghdr and the length received. Go pads it
// to the alignment of the msghdr, as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batch is the memory of one recvmmsg call. Its pointers (iovecs, names)
// point into itself and are set once, when the pool creates it.
type batch struct {
	hdrs  [batchSize]mmsghdr
	iovs  [batchSize]unix.Iovec
	names [batchSize]unix.RawSockaddrInet6
	bufs  [batchSize][batchSlot]byte
}

// Pool pools the receive batches of a server's sockets. A reader
// holds one only while it has datagrams buffered, never while it waits for
// the socket, so idle relay sockets cost no batch memory.
// It lends Senders' queues too, on the same terms.
type Pool struct{ p, out sync.Pool }

func NewPool() *Pool {
	return &Pool{out: sync.Pool{New: newOutQueue}, p: sync.Pool{New: func() any {
		b := new(batch)
		for i := range b.hdrs {
			b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			b.hdrs[i].hdr.Iov = &b.iovs[i]
			b.hdrs[i].hdr.SetIovlen(1)
			if i > 0 {
				b.iovs[i].Base = &b.bufs[i][0]
				b.iovs[i].SetLen(batchSlot)
			}
		}
		return b
	}}}
}

func (bp *Pool) get() *batch  { return bp.p.Get().(*batch) } // only batches are put
func (bp *Pool) put(b *batch) { bp.p.Put(b) }

func (bp *Pool) getOut() *outQueue  { return bp.out.Get().(*outQueue) } // only queues are put
func (bp *Pool) putOut(q *outQueue) { bp.out.Put(q) }

// batchReader reads a UDP socket with recvmmsg: one system call returns
// every datagram already queued (up to batchSize), and the following
// ReadFrom calls hand them out one by one, copied into the caller's buffer.
// The first datagram of a call lands directly in the caller's buffer. The
// socket's read deadline applies as to a plain read. Source addresses come
// from a small cache, so steady traffic from known peers allocates nothing.
//
// With a Handler, each datagram is offered to it first, in place, and
// only those it leaves are returned. A call whose datagrams the handler
// all took, and that found the socket's queue drained (fewer datagrams
// than asked for), waits for the socket to become readable again without
// another recvmmsg that would only report it empty: the runtime's poller
// has seen every datagram queued since this read began.
type batchReader struct {
	conn   *net.UDPConn
	raw    syscall.RawConn
	laddr  net.Addr
	pool   *Pool
	closed atomic.Bool
	h      Handler // set before the first read; keepAll when none

	mu      sync.Mutex // serialises readers; guards the fields below
	b       *batch     // datagrams next..n-1 of the last call; nil when none is left
	next, n int
	p       []byte // the caller's buffer during a system call
	kept    int    // during a system call: the length of the datagram left in p
	from    *net.UDPAddr
	errno   syscall.Errno
	recvF   func(fd uintptr) bool // recv bound once, so Read does not allocate
	addrs   addrCache
}

// keepAll is the Handler of a reader that was given none: it takes
// nothing.
type keepAll struct{}

func (keepAll) Handle([]byte, net.Addr) bool { return false }
func (keepAll) Flush()                       {}

// SetHandler implements UDP.
func (r *batchReader) SetHandler(h Handler) {
	if h == nil {
		h = keepAll{}
	}
	r.h = h
}

// ReadFrom reads one datagram the handler leaves, as net.PacketConn's
// ReadFrom, and calls the handler's Flush before it returns.
func (r *batchReader) ReadFrom(p []byte) (int, net.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, addr, err := r.read(p)
	r.h.Flush()
	return n, addr, err
}

func (r *batchReader) read(p []byte) (int, net.Addr, error) {
	if r.closed.Load() {
		r.drop()
		return 0, nil, r.opErr(net.ErrClosed)
	}
	for r.b != nil {
		i := r.next
		d := r.b.bufs[i][:min(int(r.b.hdrs[i].n), len(p))]
		addr := r.addrs.get(&r.b.names[i])
		keep := !r.h.Handle(d, addr)
		n := 0
		if keep {
			n = copy(p, d)
		}
		if r.next++; r.next == r.n {
			r.drop()
			r.h.Flush()
		}
		if keep {
			return n, addr, nil
		}
	}
	r.p = p
	err := r.raw.Read(r.recvF)
	r.p = nil
	if err == nil && r.errno != 0 {
		err = os.NewSyscallError("recvmmsg", r.errno)
	}
	if err != nil {
		r.drop()
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err // RawConn.Read wraps as "raw-read"; report a plain read
		}
		return 0, nil, r.opErr(err)
	}
	n, addr := r.kept, r.from
	r.from = nil
	if r.next == r.n {
		r.drop()
	}
	return n, addr, nil
}

// recv is the RawConn.Read callback: recvmmsg, the first datagram into
// r.p and any further ones into the batch, each offered to the handler.
// It returns true when a datagram is left for the caller (in r.p, r.kept
// bytes from r.from, with r.next the one after it) or on an error, and
// false to wait for the socket: when nothing is queued, or when the
// handler took everything and the queue was drained.
func (r *batchReader) recv(fd uintptr) bool {
	vlen := batchSize
	if len(r.p) > batchSlot {
		vlen = 1
	}
	for {
		if r.b == nil {
			r.b = r.pool.get()
		}
		b := r.b
		for i := range vlen {
			b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
			b.hdrs[i].hdr.Flags = 0
			b.hdrs[i].n = 0
		}
		b.iovs[0].Base = nil
		if len(r.p) > 0 {
			b.iovs[0].Base = &r.p[0]
		}
		b.iovs[0].SetLen(len(r.p))
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])),
			uintptr(vlen), 0, 0, 0)
		b.iovs[0].Base = nil // do not keep the caller's buffer alive
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			r.drop() // do not hold a batch while waiting
			return false
		default:
			r.errno = errno
			return true
		}
		r.n, r.errno = int(n), 0
		if r.offer() {
			return true
		}
		r.h.Flush()
		if r.n < vlen {
			r.drop()
			return false // drained: the poller reports what comes next
		}
	}
}

// offer offers the r.n datagrams just read to the handler, in order, and
// reports whether one is left for the caller: it is then in r.p (copied
// there unless it is the first), r.kept bytes from r.from, and r.next is
// the datagram after it.
func (r *batchReader) offer() bool {
	b := r.b
	for i := range r.n {
		var d []byte
		if i == 0 {
			d = r.p[:b.hdrs[0].n] // the kernel truncated it to p
		} else {
			d = b.bufs[i][:min(int(b.hdrs[i].n), len(r.p))]
		}
		from := r.addrs.get(&b.names[i])
		if r.h.Handle(d, from) {
			continue
		}
		if i > 0 {
			copy(r.p, d)
		}
		r.kept, r.from, r.next = len(d), from, i+1
		return true
	}
	return false
}

// drop returns the batch to the pool.
func (r *batchReader) drop() {
	if r.b != nil {
		r.pool.put(r.b)
		r.b = nil
	}
	r.next, r.n = 0, 0
}

func (r *batchReader) opErr(err error) error {
	return &net.OpError{Op: "read", Net: "udp", Source: r.laddr, Err: err}
}

// Close marks the reader closed (buffered datagrams are discarded) and
// closes the socket.
func (r *batchReader) Close() error {
	r.closed.Store(true)
	return r.conn.Close()
}

// addrCache maps raw source addresses to *net.UDPAddr values handed out
// before, so a steady peer does not cost an allocation per datagram. It is
// direct-mapped; a miss allocates a new address and replaces the entry
// (entries are never modified once handed out).
type addrCache struct {
	keys  []netip.AddrPort
	addrs []*net.UDPAddr
	mask  uint32
}

// newAddrCache returns a cache of size entries, rounded up to a power of 2.
func newAddrCache(size int) addrCache {
	n := 1
	for n < size {
		n <<= 1
	}
	return addrCache{keys: make([]netip.AddrPort, n), addrs: make([]*net.UDPAddr, n), mask: uint32(n - 1)} // n is small
}

func (c *addrCache) get(sa *unix.RawSockaddrInet6) *net.UDPAddr {
	var key netip.AddrPort
	var scope uint32
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		key = netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		key = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port))
		scope = sa.Scope_id
	default:
		return &net.UDPAddr{}
	}
	if scope != 0 {
		return udpAddr(key, zoneName(scope)) // link-local with a zone: rare, not cached
	}
	i := cacheSlot(key, c.mask)
	if c.addrs[i] != nil && c.keys[i] == key {
		return c.addrs[i]
	}
	ua := udpAddr(key, "")
	c.keys[i], c.addrs[i] = key, ua
	return ua
}

// cacheSlot returns key's entry in a cache of mask+1 entries.
func cacheSlot(key netip.AddrPort, mask uint32) uint32 {
	a := key.Addr().As16()
	h := (uint32(a[12])<<24 | uint32(a[13])<<16 | uint32(a[14])<<8 | uint32(a[15])) ^ uint32(key.Port())*0x9E3779B1
	return (h ^ h>>16) & mask
}

// SameCacheSlot reports whether a and b, as sources, share an entry of a
// source-address cache of cacheSize entries, so that alternating between
// them misses the cache (tests use it to measure without misses).
func SameCacheSlot(a, b netip.AddrPort, cacheSize int) bool {
	mask := uint32(len(newAddrCache(cacheSize).keys) - 1)
	return cacheSlot(a, mask) == cacheSlot(b, mask)
}

// udpAddr builds the address a plain read returns: a 4-byte IP for IPv4
// sockets, 16 bytes (IPv4-mapped where it applies) for IPv6 ones.
func udpAddr(key netip.AddrPort, zone string) *net.UDPAddr {
	var ip net.IP
	if a := key.Addr(); a.Is4() {
		b := a.As4()
		ip = append(ip, b[:]...)
	} else {
		b := a.As16()
		ip = append(ip, b[:]...)
	}
	return &net.UDPAddr{IP: ip, Port: int(key.Port()), Zone: zone}
}

func zoneName(index uint32) string {
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(index), 10)
}

func ntohs(port uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&port))
	return uint16(b[0])<<8 | uint16(b[1])
}

// Sends use sendto(2) issued as a raw system call on the socket's
// descriptor, through syscall.RawConn.Write, instead of
// net.UDPConn.WriteTo:
//
//   - the destination is converted to a socket address once (Dest), not
//     once per datagram;
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

// rawUDP is a UDP socket sent on with raw sendto calls.
type rawUDP struct {
	raw    syscall.RawConn
	family int
}

// sendState is a Sender's system-call state: the arguments of an
// immediate sendto, and the progress of a sendmmsg. Its callbacks are
// bound once (init), so a send allocates nothing.
type sendState struct {
	b     []byte
	sa    *sockaddr
	errno syscall.Errno
	f     func(fd uintptr) bool // sendto
	mf    func(fd uintptr) bool // sendmmsg
	m     *outSys               // the sendmmsg in progress
}

func (s *Sender) init() {
	s.f = s.sendto
	s.mf = s.sendmmsg
}

// send sends b to sa on u.
func (s *Sender) send(u *rawUDP, b []byte, sa *sockaddr) error {
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
func (s *Sender) sendto(fd uintptr) bool {
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

// outSys is the memory of a queue's sendmmsg calls: one message header
// per datagram, pointing at its slot and its destination.
type outSys struct {
	hdrs [SendBatch]mmsghdr
	iovs [SendBatch]unix.Iovec
	idx  [SendBatch]uint8 // the queue index of hdrs[i]
	k    int              // headers filled
	pos  int              // headers attempted
	sent uint32           // queue indexes sent
}

// sendGroup sends the datagrams of group (bits of q's indexes), all for
// u, in their order: runs of raw destinations with sendmmsg, others with
// WriteTo. It reports which were sent.
func (s *Sender) sendGroup(q *outQueue, u UDP, group uint32) uint32 {
	lu, ok := u.(*linuxUDP)
	if !ok {
		return s.sendEach(q, u, group)
	}
	m := &q.sys
	m.k, m.sent = 0, 0
	for i := range q.n {
		if group&(1<<i) == 0 {
			continue
		}
		msg := &q.msgs[i]
		if !msg.d.raw {
			s.sendRun(lu, m)
			if lu.Send(s, q.bufs[i][:msg.n], msg.d) == nil {
				m.sent |= 1 << i
			}
			continue
		}
		h := &m.hdrs[m.k]
		iov := &m.iovs[m.k]
		iov.Base = &q.bufs[i][0]
		iov.SetLen(msg.n)
		h.hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&msg.d.sa.raw)), Namelen: msg.d.sa.len, Iov: iov}
		h.hdr.SetIovlen(1)
		h.n = 0
		m.idx[m.k] = uint8(i)
		m.k++
	}
	s.sendRun(lu, m)
	return m.sent
}

// sendRun sends the m.k datagrams whose headers are filled with sendmmsg
// calls on u, marking those sent in m.sent, and empties the run.
func (s *Sender) sendRun(u *linuxUDP, m *outSys) {
	if m.k == 0 {
		return
	}
	m.pos = 0
	s.m = m
	_ = u.out.raw.Write(s.mf) // a closed socket: nothing more is sent
	s.m = nil
	clear(m.hdrs[:m.k]) // keep no destination or slot alive
	clear(m.iovs[:m.k])
	m.k = 0
}

// sendmmsg is the RawConn.Write callback of sendRun. sendmmsg returns how
// many datagrams left, from the first; when one fails after others were
// sent, the next call, starting with it, reports its error: that datagram
// is dropped, as a failed sendto drops it, and the rest still go. It
// returns false, to wait until the socket is writable, on EAGAIN.
func (s *Sender) sendmmsg(fd uintptr) bool {
	m := s.m
	for m.pos < m.k {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&m.hdrs[m.pos])), uintptr(m.k-m.pos), 0, 0, 0)
		switch errno {
		case 0:
			if n == 0 {
				n = 1 // not expected; never retry a datagram forever
			} else {
				for i := m.pos; i < m.pos+int(n); i++ {
					m.sent |= 1 << m.idx[i]
				}
			}
			m.pos += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			m.pos++
		}
	}
	return true
}
