package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strangers-chat/strangers/internal/netkey"
	"github.com/strangers-chat/strangers/relay/internal/plane"
	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

const (
	// streamWriteTimeout bounds every write to a TURN-over-TCP client; a
	// client that does not read for this long is disconnected.
	streamWriteTimeout = 10 * time.Second
	// streamBufSize is the per-connection read buffer. Frames longer than
	// maxStreamFrame never reach pion (its inbound MTU is 1600 bytes), so
	// the buffer only needs to hold one maximal frame plus read slack.
	streamBufSize  = 4096
	maxStreamFrame = 1600
	// acceptBackoffMax caps the pause after a failed Accept (e.g. EMFILE).
	acceptBackoffMax = time.Second
	// streamOutMax bounds the bytes queued for a stream connection's writer;
	// a Write that would exceed it waits (up to streamWriteTimeout).
	streamOutMax = 64 << 10
)

// Reasons for closing stream connections, the "reason" label of
// stream_conns_closed_total.
const (
	streamPerIP        = "per_ip"
	streamFirstMessage = "first_message"
	streamIdle         = "idle"
	streamFrame        = "frame"
)

// streamListener hardens a net.Listener for pion, which in v4 reads TCP
// connections with no deadlines: it caps connections per client IP, closes a
// connection that sends no complete STUN message within
// TCPFirstMessageTimeout (this covers a TLS handshake not done yet; the
// shared TLS port hands on connections that did theirs under its own
// deadline) or nothing at all for TCPIdleTimeout, bounds writes, and hands
// pion exactly one frame per Read so requests can be screened before pion
// sees them. It never returns a transient Accept error (pion stops
// accepting on the first one).
type streamListener struct {
	net.Listener
	s         *Server
	closed    chan struct{}
	closeOnce sync.Once
	doneOnce  sync.Once

	mu    sync.Mutex
	perIP map[netip.Addr]int       // guarded by mu; by netkey.Client
	conns map[*streamConn]struct{} // guarded by mu
}

func newStreamListener(l net.Listener, s *Server) *streamListener {
	s.track.add()
	return &streamListener{
		Listener: l,
		s:        s,
		closed:   make(chan struct{}),
		perIP:    make(map[netip.Addr]int),
		conns:    make(map[*streamConn]struct{}),
	}
}

// Accept implements net.Listener.
func (l *streamListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.closed:
				l.doneOnce.Do(l.s.track.done)
				return nil, fmt.Errorf("relay: accept: %w", net.ErrClosed)
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				l.doneOnce.Do(l.s.track.done)
				return nil, err
			}
			l.s.log.Warn("stream accept failed, retrying", "addr", l.Addr(), "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-l.closed:
				t.Stop()
			case <-t.C:
			}
			backoff = min(2*backoff, acceptBackoffMax)
			continue
		}
		backoff = 5 * time.Millisecond
		if sc := l.admit(c); sc != nil {
			return sc, nil
		}
	}
}

// admit wraps c, or closes it when its client (IPv6: its /64) is over the
// cap or the listener is closed.
func (l *streamListener) admit(c net.Conn) *streamConn {
	ip := netkey.Client(addrIP(c.RemoteAddr()))
	l.mu.Lock()
	select {
	case <-l.closed:
		l.mu.Unlock()
		c.Close()
		return nil
	default:
	}
	if l.perIP[ip] >= l.s.cfg.TCPMaxConnsPerIP {
		l.mu.Unlock()
		c.Close()
		l.s.metrics.tcpRejected.WithLabelValues(streamPerIP).Inc()
		l.s.log.Debug("stream connection refused: per-IP cap", "client_ip", ip)
		return nil
	}
	l.perIP[ip]++
	now := time.Now()
	sc := &streamConn{
		Conn:  c,
		l:     l,
		ip:    ip,
		buf:   make([]byte, streamBufSize),
		io:    plane.NewIO(l.s.batches),
		sio:   sockio.NewStream(c),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		space: make(chan struct{}),
	}
	sc.readDeadline = now.Add(l.s.cfg.TCPFirstMessageTimeout)
	l.conns[sc] = struct{}{}
	l.s.track.add()
	l.mu.Unlock()
	_ = c.SetReadDeadline(sc.readDeadline)
	go sc.writeLoop()
	return sc
}

