package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/strangers-chat/strangers/relay"
	"github.com/strangers-chat/strangers/web"
)

// config is every setting of the server. Each field is one STRANGERS_*
// environment variable: `env` names it, `envDefault` gives its default and
// `help` says what it means. `sets` names the library Config field it
// sets, whose rules apply to it (see rules.go); `bounds` and `unit` state
// its range. `strangers -h`, the README table and deploy/example.env are
// all derived from (or checked against) these tags. A `secret` tag keeps
// the value out of every message.
type config struct {
	// Core.
	HTTPAddr       string        `env:"STRANGERS_HTTP_ADDR" envDefault:":8080" help:"Address the page, /ws, /healthz, /readyz and /metrics listen on."`
	PublicIP       string        `env:"STRANGERS_PUBLIC_IP" sets:"relay.PublicIP" help:"Public IPv4 address advertised to browsers in relay candidates (set it on 1:1 NAT cloud VMs). Empty: the IPv4 address STRANGERS_TURN_ADDR names, else the first non-loopback IPv4 address, else 127.0.0.1."`
	PublicHost     string        `env:"STRANGERS_PUBLIC_HOST" sets:"relay.PublicHost" help:"Host name used in the ICE server URLs handed to browsers. Empty: the public IP."`
	AllowedOrigins []string      `env:"STRANGERS_ALLOWED_ORIGINS" envSeparator:"," sets:"signaling.AllowedOrigins" help:"Comma-separated origins allowed to open /ws (e.g. https://chat.example.com), or * for any. Empty: the same host as the request."`
	TrustedProxies []string      `env:"STRANGERS_TRUSTED_PROXIES" envSeparator:"," sets:"signaling.TrustedProxies" help:"Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed for per-IP limits. Empty: the TCP peer address is the client."`
	LogLevel       string        `env:"STRANGERS_LOG_LEVEL" envDefault:"info" help:"Log level: debug, info, warn or error."`
	LogFormat      string        `env:"STRANGERS_LOG_FORMAT" envDefault:"text" help:"Log format: text or json."`
	ShutdownGrace  time.Duration `env:"STRANGERS_SHUTDOWN_GRACE" envDefault:"10s" bounds:">0" help:"How long connections get to drain after SIGINT/SIGTERM before they are cut."`

	// TLS: HTTPS, WebSocket and TURN over TLS on one port.
	TLSAddr       string   `env:"STRANGERS_TLS_ADDR" envDefault:":443" help:"Address of the shared TLS port serving the page, /ws and TURN over TLS. Used only when TLS is configured (certificate files or ACME domains)."`
	TLSCertFile   string   `env:"STRANGERS_TLS_CERT_FILE" help:"PEM certificate chain for HTTPS and TURN over TLS, reloaded when the file changes. Goes with STRANGERS_TLS_KEY_FILE."`
	TLSKeyFile    string   `env:"STRANGERS_TLS_KEY_FILE" help:"PEM private key of STRANGERS_TLS_CERT_FILE."`
	ACMEDomains   []string `env:"STRANGERS_ACME_DOMAINS" envSeparator:"," help:"Comma-separated domains to get certificates for automatically over ACME (TLS-ALPN-01 on the TLS port, HTTP-01 on port 80), instead of certificate files."`
	ACMEEmail     string   `env:"STRANGERS_ACME_EMAIL" help:"Contact email for the ACME account (the CA's expiry notices)."`
	ACMECache     string   `env:"STRANGERS_ACME_CACHE" envDefault:"/var/lib/strangers/acme" help:"Directory where the ACME account key and certificates are kept across restarts."`
	ACMEDirectory string   `env:"STRANGERS_ACME_DIRECTORY" envDefault:"https://acme-v02.api.letsencrypt.org/directory" help:"ACME directory URL (Let's Encrypt by default)."`
	ACMECAFile    string   `env:"STRANGERS_ACME_CA_FILE" help:"PEM roots trusted when talking to the ACME directory, for a private ACME server. Empty: the system roots."`

	// Signaling.
	InterestWait       time.Duration `env:"STRANGERS_INTEREST_WAIT" envDefault:"5s" sets:"signaling.InterestWait" bounds:">0" help:"How long a waiting user is matched on shared interests only, and kept from its last few partners, before anyone in the same mode will do (a recent partner only if nobody else is waiting; a reported one never)."`
	ResumeGrace        time.Duration `env:"STRANGERS_RESUME_GRACE" envDefault:"15s" sets:"signaling.ResumeGrace" bounds:">0" help:"How long a dropped WebSocket may reconnect and get its session and match back before the partner is told."`
	WSMaxMessage       int64         `env:"STRANGERS_WS_MAX_MESSAGE" envDefault:"65536" sets:"signaling.MaxMessageSize" bounds:"4096..262144" unit:"bytes" help:"Largest WebSocket message in bytes; a larger one closes the connection (1009)."`
	WSRate             float64       `env:"STRANGERS_WS_RATE" envDefault:"20" sets:"signaling.RateLimit" bounds:">0" help:"Messages per second a connection may send on average (token bucket refill)."`
	WSBurst            int           `env:"STRANGERS_WS_BURST" envDefault:"60" sets:"signaling.RateBurst" bounds:">=10" help:"Messages a connection may send in a burst (ICE candidates come in bursts)."`
	WSMaxPerIP         int           `env:"STRANGERS_WS_MAX_PER_IP" envDefault:"32" sets:"signaling.MaxConnsPerIP" bounds:">=1" help:"Concurrent WebSocket connections allowed from one IP address (IPv6: one /64)."`
	WSHelloTimeout     time.Duration `env:"STRANGERS_WS_HELLO_TIMEOUT" envDefault:"10s" sets:"signaling.HelloTimeout" bounds:">0" help:"How long a new connection has to send hello."`
	WSPingInterval     time.Duration `env:"STRANGERS_WS_PING_INTERVAL" envDefault:"20s" sets:"signaling.PingInterval" bounds:">=100ms" help:"How often the server pings each connection (shorter than STRANGERS_WS_PONG_WAIT)."`
	WSPongWait         time.Duration `env:"STRANGERS_WS_PONG_WAIT" envDefault:"30s" sets:"signaling.PongWait" help:"How long a connection may stay silent (no pong or message) before it is closed (longer than STRANGERS_WS_PING_INTERVAL)."`
	WSWriteTimeout     time.Duration `env:"STRANGERS_WS_WRITE_TIMEOUT" envDefault:"10s" sets:"signaling.WriteWait" bounds:">0" help:"Deadline for each write to a connection."`
	WSSendQueue        int           `env:"STRANGERS_WS_SEND_QUEUE" envDefault:"256" sets:"signaling.SendQueue" bounds:">=1" help:"Messages queued for one connection before it counts as a slow reader and is disconnected."`
	StatsInterval      time.Duration `env:"STRANGERS_STATS_INTERVAL" envDefault:"5s" sets:"signaling.StatsInterval" bounds:">=100ms" help:"Shortest interval between stats pushes (online and waiting counts); sent only when they change."`
	TURNEnabled        bool          `env:"STRANGERS_TURN_ENABLED" envDefault:"true" help:"Run the embedded TURN/STUN relay. false: hand out only STRANGERS_ICE_SERVERS."`
	TURNAddr           string        `env:"STRANGERS_TURN_ADDR" envDefault:":3478" sets:"relay.ListenAddr" help:"Address the relay listens on for TURN and STUN, UDP and TCP on the same port: an IP address (or none, for all) and a port."`
	TURNUDPSockets     int           `env:"STRANGERS_TURN_UDP_SOCKETS" sets:"relay.UDPSockets" bounds:"0..64" help:"UDP sockets (SO_REUSEPORT) on the TURN address, each read by its own goroutine. 0: one per CPU."`
	RelayBindIP        string        `env:"STRANGERS_RELAY_BIND_IP" sets:"relay.BindIP" help:"IPv4 address relay sockets bind to. Empty: all addresses (0.0.0.0)."`
	RelayPortMin       int           `env:"STRANGERS_RELAY_PORT_MIN" envDefault:"49152" sets:"relay.PortMin" bounds:"1..65535" help:"Lowest UDP port of the relay range (not above STRANGERS_RELAY_PORT_MAX)."`
	RelayPortMax       int           `env:"STRANGERS_RELAY_PORT_MAX" envDefault:"65535" sets:"relay.PortMax" bounds:"1..65535" help:"Highest UDP port of the relay range."`
	RelayAllowPeers    []string      `env:"STRANGERS_RELAY_ALLOW_PEERS" envSeparator:"," sets:"relay.AllowPeers" help:"Comma-separated CIDRs the relay may send to although they are private or reserved (by default only public unicast addresses and our own relay address are allowed, and addresses of this host only on our own relay ports; an address listed here is open on every port)."`
	TURNSecret         string        `env:"STRANGERS_TURN_SECRET" secret:"true" sets:"relay.Secret" bounds:">=16" unit:"bytes" help:"Shared secret for TURN credentials (TURN REST scheme, coturn's static-auth-secret). Empty: random at start, so restarts invalidate live credentials; several instances need one shared secret."`
	TURNSecretFile     string        `env:"STRANGERS_TURN_SECRET_FILE,file" secret:"true" sets:"relay.Secret" help:"Path of a file holding the TURN secret (Docker and systemd secrets); instead of STRANGERS_TURN_SECRET. The secret in it must be at least 16 bytes."`
	TURNOldSecrets     string        `env:"STRANGERS_TURN_OLD_SECRETS" secret:"true" sets:"relay.OldSecrets" help:"Comma-separated earlier TURN secrets: credentials made with them are still accepted until they expire, so the secret can be rotated without cutting calls (new credentials use STRANGERS_TURN_SECRET). Each must be at least 16 bytes."`
	TURNOldSecretsFile string        `env:"STRANGERS_TURN_OLD_SECRETS_FILE,file" secret:"true" sets:"relay.OldSecrets" help:"Path of a file holding the old TURN secrets, separated by commas or newlines; instead of STRANGERS_TURN_OLD_SECRETS."`
	TURNRealm          string        `env:"STRANGERS_TURN_REALM" envDefault:"strangers" sets:"relay.Realm" bounds:"<=20" unit:"bytes" help:"TURN realm (the 401 challenge must stay within three times the smallest Allocate)."`
	TURNCredentialTTL  time.Duration `env:"STRANGERS_TURN_CREDENTIAL_TTL" envDefault:"1h" sets:"relay.CredentialTTL" bounds:">0" help:"Lifetime of the TURN credentials handed out with each match (checked when an allocation is created; a call may outlast it)."`
	TURNSessionQuota   int           `env:"STRANGERS_TURN_SESSION_QUOTA" envDefault:"10" sets:"relay.SessionQuota" bounds:">=1" help:"Relay allocations one session's credential may hold at once."`
	TURNIPQuota        int           `env:"STRANGERS_TURN_IP_QUOTA" envDefault:"128" sets:"relay.IPQuota" bounds:">=1" help:"Relay allocations one client address (IPv4 address, IPv6 /64) may hold at once. A browser in a call holds one or two per transport, so a household needs a handful and an office NAT with thirty people in calls about a hundred."`
	TURNTotalQuota     int           `env:"STRANGERS_TURN_TOTAL_QUOTA" envDefault:"10000" sets:"relay.TotalQuota" bounds:">=1" help:"Relay allocations the server holds at once, in total."`
	TURNSessionGrace   time.Duration `env:"STRANGERS_TURN_SESSION_GRACE" envDefault:"30s" sets:"relay.SessionGrace" bounds:">0" help:"How long a session's relay allocations keep working after the session ended (its user left for good), before they are closed."`
	TURNMaxPerms       int           `env:"STRANGERS_TURN_MAX_PERMISSIONS" envDefault:"64" sets:"relay.MaxPermissionsPerAllocation" bounds:">=1" help:"Peer addresses one relay allocation may hold permissions for."`
	TURNMaxChannels    int           `env:"STRANGERS_TURN_MAX_CHANNELS" envDefault:"64" sets:"relay.MaxChannelsPerAllocation" bounds:"1..16384" help:"Channels one relay allocation may bind."`
	TURNMaxBitrate     int64         `env:"STRANGERS_TURN_MAX_BITRATE" envDefault:"5000000" sets:"relay.MaxBitrate" bounds:">=0" zero:"no cap" help:"Bits per second of data one relay allocation may relay in each direction (to its peers, to its client); datagrams over it are dropped, after a burst of a second's worth (at least 64 KiB) so key frames pass. 0: no cap. The default, 5 Mbit/s, is about twice what a browser sends for a 720p call with audio."`
	TURNFastPath       bool          `env:"STRANGERS_TURN_FAST_PATH" envDefault:"true" sets:"relay.NoFastPath" help:"Relay channel data on the relay's own data path (and hand it over in process between two relayed browsers). false: every datagram goes through pion's TURN server code; permissions and STRANGERS_TURN_MAX_BITRATE apply either way."`
	TURNTCPMaxPerIP    int           `env:"STRANGERS_TURN_TCP_MAX_PER_IP" envDefault:"16" sets:"relay.TCPMaxConnsPerIP" bounds:">=1" help:"Concurrent TURN-over-TCP/TLS connections from one IP address (IPv6: one /64; raise it when many users share one NAT)."`
	TURNTCPFirstMsg    time.Duration `env:"STRANGERS_TURN_TCP_FIRST_MESSAGE_TIMEOUT" envDefault:"10s" sets:"relay.TCPFirstMessageTimeout" bounds:">0" help:"How long a new TURN-over-TCP/TLS connection has to send its first complete STUN message."`
	TURNTCPIdle        time.Duration `env:"STRANGERS_TURN_TCP_IDLE_TIMEOUT" envDefault:"5m" sets:"relay.TCPIdleTimeout" bounds:">0" help:"How long a TURN-over-TCP/TLS connection may stay silent before it is closed."`
	ICEServers         string        `env:"STRANGERS_ICE_SERVERS" sets:"relay.ExtraICEServers" help:"JSON list of extra ICE servers handed to browsers besides ours, as RTCIceServer objects, e.g. [{\"urls\":\"stun:stun.example.com:3478\"}]."`

	// Moderation.
	StateDir        string        `env:"STRANGERS_STATE_DIR" help:"Directory of the moderation store (bans, reports with their evidence, the shadow pool, the audit log, the key that signs client keys), kept across restarts; one instance per directory. Empty: $STATE_DIRECTORY (systemd's StateDirectory=), else $XDG_STATE_HOME/strangers, else ~/.local/state/strangers; if another instance holds that one, or there is no home directory, a temporary directory (nothing is kept). Not used with STRANGERS_REDIS_URL: the moderation records are then kept in Redis, shared by every node."`
	AdminAddr       string        `env:"STRANGERS_ADMIN_ADDR" envDefault:"127.0.0.1:9091" help:"Address of the admin API (/api/v1/) and the moderators' page. Loopback by default: open it only behind TLS and a firewall."`
	AdminTokenFile  string        `env:"STRANGERS_ADMIN_TOKEN_FILE,file" secret:"true" help:"Path of a file holding the admin API's bearer token (at least 16 bytes). Empty: the admin listener does not start."`
	AppealContact   string        `env:"STRANGERS_APPEAL_CONTACT" bounds:"<=200" unit:"bytes" help:"How banned users can appeal (an email address or a URL), shown with the reason and the end of their ban. Empty: none is shown."`
	ReportThreshold int           `env:"STRANGERS_REPORT_THRESHOLD" envDefault:"3" bounds:">=1" help:"Distinct reporters (different addresses; reporters whose reports moderators dismissed count less) who, within 24 h, put someone in the shadow pool for 24 h: matched only with others in it, and told nothing."`
	ReportRetention time.Duration `env:"STRANGERS_REPORT_RETENTION" envDefault:"336h" bounds:">=1h" help:"How long reports and their evidence (chat lines, still frame) are kept before they are deleted (336h: 14 days)."`
	RulesFile       string        `env:"STRANGERS_RULES_FILE,file" help:"Path of a file holding the rules the page shows before the first Start, with the 18+ confirmation (plain text or Markdown: headings, - lists, **bold**; shown as text, never as HTML; at most 64 KiB). Empty: a built-in set of house rules."`
	NextRate        int           `env:"STRANGERS_NEXT_RATE" envDefault:"20" sets:"signaling.NextRate" bounds:">=0" zero:"no limit" help:"Finds and Nexts one browser may send in a minute; one more starts a 30 s cooldown the page counts down. 0: no limit. The default lets someone look at each stranger for three seconds; a script cycling through everyone is slowed down."`

	// Several instances (nodes) sharing one matchmaker.
	RedisURL     string `env:"STRANGERS_REDIS_URL" secret:"true" help:"Redis shared by several instances (nodes), which then pair their users with each other as one server: redis://[user:password@]host:port[/db], or rediss:// for TLS. Every node needs the same Redis and the same STRANGERS_TURN_SECRET. Empty: no Redis; this instance matches only its own users, in process. Only the host is ever logged."`
	RedisURLFile string `env:"STRANGERS_REDIS_URL_FILE,file" secret:"true" help:"Path of a file holding STRANGERS_REDIS_URL (Docker and systemd secrets, as the URL holds the password); instead of it."`
	NodeID       string `env:"STRANGERS_NODE_ID" bounds:"<=64" unit:"bytes" help:"Name of this instance among the nodes sharing STRANGERS_REDIS_URL: letters, digits, '.', '_' and '-'. Never give two running nodes the same one. Empty: the host name and a random suffix, new at every start (the safe choice)."`
}

