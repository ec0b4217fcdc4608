package relay

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestValidate checks every rule of Config at its bounds: the value at the
// bound passes, the value just beyond it fails with a *FieldError naming
// the field.
func TestValidate(t *testing.T) {
	t.Parallel()
	base := func() Config { return Config{Secret: testSecret} }
	if err := base().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name  string
		mod   func(*Config)
		field string // "": valid
		rule  string // part of the rule
	}{
		{"listen addr", func(c *Config) { c.ListenAddr = "127.0.0.1:65535" }, "", ""},
		{"listen addr all hosts", func(c *Config) { c.ListenAddr = ":0" }, "", ""},
		{"listen addr without port", func(c *Config) { c.ListenAddr = "3478" }, "ListenAddr", "host:port"},
		{"listen port too high", func(c *Config) { c.ListenAddr = ":65536" }, "ListenAddr", "0 to 65535"},
		{"listen host a name", func(c *Config) { c.ListenAddr = "localhost:0" }, "ListenAddr", "IP address"},
		{"udp sockets 0", func(c *Config) { c.UDPSockets = 0 }, "", ""},
		{"udp sockets 64", func(c *Config) { c.UDPSockets = 64 }, "", ""},
		{"udp sockets 65", func(c *Config) { c.UDPSockets = 65 }, "UDPSockets", "from 0 to 64"},
		{"udp sockets -1", func(c *Config) { c.UDPSockets = -1 }, "UDPSockets", "from 0 to 64"},
		{"public ip", func(c *Config) { c.PublicIP = netip.MustParseAddr("203.0.113.1") }, "", ""},
		{"public ip mapped", func(c *Config) { c.PublicIP = netip.MustParseAddr("::ffff:203.0.113.1") }, "", ""},
		{"public ip v6", func(c *Config) { c.PublicIP = netip.MustParseAddr("2001:db8::1") }, "PublicIP", "IPv4"},
		{"public ip unspecified", func(c *Config) { c.PublicIP = netip.IPv4Unspecified() }, "PublicIP", "unicast"},
		{"public ip multicast", func(c *Config) { c.PublicIP = netip.MustParseAddr("224.0.0.1") }, "PublicIP", "unicast"},
		{"bind ip", func(c *Config) { c.BindIP = netip.IPv4Unspecified() }, "", ""},
		{"bind ip v6", func(c *Config) { c.BindIP = netip.MustParseAddr("::1") }, "BindIP", "IPv4"},
		{"public host", func(c *Config) { c.PublicHost = "turn.example.org" }, "", ""},
		{"public host v6", func(c *Config) { c.PublicHost = "2001:db8::1" }, "", ""},
		{"public host with port", func(c *Config) { c.PublicHost = "turn.example.org:3478" }, "PublicHost", "without"},
		{"public host bracketed", func(c *Config) { c.PublicHost = "[2001:db8::1]" }, "PublicHost", "without"},
		{"port min 1", func(c *Config) { c.PortMin = 1 }, "", ""},
		{"port min -1", func(c *Config) { c.PortMin = -1 }, "PortMin", "from 1 to 65535"},
		{"port max 65535", func(c *Config) { c.PortMax = 65535 }, "", ""},
		{"port max 65536", func(c *Config) { c.PortMax = 65536 }, "PortMax", "from 1 to 65535"},
		{"one port", func(c *Config) { c.PortMin, c.PortMax = 50000, 50000 }, "", ""},
		{"port range inverted", func(c *Config) { c.PortMin, c.PortMax = 50001, 50000 }, "PortMin", "must not be above"},
		{"realm 20 bytes", func(c *Config) { c.Realm = strings.Repeat("r", MaxRealmLen) }, "", ""},
		{"realm 21 bytes", func(c *Config) { c.Realm = strings.Repeat("r", MaxRealmLen+1) }, "Realm", "at most 20 bytes"},
		{"old secret 15 bytes", func(c *Config) { c.OldSecrets = [][]byte{[]byte("0123456789abcdef"), []byte("0123456789abcde")} }, "OldSecrets", "at least 16 bytes"},
		{"ip quota 0 is the default", func(c *Config) { c.IPQuota = 0 }, "", ""},
		{"ip quota -1", func(c *Config) { c.IPQuota = -1 }, "IPQuota", "at least 1"},
		{"secret 16 bytes", func(c *Config) { c.Secret = []byte("0123456789abcdef") }, "", ""},
		{"secret 15 bytes", func(c *Config) { c.Secret = []byte("0123456789abcde") }, "Secret", "at least 16 bytes"},
		{"no secret", func(c *Config) { c.Secret = nil }, "Secret", "required"},
		{"ttl 1ns", func(c *Config) { c.CredentialTTL = time.Nanosecond }, "", ""},
		{"ttl negative", func(c *Config) { c.CredentialTTL = -time.Nanosecond }, "CredentialTTL", "positive"},
		{"session grace negative", func(c *Config) { c.SessionGrace = -time.Second }, "SessionGrace", "positive"},
		{"first message timeout negative", func(c *Config) { c.TCPFirstMessageTimeout = -1 }, "TCPFirstMessageTimeout", "positive"},
		{"idle timeout negative", func(c *Config) { c.TCPIdleTimeout = -1 }, "TCPIdleTimeout", "positive"},
		{"session quota 1", func(c *Config) { c.SessionQuota = 1 }, "", ""},
		{"session quota -1", func(c *Config) { c.SessionQuota = -1 }, "SessionQuota", "at least 1"},
		{"total quota -1", func(c *Config) { c.TotalQuota = -1 }, "TotalQuota", "at least 1"},
		{"permissions -1", func(c *Config) { c.MaxPermissionsPerAllocation = -1 }, "MaxPermissionsPerAllocation", "at least 1"},
		{"tcp per ip -1", func(c *Config) { c.TCPMaxConnsPerIP = -1 }, "TCPMaxConnsPerIP", "at least 1"},
		{"channels 16384", func(c *Config) { c.MaxChannelsPerAllocation = 16384 }, "", ""},
		{"channels 16385", func(c *Config) { c.MaxChannelsPerAllocation = 16385 }, "MaxChannelsPerAllocation", "from 1 to 16384"},
		{"channels -1", func(c *Config) { c.MaxChannelsPerAllocation = -1 }, "MaxChannelsPerAllocation", "from 1 to 16384"},
		{"invalid allow prefix", func(c *Config) { c.AllowPeers = []netip.Prefix{{}} }, "AllowPeers", "valid prefixes"},
		{"nil stream listener", func(c *Config) { c.StreamListeners = []net.Listener{nil} }, "StreamListeners", "nil"},
		{"bad extra server", func(c *Config) { c.ExtraICEServers = []ICEServer{{URLs: []string{"turn:a.org"}}} }, "ExtraICEServers", "server 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := base()
			tc.mod(&cfg)
			err := cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate = %v, want a *FieldError wrapping ErrConfig", err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Rule, tc.rule) {
				t.Fatalf("FieldError{Field: %q, Rule: %q}, want field %q, rule containing %q", fe.Field, fe.Rule, tc.field, tc.rule)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
		})
	}
}

