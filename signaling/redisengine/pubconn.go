package redisengine

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// pubConn is the publisher's own connection to Redis. The publisher
// writes its PUBLISH commands as they come, without waiting for the
// replies to the ones before, and the connection's reader goroutine
// takes the replies as they arrive. One connection keeps everything this
// node publishes in order, as one pipeline did. (go-redis waits for a
// pipeline's replies before the next pipeline goes out, so a message
// queued meanwhile waited out that round trip first.)
//
// The publisher goroutine owns the connection: it dials it, writes to it
// and closes it (close), which also stops the reader and waits for it.
type pubConn struct {
	c      net.Conn
	w      *bufio.Writer // the publisher's only
	r      *bufio.Reader // the reader goroutine's only
	gen    uint64        // Engine.pubGen when dialled: a later setDown retires it
	failed chan struct{} // closed by the reader when the connection failed
	done   chan struct{} // closed when the reader returns
	err    error         // why it failed; set before failed is closed

	mu      sync.Mutex
	pending []sentBatch // guarded by mu: written, replies not all read yet
}

// sentBatch is n commands written at one time, for the round trip metric.
type sentBatch struct {
	at time.Time
	n  int
}

// maxPending bounds the batches written whose replies have not come: a
// Redis that takes commands but no longer answers them fails the
// connection instead of growing the list.
const maxPending = 4096

var errNoReplies = errors.New("redisengine: publisher: Redis does not answer")

// dialPub connects as the engine's go-redis client would (address, TLS,
// user and password, database), and starts the reader.
func (e *Engine) dialPub(ctx context.Context) (*pubConn, error) {
	d := net.Dialer{Timeout: e.cfg.Timeout, KeepAlive: 15 * time.Second}
	c, err := d.DialContext(ctx, e.opts.Network, e.opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("redisengine: publisher: dial: %w", err)
	}
	if e.opts.TLSConfig != nil {
		tc := tls.Client(c, e.opts.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("redisengine: publisher: TLS: %w", err)
		}
		c = tc
	}
	p := &pubConn{
		c:      c,
		w:      bufio.NewWriterSize(c, 32<<10),
		r:      bufio.NewReaderSize(c, 4<<10),
		gen:    e.pubGen.Load(),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := p.hello(ctx, e); err != nil {
		_ = c.Close()
		return nil, err
	}
	go p.read(e)
	return p, nil
}

// hello authenticates and selects the database, then names the
// connection (CLIENT LIST shows which node's publisher it is).
func (p *pubConn) hello(ctx context.Context, e *Engine) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = p.c.SetDeadline(dl)
		defer p.c.SetDeadline(time.Time{}) // a failed reset fails the next write or read
	}
	var cmds [][]string
	switch {
	case e.opts.Password != "" && e.opts.Username != "":
		cmds = append(cmds, []string{"AUTH", e.opts.Username, e.opts.Password})
	case e.opts.Password != "":
		cmds = append(cmds, []string{"AUTH", e.opts.Password})
	}
	if e.opts.DB != 0 {
		cmds = append(cmds, []string{"SELECT", strconv.Itoa(e.opts.DB)})
	}
	cmds = append(cmds, []string{"CLIENT", "SETNAME", "strangers-publisher-" + e.cfg.Node})
	for _, cmd := range cmds {
		writeCommand(p.w, cmd...)
	}
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("redisengine: publisher: hello: %w", err)
	}
	for _, cmd := range cmds {
		line, err := p.r.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("redisengine: publisher: %s: %w", cmd[0], err)
		}
		if len(line) < 3 || line[0] != '+' {
			// An error reply; an AUTH error names no secret.
			return fmt.Errorf("redisengine: publisher: %s: %s", cmd[0], trimReply(line))
		}
	}
	return nil
}

// publish writes one PUBLISH per message and sends them, bounded by
// timeout; the replies come to the reader.
func (p *pubConn) publish(batch []*outbound, timeout time.Duration) error {
	p.mu.Lock()
	full := len(p.pending) >= maxPending
	if !full {
		p.pending = append(p.pending, sentBatch{at: time.Now(), n: len(batch)})
	}
	p.mu.Unlock()
	if full {
		return errNoReplies
	}
	_ = p.c.SetWriteDeadline(time.Now().Add(timeout))
	for _, o := range batch {
		writePublish(p.w, o.channel, o.data)
	}
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("redisengine: publisher: write: %w", err)
	}
	return nil
}

// read takes the replies in order: an integer per PUBLISH (how many
// subscribers got it); an error reply is counted. A connection that
// fails, or a reply that is not one of these, ends it.
func (p *pubConn) read(e *Engine) {
	defer close(p.done)
	var left int // replies still due for pending[0]
	for {
		line, err := p.r.ReadSlice('\n')
		if err != nil {
			p.fail(fmt.Errorf("redisengine: publisher: read: %w", err))
			return
		}
		switch {
		case len(line) >= 3 && line[0] == ':':
		case len(line) >= 3 && line[0] == '-':
			e.m.errors.Inc()
			e.log.Warn("redis refused a publish", "reply", trimReply(line))
		default:
			p.fail(fmt.Errorf("redisengine: publisher: unexpected reply %q", trimReply(line)))
			return
		}
		p.mu.Lock()
		if len(p.pending) == 0 {
			p.mu.Unlock()
			p.fail(errors.New("redisengine: publisher: a reply to nothing"))
			return
		}
		if left == 0 {
			left = p.pending[0].n
		}
		if left--; left == 0 {
			e.m.roundTrip.Observe(time.Since(p.pending[0].at).Seconds())
			p.pending[0] = sentBatch{}
			p.pending = p.pending[1:]
		}
		p.mu.Unlock()
	}
}

func (p *pubConn) fail(err error) {
	p.err = err
	close(p.failed)
}

// unanswered is how many batches written have not had all their replies.
func (p *pubConn) unanswered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// broken reports whether the reader found the connection failed.
func (p *pubConn) broken() bool {
	select {
	case <-p.failed:
		return true
	default:
		return false
	}
}

// close closes the connection and waits for the reader.
func (p *pubConn) close() {
	_ = p.c.Close()
	<-p.done
}

// writeCommand writes a command as a RESP array of bulk strings.
func writeCommand(w *bufio.Writer, args ...string) {
	writeHeader(w, '*', len(args))
	for _, a := range args {
		writeHeader(w, '$', len(a))
		_, _ = w.WriteString(a)
		_, _ = w.WriteString("\r\n")
	}
}

func writePublish(w *bufio.Writer, channel string, data []byte) {
	_, _ = w.WriteString("*3\r\n$7\r\nPUBLISH\r\n")
	writeHeader(w, '$', len(channel))
	_, _ = w.WriteString(channel)
	_, _ = w.WriteString("\r\n")
	writeHeader(w, '$', len(data))
	_, _ = w.Write(data)
	_, _ = w.WriteString("\r\n")
}

func writeHeader(w *bufio.Writer, kind byte, n int) {
	var b [24]byte
	h := append(b[:0], kind)
	h = strconv.AppendInt(h, int64(n), 10)
	h = append(h, '\r', '\n')
	_, _ = w.Write(h)
}

// trimReply is a reply line without its type byte and line end, cut short.
func trimReply(line []byte) string {
	s := string(line)
	if len(s) > 0 {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
