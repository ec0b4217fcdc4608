package relay

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"

	"github.com/strangers-chat/strangers/internal/sessionid"
	"github.com/strangers-chat/strangers/relay/internal/plane"
	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

const (
	// maintenanceInterval paces the sweep of the auth limiter and of
	// reserved-but-unused quota slots.
	maintenanceInterval = 10 * time.Second
	// closeTimeout bounds how long Close waits for sockets, connections and
	// allocations to wind down.
	closeTimeout = 10 * time.Second
	// relayPortRetries is how many random ports pion tries per allocation
	// before answering 508 (its default of 10 fails early in a busy range).
	relayPortRetries = 50
	// Allocation failure reasons, the "reason" label of allocations_failed_total.
	failQuotaSession  = "quota_session"
	failQuotaTotal    = "quota_total"
	failQuotaClientIP = "quota_client_ip"
	failSessionEnded  = "session_ended"
	failRelay         = "relay"
)

// Server is the embedded TURN/STUN relay.
type Server struct {
	// Static after New, except where a field says otherwise.
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	traffic *trafficCounters
	policy  peerPolicy
	quota   *quota
	replies *replyLimiter
	track   *tracker
	batches *sockio.Pool // receive batches shared by all UDP sockets
	turn    *turn.Server
	udpAddr *net.UDPAddr
	tcpAddr *net.TCPAddr
	own4    [4]byte        // PublicIP
	stop    chan struct{}  // not static: Close closes it, ending the maintenance loop and watchHosts
	wg      sync.WaitGroup // the maintenance loop and watchHosts; Close waits for them

	// Read on the packet path without a lock.
	hosts      atomic.Pointer[hostSet] // swapped by refreshHosts
	relayPorts portSet                 // ports of open relay sockets; written with mu held
	limits     *plane.Limits           // set in New, read-only after; shared by every relay socket

	closeOnce sync.Once // Close's
	closeErr  error     // written once, by Close inside closeOnce

	mu       sync.Mutex
	closed   bool                   // guarded by mu
	sessions map[string]*session    // guarded by mu; live and in-grace sessions by id
	allocs   map[string]*allocState // guarded by mu; by client transport key
	relays   map[int]*relayConn     // guarded by mu; open relay sockets by port
	// pendingOwner is guarded by mu: the client-facing socket or connection
	// handing pion an Allocate request, by client transport key (nil when
	// two sockets do at once).
	pendingOwner map[string]clientSide

	oldMu   sync.Mutex
	oldKeys map[string]oldKey // guarded by oldMu; by client transport key, see noteOldSecret
}

// session is a session the matchmaker declared live.
type session struct {
	ended  bool        // SessionEnded was called; timer closes it after the grace
	timer  *time.Timer // set while ended
	allocs map[string]struct{}
}

// allocState is what the relay tracks about one live allocation. Its
// permissions and channels are in its relay socket's binding table
// (relay.pl), the only copy.
type allocState struct {
	username string
	session  string
	relay    *relayConn     // nil if it closed before pion reported the allocation
	owner    clientSide     // the client-facing side the data plane serves it on; nil: pion relays all
	clientAP netip.AddrPort // the client, with owner
}