// testOnlyVariables are read by the test suite and the tools under cmd/,
// not by the server; they are not reported as unknown.
var testOnlyVariables = []string{
	"STRANGERS_TEST_REQUIRE",
	"STRANGERS_WEB_ARTIFACTS", "STRANGERS_WEB_NETNS", "STRANGERS_WEB_SCREENSHOTS", "STRANGERS_WEB_SERVER_BIN",
	"STRANGERS_LAB_ROLE", "STRANGERS_LOAD_TRACE",
}

// settings is the validated form of config that the wiring uses.
type settings struct {
	config
	publicIP       netip.Addr
	relayBindIP    netip.Addr
	allowPeers     []netip.Prefix
	trustedProxies []netip.Prefix
	turnSecret     []byte // random when secretRandom
	secretRandom   bool   // no secret was configured
	turnOldSecrets [][]byte
	extraICE       []relay.ICEServer
	adminToken     string // trimmed content of STRANGERS_ADMIN_TOKEN_FILE
	redisURL       string // STRANGERS_REDIS_URL or the content of its _FILE; "" without Redis
	redisHost      string // host:port of redisURL, the only part of it that is logged
	nodeID         string // STRANGERS_NODE_ID, else generated
}

// minAdminToken is the least length of the admin token.
const minAdminToken = 16

