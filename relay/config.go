package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
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
	DefaultIPQuota                = 128
	DefaultTotalQuota             = 10000
	DefaultMaxPermissions         = 64
	DefaultMaxChannels            = 64
	DefaultTCPMaxConnsPerIP       = 16
	DefaultTCPFirstMessageTimeout = 10 * time.Second
	DefaultTCPIdleTimeout         = 5 * time.Minute
	DefaultMaxBitrate             = 5_000_000
	maxUDPSockets                 = 64
)

// Config configures a Server. Zero values get the documented defaults in New.
// Validate states the rules every field must follow.
type Config struct {
	// ListenAddr is where TURN/STUN is served, on UDP and TCP with the same
	// port number. Default ":3478". A zero port picks one free port for both
	// (tests). An empty host listens on all addresses.
	ListenAddr string
	// UDPSockets is the number of SO_REUSEPORT UDP sockets bound to
	// ListenAddr, each read by its own goroutine, at most 64. Default
	// runtime.NumCPU() (up to 64). Forced to 1 where SO_REUSEPORT is
	// unavailable.
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
	// Realm is the TURN realm, at most MaxRealmLen (20) bytes. Default "strangers".
	Realm string
	// Secret is the shared TURN REST secret used to mint and check
	// credentials. Required, at least 16 bytes (MinSecretLen).
	Secret []byte
	// OldSecrets are earlier secrets: credentials made with them are still
	// accepted until they expire, so the secret can be rotated without
	// cutting calls. Nothing is minted with them. May be empty.
	OldSecrets [][]byte
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
	// IPQuota caps live allocations per client address: per IPv4 address,
	// per IPv6 /64. Default 128: a browser in a call holds one or two
	// allocations per transport (UDP and TCP, more with several network
	// interfaces), so a household uses a handful and an office or school
	// NAT with thirty people in calls at once about a hundred, while one
	// address can hold no more than about 1% of the default TotalQuota.
	IPQuota int
	// MaxPermissionsPerAllocation caps the distinct peer IPs one allocation
	// may hold permissions for. Default 64.
	MaxPermissionsPerAllocation int
	// MaxChannelsPerAllocation caps the channels one allocation may bind,
	// at most 16384 (every channel number TURN has). Default 64.
	MaxChannelsPerAllocation int
	// AllowPeers lifts the peer-policy deny for these ranges (tests use
	// 127.0.0.0/8). Default none.
	AllowPeers []netip.Prefix
	// TCPMaxConnsPerIP caps concurrent TURN-over-TCP connections per client
	// IP (IPv6: per /64) on each stream listener. Default 16.
	TCPMaxConnsPerIP int
	// TCPFirstMessageTimeout closes a stream connection that has not sent a
	// complete STUN message this long after it was accepted (including a
	// TLS handshake the connection has not done yet). Default 10s.
	TCPFirstMessageTimeout time.Duration
	// TCPIdleTimeout closes a stream connection that has sent nothing for
	// this long. Default 5m.
	TCPIdleTimeout time.Duration
	// TLSPort is the port on which browsers reach TURN over TLS, when one
	// of StreamListeners carries it (the shared TLS port, whose TLS
	// connections the demultiplexer hands on). Set, ICEServers adds
	// turns:<PublicHost>:<TLSPort>?transport=tcp to our TURN URLs;
	// browsers check the certificate against that host, so PublicHost
	// should be the certificate's name. Zero: no turns: URL.
	TLSPort int
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
	// MaxBitrate caps what one allocation relays in each direction
	// (client to peers, peers to client), in bits per second of payload;
	// datagrams over it are dropped (a second's worth, at least 64 KiB,
	// may pass in a burst). Zero: DefaultMaxBitrate, 5 Mbit/s, about twice
	// what a browser sends for a 720p call with audio (video at most
	// 2.5 Mbit/s). Negative: no cap.
	MaxBitrate int64
	// NoFastPath sends every datagram through pion: the relay's own data
	// path (ChannelData relayed by the socket wrappers, the in-process
	// handover) is off. Permissions and MaxBitrate apply either way. For
	// comparisons and as a fallback; the fast path is on by default.
	NoFastPath bool
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
	// permissionLifetime, when set, makes admission treat a permission as
	// lapsed this long after pion created it, whatever pion does; pion's
	// own lifetime (5 minutes, refreshed without telling us) is a
	// constant. Tests that do not refresh permissions set it to see expiry.
	permissionLifetime time.Duration
	// replyBurst and replyRate size the buckets of responses to
	// unauthenticated requests (see reply.go). Zero: replyBurst and
	// replyRate. Tests that are not about them, with every client on
	// 127.0.0.1, raise them.
	replyBurst, replyRate float64
	// hostRefresh is how often the host's addresses are re-read. Zero:
	// hostRefreshInterval. Tests shorten it.
	hostRefresh time.Duration
}

// withDefaults validates cfg (see Validate) and returns a copy with
// defaults filled in. PublicIP is resolved later, once the listen address
// is known.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.hostRefresh <= 0 {
		cfg.hostRefresh = hostRefreshInterval
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	cfg = cfg.defaulted()
	if cfg.UDPSockets == 0 {
		cfg.UDPSockets = min(runtime.NumCPU(), maxUDPSockets)
	}
	if !sockio.ReusePort {
		cfg.UDPSockets = 1
	}
	cfg.PublicIP = cfg.PublicIP.Unmap()
	if !cfg.BindIP.IsValid() {
		cfg.BindIP = netip.IPv4Unspecified()
		host, _, _ := net.SplitHostPort(cfg.ListenAddr) // checked by Validate
		if a, err := netip.ParseAddr(host); err == nil && a.Unmap().Is4() && !a.IsUnspecified() {
			cfg.BindIP = a.Unmap()
		}
	}
	cfg.BindIP = cfg.BindIP.Unmap()
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	old := make([][]byte, 0, len(cfg.OldSecrets))
	for _, sec := range cfg.OldSecrets {
		old = append(old, append([]byte(nil), sec...))
	}
	cfg.OldSecrets = old

	allow := make([]netip.Prefix, 0, len(cfg.AllowPeers))
	for _, p := range cfg.AllowPeers {
		allow = append(allow, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
	}
	cfg.AllowPeers = allow

	extra := make([]ICEServer, 0, len(cfg.ExtraICEServers))
	for _, srv := range cfg.ExtraICEServers {
		extra = append(extra, srv.clone())
	}
	cfg.ExtraICEServers = extra

	if cfg.replyBurst <= 0 {
		cfg.replyBurst = replyBurst
	}
	if cfg.replyRate <= 0 {
		cfg.replyRate = replyRate
	}
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
