// Package tlsmux shares one TLS port between HTTPS and TURN over TLS: it
// accepts connections, does the TLS handshake and hands each connection to
// the HTTP server or to the relay through a net.Listener of its own.
package tlsmux

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strangers-chat/strangers/internal/netkey"
	"golang.org/x/crypto/acme"
)

// ALPN protocol IDs for TURN and STUN over TLS (RFC 7443).
const (
	ALPNTURN = "stun.turn"
	ALPNSTUN = "stun.nat-discovery"
)

// stunMagicCookie sits at bytes 4-7 of every STUN message (RFC 5389).
const stunMagicCookie = 0x2112A442

// Limits bound what one client can hold on the shared TLS port before
// its connection has been classified.
type Limits struct {
	// HandshakeTimeout covers the TLS handshake and the first bytes after
	// it: a slowloris is cut off after this long.
	HandshakeTimeout time.Duration
	// MaxPerIP is how many unclassified connections one IP may hold.
	MaxPerIP int
	// MaxPending is how many unclassified connections all clients may hold.
	MaxPending int
}

// DefaultLimits are the limits the server runs with.
var DefaultLimits = Limits{HandshakeTimeout: 10 * time.Second, MaxPerIP: 16, MaxPending: 1024}

// Mux accepts connections on the shared TLS port (443) and hands each to
// the HTTP server or to the relay. After the TLS handshake, the protocol
// chosen by ALPN decides if the client offered one: h2 and http/1.1 go to
// HTTP, stun.turn and stun.nat-discovery to the relay, and acme-tls/1 (a
// TLS-ALPN-01 validation, answered by the handshake itself) is closed.
// Without ALPN the first bytes decide: a STUN message (first two bits zero,
// the magic cookie at bytes 4-7) goes to the relay and anything else to
// HTTP. Plain (not TLS) STUN over TCP goes to the relay too; anything else
// that is not TLS is closed. Until it is handed on, a connection counts
// against Limits and must finish within HandshakeTimeout.
type Mux struct {
	// Static after construction.
	ln     net.Listener
	config *tls.Config
	limits Limits
	log    *slog.Logger
	http   *connListener // served by the HTTP server
	turn   *connListener // served by the relay

	// Serve adds one per connection being classified and waits for them.
	wg sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	perIP   map[netip.Addr]int
	pending int

	// Connections admit refused, by reason; read by Refused.
	refusedPerIP, refusedPending atomic.Uint64
}

// New returns a Mux for ln, which it owns from now on; Serve runs it. config
// must offer ALPNTURN and ALPNSTUN beside "h2" and "http/1.1" for TURN
// clients that ask for them.
func New(ln net.Listener, config *tls.Config, limits Limits, log *slog.Logger) *Mux {
	return &Mux{
		ln:     ln,
		config: config,
		limits: limits,
		log:    log,
		http:   newConnListener(ln.Addr()),
		turn:   newConnListener(ln.Addr()),
		perIP:  make(map[netip.Addr]int),
	}
}

// HTTP is the listener the HTTP server serves: TLS connections that are not
// TURN (handed on as *tls.Conn when ALPN chose h2 or http/1.1).
func (m *Mux) HTTP() net.Listener { return m.http }

// TURN is the listener the relay serves as a stream listener: TURN over TLS,
// and plain STUN/TURN over TCP sent to the TLS port.
func (m *Mux) TURN() net.Listener { return m.turn }

// Addr is the address of the shared TLS port.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Serve accepts until ctx ends or the listener fails, then closes the
// listeners it feeds and waits for every connection it is classifying.
func (m *Mux) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { m.ln.Close() })
	defer func() {
		stop()
		cancel()
		m.ln.Close()
		m.wg.Wait()
		m.http.Close()
		m.turn.Close()
	}()
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				m.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return fmt.Errorf("tlsmux: accept on %s: %w", m.ln.Addr(), err)
		}
		backoff = 0
		ip := remoteIP(c)
		if !m.admit(ip) {
			c.Close()
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer m.release(ip)
			m.classify(ctx, c)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (m *Mux) admit(ip netip.Addr) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending >= m.limits.MaxPending {
		m.refusedPending.Add(1)
		return false
	}
	if m.perIP[ip] >= m.limits.MaxPerIP {
		m.refusedPerIP.Add(1)
		return false
	}
	m.pending++
	m.perIP[ip]++
	return true
}

