package relay

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestParseICEServers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []ICEServer
		err  bool
	}{
		{name: "blank", in: "  ", want: []ICEServer{}},
		{name: "empty list", in: "[]", want: []ICEServer{}},
		{name: "url string", in: `[{"urls":"stun:stun.example.org:3478"}]`,
			want: []ICEServer{{URLs: []string{"stun:stun.example.org:3478"}}}},
		{name: "url list with credentials",
			in: `[{"urls":["turn:turn.example.org?transport=udp","turns:turn.example.org:443?transport=tcp"],"username":"u","credential":"p"}]`,
			want: []ICEServer{{URLs: []string{"turn:turn.example.org?transport=udp", "turns:turn.example.org:443?transport=tcp"},
				Username: "u", Credential: "p"}}},
		{name: "ipv6 literal", in: `[{"urls":"stun:[2001:db8::1]:3478"}]`,
			want: []ICEServer{{URLs: []string{"stun:[2001:db8::1]:3478"}}}},
		{name: "not json", in: `stun:example.org`, err: true},
		{name: "object not list", in: `{"urls":"stun:a.org"}`, err: true},
		{name: "trailing data", in: `[] []`, err: true},
		{name: "unknown field", in: `[{"urls":"stun:a.org","credentialType":"password"}]`, err: true},
		{name: "missing urls", in: `[{"username":"u"}]`, err: true},
		{name: "empty url list", in: `[{"urls":[]}]`, err: true},
		{name: "urls not strings", in: `[{"urls":[1]}]`, err: true},
		{name: "http scheme", in: `[{"urls":"https://example.org"}]`, err: true},
		{name: "turn without credentials", in: `[{"urls":"turn:a.org"}]`, err: true},
		{name: "stun with query", in: `[{"urls":"stun:a.org?transport=udp"}]`, err: true},
		{name: "bad transport", in: `[{"urls":"turn:a.org?transport=sctp","username":"u","credential":"p"}]`, err: true},
		{name: "bad port", in: `[{"urls":"stun:a.org:99999"}]`, err: true},
		{name: "empty port", in: `[{"urls":"stun:a.org:"}]`, err: true},
		{name: "empty host", in: `[{"urls":"stun::3478"}]`, err: true},
		{name: "bad host", in: `[{"urls":"stun:a_b.org"}]`, err: true},
		{name: "path", in: `[{"urls":"stun:a.org/x"}]`, err: true},
		{name: "too many servers", in: "[" + strings.Repeat(`{"urls":"stun:a.org"},`, 16) + `{"urls":"stun:a.org"}]`, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseICEServers(tc.in)
			if tc.err {
				if !errors.Is(err, ErrICEServers) {
					t.Fatalf("ParseICEServers = %v, %v; want ErrICEServers", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) || got == nil {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
			for i := range got {
				if strings.Join(got[i].URLs, " ") != strings.Join(tc.want[i].URLs, " ") ||
					got[i].Username != tc.want[i].Username || got[i].Credential != tc.want[i].Credential {
					t.Errorf("server %d = %#v, want %#v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseAllowPeers(t *testing.T) {
	t.Parallel()
	got, err := ParseAllowPeers(" 127.0.0.0/8, 10.1.2.3 ,::ffff:192.168.0.0/112,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.0/8", "10.1.2.3/32", "192.168.0.0/16", "fd00::/8"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
	if got, err := ParseAllowPeers(""); err != nil || len(got) != 0 {
		t.Errorf("empty list = %v, %v", got, err)
	}
	for _, bad := range []string{"127.0.0.0/33", "banana", "10.0.0.0/8,,", "10.0.0.1/8"} {
		if _, err := ParseAllowPeers(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseAllowPeers(%q) = %v, want ErrConfig", bad, err)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*Config)
		want error
	}{
		{"no secret", func(c *Config) { c.Secret = nil }, ErrNoSecret},
		{"bad listen addr", func(c *Config) { c.ListenAddr = "3478" }, ErrConfig},
		{"listen host not an IP", func(c *Config) { c.ListenAddr = "localhost:0" }, ErrConfig},
		{"port range inverted", func(c *Config) { c.PortMin, c.PortMax = 60000, 50000 }, ErrConfig},
		{"port above 65535", func(c *Config) { c.PortMax = 70000 }, ErrConfig},
		{"tls port above 65535", func(c *Config) { c.TLSPort = 65536 }, ErrConfig},
		{"negative port", func(c *Config) { c.PortMin = -1 }, ErrConfig},
		{"ipv6 public ip", func(c *Config) { c.PublicIP = netip.MustParseAddr("2001:db8::1") }, ErrConfig},
		{"unspecified public ip", func(c *Config) { c.PublicIP = netip.IPv4Unspecified() }, ErrConfig},
		{"ipv6 bind ip", func(c *Config) { c.BindIP = netip.MustParseAddr("::1") }, ErrConfig},
		{"bad public host", func(c *Config) { c.PublicHost = "turn.example.org:3478" }, ErrConfig},
		{"negative quota", func(c *Config) { c.SessionQuota = -1 }, ErrConfig},
		{"negative ttl", func(c *Config) { c.CredentialTTL = -time.Second }, ErrConfig},
		{"invalid allow prefix", func(c *Config) { c.AllowPeers = []netip.Prefix{{}} }, ErrConfig},
		{"nil stream listener", func(c *Config) { c.StreamListeners = []net.Listener{nil} }, ErrConfig},
		{"bad extra server", func(c *Config) { c.ExtraICEServers = []ICEServer{{URLs: []string{"turn:a.org"}}} }, ErrConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			tc.mod(&cfg)
			s, err := New(cfg)
			if !errors.Is(err, tc.want) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("New = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		cfg, err := Config{Secret: testSecret}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ListenAddr != ":3478" || cfg.PortMin != 49152 || cfg.PortMax != 65535 || cfg.Realm != "strangers" ||
			cfg.CredentialTTL != time.Hour || cfg.SessionGrace != 30*time.Second || cfg.SessionQuota != 10 ||
			cfg.TotalQuota != 10000 || cfg.MaxPermissionsPerAllocation != 64 || cfg.MaxChannelsPerAllocation != 64 ||
			cfg.TCPMaxConnsPerIP != 16 || cfg.TCPFirstMessageTimeout != 10*time.Second ||
			cfg.TCPIdleTimeout != 5*time.Minute || cfg.BindIP != netip.IPv4Unspecified() || cfg.UDPSockets < 1 {
			t.Errorf("defaults: %+v", cfg)
		}
	})

	t.Run("port in use", func(t *testing.T) {
		t.Parallel()
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		cfg := testConfig()
		cfg.ListenAddr = busy.Addr().String()
		if s, err := New(cfg); !errors.Is(err, ErrListen) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("New on a busy port = %v, want ErrListen", err)
		}
	})

	t.Run("shared registry", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		cfg := testConfig()
		cfg.Registerer = reg
		s := newServer(t, cfg)
		if _, err := New(cfg); err == nil {
			t.Fatal("second server on the same registry started")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Close unregisters, so a replacement can register.
		s2 := newServer(t, cfg)
		_ = s2
	})
}

func TestICEServers(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tests := []struct {
		name       string
		publicHost string
		tlsPort    int
		host       string
	}{
		{"public ip", "", 0, "127.0.0.1"},
		{"host name", "turn.example.org", 0, "turn.example.org"},
		{"ipv6 host", "2001:db8::7", 0, "[2001:db8::7]"},
		{"tls on the host name", "turn.example.org", 443, "turn.example.org"},
		{"tls on the public ip", "", 8443, "127.0.0.1"},
		{"tls on an ipv6 host", "2001:db8::7", 443, "[2001:db8::7]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.Now = clock.Now
			cfg.PublicHost = tc.publicHost
			cfg.TLSPort = tc.tlsPort
			cfg.ExtraICEServers = []ICEServer{{URLs: []string{"stun:stun.example.org"}}}
			s := newServer(t, cfg)
			sid := newSID(t)
			got, err := s.ICEServers(sid)
			if err != nil {
				t.Fatal(err)
			}
			hp := tc.host + ":" + strconv.Itoa(s.UDPAddr().Port)
			turn := "turn:" + hp + "?transport=udp turn:" + hp + "?transport=tcp"
			if tc.tlsPort != 0 {
				turn += " turns:" + tc.host + ":" + strconv.Itoa(tc.tlsPort) + "?transport=tcp"
			}
			if s.UDPAddr().Port != s.TCPAddr().Port {
				t.Errorf("UDP port %d != TCP port %d", s.UDPAddr().Port, s.TCPAddr().Port)
			}
			if len(got) != 3 ||
				strings.Join(got[0].URLs, " ") != "stun:"+hp ||
				strings.Join(got[1].URLs, " ") != turn ||
				strings.Join(got[2].URLs, " ") != "stun:stun.example.org" {
				t.Fatalf("ICEServers = %+v", got)
			}
			exp, gotSID, err := ParseUsername(got[1].Username)
			if err != nil || gotSID != sid || exp != clock.Now().Add(time.Hour).Unix() {
				t.Errorf("username %q: %d %q %v", got[1].Username, exp, gotSID, err)
			}
			if got[1].Credential != Password(testSecret, got[1].Username) {
				t.Error("credential does not verify")
			}
			for _, srv := range got {
				if err := srv.validate(); err != nil {
					t.Errorf("returned server %+v does not validate: %v", srv, err)
				}
			}
			got[2].URLs[0] = "mutated"
			if again, _ := s.ICEServers(sid); again[2].URLs[0] != "stun:stun.example.org" {
				t.Error("callers can mutate ExtraICEServers")
			}
		})
	}
	s := newServer(t, testConfig())
	for _, bad := range []string{"", "short", "Zm9vYmFyYmF6cXV4MTIzNB", "Zm9vYmFyYmF6cXV4MTIzN=", "../../etc/passwd/aaaaaa"} {
		if _, err := s.ICEServers(bad); !errors.Is(err, ErrSessionID) {
			t.Errorf("ICEServers(%q) = %v, want ErrSessionID", bad, err)
		}
	}
}
