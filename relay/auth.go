package relay

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/turn/v4"
)

// Auth failure reasons, used as the "reason" label of auth_failures_total.
const (
	authRealm       = "realm"
	authMalformed   = "malformed"
	authExpired     = "expired"
	authFuture      = "future"
	authSession     = "session"
	authIntegrity   = "integrity"
	authRateLimited = "rate_limited"
)

const (
	// expirySkew tolerates rounding between minting and checking (same
	// clock, whole seconds).
	expirySkew = time.Minute
	// authFailWindow and authFailBurst: a source IP with more than
	// authFailBurst failed authentications within authFailWindow is refused
	// without checking until the window ends.
	authFailWindow = time.Minute
	authFailBurst  = 20
	// authLimiterSize bounds the limiter's memory; when full, an arbitrary
	// entry is evicted.
	authLimiterSize = 16384
)

// authenticate is the pion AuthHandler. It returns the long-term key for
// username when the realm matches, the username parses strictly, its expiry
// is not absurdly far ahead, its session is live and either the credential
// has not expired or the request comes from the transport address of a live
// allocation made with this username (pion v4 does not tell the handler which
// method is being authenticated, so expiry is enforced for new allocations
// only, as coturn does). pion then checks MESSAGE-INTEGRITY against the key.
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	now := s.cfg.Now()
	ip := addrIP(src)
	if s.limiter.limited(ip, now) {
		s.metrics.authFailures.WithLabelValues(authRateLimited).Inc()
		return nil, false
	}
	reason := s.checkUsername(username, realm, src, now)
	if reason != "" {
		s.authFailed(ip, reason, now)
		return nil, false
	}
	return turn.GenerateAuthKey(username, realm, Password(s.cfg.Secret, username)), true
}

// checkUsername returns the reason username is refused, or "".
func (s *Server) checkUsername(username, realm string, src net.Addr, now time.Time) string {
	if realm != s.cfg.Realm {
		return authRealm
	}
	expiry, session, err := ParseUsername(username)
	if err != nil {
		return authMalformed
	}
	unix := now.Unix()
	if expiry > unix+int64((s.cfg.CredentialTTL+expirySkew)/time.Second) {
		return authFuture
	}
	if !s.sessionLive(session) {
		return authSession
	}
	if expiry < unix && !s.allocatedWith(transportKey(src), username) {
		return authExpired
	}
	return ""
}

// authFailed counts and logs a refused authentication. The username and
// password are never logged.
func (s *Server) authFailed(ip netip.Addr, reason string, now time.Time) {
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	s.limiter.fail(ip, now)
	s.log.Debug("authentication refused", "client_ip", ip, "reason", reason)
}

// authLimiter counts failed authentications per source IP in fixed windows.
// Memory is bounded by authLimiterSize entries. Note that UDP sources can be
// spoofed: the limit protects the CPU and the log, and a spoofed victim is
// locked out for at most one window.
type authLimiter struct {
	mu      sync.Mutex
	entries map[netip.Addr]*authEntry // guarded by mu
}

type authEntry struct {
	start    time.Time
	failures int
}

func newAuthLimiter() *authLimiter {
	return &authLimiter{entries: make(map[netip.Addr]*authEntry)}
}

func (l *authLimiter) limited(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[ip]
	if !ok {
		return false
	}
	if now.Sub(e.start) >= authFailWindow {
		delete(l.entries, ip)
		return false
	}
	return e.failures >= authFailBurst
}

func (l *authLimiter) fail(ip netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[ip]
	if ok && now.Sub(e.start) >= authFailWindow {
		ok = false
	}
	if !ok {
		if len(l.entries) >= authLimiterSize {
			l.sweepLocked(now)
		}
		if len(l.entries) >= authLimiterSize {
			for k := range l.entries { // evict an arbitrary entry
				delete(l.entries, k)
				break
			}
		}
		e = &authEntry{start: now}
		l.entries[ip] = e
	}
	e.failures++
}

// sweep drops entries whose window has passed.
func (l *authLimiter) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}

func (l *authLimiter) sweepLocked(now time.Time) {
	for k, e := range l.entries {
		if now.Sub(e.start) >= authFailWindow {
			delete(l.entries, k)
		}
	}
}

// addrIP returns the IP of a UDP or TCP address, unmapped; zero otherwise.
func addrIP(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// transportKey identifies a client transport address across pion's
// callbacks: network and address, e.g. "udp|192.0.2.1:5000".
func transportKey(a net.Addr) string {
	return a.Network() + "|" + a.String()
}