func (m *Mux) release(ip netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending--
	if m.perIP[ip]--; m.perIP[ip] <= 0 {
		delete(m.perIP, ip)
	}
}

// classify does the TLS handshake (or spots plain STUN), reads the first
// bytes and hands the connection on; it closes what it cannot place.
func (m *Mux) classify(ctx context.Context, raw net.Conn) {
	ctx, cancel := context.WithTimeout(ctx, m.limits.HandshakeTimeout)
	defer cancel()
	raw.SetDeadline(time.Now().Add(m.limits.HandshakeTimeout))

	br := bufio.NewReaderSize(raw, 512)
	first, err := br.Peek(1)
	if err != nil {
		raw.Close()
		return
	}
	if first[0] != 0x16 { // not a TLS handshake record
		if head, err := br.Peek(8); err == nil && isSTUN(head) {
			m.hand(ctx, m.turn, &peekedConn{Conn: raw, r: br})
			return
		}
		m.log.Debug("closing connection that is neither TLS nor STUN", "remote", raw.RemoteAddr())
		raw.Close()
		return
	}

	tc := tls.Server(&peekedConn{Conn: raw, r: br}, m.config)
	if err := tc.HandshakeContext(ctx); err != nil {
		m.log.Debug("TLS handshake failed", "remote", raw.RemoteAddr(), "err", err)
		tc.Close()
		return
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case acme.ALPNProto:
		// A TLS-ALPN-01 validation: the handshake itself was the answer.
		tc.Close()
		return
	case "h2", "http/1.1":
		// Handed on as *tls.Conn, so the HTTP server sees TLS and speaks h2.
		m.hand(ctx, m.http, tc)
		return
	case ALPNTURN, ALPNSTUN:
		m.hand(ctx, m.turn, tc)
		return
	}
	// No ALPN (TURN clients and some HTTP clients): the first bytes decide.
	tbr := bufio.NewReaderSize(tc, 512)
	head, err := tbr.Peek(8)
	if err != nil {
		tc.Close()
		return
	}
	if isSTUN(head) {
		m.hand(ctx, m.turn, &peekedConn{Conn: tc, r: tbr})
	} else {
		m.hand(ctx, m.http, &peekedConn{Conn: tc, r: tbr})
	}
}

// hand clears the classification deadline and queues c on l.
func (m *Mux) hand(ctx context.Context, l *connListener, c net.Conn) {
	c.SetDeadline(time.Time{})
	if !l.deliver(ctx, c) {
		c.Close()
	}
}

// isSTUN reports whether head (at least 8 bytes) starts a STUN message.
func isSTUN(head []byte) bool {
	return len(head) >= 8 && head[0]&0xC0 == 0 && binary.BigEndian.Uint32(head[4:8]) == stunMagicCookie
}

// remoteIP is the key a connection counts against the per-IP cap: its
// IPv4 address, or its IPv6 /64.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return netkey.Client(a.AddrPort().Addr())
	}
	return netip.Addr{}
}

// peekedConn is a connection whose first bytes were read ahead into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connListener is a net.Listener fed with connections by a Mux.
type connListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver waits until the listener's owner accepts c; false if the
// listener was closed or ctx ended first.
func (l *connListener) deliver(ctx context.Context, c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	case <-ctx.Done():
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// Refused returns how many connections the mux closed before their TLS
// handshake: because their client (IPv6: its /64) held MaxPerIP
// unclassified connections, and because MaxPending were pending in all.
func (m *Mux) Refused() (perIP, pending uint64) {
	return m.refusedPerIP.Load(), m.refusedPending.Load()
}
