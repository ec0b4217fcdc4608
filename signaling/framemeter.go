package signaling

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A client could keep the server busy without ever completing a message:
// gorilla/websocket consumes the continuation frames of a message it is
// reading, empty ones included, without returning to the read loop, so the
// per-message and per-control-frame tokens never see them. frameMeter sits
// under gorilla, on the hijacked connection, reads the frame headers the
// client sends and counts the continuation frames (every other frame is
// counted where gorilla hands it over: a message by the read loop, a ping
// or pong by its handler). Its bucket is four times as large and refills
// four times as fast as the message bucket: browsers send a message as one
// frame, and a client that fragments its messages has room, while one that
// streams continuation frames is cut off within one burst and closed with
// 1008, as other flooders are.

// errFrameFlood is the read error of a connection whose client sent frames
// faster than its frame budget.
var errFrameFlood = errors.New("signaling: client sent frames faster than its budget")

// frameMeter wraps a client's connection. Read is called only by gorilla's
// reader, on the connection's read loop, which owns the fields above mu.
//
// It also lets the write loop send a batch of messages in one write: between
// cork and uncork, what gorilla writes is kept, and uncork sends it all at
// once (gorilla writes each frame with a system call of its own).
type frameMeter struct {
	net.Conn
	frames tokenBucket
	part   uint8  // the part of a frame the next byte belongs to (part* below)
	left   uint64 // bytes left in the current part (ext. length, mask, payload)
	length uint64 // the extended payload length, as its bytes arrive
	masked bool   // the current frame has a masking key

	corked atomic.Bool // set and cleared by the write loop, under mu
	mu     sync.Mutex
	held   *[]byte // guarded by mu: what was written while corked
}

// The parts of a frame (RFC 6455, section 5.2).
const (
	partFirst   uint8 = iota // FIN, RSV and opcode
	partLength               // MASK bit and 7-bit length
	partExtLen               // 16- or 64-bit length
	partMask                 // 4-byte masking key
	partPayload              // the payload
)

func newFrameMeter(c net.Conn, rate float64, burst int) *frameMeter {
	return &frameMeter{Conn: c, frames: newTokenBucket(4*rate, 4*burst, time.Now())}
}

// Read passes the client's bytes on, counting the continuation frames that
// start in them; over the budget it fails with errFrameFlood.
func (m *frameMeter) Read(p []byte) (int, error) {
	n, err := m.Conn.Read(p)
	if n > 0 && !m.scan(p[:n]) {
		return 0, errFrameFlood
	}
	return n, err
}

// corkBuffers keeps the buffers of corked writes between batches, so that
// an idle connection holds none.
var corkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxCorkBuffer is the largest buffer kept for the next batch.
const maxCorkBuffer = 64 << 10

// Write passes gorilla's frames on, or keeps them while corked. Gorilla
// calls it with its write lock held: from the write loop, or from the
// read loop answering a ping or a close.
//
// What is held never grows past maxCorkBuffer: a frame that would take it
// further first sends what is held, under the deadline gorilla has just
// set for that frame.
func (m *frameMeter) Write(p []byte) (int, error) {
	if m.corked.Load() {
		m.mu.Lock()
		if m.corked.Load() {
			defer m.mu.Unlock()
			if held := *m.held; len(held) > 0 && len(held)+len(p) > maxCorkBuffer {
				if _, err := m.Conn.Write(held); err != nil {
					return 0, err
				}
				*m.held = held[:0]
			}
			*m.held = append(*m.held, p...)
			return len(p), nil
		}
		m.mu.Unlock()
	}
	return m.Conn.Write(p)
}

// cork starts keeping what is written. Called by the write loop only.
func (m *frameMeter) cork() {
	m.mu.Lock()
	m.held = corkBuffers.Get().(*[]byte)
	m.corked.Store(true)
	m.mu.Unlock()
}

// uncork writes what was kept since cork in one write, by deadline. Called
// by the write loop only.
func (m *frameMeter) uncork(deadline time.Time) error {
	m.mu.Lock()
	held := m.held
	m.held = nil
	m.corked.Store(false)
	m.mu.Unlock()
	var err error
	if len(*held) > 0 {
		if err = m.Conn.SetWriteDeadline(deadline); err == nil {
			_, err = m.Conn.Write(*held)
		}
	}
	if cap(*held) <= maxCorkBuffer {
		*held = (*held)[:0]
		corkBuffers.Put(held)
	}
	return err
}

// scan walks b through the frame parser; false means a frame started over
// the budget.
func (m *frameMeter) scan(b []byte) bool {
	for len(b) > 0 {
		switch m.part {
		case partFirst:
			if b[0]&0x0F == 0 && !m.frames.take(time.Now()) { // opcode 0: continuation
				return false
			}
			m.part, b = partLength, b[1:]
		case partLength:
			m.masked = b[0]&0x80 != 0
			switch l := b[0] & 0x7F; l {
			case 126:
				m.part, m.left, m.length = partExtLen, 2, 0
			case 127:
				m.part, m.left, m.length = partExtLen, 8, 0
			default:
				m.length = uint64(l)
				m.afterLength()
			}
			b = b[1:]
		case partExtLen:
			m.length = m.length<<8 | uint64(b[0])
			b = b[1:]
			if m.left--; m.left == 0 {
				m.afterLength()
			}
		case partMask, partPayload:
			k := uint64(len(b))
			if k > m.left {
				k = m.left
			}
			b = b[k:]
			if m.left -= k; m.left == 0 {
				if m.part == partMask && m.length > 0 {
					m.part, m.left = partPayload, m.length
				} else {
					m.part = partFirst
				}
			}
		}
	}
	return true
}

// afterLength moves on once the payload length is known.
func (m *frameMeter) afterLength() {
	switch {
	case m.masked:
		m.part, m.left = partMask, 4
	case m.length > 0:
		m.part, m.left = partPayload, m.length
	default:
		m.part = partFirst
	}
}

// meteredWriter hands gorilla's upgrader the hijacked connection wrapped
// in a frameMeter.
type meteredWriter struct {
	http.ResponseWriter
	meter func(net.Conn) net.Conn
}

// Hijack implements http.Hijacker.
func (w meteredWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("signaling: the response writer cannot be hijacked")
	}
	c, brw, err := h.Hijack()
	if err != nil {
		return c, brw, err
	}
	return w.meter(c), brw, nil
}