// TestValidateReportsEveryField checks that Validate reports all broken
// rules at once, and never repeats the secret.
func TestValidateReportsEveryField(t *testing.T) {
	t.Parallel()
	secret := []byte("hunter2-secret")
	err := Config{Secret: secret, PortMin: 70000, SessionQuota: -1, Realm: strings.Repeat("r", 200)}.Validate()
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if errors.As(e, &fe) {
			fields = append(fields, fe.Field)
		}
	}
	if got, want := strings.Join(fields, " "), "PortMin Realm Secret SessionQuota"; got != want {
		t.Errorf("fields = %q, want %q", got, want)
	}
	if strings.Contains(err.Error(), string(secret)) {
		t.Errorf("message %q repeats the secret", err)
	}
	if err := (Config{}).Validate(); !errors.Is(err, ErrNoSecret) {
		t.Errorf("Validate without a secret = %v, want ErrNoSecret", err)
	}
}

// TestNewChecksWithValidate checks that New refuses what Validate refuses,
// before opening anything.
func TestNewChecksWithValidate(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxChannelsPerAllocation = MaxChannels + 1
	s, err := New(cfg)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "MaxChannelsPerAllocation" {
		if s != nil {
			s.Close()
		}
		t.Fatalf("New = %v, want the FieldError of MaxChannelsPerAllocation", err)
	}
}
