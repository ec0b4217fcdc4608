package relay

import (
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
)

// Auth failure reasons, used as the "reason" label of auth_failures_total.
const (
	authRealm     = "realm"
	authMalformed = "malformed"
	authExpired   = "expired"
	authFuture    = "future"
	authSession   = "session"
	authIntegrity = "integrity"
)

const (
	// expirySkew tolerates rounding between minting and checking (same
	// clock, whole seconds).
	expirySkew = time.Minute
	// oldKeysMax bounds the keys of old-secret credentials waiting for pion
	// to ask for them (see noteOldSecret); only requests whose integrity
	// verifies with an old secret add one.
	oldKeysMax = 4096
)

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
func (s *Server) authFailed(ip netip.Addr, reason string) {
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	s.log.Debug("authentication refused", "client_ip", ip, "reason", reason)
}

// oldKey is the long-term key of a request whose MESSAGE-INTEGRITY was made
// with an old secret.
type oldKey struct {
	username string
	key      []byte
}

// noteOldSecret looks at a STUN request from src before pion handles it.
// pion's AuthHandler returns one key and pion checks the integrity with it,
// so when old secrets are configured the secret a request was made with is
// found here, and authenticate, which pion calls on the same goroutine
// while handling this request, returns the matching key. Nothing is noted
// for requests made with the current secret or with none that verifies.
func (s *Server) noteOldSecret(src net.Addr, frame []byte) {
	if len(s.cfg.OldSecrets) == 0 || len(frame) < 20 || frame[0]&0xC0 != 0 || !hasIntegrity(frame) {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), frame...)}
	if m.Decode() != nil || m.Type.Class != stun.ClassRequest {
		return
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil || realm.String() != s.cfg.Realm {
		return
	}
	username := user.String()
	if _, session, err := ParseUsername(username); err != nil || !s.sessionLive(session) {
		return // authenticate refuses it before any key is looked at
	}
	key := transportKey(src)
	if stun.MessageIntegrity(turn.GenerateAuthKey(username, s.cfg.Realm, Password(s.cfg.Secret, username))).Check(m) == nil {
		s.oldMu.Lock()
		delete(s.oldKeys, key)
		s.oldMu.Unlock()
		return
	}
	for _, secret := range s.cfg.OldSecrets {
		k := turn.GenerateAuthKey(username, s.cfg.Realm, Password(secret, username))
		if stun.MessageIntegrity(k).Check(m) == nil {
			s.oldMu.Lock()
			if len(s.oldKeys) >= oldKeysMax {
				clear(s.oldKeys)
			}
			s.oldKeys[key] = oldKey{username: username, key: k}
			s.oldMu.Unlock()
			return
		}
	}
}

// oldSecretKey returns the key noteOldSecret found for username from src.
func (s *Server) oldSecretKey(src net.Addr, username string) ([]byte, bool) {
	if len(s.cfg.OldSecrets) == 0 {
		return nil, false
	}
	key := transportKey(src)
	s.oldMu.Lock()
	defer s.oldMu.Unlock()
	k, ok := s.oldKeys[key]
	if !ok || k.username != username {
		return nil, false
	}
	delete(s.oldKeys, key)
	return k.key, true
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