// Close implements net.Listener: it stops accepting and closes every
// connection it handed out.
func (l *streamListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		close(l.closed)
		conns := make([]*streamConn, 0, len(l.conns))
		for c := range l.conns {
			conns = append(conns, c)
		}
		l.mu.Unlock()
		err = l.Listener.Close()
		for _, c := range conns {
			c.Close()
		}
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (l *streamListener) release(c *streamConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if l.perIP[c.ip] <= 1 {
		delete(l.perIP, c.ip)
	} else {
		l.perIP[c.ip]--
	}
	l.s.track.done()
}

// streamConn is one hardened TURN-over-TCP connection. Read is called only
// by pion's per-connection read loop; Write may be called concurrently by
// that loop, the allocation's relay loop and the data plane. On a TCP
// connection with nothing queued or being written, Write writes the frame
// at once with a non-blocking system call; what the socket does not take,
// and frames written meanwhile, are queued for the connection's writer
// goroutine, which writes everything queued in one system call: under load
// many frames share one TCP write, as with coturn's buffered output, and
// when idle a frame costs no goroutine handoff.
type streamConn struct {
	net.Conn
	l   *streamListener
	ip  netip.Addr    // the client's netkey.Client key
	sio sockio.Stream // raw reads and writes where it can

	// Owned by the reader.
	buf          []byte
	start, end   int
	gotFirst     bool
	readDeadline time.Time
	pendingKey   string // see turnPacketConn.pendingKey

	fast  atomic.Pointer[plane.Relay] // the data plane of the connection's allocation, if it serves it
	io    plane.IO                    // owned by the reader; queues what the frames of one read relay
	guard replyGuard                  // the request being handled, for screenReply

	// Static after admit.
	wake chan struct{} // capacity 1: out has bytes for the writer
	done chan struct{} // closed by Close; stops the writer

	wmu     sync.Mutex
	busy    bool          // guarded by wmu; a write to the socket is in progress
	out     []byte        // guarded by wmu; frames queued for the writer
	spare   []byte        // guarded by wmu; the writer's last buffer, reused
	werr    error         // guarded by wmu; the write error that closed the connection
	space   chan struct{} // guarded by wmu; closed (and replaced) when the writer takes out
	waiting bool          // guarded by wmu; a Write waits on space

	writeDeadline time.Time // owned by the writer goroutine

	closeOnce sync.Once
	closeErr  error
}

// Read implements net.Conn. It returns exactly one STUN or ChannelData
// frame per call, so pion's STUN framer never holds a second frame.
func (c *streamConn) Read(p []byte) (int, error) {
	if c.pendingKey != "" {
		c.l.s.forgetAllocate(c.pendingKey)
		c.pendingKey = ""
	}
	for {
		if frame, err := c.nextFrame(); err != nil {
			c.io.Flush()
			c.l.s.metrics.tcpRejected.WithLabelValues(streamFrame).Inc()
			c.Close()
			return 0, err
		} else if frame != nil {
			if !c.gotFirst {
				if frame[0]&0xC0 != 0 {
					c.l.s.metrics.tcpRejected.WithLabelValues(streamFrame).Inc()
					c.Close()
					return 0, fmt.Errorf("%w: first frame is not STUN", ErrFrame)
				}
				c.gotFirst = true
				c.readDeadline = time.Time{} // switch to the idle timeout on the next fill
			}
			toPion, reply, pending := c.l.s.intercept(c, &c.io, &c.guard, c.RemoteAddr(), frame)
			if !toPion {
				if reply != nil {
					if _, err := c.Write(reply); err != nil {
						c.io.Flush()
						return 0, err
					}
				}
				continue
			}
			c.io.Flush() // before pion, whose sends must not overtake the queue
			c.pendingKey = pending
			if len(p) < len(frame) {
				c.Close()
				return 0, fmt.Errorf("%w: read buffer too small", ErrFrame)
			}
			n := copy(p, frame)
			c.guard.note(p[:n]) // frame's bytes may move on the next fill; p stays while pion handles it
			return n, nil
		}
		c.io.Flush() // the frames read are handled: what they relayed leaves
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// nextFrame returns the next complete frame from the buffer, nil if more
// bytes are needed, or an error for bytes that are not a TURN frame.
func (c *streamConn) nextFrame() ([]byte, error) {
	b := c.buf[c.start:c.end]
	if len(b) < 4 {
		return nil, nil
	}
	var size int
	switch {
	case b[0]&0xC0 == 0: // STUN: 20-byte header + length
		size = 20 + int(binary.BigEndian.Uint16(b[2:4]))
		if len(b) >= 8 && binary.BigEndian.Uint32(b[4:8]) != 0x2112A442 {
			return nil, fmt.Errorf("%w: bad STUN magic cookie", ErrFrame)
		}
	case b[0] >= 0x40 && b[0] <= 0x7F: // ChannelData, padded to 4 bytes on streams
		size = 4 + (int(binary.BigEndian.Uint16(b[2:4]))+3)&^3
	default:
		return nil, fmt.Errorf("%w: neither STUN nor ChannelData", ErrFrame)
	}
	if size > maxStreamFrame {
		return nil, fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrFrame, size, maxStreamFrame)
	}
	if len(b) < size {
		return nil, nil
	}
	c.start += size
	return b[:size], nil
}

// fill reads more bytes into the buffer under the current deadline.
func (c *streamConn) fill() error {
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	if c.gotFirst {
		// Re-arm the idle deadline, at most every 1/16 of the timeout.
		idle := c.l.s.cfg.TCPIdleTimeout
		if now := time.Now(); c.readDeadline.Sub(now) < idle-idle/16 {
			c.readDeadline = now.Add(idle)
			if err := c.Conn.SetReadDeadline(c.readDeadline); err != nil {
				return err
			}
		}
	}
	var n int
	var err error
	n, err = c.sio.Read(c.buf[c.end:])
	c.end += n
	if err != nil && n == 0 {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason := streamIdle
			if !c.gotFirst {
				reason = streamFirstMessage
			}
			c.l.s.metrics.tcpRejected.WithLabelValues(reason).Inc()
			c.l.s.log.Debug("stream connection timed out", "client_ip", c.ip, "reason", reason)
		}
		c.Close()
		return err
	}
	return nil
}

// Write implements net.Conn. It writes p at once when the connection is
// idle, else queues what is left of it for the writer and returns; when
// streamOutMax bytes are already queued it waits for the writer, at most
// streamWriteTimeout, then closes the connection. A failed write closes
// the connection (a partial frame would corrupt the stream) and later
// Writes return its error.
func (c *streamConn) Write(p []byte) (int, error) {
	if isSTUNResponse(p) {
		out := c.l.s.screenReply(&c.guard, c.RemoteAddr(), p, true)
		if out == nil {
			return len(p), nil
		}
		if _, err := c.write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.write(p)
}

// write queues or writes p; see Write.
func (c *streamConn) write(p []byte) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	c.wmu.Lock()
	for {
		if c.werr != nil {
			err := c.werr
			c.wmu.Unlock()
			return 0, err
		}
		select {
		case <-c.done:
			c.wmu.Unlock()
			return 0, fmt.Errorf("relay: stream write: %w", net.ErrClosed)
		default:
		}
		if len(c.out) == 0 || len(c.out)+len(p) <= streamOutMax {
			break
		}
		c.waiting = true
		space := c.space
		c.wmu.Unlock()
		if timer == nil {
			timer = time.NewTimer(streamWriteTimeout)
		}
		select {
		case <-space:
		case <-c.done:
		case <-timer.C:
			c.Close()
			return 0, fmt.Errorf("relay: stream write: %w", os.ErrDeadlineExceeded)
		}
		c.wmu.Lock()
	}
	if err := c.put(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// offer writes or queues p if that needs no wait for room, and reports
// whether it did.
func (c *streamConn) offer(p []byte) bool {
	c.wmu.Lock()
	if c.werr != nil || (len(c.out) > 0 && len(c.out)+len(p) > streamOutMax) {
		c.wmu.Unlock()
		return false
	}
	select {
	case <-c.done:
		c.wmu.Unlock()
		return false
	default:
	}
	return c.put(p) == nil
}

// put writes p at once if the connection is idle and queues the rest, or
// queues it all. Called with wmu held, which it releases.
func (c *streamConn) put(p []byte) error {
	if !c.busy && len(c.out) == 0 {
		c.busy = true
		c.wmu.Unlock()
		n, err := c.sio.TryWrite(p)
		c.wmu.Lock()
		c.busy = false
		if err != nil {
			werr := fmt.Errorf("relay: stream write: %w", err)
			c.werr = werr
			c.wmu.Unlock()
			c.Close()
			return werr
		}
		switch {
		case n == len(p):
		case len(c.out) == 0:
			c.out = append(c.out, p[n:]...)
		default:
			// Frames queued meanwhile follow the rest of this one.
			rest := make([]byte, 0, len(p)-n+len(c.out))
			c.out = append(append(rest, p[n:]...), c.out...)
		}
		pending := len(c.out) > 0
		c.wmu.Unlock()
		if pending {
			c.signal()
		}
		return nil
	}
	wasEmpty := len(c.out) == 0
	c.out = append(c.out, p...)
	c.wmu.Unlock()
	if wasEmpty {
		c.signal()
	}
	return nil
}

// signal wakes the writer.
func (c *streamConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes what Write queues, everything queued at once, each
// write under streamWriteTimeout. It ends when the connection is closed or
// a write fails, and then releases the connection from the listener.
func (c *streamConn) writeLoop() {
	defer c.l.release(c)
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		for {
			c.wmu.Lock()
			if c.busy || len(c.out) == 0 || c.werr != nil {
				// A direct write in progress signals again when it is
				// done; after a failed write nothing more is written.
				c.wmu.Unlock()
				break
			}
			out := c.out
			c.out, c.spare = c.spare[:0], nil
			c.busy = true
			if c.waiting {
				close(c.space)
				c.space, c.waiting = make(chan struct{}), false
			}
			c.wmu.Unlock()
			var err error
			// Re-arm the deadline at most every 1/16 of the timeout.
			if now := time.Now(); c.writeDeadline.Sub(now) < streamWriteTimeout-streamWriteTimeout/16 {
				c.writeDeadline = now.Add(streamWriteTimeout)
				err = c.Conn.SetWriteDeadline(c.writeDeadline)
			}
			if err == nil {
				_, err = c.Conn.Write(out)
			}
			c.wmu.Lock()
			c.busy = false
			if cap(out) <= streamOutMax+maxStreamFrame {
				c.spare = out[:0]
			}
			if err != nil && c.werr == nil {
				c.werr = fmt.Errorf("relay: stream write: %w", err)
			}
			c.wmu.Unlock()
			if err != nil {
				c.Close()
				return
			}
		}
	}
}

// Close implements net.Conn; it is idempotent. Frames still queued are
// dropped.
func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.closeErr = c.Conn.Close()
		if errors.Is(c.closeErr, net.ErrClosed) {
			c.closeErr = nil
		}
	})
	return c.closeErr
}