// variable describes one configuration variable, read from the config tags.
type variable struct {
	Name    string
	Default string
	Help    string // the help tag, then the bounds as a sentence
	Secret  bool
	Sets    string // the library Config field it sets, as "relay.PortMin"
	Bounds  string // its range (see variable.rule)
	Unit    string // the unit of Bounds
	Zero    string // what an explicit 0 means, where it is not the library's default
	field   string // the config field
	typ     reflect.Type
}

// variables lists every configuration variable in declaration order.
func variables() []variable {
	t := reflect.TypeFor[config]()
	vars := make([]variable, 0, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		v := variable{
			Name:    name,
			Default: f.Tag.Get("envDefault"),
			Help:    f.Tag.Get("help"),
			Secret:  f.Tag.Get("secret") == "true",
			Sets:    f.Tag.Get("sets"),
			Bounds:  f.Tag.Get("bounds"),
			Unit:    f.Tag.Get("unit"),
			Zero:    f.Tag.Get("zero"),
			field:   f.Name,
			typ:     f.Type,
		}
		v.Help = v.helpText()
		vars = append(vars, v)
	}
	return vars
}

// printUsage writes the command line and every variable with its default
// and meaning.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `strangers: talk to strangers, a random video chat server.

Usage:
  strangers           run the server (configured by the environment)
  strangers check URL test a deployment the way a browser would (strangers check -h)
  strangers version   print the version
  strangers -h        print this help

