package signaling

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
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

// conn is one WebSocket connection. It has one goroutine for its whole
// life and at most one more at a time:
//
//   - the read loop, the only reader of ws, which takes a token from the
//     connection's bucket for each frame (control frames included: the ping
//     and pong handlers run in it) and hands the frame, or the verdict that
//     it was over the limit, to the connection's decode shard (decode.go),
//     and does nothing else, so that its stack stays small while it waits
//     for the next frame;
//   - the write loop, the only writer of messages, pings and our close
//     frame, started when there is something to write and gone again once
//     it is written, so that an idle connection costs one goroutine, not
//     two. writing says whether it runs; whoever queues work starts it if
//     not. (gorilla answers a client's ping or close frame from the read
//     loop with WriteControl, which may run beside the write loop.)
//
// Neither outlives the other: when the read loop ends, a running write loop
// sees readDone and closes the socket on its way out (with none running,
// the read loop closes it); a write loop that fails closes the socket, which
// ends the read loop.
type conn struct {
	// Static after construction.
	h     *Hub
	ws    *websocket.Conn
	out   *frameMeter // ws's connection, to cork; nil if ws has another
	ip    netip.Addr
	shard int // decode shard
	slot  int // ping slot

	// Guarded by mu.
	mu        sync.Mutex
	queue     [][]byte
	pingDue   bool
	writing   bool // a write loop runs
	readDone  bool
	closing   bool // closeWith or kill was called: accept nothing more
	closeSent bool
	reason    closeReason
	closeCode int // 0 with closing: drop without a close frame
	closeText string

	helloed atomic.Bool // set by the decode shard, read by the read loop

	// Owned by the hub's owner goroutine.
	sess *session

	// Owned by the read loop (and the ping and pong handlers it runs): every
	// frame the client sends, control frames included, takes a token; the
	// verdict travels to the decode shard with the frame.
	bucket tokenBucket

	// Owned by the decode shard.
	limited   bool // told rate_limited since the last message that passed
	bad       int  // malformed messages so far
	relayOnly bool // the last find asked relayOnly (a hint; the owner decides)
}

func newConn(h *Hub, ws *websocket.Conn, ip netip.Addr, n uint64) *conn {
	out, _ := ws.NetConn().(*frameMeter)
	return &conn{
		h:      h,
		ws:     ws,
		out:    out,
		ip:     ip,
		shard:  int(n % uint64(len(h.shards))),
		slot:   int(n % uint64(len(h.pingSlots))),
		bucket: newTokenBucket(h.cfg.RateLimit, h.cfg.RateBurst, time.Now()),
	}
}

// startWriter starts the write loop unless it runs or the read loop is over
// (then the connection is being torn down). c.mu must be held. Adding to
// connWG is safe: the read loop still holds its own count.
func (c *conn) startWriter() {
	if c.writing || c.readDone {
		return
	}
	c.writing = true
	c.h.connWG.Add(1)
	go c.writeLoop()
}

// send queues an encoded message without blocking. A connection whose queue
// is full is a slow consumer: it is dropped at once so that it never holds
// anyone else up.
func (c *conn) send(data []byte) bool {
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
	c.queue = append(c.queue, data)
	c.startWriter()
	c.mu.Unlock()
	return true
}

// sendAll queues ms in order, ignoring the queue bound: used once, to hand a
// resumed connection what its session was sent while it was away (itself
// bounded by SendQueue).
func (c *conn) sendAll(ms [][]byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, ms...)
	c.startWriter()
	c.mu.Unlock()
}

// takeQueue removes and returns what is queued and not yet being written.
func (c *conn) takeQueue() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queue
	c.queue = nil
	return q
}

func (c *conn) sendError(code ErrorCode, msg string) {
	c.send(encode(&Error{Type: TypeError, Code: code, Message: msg}))
}

// ping asks the write loop to send a ping (from the hub's pinger).
func (c *conn) ping() {
	c.mu.Lock()
	if !c.closing {
		c.pingDue = true
		c.startWriter()
	}
	c.mu.Unlock()
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
	c.startWriter()
	c.mu.Unlock()
}

// kill drops the TCP connection at once, without a close frame: for a peer
// that is not reading, and for Shutdown when its context ends.
func (c *conn) kill(reason closeReason) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = reason
	}
	c.closing = true
	c.closeCode = 0
	c.queue = nil
	c.mu.Unlock()
	c.ws.Close()
}

// readLoop runs until the connection fails, times out or closes. It only
// reads: everything else about a frame happens on the decode shard, in
// order.
func (c *conn) readLoop() {
	h := c.h
	peerCode := 0
	c.ws.SetReadLimit(h.cfg.MaxMessageSize)
	c.ws.SetReadDeadline(time.Now().Add(h.cfg.HelloTimeout))
	c.ws.SetPongHandler(c.pong)
	c.ws.SetPingHandler(c.pinged)
	c.ws.SetCloseHandler(func(code int, _ string) error {
		peerCode = code
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(h.cfg.WriteWait))
		return nil
	})
	var err error
	for {
		var mt int
		var data []byte
		if mt, data, err = c.ws.ReadMessage(); err != nil {
			break
		}
		if c.admit() {
			if c.bucket.take(time.Now()) {
				h.decode(frame{c: c, text: mt == websocket.TextMessage, data: data})
			} else {
				h.decode(frame{c: c, limited: true, abusive: c.bucket.abusive()})
			}
		}
	}
	if errors.Is(err, errFrameFlood) {
		h.m.rateLimited.Inc()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(ClosePolicy, "rate limit exceeded"), time.Now().Add(h.cfg.WriteWait))
	}
	c.finish(readCloseReason(err, c.helloed.Load()))
	h.decode(frame{c: c, end: true, clean: peerCode == closeNormalFromPeer})
	h.connWG.Done()
}