// New validates cfg, fills defaults, opens the UDP sockets and TCP listener
// on ListenAddr and starts serving them and cfg.StreamListeners. On error it
// closes the sockets it opened (not the StreamListeners) and returns nothing
// running.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "relay")
	autoIP := !cfg.PublicIP.IsValid()
	if autoIP {
		cfg.PublicIP = detectPublicIP()
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		traffic:  newTrafficCounters(),
		policy:   peerPolicy{own: cfg.PublicIP, allow: cfg.AllowPeers},
		quota:    newQuota(cfg.SessionQuota, cfg.IPQuota, cfg.TotalQuota),
		replies:  newReplyLimiter(cfg.replyBurst, cfg.replyRate),
		track:    newTracker(),
		batches:  sockio.NewPool(),
		own4:     cfg.PublicIP.As4(),
		stop:     make(chan struct{}),
		sessions: make(map[string]*session),
		allocs:   make(map[string]*allocState),
		relays:   make(map[int]*relayConn),

		pendingOwner: make(map[string]clientSide),
		oldKeys:      make(map[string]oldKey),
	}
	s.metrics, err = newMetrics(cfg.Registerer, s.activeAllocations, s.traffic)
	if err != nil {
		return nil, err
	}
	s.limits = s.newLimits()

	udp, tcp, rcvbuf, err := openSockets(context.Background(), cfg)
	if err != nil {
		s.metrics.unregister()
		return nil, err
	}
	s.udpAddr = udp[0].LocalAddr().(*net.UDPAddr)
	s.tcpAddr = tcp.Addr().(*net.TCPAddr)
	s.refreshHosts() // before the first packet

	gen := func() turn.RelayAddressGenerator {
		return &relayGen{s: s, inner: &turn.RelayAddressGeneratorPortRange{
			RelayAddress: net.IP(cfg.PublicIP.AsSlice()),
			Address:      cfg.BindIP.String(),
			MinPort:      uint16(cfg.PortMin), // validated to 1..65535
			MaxPort:      uint16(cfg.PortMax), // validated to 1..65535
			MaxRetries:   relayPortRetries,
		}}
	}
	var pcs []turn.PacketConnConfig
	for _, c := range udp {
		pcs = append(pcs, turn.PacketConnConfig{
			PacketConn:            newTurnPacketConn(c, s),
			RelayAddressGenerator: gen(),
			PermissionHandler:     s.permit,
		})
	}
	lcs := []turn.ListenerConfig{{
		Listener:              newStreamListener(tcp, s),
		RelayAddressGenerator: gen(),
		PermissionHandler:     s.permit,
	}}
	for _, l := range cfg.StreamListeners {
		lcs = append(lcs, turn.ListenerConfig{
			Listener:              newStreamListener(l, s),
			RelayAddressGenerator: gen(),
			PermissionHandler:     s.permit,
		})
	}
	s.turn, err = turn.NewServer(turn.ServerConfig{
		PacketConnConfigs:  pcs,
		ListenerConfigs:    lcs,
		LoggerFactory:      pionLoggerFactory{log: log},
		Realm:              cfg.Realm,
		AuthHandler:        s.authenticate,
		QuotaHandler:       s.allowAllocation,
		ChannelBindTimeout: cfg.channelLifetime,
		EventHandler: turn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnAllocationError:   s.onAllocationError,
			OnPermissionCreated: s.onPermissionCreated,
			OnPermissionDeleted: s.onPermissionDeleted,
			OnChannelCreated:    s.onChannelCreated,
			OnChannelDeleted:    s.onChannelDeleted,
		},
	})
	if err != nil {
		for _, c := range udp {
			c.Close()
		}
		tcp.Close()
		s.metrics.unregister()
		return nil, fmt.Errorf("relay: starting TURN server: %w", err)
	}

	s.wg.Add(2)
	go s.maintain()
	go s.watchHosts()

	ipSource := "configured"
	if autoIP {
		ipSource = "auto-detected"
	}
	log.Info("relay listening",
		"udp", s.udpAddr.String(), "tcp", s.tcpAddr.String(), "udp_sockets", len(udp),
		"stream_listeners", len(cfg.StreamListeners),
		"public_ip", cfg.PublicIP.String(), "public_ip_source", ipSource,
		"bind_ip", cfg.BindIP.String(), "relay_ports", fmt.Sprintf("%d-%d", cfg.PortMin, cfg.PortMax),
		"realm", cfg.Realm, "allow_peers", len(cfg.AllowPeers))
	if rcvbuf > 0 && rcvbuf < udpReceiveBuffer {
		log.Warn("udp receive buffer clamped by the kernel; raise net.core.rmem_max to avoid drops under load",
			"wanted_bytes", udpReceiveBuffer, "granted_bytes", rcvbuf)
	}
	if cfg.PublicIP.IsLoopback() || cfg.PublicIP.IsPrivate() {
		log.Warn("relay advertises a non-public address; remote browsers cannot reach it",
			"public_ip", cfg.PublicIP.String())
	}
	return s, nil
}

