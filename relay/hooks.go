package relay

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/turn/v4"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// The hooks pion's control plane calls: the auth, quota and permission
// handlers, the relay address generator and the event handlers. They keep
// the registry (registry.go) and each allocation's binding table
// (internal/plane) in step with pion's state; what the data plane assumes
// of the order and timing of these calls is listed in internal/plane's
// package comment.

// authenticate is the pion AuthHandler. It returns the long-term key for
// username when the realm matches, the username parses strictly, its expiry
// is not absurdly far ahead, its session is live and either the credential
// has not expired or the request comes from the transport address of a live
// allocation made with this username (pion v4 does not tell the handler which
// method is being authenticated, so expiry is enforced for new allocations
// only, as coturn does). pion then checks MESSAGE-INTEGRITY against the key.
//
// Every request is checked on its own merits: failures from the same
// address never make a valid credential fail (what failing sources are
// limited in is what we send back to them, see replyGuard).
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	now := s.cfg.Now()
	reason := s.checkUsername(username, realm, src, now)
	if reason != "" {
		s.authFailed(addrIP(src), reason)
		return nil, false
	}
	if key, ok := s.oldSecretKey(src, username); ok {
		return key, true
	}
	return turn.GenerateAuthKey(username, realm, Password(s.cfg.Secret, username)), true
}

// allowAllocation is the pion QuotaHandler: for an Allocate that passed
// authentication it checks that the session has not ended (a session in
// its grace keeps its allocations but gets no new ones) and reserves a
// per-session, a per-client-address and a total slot.
func (s *Server) allowAllocation(username, _ string, src net.Addr) bool {
	_, session, err := ParseUsername(username)
	if err != nil {
		return false // cannot happen: authenticate parsed it
	}
	if !s.sessionActive(session) {
		s.metrics.allocFailed.WithLabelValues(failSessionEnded).Inc()
		s.log.Debug("allocation refused: session ended", "client", src.String())
		return false
	}
	kind := s.quota.reserve(transportKey(src), session, clientUnit(addrIP(src)), s.cfg.Now())
	if kind == "" {
		return true
	}
	s.metrics.quotaHits.WithLabelValues(kind).Inc()
	reason := failQuotaSession
	switch kind {
	case quotaTotal:
		reason = failQuotaTotal
	case quotaClientIP:
		reason = failQuotaClientIP
	}
	s.metrics.allocFailed.WithLabelValues(reason).Inc()
	s.log.Debug("allocation refused: quota", "client", src.String(), "kind", kind)
	return false
}

// permit is the pion PermissionHandler, called for each peer of a
// CreatePermission and for each ChannelBind (new or refresh). It applies the
// peer policy, refuses allocations whose session has expired, and caps the
// distinct peer IPs per allocation (pion keys permissions by IP; refreshes
// of an existing one always pass).
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	addr, ok := netip.AddrFromSlice(peer)
	if !ok || !s.policy.allowed(addr) {
		s.metrics.peerDeniedReserved.Inc()
		s.log.Debug("peer denied by policy", "client", client.String(), "peer", peer.String())
		return false
	}
	key := transportKey(client)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.allocs[key]
	if a == nil {
		return false
	}
	if _, live := s.sessions[a.session]; !live {
		return false
	}
	if a.relay == nil {
		return true // its relay socket is closed: pion deletes it
	}
	n, has := a.relay.pl.Permissions(addr.Unmap())
	if has {
		return true
	}
	if n >= s.cfg.MaxPermissionsPerAllocation {
		s.metrics.quotaHits.WithLabelValues(quotaPermissions).Inc()
		return false
	}
	return true
}

func (s *Server) onAuth(src, _ net.Addr, _, _, _, _ string, verdict bool) {
	if !verdict {
		s.authFailed(addrIP(src), authIntegrity)
	}
}

