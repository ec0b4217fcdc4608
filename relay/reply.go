package relay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"
)

// What the relay sends to a client that has not authenticated is bounded,
// so that it is useless as a reflector (UDP sources can be spoofed) and a
// failing source learns little: every response without MESSAGE-INTEGRITY
// (a 401 challenge, a 438, a 400 for bad credentials, a Binding response)
// is at most replyAmplification times the size of its request, and each
// client address (IPv6 per /64; per connection on TCP and TLS, which cannot
// be spoofed) gets at most replyBurst of them at once and replyRate per
// second after that. What is over is dropped, not answered. Requests are
// never refused for it: a request with valid credentials is processed and
// its authenticated response sent, whatever else came from its address,
// and responses to the transport address of a live allocation, for a
// request naming that allocation's username, are never rate limited.
//
// Challenges (responses to requests without a USERNAME: the 401 that
// starts every allocation, Binding responses) and failures (responses to
// requests with one: bad or unknown credentials) have separate buckets, so
// a neighbour behind the same NAT sending bogus credentials does not stop
// anyone else there from being challenged. Someone who spoofs an address
// over UDP can still spend its challenge budget, delaying that address's
// new UDP allocations while it keeps at it (clients retransmit; TCP and TLS
// are per connection and not affected); live allocations never are.
const (
	replyAmplification = 3
	replyBurst         = 64
	replyRate          = 16 // per second
	// replyLimiterSize bounds the per-address buckets; when full, buckets
	// that have refilled are dropped, then an arbitrary one.
	replyLimiterSize = 65536
)

// Reasons a response is dropped, the "reason" label of
// responses_dropped_total.
const (
	dropAmplification = "amplification"
	dropRateLimited   = "rate_limited"
)

// STUN attribute types looked at on the packet path.
const (
	attrUsername       = 0x0006
	attrIntegrity      = 0x0008
	attrErrorCode      = 0x0009
	attrIntegritySHA   = 0x001C
	attrFingerprint    = 0x8028
	stunMagicCookie    = 0x2112A442
	stunClassBits      = 0x0110
	stunResponseBit    = 0x0100
	stunErrorClassBits = 0x0110
)

// replyGuard is what a client-facing socket or connection knows about the
// request pion is handling. Its reader records each STUN request before
// handing it to pion, which answers it on the same goroutine before reading
// again; raw aliases pion's read buffer and is only looked at meanwhile.
type replyGuard struct {
	mu      sync.Mutex
	txID    [12]byte       // guarded by mu
	size    int            // guarded by mu; 0: no request recorded
	raw     []byte         // guarded by mu
	buckets [2]replyBucket // guarded by mu; stream connections only; index replyChallenge or replyFailure
}

// note records the STUN request b, if it is one.
func (g *replyGuard) note(b []byte) {
	if len(b) < 20 || b[0]&0xC0 != 0 || binary.BigEndian.Uint16(b[0:2])&stunClassBits != 0 {
		return
	}
	g.mu.Lock()
	copy(g.txID[:], b[8:20])
	g.size, g.raw = len(b), b
	g.mu.Unlock()
}

// request returns the size and bytes of the recorded request with txID.
func (g *replyGuard) request(txID []byte) (int, []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.size == 0 || !bytes.Equal(g.txID[:], txID) {
		return 0, nil
	}
	return g.size, g.raw
}

// isSTUNResponse reports whether b is a STUN success or error response.
func isSTUNResponse(b []byte) bool {
	return len(b) >= 20 && b[0]&0xC0 == 0 && binary.BigEndian.Uint16(b[0:2])&stunResponseBit != 0 &&
		binary.BigEndian.Uint32(b[4:8]) == stunMagicCookie
}

// stunAttr returns the value of the first attribute of type typ in the
// STUN message b, and whether there is one.
func stunAttr(b []byte, typ uint16) ([]byte, bool) {
	if len(b) < 20 {
		return nil, false
	}
	end := min(len(b), 20+int(binary.BigEndian.Uint16(b[2:4])))
	for i := 20; i+4 <= end; {
		t, n := binary.BigEndian.Uint16(b[i:]), int(binary.BigEndian.Uint16(b[i+2:]))
		if i+4+n > end {
			return nil, false
		}
		if t == typ {
			return b[i+4 : i+4+n], true
		}
		i += 4 + (n+3)&^3
	}
	return nil, false
}

// hasIntegrity reports whether the STUN message b carries MESSAGE-INTEGRITY.
func hasIntegrity(b []byte) bool {
	if _, ok := stunAttr(b, attrIntegrity); ok {
		return true
	}
	_, ok := stunAttr(b, attrIntegritySHA)
	return ok
}