// ICEServers returns the ICE servers for a session: our STUN URL, our TURN
// URLs over UDP and TCP with fresh credentials for sessionID, then
// ExtraICEServers.
func (s *Server) ICEServers(sessionID string) ([]ICEServer, error) {
	if !sessionid.Valid(sessionID) {
		return nil, ErrSessionID
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	host := s.cfg.PublicHost
	if host == "" {
		host = s.cfg.PublicIP.String()
	}
	hp := urlHost(host) + ":" + strconv.Itoa(s.udpAddr.Port)
	user, pass := Credentials(s.cfg.Secret, sessionID, s.cfg.Now().Add(s.cfg.CredentialTTL))
	out := make([]ICEServer, 0, 2+len(s.cfg.ExtraICEServers))
	out = append(out,
		ICEServer{URLs: []string{"stun:" + hp}},
		ICEServer{
			URLs:       []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"},
			Username:   user,
			Credential: pass,
		})
	for _, e := range s.cfg.ExtraICEServers {
		out = append(out, e.clone())
	}
	return out, nil
}

// SessionStarted marks a session live: credentials naming it are accepted.
// Calling it during the grace after SessionEnded revives the session.
func (s *Server) SessionStarted(sessionID string) {
	if !sessionid.Valid(sessionID) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if st, ok := s.sessions[sessionID]; ok {
		if st.ended {
			st.timer.Stop()
			st.ended, st.timer = false, nil
		}
		return
	}
	s.sessions[sessionID] = &session{allocs: make(map[string]struct{})}
}

// SessionEnded starts the grace of a session. During the grace its
// existing allocations keep working but it gets no new ones; when the grace
// expires, the session's credentials stop authenticating (no refreshes,
// permissions or channels) and its allocations are closed.
func (s *Server) SessionEnded(sessionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.sessions[sessionID]
	if !ok || st.ended || s.closed {
		return
	}
	st.ended = true
	st.timer = time.AfterFunc(s.cfg.SessionGrace, func() { s.expireSession(sessionID, st) })
}

// expireSession ends a session whose grace has passed and closes the relay
// sockets of its allocations; pion then deletes the allocations.
func (s *Server) expireSession(id string, st *session) {
	s.mu.Lock()
	if s.sessions[id] != st || !st.ended {
		s.mu.Unlock()
		return
	}
	delete(s.sessions, id)
	var relays []*relayConn
	for key := range st.allocs {
		if a := s.allocs[key]; a != nil && a.relay != nil {
			relays = append(relays, a.relay)
		}
	}
	s.mu.Unlock()
	for _, r := range relays {
		r.Close()
	}
	if len(relays) > 0 {
		s.log.Debug("session ended, allocations closed", "allocations", len(relays))
	}
}

// sessionLive reports whether the session is live or in its grace.
func (s *Server) sessionLive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sessions[id]
	return ok
}

// sessionActive reports whether the session is live and not in its grace:
// only such a session may create allocations.
func (s *Server) sessionActive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.sessions[id]
	return ok && !st.ended
}

// allocatedWith reports whether the client at key holds a live allocation
// made with username.
func (s *Server) allocatedWith(key, username string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.allocs[key]
	return ok && a.username == username
}

// UDPAddr returns the address the UDP sockets are bound to.
func (s *Server) UDPAddr() *net.UDPAddr {
	a := *s.udpAddr
	return &a
}

// TCPAddr returns the address the TCP listener is bound to.
func (s *Server) TCPAddr() *net.TCPAddr {
	a := *s.tcpAddr
	return &a
}

// PublicIP returns the address advertised in relay candidates.
func (s *Server) PublicIP() netip.Addr { return s.cfg.PublicIP }

// AllocationCount returns the number of live allocations.
func (s *Server) AllocationCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.allocs)
}