func (s *Server) onAllocationCreated(src, _ net.Addr, _, username, _ string, relayAddr net.Addr, _ int) {
	key := transportKey(src)
	s.quota.confirm(key)
	_, session, _ := ParseUsername(username)
	port := 0
	if ua, ok := relayAddr.(*net.UDPAddr); ok {
		port = ua.Port
	}
	s.mu.Lock()
	a := &allocState{
		username: username,
		session:  session,
		relay:    s.relays[port],
	}
	s.allocs[key] = a
	s.serve(key, src, a)
	st, live := s.sessions[session]
	if live {
		st.allocs[key] = struct{}{}
		live = !st.ended
	}
	s.mu.Unlock()
	s.metrics.allocCreated.Inc()
	if !live && a.relay != nil {
		a.relay.Close() // the session ended while the Allocate was in flight
	}
	s.log.Debug("allocation created", "client", src.String(), "relay_port", port)
}

func (s *Server) onAllocationDeleted(src, _ net.Addr, _, _, _ string) {
	key := transportKey(src)
	s.quota.release(key)
	s.mu.Lock()
	if a := s.allocs[key]; a != nil {
		s.unserve(a)
		delete(s.allocs, key)
		if st := s.sessions[a.session]; st != nil {
			delete(st.allocs, key)
		}
	}
	s.mu.Unlock()
	s.log.Debug("allocation deleted", "client", src.String())
}

func (s *Server) onAllocationError(src, _ net.Addr, _, _ string) {
	// Requests from one client transport address are handled one at a time,
	// so an unconfirmed slot here belongs to the Allocate that just failed.
	if s.quota.releasePending(transportKey(src)) {
		s.metrics.allocFailed.WithLabelValues(failRelay).Inc()
		s.log.Debug("allocation failed", "client", src.String())
	}
}

func (s *Server) onPermissionCreated(src, _ net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
	if addr, ok := netip.AddrFromSlice(peer); ok {
		s.mu.Lock()
		if a := s.allocs[transportKey(src)]; a != nil && a.relay != nil {
			a.relay.pl.Permit(addr.Unmap())
		}
		s.mu.Unlock()
	}
}

func (s *Server) onPermissionDeleted(src, _ net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
	if addr, ok := netip.AddrFromSlice(peer); ok {
		s.mu.Lock()
		if a := s.allocs[transportKey(src)]; a != nil && a.relay != nil {
			a.relay.pl.Revoke(addr.Unmap())
		}
		s.mu.Unlock()
	}
}

func (s *Server) onChannelCreated(src, _ net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
	s.mu.Lock()
	if a := s.allocs[transportKey(src)]; a != nil && a.relay != nil {
		if ap, ok := addrPort(peer); ok {
			a.relay.pl.Bind(number, peer, ap, s.localRelay(ap))
		}
	}
	s.mu.Unlock()
}

func (s *Server) onChannelDeleted(src, _ net.Addr, _, _, _ string, _, _ net.Addr, number uint16) {
	s.mu.Lock()
	if a := s.allocs[transportKey(src)]; a != nil && a.relay != nil {
		a.relay.pl.Unbind(number)
	}
	s.mu.Unlock()
}

// relayGen is the pion RelayAddressGenerator: pion's port-range generator
// (bind BindIP, advertise PublicIP) whose sockets are wrapped in relayConn.
type relayGen struct {
	s     *Server
	inner *turn.RelayAddressGeneratorPortRange
}

// Validate implements turn.RelayAddressGenerator.
func (g *relayGen) Validate() error {
	if err := g.inner.Validate(); err != nil {
		return fmt.Errorf("relay: relay address generator: %w", err)
	}
	return nil
}

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (g *relayGen) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	if g.s.isClosed() {
		return nil, nil, ErrClosed
	}
	pc, addr, err := g.inner.AllocatePacketConn(network, requestedPort)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: allocating relay socket: %w", err)
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		pc.Close()
		return nil, nil, fmt.Errorf("relay: relay socket has address %T", addr)
	}
	// A relay socket hears a peer as the client-facing sockets hear
	// clients: with the default buffer a burst overflows it. The buffer is
	// a bound, not memory set aside.
	if _, err := sockio.SetReceiveBuffer(pc, udpReceiveBuffer); err != nil {
		g.s.log.Debug("relay socket receive buffer not set", "port", ua.Port, "err", err)
	}
	c := g.s.newRelayConn(pc, ua.Port)
	return c, addr, nil
}

// AllocateConn implements turn.RelayAddressGenerator. RFC 6062 TCP relays
// are not offered (browsers do not use them and they reach TCP services).
func (g *relayGen) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, ErrTCPRelay
}
