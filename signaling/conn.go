package signaling

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// closeGrace is how long the server waits for a client to answer its close
// frame before it drops the TCP connection. Waiting a little (instead of
// closing at once) lets the client read the close code even while it still
// has unread data in flight towards us.
const closeGrace = 2 * time.Second

// maxBadMessages is how many malformed messages a connection may send before
// it is closed with 1008. Unknown types do not count, so a newer client
// talking to an older server is told, not cut off.
const maxBadMessages = 20

// outMsg is one queued outbound message: either bytes encoded once and
// shared (stats), or a value the writer encodes (so that JSON encoding is
// spread over the connections' own goroutines, never done by the owner).
type outMsg struct {
	data []byte
	v    any
}

// conn is one WebSocket connection. It has exactly two goroutines: the read
// loop, which decodes and checks client messages and posts them to the hub's
// owner goroutine, and the write loop, the only writer of data frames. Each
// ends the other: the read loop closes done when it returns, the write loop
// closes the socket when it returns, which fails the pending read.
type conn struct {
	// Static after construction.
	h        *Hub
	ws       *websocket.Conn
	ip       netip.Addr
	notify   chan struct{} // capacity 1: the queue is not empty
	closeReq chan struct{} // closed by closeWith: send a close frame and finish
	done     chan struct{} // closed when the read loop has returned

	// Guarded by mu.
	mu        sync.Mutex
	queue     []outMsg
	closing   bool // closeWith or kill was called: accept nothing more
	reason    closeReason
	closeCode int
	closeText string

	// Owned by the hub's owner goroutine.
	sess *session

	// Owned by the read loop.
	helloed bool
	bucket  tokenBucket
	limited bool // told rate_limited since the last message that passed
	bad     int  // malformed messages so far
}

func newConn(h *Hub, ws *websocket.Conn, ip netip.Addr) *conn {
	return &conn{
		h:        h,
		ws:       ws,
		ip:       ip,
		notify:   make(chan struct{}, 1),
		closeReq: make(chan struct{}),
		done:     make(chan struct{}),
		bucket:   newTokenBucket(h.cfg.RateLimit, h.cfg.RateBurst, time.Now()),
	}
}

// send queues m without blocking. A connection whose queue is full is a slow
// consumer: it is dropped at once so that it never holds anyone else up.
func (c *conn) send(m outMsg) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.h.cfg.SendQueue {
		c.mu.Unlock()
		c.kill(reasonSlow)
		return false
	}
	c.queue = append(c.queue, m)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return true
}

// sendAll queues ms in order, ignoring the queue bound: used once, to hand a
// resumed connection what its session was sent while it was away (itself
// bounded by SendQueue).
func (c *conn) sendAll(ms []outMsg) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, ms...)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *conn) sendError(code ErrorCode, msg string) {
	c.send(outMsg{v: &Error{Type: TypeError, Code: code, Message: msg}})
}

// closeWith asks the write loop to flush the queue, send a close frame with
// code and text, and end the connection once the client answers (or after
// closeGrace). Only the first close or kill counts.
func (c *conn) closeWith(code int, text string, reason closeReason) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing, c.reason, c.closeCode, c.closeText = true, reason, code, text
	c.mu.Unlock()
	close(c.closeReq)
}

// kill drops the TCP connection at once, without a close frame: for a peer
// that is not reading, and for Shutdown when its context ends.
func (c *conn) kill(reason closeReason) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = reason
	}
	c.closing = true
	c.queue = nil
	c.mu.Unlock()
	c.ws.Close()
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// extendRead moves the read deadline d ahead, unless the connection is
// closing (then the close grace set by the write loop stands).
func (c *conn) extendRead(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		c.ws.SetReadDeadline(time.Now().Add(d))
	}
}

