package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strangers-chat/strangers/internal/tlsmux"
	"github.com/strangers-chat/strangers/moderation"
	"github.com/strangers-chat/strangers/relay"
	"github.com/strangers-chat/strangers/signaling"
	"github.com/strangers-chat/strangers/web"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const (
	// readHeaderTimeout bounds how long a client may take to send its
	// request headers (slowloris).
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections that stay quiet.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes bounds request headers.
	maxHeaderBytes = 64 << 10
)

// run starts the server and blocks until ctx is cancelled, then shuts down
// within the configured grace period. Configuration comes from getenv; logs
// go to stdout. Names of variables for the unknown-variable warning come
// from the process environment, their values only from getenv.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, warnings, err := loadConfig(getenv, environNames(getenv))
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stdout)
	redisClientLog.Store(logger)
	for _, w := range warnings {
		logger.Warn(w)
	}
	a, err := start(cfg, logger, getenv)
	if err != nil {
		return err
	}
	return a.wait(ctx)
}

// app is one running server: its listeners and components. start fills it
// in and wait uses it, on run's goroutine; only ready (read by the probes
// and the serving goroutines) and served (where each serving goroutine
// reports) are shared.
type app struct {
	cfg   settings
	log   *slog.Logger
	ready atomic.Bool

	relay *relay.Server // nil when the embedded relay is off
	hub   *signaling.Hub
	mod   *modState
	admin net.Addr // nil when the admin listener is off

	servers []*http.Server
	mux     *tlsmux.Mux // nil without TLS
	muxStop context.CancelFunc
	served  chan error // one value per serving goroutine
	serving int
}

// start opens every listener and starts every component. On error it
// closes what it had opened.
func start(cfg settings, logger *slog.Logger, getenv func(string) string) (_ *app, err error) {
	a := &app{cfg: cfg, log: logger, served: make(chan error, 5)}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "strangers_build_info",
			Help:        "Always 1; the version label says which build is running.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)

	tlsSet, err := newTLSSetup(cfg, logger.With("component", "tls"))
	if err != nil {
		return nil, err
	}

	// Listeners first: a busy port fails before anything else starts.
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("http: listen %s: %w", cfg.HTTPAddr, err)
	}
	closers = append(closers, func() { httpLn.Close() })
	tlsPort := 0
	if tlsSet.config != nil {
		tlsLn, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			return nil, fmt.Errorf("tls: listen %s: %w", cfg.TLSAddr, err)
		}
		closers = append(closers, func() { tlsLn.Close() })
		tlsPort = tlsLn.Addr().(*net.TCPAddr).Port
		a.mux = tlsmux.New(tlsLn, tlsSet.config, tlsmux.DefaultLimits, logger.With("component", "tls"))
		reg.MustRegister(muxRefusals(a.mux)...)
	}
	var adminLn net.Listener
	if cfg.adminToken != "" {
		adminLn, err = net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return nil, fmt.Errorf("admin: listen %s: %w", cfg.AdminAddr, err)
		}
		closers = append(closers, func() { adminLn.Close() })
		a.admin = adminLn.Addr()
	}

	a.mod, err = openModeration(cfg, getenv, logger, reg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { a.mod.close() })

	publicHost := cfg.PublicHost
	if publicHost == "" {
		publicHost = tlsSet.host
	}
	extraICE := cfg.extraICE
	var ice signaling.ICEProvider = staticICE(toSignaling(extraICE))
	var sessions signaling.SessionObserver
	if cfg.TURNEnabled {
		if cfg.secretRandom {
			logger.Warn("STRANGERS_TURN_SECRET is unset: using a random secret, so a restart invalidates live TURN credentials and several instances cannot share credentials")
		}
		rcfg := relayConfig(cfg)
		rcfg.PublicHost = publicHost
		rcfg.Logger = logger // the relay names itself (component=relay)
		rcfg.Registerer = reg
		if a.mux != nil {
			rcfg.StreamListeners = []net.Listener{a.mux.TURN()}
			rcfg.TLSPort = tlsPort
		}
		a.relay, err = relay.New(rcfg)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { a.relay.Close() })
		ice, sessions = relayICE{r: a.relay}, a.relay
	}

	scfg := signalingConfig(cfg)
	scfg.ICE, scfg.Sessions = ice, sessions
	scfg.Moderator, scfg.IdentityKey = a.mod.svc, a.mod.key
	scfg.Logger = logger // the hub names itself (component=signaling)
	scfg.Registerer = reg
	if cfg.redisURL != "" {
		// Shared with the other nodes; the hub owns it from New on and
		// closes it in Shutdown (draining this node's sessions to them).
		scfg.RecentPartners = recentPartners
		scfg.Engine, err = newSharedEngine(cfg, logger, reg)
		if err != nil {
			return nil, err
		}
	}
	a.hub, err = signaling.New(scfg)
	if err != nil {
		if scfg.Engine != nil {
			_ = scfg.Engine.Close(false) // the hub did not take it, or could not start it
		}
		return nil, err
	}
	a.mod.enforceOn(a.hub)

	// From here on nothing fails: serve.
	mux := http.NewServeMux()
	mux.Handle("GET /", web.Handler())
	mux.Handle("GET /ws", a.hub)
	mux.Handle("GET /rules", web.Rules(cfg.RulesFile))
	a.handleProbes(mux, reg)
	httpLog := logger.With("component", "http")
	newServer := func(h http.Handler) *http.Server {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(httpLog.Handler(), slog.LevelDebug),
		}
		a.servers = append(a.servers, srv)
		return srv
	}
	if adminLn != nil {
		// Built before serving anything: it fails only for a missing part.
		h, err := moderation.NewAdmin(moderation.AdminConfig{Service: a.mod.svc, Hub: a.hub, Token: cfg.adminToken, Logger: logger})
		if err != nil {
			_ = a.hub.Shutdown(context.Background()) // nothing was served yet
			return nil, err
		}
		a.serve(newServer(h), adminLn)
	}
	if a.mux == nil {
		a.serve(newServer(mux), httpLn)
	} else {
		// The plain HTTP port answers probes and ACME HTTP-01 challenges
		// and sends everything else to HTTPS.
		plain := http.NewServeMux()
		rest := redirectToHTTPS(publicHost, tlsPort)
		if tlsSet.acme != nil {
			rest = withoutPort(tlsSet.acme.HTTPHandler(rest))
		}
		plain.Handle("/", rest)
		a.handleProbes(plain, reg)
		a.serve(newServer(plain), httpLn)
		a.serve(newServer(mux), a.mux.HTTP())

		muxCtx, muxStop := context.WithCancel(context.Background())
		a.muxStop = muxStop
		a.serving++
		go func() { a.served <- a.mux.Serve(muxCtx) }()
	}

	a.ready.Store(true)
	a.logSummary(httpLn.Addr(), tlsSet, publicHost)
	return a, nil
}