// admit reports whether a frame just read is to be handled: not while
// closing (the read loop then only drains until the client answers our
// close frame; the close grace set by the write loop stands). After hello,
// any frame shows the client is alive, like a pong, and moves the read
// deadline PongWait ahead.
func (c *conn) admit() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	if c.helloed.Load() {
		c.ws.SetReadDeadline(time.Now().Add(c.h.cfg.PongWait))
	}
	return true
}

// pong handles a pong frame: like any frame it takes a token, and when
// it passes it shows the client is alive.
func (c *conn) pong(string) error {
	if c.control() {
		c.admit()
	}
	return nil
}

// pinged answers a client's ping frame with a pong, as gorilla's default
// handler does, unless the ping is over the rate limit: ping frames are
// not free, or a client could keep the server busy answering them.
func (c *conn) pinged(data string) error {
	if !c.control() {
		return nil
	}
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.h.cfg.WriteWait))
	var ne net.Error
	if err == nil || errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
		return nil // as gorilla's default: the write loop or the next read sees a broken connection
	}
	return err
}

// control takes a token for a control frame, from the read loop. Over the
// limit, it tells the decode shard, which counts the drop and closes a
// client that keeps it up, exactly as for messages.
func (c *conn) control() bool {
	if c.bucket.take(time.Now()) {
		return true
	}
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if !closing {
		c.h.decode(frame{c: c, limited: true, abusive: c.bucket.abusive()})
	}
	return false
}

// finish runs when the read loop is over: it stops the write loop,
// releases the connection's place in the hub and counts why it ended (the
// first reason given by whoever closed it, else the read error's).
func (c *conn) finish(reason closeReason) {
	h := c.h
	c.mu.Lock()
	if c.reason != "" {
		reason = c.reason
	}
	c.reason = reason
	c.closing = true
	c.readDone = true
	c.queue = nil
	writing := c.writing
	c.mu.Unlock()
	if !writing {
		c.ws.Close() // else the write loop does, on its way out
	}

	h.m.closes.WithLabelValues(string(reason)).Inc()
	h.m.connections.Dec()
	h.mu.Lock()
	delete(h.pingSlots[c.slot], c)
	h.conns--
	if h.perIP[c.ip]--; h.perIP[c.ip] <= 0 {
		delete(h.perIP, c.ip)
	}
	h.mu.Unlock()
	if reason == reasonWriteError {
		h.log.Warn("connection write failed", "ip", c.ip)
	}
}

// writeLoop writes what is queued, a due ping and the close frame, then
// returns when there is nothing left to write (see conn).
func (c *conn) writeLoop() {
	defer c.h.connWG.Done()
	for {
		c.mu.Lock()
		if c.readDone || (c.closing && c.closeCode == 0) {
			c.mu.Unlock()
			c.ws.Close()
			return
		}
		batch := c.queue
		c.queue = nil
		ping := c.pingDue
		c.pingDue = false
		sendClose := c.closing && !c.closeSent
		c.closeSent = c.closeSent || sendClose
		code, text := c.closeCode, c.closeText
		if len(batch) == 0 && !ping && !sendClose {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		if err := c.write(batch, ping); err != nil {
			c.kill(writeCloseReason(err))
			return
		}
		if sendClose {
			msg := websocket.FormatCloseMessage(code, text)
			if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(c.h.cfg.WriteWait)); err != nil {
				c.kill(writeCloseReason(err))
				return
			}
			// The read loop drains until the client answers, or until then.
			c.ws.SetReadDeadline(time.Now().Add(closeGrace))
		}
	}
}

// write writes a batch of messages and a ping, each under the write deadline.
// More than one frame goes out in one write (see frameMeter).
func (c *conn) write(batch [][]byte, ping bool) error {
	wait := c.h.cfg.WriteWait
	frames := len(batch)
	if ping {
		frames++
	}
	if c.out != nil && frames > 1 {
		c.out.cork()
		err := c.writeFrames(batch, ping, wait)
		if uerr := c.out.uncork(time.Now().Add(wait)); err == nil {
			err = uerr
		}
		return err
	}
	return c.writeFrames(batch, ping, wait)
}

func (c *conn) writeFrames(batch [][]byte, ping bool, wait time.Duration) error {
	for _, data := range batch {
		c.ws.SetWriteDeadline(time.Now().Add(wait))
		if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
			return err
		}
	}
	if ping {
		return c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(wait))
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

// encode marshals a message. Our message types hold only strings, numbers,
// booleans, slices and pointers to such, so encoding cannot fail.
func encode(v any) []byte {
	data, _ := json.Marshal(v)
	return data
}
