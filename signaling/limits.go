package signaling

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/strangers-chat/strangers/internal/netkey"
)

// tokenBucket limits a rate: a connection's messages (conn.bucket, owned by
// the connection's decode shard) or a session's ice requests
// (session.iceBucket, owned by the hub's owner goroutine). It is not safe
// for concurrent use.
//
// Each message takes a token; tokens refill at rate per second up to burst.
// A message that finds no token is dropped and adds a strike; strikes leak
// at half the rate. More strikes than burst is sustained abuse: a client
// that keeps sending at well over the rate after being told rate_limited.
type tokenBucket struct {
	rate, burst float64
	tokens      float64
	strikes     float64
	last        time.Time
}

func newTokenBucket(rate float64, burst int, now time.Time) tokenBucket {
	return tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// take reports whether a message may pass now.
func (b *tokenBucket) take(now time.Time) bool {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt*b.rate)
		b.strikes = max(0, b.strikes-dt*b.rate/2)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	b.strikes++
	return false
}

// abusive reports whether the dropped messages amount to sustained abuse.
func (b *tokenBucket) abusive() bool { return b.strikes > b.burst }

// originPolicy decides which Origin headers may open a WebSocket. Browsers
// always send Origin on a WebSocket handshake, so a request without one is
// not a browser being abused by another site (cross-site WebSocket
// hijacking) and is let through: native and third-party clients need not
// fake one.
type originPolicy struct {
	any     bool            // "*" was listed
	allowed map[string]bool // normalised origins; empty: same host as the request
}

func newOriginPolicy(list []string) (originPolicy, error) {
	p := originPolicy{allowed: make(map[string]bool, len(list))}
	for _, o := range list {
		if o == "*" {
			p.any = true
			continue
		}
		n, ok := normalizeOrigin(o)
		if !ok {
			return p, fmt.Errorf("%w: AllowedOrigins: %q is not an origin like https://chat.example.com", ErrConfig, o)
		}
		p.allowed[n] = true
	}
	return p, nil
}

func (p originPolicy) allow(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || p.any {
		return true
	}
	n, ok := normalizeOrigin(origin)
	if !ok {
		return false
	}
	if len(p.allowed) > 0 {
		return p.allowed[n]
	}
	u, _ := url.Parse(n) // n came out of normalizeOrigin
	return strings.EqualFold(hostWithoutDefaultPort(u.Host, u.Scheme), hostWithoutDefaultPort(r.Host, u.Scheme))
}

// normalizeOrigin lower-cases scheme and host and drops a default port, so
// "HTTPS://Chat.Example.com:443" and "https://chat.example.com" compare equal.
func normalizeOrigin(s string) (string, bool) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	return scheme + "://" + strings.ToLower(hostWithoutDefaultPort(u.Host, scheme)), true
}

func hostWithoutDefaultPort(host, scheme string) string {
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return strings.TrimSuffix(host, ":443")
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return strings.TrimSuffix(host, ":80")
	}
	return host
}

// clientAddr returns the address a connection is counted against for the
// per-IP cap. X-Forwarded-For is believed only when the peer is a trusted
// proxy; then the rightmost address that is not itself a trusted proxy is the
// client. An IPv6 client is counted by its /64, the unit one subscriber gets.
// The zero Addr stands for peers without an IP (in-memory pipes in tests).
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	addr := parseHostAddr(r.RemoteAddr)
	if addr.IsValid() && isTrusted(addr, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed entry: believe nothing to its left
			}
			addr = hop.Unmap()
			if !isTrusted(addr, trusted) {
				break
			}
		}
	}
	return netkey.Client(addr)
}

func parseHostAddr(hostport string) netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
