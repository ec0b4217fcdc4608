package signaling

import "errors"

// Client frames are decoded and checked on a few shard goroutines rather than
// on each connection's read loop: JSON decoding needs a deep stack, and a
// goroutine that once grew one keeps it until a garbage collection shrinks
// it, which an idle server rarely runs. With decoding elsewhere, a read
// loop's stack stays small for the connection's whole life. A connection
// always uses the same shard, so its frames are handled in order, and its
// end is handled after its last frame.

// frame is what a read loop hands its shard: a message, a frame (message
// or control frame) over the rate limit, or the end.
type frame struct {
	c       *conn
	text    bool
	data    []byte
	limited bool // over the connection's token bucket: dropped, data is nil
	abusive bool // with limited: the drops amount to sustained abuse
	end     bool // the read loop is over
	clean   bool // with end: the client closed with 1000
}

// shardQueue bounds the frames waiting for one shard; a full queue makes read
// loops wait, which is backpressure on their sockets.
const shardQueue = 256

func (h *Hub) decode(f frame) {
	h.shards[f.c.shard] <- f
}

// runShard handles frames until its queue is closed (by Shutdown, once every
// read loop has returned).
func (h *Hub) runShard(q <-chan frame) {
	defer h.shardWG.Done()
	for f := range q {
		h.handleFrame(f)
	}
}

func (h *Hub) handleFrame(f frame) {
	c := f.c
	if f.end {
		if c.helloed.Load() {
			h.post(event{kind: evGone, c: c, clean: f.clean})
		}
		return
	}
	if f.limited {
		h.m.rateLimited.Inc()
		h.m.drop(dropRateLimited)
		if f.abusive {
			c.closeWith(ClosePolicy, "rate limit exceeded", reasonRateLimit)
			return
		}
		if !c.limited {
			c.limited = true
			c.sendError(CodeRateLimited, "too many messages: slow down")
		}
		return
	}
	c.limited = false
	if !f.text {
		c.reject(CodeBadMessage, "only text frames are accepted")
		return
	}
	msg, err := Decode(f.data)
	if err != nil {
		var de *DecodeError
		errors.As(err, &de)
		c.reject(de.Code, de.Msg)
		return
	}
	typ := msgType(msg)
	h.m.message(typ)
	if !c.helloed.Load() {
		c.first(msg)
		return
	}
	ev := event{kind: evMsg, c: c, msg: msg}
	switch m := msg.(type) {
	case *Hello:
		h.m.drop(dropState)
		c.sendError(CodeBadState, "hello already received")
		return
	case *Find:
		c.relayOnly = m.RelayOnly
	case *Signal:
		ev.raw = encode(m)
		if c.relayOnly {
			ev.scrubbed, ev.scrubDrop = scrubEncoded(m)
			ev.hasScrub = true
		}
	case *Chat:
		ev.raw = encode(m)
	case *Typing:
		ev.raw = encode(m)
	case *Media:
		ev.raw = encode(m)
	}
	h.post(ev)
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
		c.helloed.Store(true)
		c.admit() // the read deadline moves from HelloTimeout to PongWait
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