// withoutReason returns the error response b with the reason phrase of its
// ERROR-CODE removed (the code alone is what clients act on), or b itself
// when there is nothing to remove or a FINGERPRINT would need recomputing.
func withoutReason(b []byte) []byte {
	if binary.BigEndian.Uint16(b[0:2])&stunErrorClassBits != stunErrorClassBits {
		return b
	}
	if _, fp := stunAttr(b, attrFingerprint); fp {
		return b
	}
	end := min(len(b), 20+int(binary.BigEndian.Uint16(b[2:4])))
	for i := 20; i+4 <= end; {
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		next := i + 4 + (n+3)&^3
		if next > end {
			return b
		}
		if binary.BigEndian.Uint16(b[i:]) != attrErrorCode {
			i = next
			continue
		}
		if n <= 4 {
			return b
		}
		out := make([]byte, 0, len(b))
		out = append(out, b[:i]...)
		out = append(out, b[i], b[i+1], 0, 4)
		out = append(out, b[i+4:i+8]...)
		out = append(out, b[next:end]...)
		binary.BigEndian.PutUint16(out[2:4], uint16(len(out)-20)) //nolint:gosec // shorter than b
		return out
	}
	return b
}

// screenReply decides on p, a STUN response about to be sent to src on the
// socket or connection guarded by g, and returns what to send: p, p with
// its reason phrase removed, or nil to drop it. perConn selects the
// guard's own bucket (stream connections) instead of the per-address one.
func (s *Server) screenReply(g *replyGuard, src net.Addr, p []byte, perConn bool) []byte {
	if hasIntegrity(p) {
		return p // authenticated: the request carried valid credentials
	}
	out := withoutReason(p)
	size, req := g.request(p[8:20])
	if len(out) > replyAmplification*size {
		s.metrics.repliesDropped.WithLabelValues(dropAmplification).Inc()
		return nil
	}
	user, named := stunAttr(req, attrUsername)
	if named && s.ownAllocation(src, user) {
		return out
	}
	class := replyChallenge
	if named {
		class = replyFailure
	}
	now := s.cfg.Now()
	var ok bool
	if perConn {
		g.mu.Lock()
		ok = g.buckets[class].take(now, s.cfg.replyBurst, s.cfg.replyRate)
		g.mu.Unlock()
	} else {
		ok = s.replies.take(replyKey{clientUnit(addrIP(src)), class}, now)
	}
	if !ok {
		s.metrics.repliesDropped.WithLabelValues(dropRateLimited).Inc()
		return nil
	}
	return out
}

// ownAllocation reports whether user is the username of the live
// allocation at src.
func (s *Server) ownAllocation(src net.Addr, user []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.allocs[transportKey(src)]
	return a != nil && a.username == string(user)
}

// clientUnit returns the address a client is counted by: an IPv4 address
// itself, an IPv6 address's /64 (what one subscriber gets).
func clientUnit(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.Addr()
	}
	return ip
}

// replyBucket is a token bucket of responses: burst at once, refilled at
// rate per second. The zero value is full.
type replyBucket struct {
	used float64 // tokens taken and not yet refilled
	last time.Time
}

func (b *replyBucket) take(now time.Time, burst, rate float64) bool {
	b.refill(now, rate)
	if b.used+1 > burst {
		return false
	}
	b.used++
	return true
}

func (b *replyBucket) refill(now time.Time, rate float64) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.used = max(0, b.used-dt*rate)
	}
	b.last = now
}

// Reply classes, each with its own bucket.
const (
	replyChallenge = 0 // the request named no user
	replyFailure   = 1 // the request named a user and was not authenticated
)

type replyKey struct {
	unit  netip.Addr // clientUnit of the client
	class int
}

// replyLimiter holds the reply buckets of UDP clients. Memory is bounded
// by replyLimiterSize buckets.
type replyLimiter struct {
	burst, rate float64 // static

	mu      sync.Mutex
	buckets map[replyKey]*replyBucket // guarded by mu
}

func newReplyLimiter(burst, rate float64) *replyLimiter {
	return &replyLimiter{burst: burst, rate: rate, buckets: make(map[replyKey]*replyBucket)}
}

func (l *replyLimiter) take(key replyKey, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= replyLimiterSize {
			l.sweepLocked(now)
		}
		if len(l.buckets) >= replyLimiterSize {
			for k := range l.buckets { // evict an arbitrary bucket
				delete(l.buckets, k)
				break
			}
		}
		b = &replyBucket{last: now}
		l.buckets[key] = b
	}
	return b.take(now, l.burst, l.rate)
}

// sweep drops the buckets that have refilled: they are as good as new.
func (l *replyLimiter) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}

func (l *replyLimiter) sweepLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.refill(now, l.rate); b.used == 0 {
			delete(l.buckets, k)
		}
	}
}
