package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
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
// TCPFirstMessageTimeout (for TLS this covers the handshake) or nothing at
// all for TCPIdleTimeout, bounds writes, and hands pion exactly one frame
// per Read so requests can be screened before pion sees them. It never
// returns a transient Accept error (pion stops accepting on the first one).
type streamListener struct {
	net.Listener
	s         *Server
	closed    chan struct{}
	closeOnce sync.Once
	doneOnce  sync.Once

	mu    sync.Mutex
	perIP map[netip.Addr]int       // guarded by mu
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

// admit wraps c, or closes it when its IP is over the cap or the listener
// is closed.
func (l *streamListener) admit(c net.Conn) *streamConn {
	ip := addrIP(c.RemoteAddr())
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
	sc := &streamConn{Conn: c, l: l, ip: ip, buf: make([]byte, streamBufSize)}
	sc.readDeadline = now.Add(l.s.cfg.TCPFirstMessageTimeout)
	l.conns[sc] = struct{}{}
	l.s.track.add()
	l.mu.Unlock()
	_ = c.SetReadDeadline(sc.readDeadline)

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
// that loop and by the allocation's relay loop.
type streamConn struct {
	net.Conn
	l  *streamListener
	ip netip.Addr

	// Owned by the reader.
	buf          []byte
	start, end   int
	gotFirst     bool
	readDeadline time.Time

	writeDeadline atomic.Int64 // unix nanoseconds of the last write deadline set
	closeOnce     sync.Once
	closeErr      error
}

// Read implements net.Conn. It returns exactly one STUN or ChannelData
// frame per call, so pion's STUN framer never holds a second frame.
func (c *streamConn) Read(p []byte) (int, error) {
	for {
		if frame, err := c.nextFrame(); err != nil {
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
			if isChannelBindRequest(frame) {
				if reply, handled := c.l.s.screenChannelBind(c.RemoteAddr(), frame); handled {
					if reply != nil {
						if _, err := c.Write(reply); err != nil {
							return 0, err
						}
					}

					continue
				}
			}
			if len(p) < len(frame) {
				c.Close()

				return 0, fmt.Errorf("%w: read buffer too small", ErrFrame)
			}

			return copy(p, frame), nil
		}
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
	n, err := c.Conn.Read(c.buf[c.end:])
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

// Write implements net.Conn with a write deadline; a failed write closes
// the connection, since a partial frame would corrupt the stream.
func (c *streamConn) Write(p []byte) (int, error) {
	now := time.Now()
	if last := c.writeDeadline.Load(); now.UnixNano() > last-int64(streamWriteTimeout-streamWriteTimeout/16) {
		dl := now.Add(streamWriteTimeout)
		c.writeDeadline.Store(dl.UnixNano())
		if err := c.Conn.SetWriteDeadline(dl); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.Close()
	}

	return n, err
}

// Close implements net.Conn; it is idempotent.
func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		if errors.Is(c.closeErr, net.ErrClosed) {
			c.closeErr = nil
		}
		c.l.release(c)
	})

	return c.closeErr
}

// isChannelBindRequest reports whether b starts like a STUN ChannelBind
// request (type 0x0009), without parsing it.
func isChannelBindRequest(b []byte) bool {
	return len(b) >= 20 && b[0] == 0x00 && b[1] == 0x09
}