Environment variables:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range variables() {
		def := v.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Help)
	}
	tw.Flush()
}

// loadConfig parses and validates the configuration. Values come from
// getenv; names lists the variable names present in the environment, used
// only to warn about unknown STRANGERS_* variables (most often typos).
func loadConfig(getenv func(string) string, names []string) (settings, []string, error) {
	vars := variables()
	environment := make(map[string]string, len(vars))
	for _, v := range vars {
		if val := getenv(v.Name); val != "" {
			environment[v.Name] = val
		}
	}
	var warnings []string
	for _, n := range names {
		if !strings.HasPrefix(n, "STRANGERS_") || slices.Contains(testOnlyVariables, n) {
			continue
		}
		if !slices.ContainsFunc(vars, func(v variable) bool { return v.Name == n }) {
			warnings = append(warnings, fmt.Sprintf("unknown variable %s is ignored (see strangers -h)", n))
		}
	}

	var c config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environment}); err != nil {
		return settings{}, warnings, parseError(err, vars, environment)
	}
	s, err := validate(c, environment)
	errs := checkLibraries(c, s, vars, environment)
	if len(c.ACMEDomains) == 0 {
		for _, name := range []string{"STRANGERS_ACME_EMAIL", "STRANGERS_ACME_CACHE", "STRANGERS_ACME_DIRECTORY", "STRANGERS_ACME_CA_FILE"} {
			if v, ok := environment[name]; ok {
				errs = append(errs, fmt.Errorf("%s=%s: ACME is not on: set STRANGERS_ACME_DOMAINS", name, v))
			}
		}
	}
	if path, ok := environment["STRANGERS_TURN_SECRET_FILE"]; ok {
		if _, both := environment["STRANGERS_TURN_SECRET"]; both {
			errs = append(errs, errors.New("STRANGERS_TURN_SECRET: set either it or STRANGERS_TURN_SECRET_FILE, not both"))
		} else if c.TURNSecretFile == "" {
			errs = append(errs, fmt.Errorf("STRANGERS_TURN_SECRET_FILE=%s: the file is empty", path))
		}
	}
	if _, ok := environment["STRANGERS_TURN_OLD_SECRETS_FILE"]; ok {
		if _, both := environment["STRANGERS_TURN_OLD_SECRETS"]; both {
			errs = append(errs, errors.New("STRANGERS_TURN_OLD_SECRETS: set either it or STRANGERS_TURN_OLD_SECRETS_FILE, not both"))
		}
	}
	if err := errors.Join(append(errs, err)...); err != nil {
		return settings{}, warnings, err
	}
	return s, warnings, nil
}