func (s *Server) activeAllocations() float64 { return float64(s.AllocationCount()) }

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops the relay: it closes the UDP sockets, the TCP listener, the
// StreamListeners and every connection and allocation, and waits for them
// to wind down. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for _, st := range s.sessions {
			if st.timer != nil {
				st.timer.Stop()
			}
		}
		s.mu.Unlock()
		close(s.stop)
		s.wg.Wait()

		if err := s.turn.Close(); err != nil {
			s.closeErr = fmt.Errorf("relay: closing sockets: %w", err)
		}
		// Relay sockets created concurrently with shutdown are not known to
		// pion's managers yet; close whatever is left.
		s.mu.Lock()
		var relays []*relayConn
		for _, r := range s.relays {
			relays = append(relays, r)
		}
		s.mu.Unlock()
		for _, r := range relays {
			r.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := s.track.wait(ctx); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("%w: %w", ErrCloseTimeout, err)
		}
		s.metrics.unregister()
		s.log.Info("relay stopped")
	})
	return s.closeErr
}

// maintain periodically sweeps the reply limiter and stale quota slots.
func (s *Server) maintain() {
	defer s.wg.Done()
	t := time.NewTicker(maintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.cfg.Now()
			s.replies.sweep(now)
			if n := s.quota.sweep(now.Add(-pendingSlotTTL)); n > 0 {
				s.metrics.allocFailed.WithLabelValues(failRelay).Add(float64(n))
			}
		}
	}
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

// screenChannelBind looks at a ChannelBind request before pion does. pion
// v4 neither range-checks the channel number nor caps channels, and its
// permission handler cannot tell a ChannelBind from a CreatePermission, so
// this is where those limits live. It returns handled=false to let pion
// process the request, or handled=true with an error response to send
// (nil to drop).
func (s *Server) screenChannelBind(src net.Addr, frame []byte) (reply []byte, handled bool) {
	m := &stun.Message{Raw: frame}
	if err := m.Decode(); err != nil {
		return nil, false
	}
	if m.Type != stun.NewType(stun.MethodChannelBind, stun.ClassRequest) {
		return nil, false
	}
	v, err := m.Get(stun.AttrChannelNumber)
	if err != nil || len(v) < 2 {
		return nil, false // pion answers 400
	}
	number := binary.BigEndian.Uint16(v)
	code := stun.ErrorCode(0)
	if number < 0x4000 || number > 0x7FFF {
		code = stun.CodeBadRequest
	} else {
		s.mu.Lock()
		if a := s.allocs[transportKey(src)]; a != nil && a.relay != nil {
			if n, bound := a.relay.pl.Channels(number); !bound && n >= s.cfg.MaxChannelsPerAllocation {
				code = stun.CodeInsufficientCapacity
			}
		}
		s.mu.Unlock()
		if code != 0 {
			s.metrics.quotaHits.WithLabelValues(quotaChannels).Inc()
		}
	}
	if code == 0 {
		return nil, false
	}
	resp, err := stun.Build(
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse),
		code,
	)
	if err != nil {
		return nil, true
	}
	return resp.Raw, true
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

// localRelay returns our open relay socket at ap, nil if ap is not one.
// Called with s.mu held.
func (s *Server) localRelay(ap netip.AddrPort) *plane.Relay {
	if s.cfg.NoLocalHandover || !ap.Addr().Is4() || ap.Addr().As4() != s.own4 {
		return nil
	}
	rc := s.relays[int(ap.Port())]
	if rc == nil || rc.pl.Closed() {
		return nil
	}
	return rc.pl
}

func (s *Server) onChannelDeleted(src, _ net.Addr, _, _, _ string, _, _ net.Addr, number uint16) {
	s.mu.Lock()
	if a := s.allocs[transportKey(src)]; a != nil && a.relay != nil {
		a.relay.pl.Unbind(number)
	}
	s.mu.Unlock()
}

// tracker counts things that must be gone before Close returns: socket
// read loops, stream connections and relay sockets.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; replaced when n leaves 0
}

func newTracker() *tracker {
	t := &tracker{idle: make(chan struct{})}
	close(t.idle)
	return t
}

func (t *tracker) add() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
}

func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
}

// wait blocks until the count is zero or ctx ends.
func (t *tracker) wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		n, idle := t.n, t.idle
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("%d still open: %w", n, ctx.Err())
		}
	}
}