// serve runs srv on ln in a goroutine that reports to a.served.
func (a *app) serve(srv *http.Server, ln net.Listener) {
	a.serving++
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) && !a.ready.Load() {
			// Shut down: by the server, or by the TLS demultiplexer
			// closing the listener it feeds.
			err = nil
		} else if err != nil {
			err = fmt.Errorf("http: serve %s: %w", ln.Addr(), err)
		}
		a.served <- err
	}()
}

func (a *app) handleProbes(mux *http.ServeMux, reg *prometheus.Registry) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !a.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready\n")
			return
		}
		if !a.hub.Ready() {
			// Calls go on; new finds get an unavailable error until the
			// shared matchmaker's backend (Redis) is back.
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready: matchmaking backend unavailable\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}

// withoutPort strips the port from the Host header, so that the ACME
// host policy judges the name alone when the plain HTTP port is not 80.
func withoutPort(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.Host); err == nil {
			r = r.Clone(r.Context())
			r.Host = host
		}
		h.ServeHTTP(w, r)
	})
}

// logSummary logs, once, what the server listens on and what it
// advertises, and warns about risky settings.
func (a *app) logSummary(httpAddr net.Addr, tlsSet tlsSetup, publicHost string) {
	attrs := []any{"version", version, "http", httpAddr.String()}
	if a.mux != nil {
		mode := "files"
		if tlsSet.acme != nil {
			mode = "acme"
			attrs = append(attrs, "acme_domains", strings.Join(a.cfg.ACMEDomains, ","))
		}
		attrs = append(attrs, "tls", a.mux.Addr().String(), "tls_mode", mode)
	}
	if a.relay != nil {
		attrs = append(attrs,
			"turn_udp", a.relay.UDPAddr().String(),
			"turn_tcp", a.relay.TCPAddr().String(),
			"public_ip", a.relay.PublicIP().String(),
			"relay_ports", strconv.Itoa(a.cfg.RelayPortMin)+"-"+strconv.Itoa(a.cfg.RelayPortMax))
	} else {
		attrs = append(attrs, "turn", "disabled")
	}
	if publicHost != "" {
		attrs = append(attrs, "public_host", publicHost)
	}
	if a.admin != nil {
		attrs = append(attrs, "admin", a.admin.String())
	}
	if a.cfg.redisURL != "" {
		attrs = append(attrs, "engine", "redis", "redis", a.cfg.redisHost, "node", a.cfg.nodeID) // never the URL: it holds the password
	} else {
		attrs = append(attrs, "engine", "memory")
	}
	if a.mod.dir != "" {
		attrs = append(attrs, "moderation_store", "bolt", "state_dir", a.mod.dir)
	} else {
		attrs = append(attrs, "moderation_store", "redis") // shared by every node
	}
	a.log.Info("listening", attrs...)
	if a.admin == nil {
		a.log.Info("admin API off: STRANGERS_ADMIN_TOKEN_FILE is not set")
	}

	if a.relay != nil {
		if ports := a.cfg.RelayPortMax - a.cfg.RelayPortMin + 1; ports < a.cfg.TURNTotalQuota {
			a.log.Warn("the relay port range is smaller than the allocation quota: allocations beyond it fail",
				"relay_ports", ports, "total_quota", a.cfg.TURNTotalQuota)
		}
		for _, p := range a.cfg.allowPeers {
			if coversPrivate(p) {
				a.log.Warn("STRANGERS_RELAY_ALLOW_PEERS lets the relay reach private or local addresses; only do this in tests or closed networks", "cidr", p.String())
			}
		}
	}
}