// parseError rewrites the env library's errors so that each names the
// variable and its bad value.
func parseError(err error, vars []variable, environment map[string]string) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("config: %w", err)
	}
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		var fe env.LoadFileContentError
		switch {
		case errors.As(e, &pe):
			i := slices.IndexFunc(vars, func(v variable) bool { return v.field == pe.Name })
			if i < 0 {
				errs = append(errs, e)
				continue
			}
			v := vars[i]
			errs = append(errs, varError(v, environment[v.Name], "must be "+describeType(pe.Type)))
		case errors.As(e, &fe):
			errs = append(errs, fmt.Errorf("%s=%s: cannot read file: %w", fe.Key, fe.Filename, fe.Err))
		default:
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

func describeType(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration such as 10s, 5m or 1h"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "a whole number"
	case t.Kind() == reflect.Float64:
		return "a number"
	default:
		return "a " + t.String()
	}
}

// varError names the variable and, unless it is a secret, its value.
func varError(v variable, value, problem string) error {
	if v.Secret || value == "" {
		return fmt.Errorf("%s: %s", v.Name, problem)
	}
	return fmt.Errorf("%s=%s: %s", v.Name, value, problem)
}

// validate checks what parsing cannot and derives the typed settings, as
// far as they can be derived when it reports errors. Messages quote a
// value as written in environment, if it is there.
func validate(c config, environment map[string]string) (settings, error) {
	s := settings{config: c}
	var errs []error
	bad := func(name, value, problem string) {
		if raw, ok := environment[name]; ok {
			value = raw
		}
		for _, v := range variables() {
			if v.Name == name {
				errs = append(errs, varError(v, value, problem))
				return
			}
		}
	}

	checkHostPort := func(name, addr string) {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(name, addr, "must be host:port or :port")
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(name, addr, "port must be 0-65535")
		}
	}
	checkHostPort("STRANGERS_HTTP_ADDR", c.HTTPAddr)
	checkHostPort("STRANGERS_TLS_ADDR", c.TLSAddr)
	checkHostPort("STRANGERS_ADMIN_ADDR", c.AdminAddr)
	if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
		bad("STRANGERS_STATE_DIR", c.StateDir, "must be an absolute path")
	}
	if _, ok := environment["STRANGERS_ADMIN_TOKEN_FILE"]; ok {
		s.adminToken = strings.TrimSpace(c.AdminTokenFile)
		switch {
		case s.adminToken == "":
			bad("STRANGERS_ADMIN_TOKEN_FILE", "", "the file is empty")
		case len(s.adminToken) < minAdminToken:
			bad("STRANGERS_ADMIN_TOKEN_FILE", "", fmt.Sprintf("the token must be at least %d bytes", minAdminToken))
		}
	}
	if _, ok := environment["STRANGERS_RULES_FILE"]; ok {
		switch {
		case strings.TrimSpace(c.RulesFile) == "":
			bad("STRANGERS_RULES_FILE", environment["STRANGERS_RULES_FILE"], "the file is empty")
		case len(c.RulesFile) > web.MaxRulesSize:
			bad("STRANGERS_RULES_FILE", environment["STRANGERS_RULES_FILE"], "the file is larger than 64 KiB")
		}
	}
	if len(c.AppealContact) > 200 {
		bad("STRANGERS_APPEAL_CONTACT", c.AppealContact, "must be at most 200 bytes")
	}
	if c.ReportThreshold < 1 {
		bad("STRANGERS_REPORT_THRESHOLD", strconv.Itoa(c.ReportThreshold), "must be at least 1")
	}
	if c.ReportRetention < time.Hour {
		bad("STRANGERS_REPORT_RETENTION", c.ReportRetention.String(), "must be at least 1h")
	}
	if c.NextRate < 0 {
		bad("STRANGERS_NEXT_RATE", strconv.Itoa(c.NextRate), "must be at least 0")
	}

	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		bad("STRANGERS_TLS_KEY_FILE", "", "must be set with STRANGERS_TLS_CERT_FILE="+c.TLSCertFile)
	case c.TLSKeyFile != "" && c.TLSCertFile == "":
		bad("STRANGERS_TLS_CERT_FILE", "", "must be set with STRANGERS_TLS_KEY_FILE="+c.TLSKeyFile)
	case c.TLSCertFile != "" && len(c.ACMEDomains) > 0:
		bad("STRANGERS_ACME_DOMAINS", strings.Join(c.ACMEDomains, ","), "use either ACME or STRANGERS_TLS_CERT_FILE, not both")
	}
	for _, d := range c.ACMEDomains {
		if _, err := netip.ParseAddr(d); err == nil || !validHost(d) || !strings.Contains(d, ".") {
			bad("STRANGERS_ACME_DOMAINS", strings.Join(c.ACMEDomains, ","), fmt.Sprintf("%q is not a domain name", d))
			break
		}
	}
	if u, err := url.Parse(c.ACMEDirectory); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("STRANGERS_ACME_DIRECTORY", c.ACMEDirectory, "must be an https:// URL")
	}

	// The rules of values that configure signaling or the relay are theirs
	// (checkLibraries); here they are only parsed.
	parseAddr := func(name, value string) netip.Addr {
		if value == "" {
			return netip.Addr{}
		}
		ip, err := netip.ParseAddr(value)
		if err != nil {
			bad(name, value, "must be an IP address")
		}
		return ip
	}
	s.publicIP = parseAddr("STRANGERS_PUBLIC_IP", c.PublicIP)
	s.relayBindIP = parseAddr("STRANGERS_RELAY_BIND_IP", c.RelayBindIP)
	s.trustedProxies = parsePrefixes(c.TrustedProxies, "STRANGERS_TRUSTED_PROXIES", bad)
	if peers, err := relay.ParseAllowPeers(strings.Join(c.RelayAllowPeers, ",")); err != nil {
		bad("STRANGERS_RELAY_ALLOW_PEERS", strings.Join(c.RelayAllowPeers, ","), err.Error())
	} else {
		s.allowPeers = peers
	}

	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("STRANGERS_LOG_LEVEL", c.LogLevel, "must be debug, info, warn or error")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("STRANGERS_LOG_FORMAT", c.LogFormat, "must be text or json")
	}

	if c.ShutdownGrace <= 0 {
		bad("STRANGERS_SHUTDOWN_GRACE", c.ShutdownGrace.String(), "must be positive")
	}
	if c.TURNMaxBitrate < 0 { // the relay takes a negative cap as none: refuse it here
		bad("STRANGERS_TURN_MAX_BITRATE", strconv.FormatInt(c.TURNMaxBitrate, 10), "must be at least 0")
	}

	switch {
	case c.TURNSecret != "":
		s.turnSecret = []byte(c.TURNSecret)
	case c.TURNSecretFile != "":
		s.turnSecret = []byte(strings.TrimRight(c.TURNSecretFile, "\r\n"))
	}
	if s.turnSecret == nil {
		s.turnSecret = make([]byte, 32)
		rand.Read(s.turnSecret)
		s.secretRandom = true
	}
	oldList := c.TURNOldSecrets
	if c.TURNOldSecretsFile != "" {
		oldList = c.TURNOldSecretsFile
	}
	for _, old := range strings.FieldsFunc(oldList, func(r rune) bool { return r == ',' || r == '\n' }) {
		s.turnOldSecrets = append(s.turnOldSecrets, []byte(strings.TrimSpace(old)))
	}
	checkCluster(c, &s, environment, bad)
	if extra, err := relay.ParseICEServers(c.ICEServers); err != nil {
		bad("STRANGERS_ICE_SERVERS", c.ICEServers, err.Error())
	} else {
		s.extraICE = extra
	}
	return s, errors.Join(errs...)
}

func parsePrefixes(list []string, name string, bad func(name, value, problem string)) []netip.Prefix {
	var out []netip.Prefix
	for _, item := range list {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			ip, ipErr := netip.ParseAddr(item)
			if ipErr != nil {
				bad(name, strings.Join(list, ","), fmt.Sprintf("%q is not a CIDR such as 10.0.0.0/8", item))
				continue
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 || strings.ContainsAny(h, ":/ @") {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}