// readLoop runs until the connection fails, times out or closes. It is the
// only reader of ws.
func (c *conn) readLoop() {
	h := c.h
	cfg := &h.cfg
	peerCode := 0
	var err error
	defer func() {
		c.finish(readCloseReason(err, c.helloed), peerCode)
	}()

	c.ws.SetReadLimit(cfg.MaxMessageSize)
	c.ws.SetReadDeadline(time.Now().Add(cfg.HelloTimeout))
	c.ws.SetPongHandler(func(string) error {
		if c.helloed {
			c.extendRead(cfg.PongWait)
		}
		return nil
	})
	c.ws.SetCloseHandler(func(code int, _ string) error {
		peerCode = code
		c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(cfg.WriteWait))
		return nil
	})

	for {
		var mt int
		var data []byte
		mt, data, err = c.ws.ReadMessage()
		if err != nil {
			return
		}
		if c.isClosing() {
			continue // draining until the client answers our close frame
		}
		if c.helloed {
			c.extendRead(cfg.PongWait) // any message shows the client is alive, like a pong
		}
		if !c.bucket.take(time.Now()) {
			h.m.rateLimited.Inc()
			h.m.drop(dropRateLimited)
			if c.bucket.abusive() {
				c.closeWith(ClosePolicy, "rate limit exceeded", reasonRateLimit)
				continue
			}
			if !c.limited {
				c.limited = true
				c.sendError(CodeRateLimited, "too many messages: slow down")
			}
			continue
		}
		c.limited = false
		if mt != websocket.TextMessage {
			c.reject(CodeBadMessage, "only text frames are accepted")
			continue
		}
		msg, derr := Decode(data)
		if derr != nil {
			var de *DecodeError
			errors.As(derr, &de)
			c.reject(de.Code, de.Msg)
			continue
		}
		typ := msgType(msg)
		h.m.message(typ)
		if !c.helloed {
			c.first(msg)
			continue
		}
		if typ == TypeHello {
			h.m.drop(dropState)
			c.sendError(CodeBadState, "hello already received")
			continue
		}
		h.post(event{kind: evMsg, c: c, msg: msg})
	}
}

// first handles a connection's first message, which must be a hello with
// our version.
func (c *conn) first(msg any) {
	hello, ok := msg.(*Hello)
	switch {
	case !ok:
		c.h.m.drop(dropBeforeHello)
		c.sendError(CodeNotHello, "the first message must be a hello")
		c.closeWith(CloseProtocol, "hello first", reasonProtocol)
	case hello.Version != ProtocolVersion:
		c.sendError(CodeBadVersion, "this server speaks protocol version 1")
		c.closeWith(CloseProtocol, "unsupported protocol version", reasonProtocol)
	default:
		c.helloed = true
		c.extendRead(c.h.cfg.PongWait)
		c.h.post(event{kind: evHello, c: c, msg: hello})
	}
}

// reject answers a message that could not be used, and closes a
// connection that keeps sending them.
func (c *conn) reject(code ErrorCode, msg string) {
	c.h.m.drop(dropInvalid)
	c.h.m.message("invalid")
	c.sendError(code, msg)
	if code == CodeUnknownType {
		return
	}
	if c.bad++; c.bad > maxBadMessages {
		c.closeWith(ClosePolicy, "too many malformed messages", reasonBadInput)
	}
}

// finish runs when the read loop returns: it stops the write loop, releases
// the connection's place in the hub and tells the owner goroutine.
func (c *conn) finish(reason closeReason, peerCode int) {
	h := c.h
	c.mu.Lock()
	if c.reason != "" {
		reason = c.reason
	}
	c.reason = reason
	c.closing = true
	c.queue = nil
	c.mu.Unlock()
	close(c.done)

	h.m.closes.WithLabelValues(string(reason)).Inc()
	h.m.connections.Dec()
	h.mu.Lock()
	delete(h.conns, c)
	if h.perIP[c.ip]--; h.perIP[c.ip] <= 0 {
		delete(h.perIP, c.ip)
	}
	h.mu.Unlock()
	if reason == reasonWriteError {
		h.log.Warn("connection write failed", "ip", c.ip)
	}
	if c.helloed {
		h.post(event{kind: evGone, c: c, clean: peerCode == closeNormalFromPeer})
	}
	h.connWG.Done()
}

// writeLoop is the only goroutine writing data frames and pings to ws.
func (c *conn) writeLoop() {
	cfg := &c.h.cfg
	defer c.h.connWG.Done()
	defer c.ws.Close()
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.notify:
			if err := c.flush(); err != nil {
				c.kill(writeCloseReason(err))
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.WriteWait)); err != nil {
				c.kill(writeCloseReason(err))
				return
			}
		case <-c.closeReq:
			if err := c.flush(); err == nil {
				c.mu.Lock()
				code, text := c.closeCode, c.closeText
				c.mu.Unlock()
				msg := websocket.FormatCloseMessage(code, text)
				if c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(cfg.WriteWait)) == nil {
					c.ws.SetReadDeadline(time.Now().Add(closeGrace))
					<-c.done
				}
			}
			return
		case <-c.done:
			return
		}
	}
}

// flush writes everything queued, each message under the write deadline.
func (c *conn) flush() error {
	c.mu.Lock()
	batch := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, m := range batch {
		data := m.data
		if data == nil {
			var err error
			if data, err = json.Marshal(m.v); err != nil {
				c.h.log.Error("encoding a message", "err", err)
				continue
			}
		}
		c.ws.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteWait))
		if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
			return err
		}
	}
	return nil
}

func writeCloseReason(err error) closeReason {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return reasonSlow
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, websocket.ErrCloseSent) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return reasonLost // the peer went away, or whoever closed the socket set the reason
	}
	return reasonWriteError
}
