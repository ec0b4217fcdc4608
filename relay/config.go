package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ICEServer mirrors the browser's RTCIceServer dictionary.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Defaults applied by New to zero Config fields.
const (
	DefaultListenAddr             = ":3478"
	DefaultPortMin                = 49152
	DefaultPortMax                = 65535
	DefaultRealm                  = "strangers"
	DefaultCredentialTTL          = time.Hour
	DefaultSessionGrace           = 30 * time.Second
	DefaultSessionQuota           = 10
	DefaultTotalQuota             = 10000
	DefaultMaxPermissions         = 64
	DefaultMaxChannels            = 64
	DefaultTCPMaxConnsPerIP       = 16
	DefaultTCPFirstMessageTimeout = 10 * time.Second
	DefaultTCPIdleTimeout         = 5 * time.Minute
	maxUDPSockets                 = 64
)

// Config configures a Server. Zero values get the documented defaults in New.
type Config struct {
	// ListenAddr is where TURN/STUN is served, on UDP and TCP with the same
	// port number. Default ":3478". A zero port picks one free port for both
	// (tests). An empty host listens on all addresses.
	ListenAddr string
	// UDPSockets is the number of SO_REUSEPORT UDP sockets bound to
	// ListenAddr, each read by its own goroutine. Default runtime.NumCPU(),
	// at most 64. Forced to 1 where SO_REUSEPORT is unavailable.
	UDPSockets int
	// PublicIP is the IPv4 address advertised in relay candidates
	// (XOR-RELAYED-ADDRESS). Zero: the first non-loopback IPv4 address of the
	// host, else 127.0.0.1; the choice is logged.
	PublicIP netip.Addr
	// PublicHost is the host put in the URLs handed to browsers. Empty:
	// PublicIP.
	PublicHost string
	// BindIP is the IPv4 address relay sockets bind to. Zero: the host of
	// ListenAddr when it names one, else 0.0.0.0.
	BindIP netip.Addr
	// PortMin and PortMax bound the relay port range, inclusive. Default
	// 49152–65535.
	PortMin, PortMax int
	// Realm is the TURN realm. Default "strangers".
	Realm string
	// Secret is the shared TURN REST secret used to mint and check
	// credentials. Required.
	Secret []byte
	// CredentialTTL is the lifetime of minted credentials. Default 1h.
	// Expiry is checked when an allocation is created, not on its refreshes.
	CredentialTTL time.Duration
	// SessionGrace is how long a session's allocations keep working after
	// SessionEnded. Default 30s.
	SessionGrace time.Duration
	// SessionQuota caps live allocations per session. Default 10.
	SessionQuota int
	// TotalQuota caps live allocations in total. Default 10000.
	TotalQuota int
	// MaxPermissionsPerAllocation caps the distinct peer IPs one allocation
	// may hold permissions for. Default 64.
	MaxPermissionsPerAllocation int
	// MaxChannelsPerAllocation caps the channels one allocation may bind.
	// Default 64.
	MaxChannelsPerAllocation int
	// AllowPeers lifts the peer-policy deny for these ranges (tests use
	// 127.0.0.0/8). Default none.
	AllowPeers []netip.Prefix
	// TCPMaxConnsPerIP caps concurrent TURN-over-TCP connections per client
	// IP (IPv6: per /64) on each stream listener. Default 16.
	TCPMaxConnsPerIP int
	// TCPFirstMessageTimeout closes a stream connection that has not sent a
	// complete STUN message this long after it was accepted (for TLS
	// connections this includes the handshake). Default 10s.
	TCPFirstMessageTimeout time.Duration
	// TCPIdleTimeout closes a stream connection that has sent nothing for
	// this long. Default 5m.
	TCPIdleTimeout time.Duration
	// StreamListeners are extra stream listeners served as TURN-over-TCP with
	// the same hardening (e.g. TLS-terminated connections from the :443
	// demultiplexer). Close closes them. May be empty.
	StreamListeners []net.Listener
	// NoLocalHandover turns off the in-process handover of relay-to-relay
	// traffic: data a client sends over a channel to another relay address
	// of this server then goes through the kernel as a datagram between
	// the two relay sockets. For measurements; the handover is on by
	// default.
	NoLocalHandover bool
	// ExtraICEServers are appended to what ICEServers returns.
	ExtraICEServers []ICEServer
	// Now is the clock used for credential expiry and rate limiting.
	// Default time.Now.
	Now func() time.Time
	// Logger receives the relay's logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the relay's metrics. Default: a private registry.
	Registerer prometheus.Registerer

	// channelLifetime is the lifetime of a channel binding. Zero: pion's
	// default, 10 minutes (RFC 5766). Tests shorten it to see expiry.
	channelLifetime time.Duration
	// hostRefresh is how often the host's addresses are re-read. Zero:
	// hostRefreshInterval. Tests shorten it.
	hostRefresh time.Duration
}

