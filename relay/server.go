package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
// URLs over UDP and TCP (and TLS, with Config.TLSPort) with fresh
// credentials for sessionID, then ExtraICEServers.
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
	urls := []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
	if s.cfg.TLSPort != 0 {
		urls = append(urls, "turns:"+urlHost(host)+":"+strconv.Itoa(s.cfg.TLSPort)+"?transport=tcp")
	}
	out := make([]ICEServer, 0, 2+len(s.cfg.ExtraICEServers))
	out = append(out,
		ICEServer{URLs: []string{"stun:" + hp}},
		ICEServer{URLs: urls, Username: user, Credential: pass})
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