// coversPrivate reports whether p overlaps loopback, private, link-local
// or unique-local ranges.
func coversPrivate(p netip.Prefix) bool {
	for _, s := range []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10"} {
		if p.Overlaps(netip.MustParsePrefix(s)) {
			return true
		}
	}
	return false
}

// wait serves until ctx ends or a server fails, then shuts down: not ready,
// stop accepting, tell WebSocket clients, drain within the grace period,
// close the relay.
func (a *app) wait(ctx context.Context) error {
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-a.served:
		a.serving--
	}
	a.ready.Store(false)
	// With a shared engine the hub's Shutdown drains: it tells its clients
	// to reconnect, and they resume their sessions on other nodes.
	a.log.Info("shutting down", "grace", a.cfg.ShutdownGrace, "drain", a.cfg.redisURL != "")
	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownGrace)
	defer cancel()

	var wg sync.WaitGroup
	for _, srv := range a.servers {
		wg.Go(func() {
			if err := srv.Shutdown(graceCtx); err != nil {
				a.log.Warn("grace period over; closing remaining HTTP connections", "err", err)
				srv.Close()
			}
		})
	}
	wg.Go(func() {
		if err := a.hub.Shutdown(graceCtx); err != nil {
			a.log.Warn("grace period over; WebSocket connections cut", "err", err)
		}
	})
	if a.muxStop != nil {
		// Stop accepting on the TLS port now, as the HTTP servers do; the
		// connections it already handed on drain with their servers.
		a.muxStop()
	}
	wg.Wait()
	for ; a.serving > 0; a.serving-- {
		if err := <-a.served; err != nil && serveErr == nil {
			serveErr = err
		}
	}
	if a.relay != nil {
		if err := a.relay.Close(); err != nil {
			a.log.Warn("closing the relay", "err", err)
		}
	}
	if err := a.mod.close(); err != nil {
		a.log.Warn("closing the moderation store", "err", err)
	}
	if serveErr != nil {
		return serveErr
	}
	a.log.Info("stopped")
	return nil
}

// advertisedIP is STRANGERS_PUBLIC_IP, else the TURN address's host when
// it names an IPv4 address (a relay listening on one address is reachable
// only there; relay addresses are IPv4), else zero: the relay detects one.
func advertisedIP(cfg settings) netip.Addr {
	if cfg.publicIP.IsValid() {
		return cfg.publicIP
	}
	host, _, _ := net.SplitHostPort(cfg.TURNAddr)
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() && ip.Unmap().Is4() {
		return ip.Unmap()
	}
	return netip.Addr{}
}

// relayICE hands signaling the relay's ICE servers (with TURN over TLS on
// the shared TLS port when there is one: relay.Config.TLSPort).
type relayICE struct {
	r *relay.Server
}

func (p relayICE) ICEServers(sessionID string) ([]signaling.ICEServer, error) {
	servers, err := p.r.ICEServers(sessionID)
	if err != nil {
		return nil, err
	}
	return toSignaling(servers), nil
}

// staticICE hands out a fixed list (STRANGERS_ICE_SERVERS) when the
// embedded relay is off.
type staticICE []signaling.ICEServer

func (s staticICE) ICEServers(string) ([]signaling.ICEServer, error) { return s, nil }

func toSignaling(in []relay.ICEServer) []signaling.ICEServer {
	out := make([]signaling.ICEServer, len(in))
	for i, s := range in {
		out[i] = signaling.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential}
	}
	return out
}

// environNames lists the STRANGERS_* names set in the process environment
// that getenv also sees, so that an injected getenv decides what counts.
func environNames(getenv func(string) string) []string {
	var names []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "STRANGERS_") && getenv(name) != "" {
			names = append(names, name)
		}
	}
	return names
}

func newLogger(cfg settings, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel) // validated
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}