// withDefaults validates cfg and returns a copy with defaults filled in.
// PublicIP is resolved later, once the listen address is known.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.hostRefresh <= 0 {
		cfg.hostRefresh = hostRefreshInterval
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultListenAddr
	}
	host, port, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return cfg, fmt.Errorf("%w: ListenAddr %q: %w", ErrConfig, cfg.ListenAddr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return cfg, fmt.Errorf("%w: ListenAddr %q: bad port", ErrConfig, cfg.ListenAddr)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return cfg, fmt.Errorf("%w: ListenAddr %q: host must be an IP address", ErrConfig, cfg.ListenAddr)
		}
	}
	if cfg.UDPSockets < 0 {
		return cfg, fmt.Errorf("%w: UDPSockets %d is negative", ErrConfig, cfg.UDPSockets)
	}
	if cfg.UDPSockets == 0 {
		cfg.UDPSockets = runtime.NumCPU()
	}
	cfg.UDPSockets = min(cfg.UDPSockets, maxUDPSockets)
	if !reusePortSupported {
		cfg.UDPSockets = 1
	}

	if cfg.PublicIP.IsValid() {
		cfg.PublicIP = cfg.PublicIP.Unmap()
		if !cfg.PublicIP.Is4() || cfg.PublicIP.IsUnspecified() {
			return cfg, fmt.Errorf("%w: PublicIP %s must be a specific IPv4 address", ErrConfig, cfg.PublicIP)
		}
	}
	if !cfg.BindIP.IsValid() {
		cfg.BindIP = netip.IPv4Unspecified()
		if a, err := netip.ParseAddr(host); err == nil && a.Unmap().Is4() && !a.IsUnspecified() {
			cfg.BindIP = a.Unmap()
		}
	}
	cfg.BindIP = cfg.BindIP.Unmap()
	if !cfg.BindIP.Is4() {
		return cfg, fmt.Errorf("%w: BindIP %s must be IPv4 (relays are IPv4)", ErrConfig, cfg.BindIP)
	}
	if cfg.PublicHost != "" {
		if err := validHost(cfg.PublicHost); err != nil {
			return cfg, fmt.Errorf("%w: PublicHost %q: %w", ErrConfig, cfg.PublicHost, err)
		}
	}

	if cfg.PortMin == 0 {
		cfg.PortMin = DefaultPortMin
	}
	if cfg.PortMax == 0 {
		cfg.PortMax = DefaultPortMax
	}
	if cfg.PortMin < 1 || cfg.PortMax > 65535 || cfg.PortMin > cfg.PortMax {
		return cfg, fmt.Errorf("%w: relay port range %d-%d (need 1 <= PortMin <= PortMax <= 65535)",
			ErrConfig, cfg.PortMin, cfg.PortMax)
	}

	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if len(cfg.Realm) > 127 {
		return cfg, fmt.Errorf("%w: Realm longer than 127 bytes", ErrConfig)
	}
	if len(cfg.Secret) == 0 {
		return cfg, ErrNoSecret
	}
	cfg.Secret = append([]byte(nil), cfg.Secret...)

	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"CredentialTTL", &cfg.CredentialTTL, DefaultCredentialTTL},
		{"SessionGrace", &cfg.SessionGrace, DefaultSessionGrace},
		{"TCPFirstMessageTimeout", &cfg.TCPFirstMessageTimeout, DefaultTCPFirstMessageTimeout},
		{"TCPIdleTimeout", &cfg.TCPIdleTimeout, DefaultTCPIdleTimeout},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return cfg, fmt.Errorf("%w: %s %s is negative", ErrConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}

	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"SessionQuota", &cfg.SessionQuota, DefaultSessionQuota},
		{"TotalQuota", &cfg.TotalQuota, DefaultTotalQuota},
		{"MaxPermissionsPerAllocation", &cfg.MaxPermissionsPerAllocation, DefaultMaxPermissions},
		{"MaxChannelsPerAllocation", &cfg.MaxChannelsPerAllocation, DefaultMaxChannels},
		{"TCPMaxConnsPerIP", &cfg.TCPMaxConnsPerIP, DefaultTCPMaxConnsPerIP},
	}
	for _, n := range ints {
		if *n.v < 0 {
			return cfg, fmt.Errorf("%w: %s %d is negative", ErrConfig, n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}

	allow := make([]netip.Prefix, 0, len(cfg.AllowPeers))
	for _, p := range cfg.AllowPeers {
		if !p.IsValid() {
			return cfg, fmt.Errorf("%w: AllowPeers contains an invalid prefix", ErrConfig)
		}
		allow = append(allow, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
	}
	cfg.AllowPeers = allow

	for i, l := range cfg.StreamListeners {
		if l == nil {
			return cfg, fmt.Errorf("%w: StreamListeners[%d] is nil", ErrConfig, i)
		}
	}
	extra := make([]ICEServer, 0, len(cfg.ExtraICEServers))
	for i, srv := range cfg.ExtraICEServers {
		if err := srv.validate(); err != nil {
			return cfg, fmt.Errorf("%w: ExtraICEServers[%d]: %w", ErrConfig, i, err)
		}
		extra = append(extra, srv.clone())
	}
	cfg.ExtraICEServers = extra

	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}

	return cfg, nil
}

// ParseAllowPeers parses a comma-separated list of CIDR prefixes or single
// addresses (the STRANGERS_RELAY_ALLOW_PEERS format) for Config.AllowPeers.
// Prefixes must have no host bits set; IPv4-mapped prefixes are unmapped.
// An empty string yields an empty list.
func ParseAllowPeers(list string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	if strings.TrimSpace(list) == "" {
		return out, nil
	}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, fmt.Errorf("%w: allowed peers: %w", ErrConfig, err)
			}
			if p != p.Masked() {
				return nil, fmt.Errorf("%w: allowed peers: %q has host bits set (did you mean %s?)",
					ErrConfig, item, p.Masked())
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("%w: allowed peers: %q is neither a CIDR prefix nor an address", ErrConfig, item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
	}

	return out, nil
}

// unmappedBits returns the prefix length of p after unmapping an
// IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104 becomes 10.0.0.0/8).
func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}

	return p.Bits()
}

func (srv ICEServer) clone() ICEServer {
	srv.URLs = append([]string(nil), srv.URLs...)

	return srv
}
