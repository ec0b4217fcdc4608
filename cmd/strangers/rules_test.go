package main

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envCase is one value of a variable, set with others, and whether the
// configuration is accepted.
type envCase struct {
	value string
	ok    bool
	with  map[string]string // other variables set alongside
	want  string            // a failure's message must hold this too
}

// explicitCases lists the values of variables that have no bounds tag (and
// extra ones of some that do): for each, values that are accepted and
// values that are refused.
func explicitCases(t *testing.T) map[string][]envCase {
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	acme := map[string]string{"STRANGERS_ACME_DOMAINS": "chat.example.com"}
	certs := map[string]string{"STRANGERS_TLS_CERT_FILE": "/x/cert.pem", "STRANGERS_TLS_KEY_FILE": "/x/key.pem"}
	shared := map[string]string{"STRANGERS_TURN_SECRET": "0123456789abcdef"}
	redis := map[string]string{"STRANGERS_REDIS_URL": "redis://127.0.0.1:6379", "STRANGERS_TURN_SECRET": "0123456789abcdef"}
	return map[string][]envCase{
		"STRANGERS_HTTP_ADDR": {{value: ":65535", ok: true}, {value: "127.0.0.1:0", ok: true},
			{value: "8080", want: "host:port"}, {value: ":65536", want: "0-65535"}},
		"STRANGERS_PUBLIC_IP": {{value: "203.0.113.7", ok: true},
			{value: "1.2.3", want: "IP address"}, {value: "0.0.0.0", want: "unicast IPv4"}, {value: "2001:db8::1", want: "IPv4"}},
		"STRANGERS_PUBLIC_HOST": {{value: "chat.example.com", ok: true}, {value: "2001:db8::1", ok: true},
			{value: "https://chat.example.com", want: "without scheme"}, {value: "[2001:db8::1]", want: "brackets"}},
		"STRANGERS_ALLOWED_ORIGINS": {{value: "https://chat.example.com,http://localhost:8080", ok: true}, {value: "*", ok: true},
			{value: "https://chat.example.com,chat.example.com", want: `"chat.example.com" is not an origin`}},
		"STRANGERS_TRUSTED_PROXIES": {{value: "10.0.0.0/8, 192.0.2.1", ok: true}, {value: "10.0.0.0/33", want: "CIDR"}},
		"STRANGERS_LOG_LEVEL":       {{value: "debug", ok: true}, {value: "loud", want: "debug, info, warn or error"}},
		"STRANGERS_LOG_FORMAT":      {{value: "json", ok: true}, {value: "xml", want: "text or json"}},
		"STRANGERS_SHUTDOWN_GRACE":  {{value: "soon", want: "a duration"}},
		"STRANGERS_TLS_ADDR":        {{value: "127.0.0.1:443", ok: true}, {value: "443", want: "host:port"}, {value: ":65536"}},
		"STRANGERS_TLS_CERT_FILE": {{value: "/x/cert.pem", ok: true, with: map[string]string{"STRANGERS_TLS_KEY_FILE": "/x/key.pem"}},
			{value: "/x/cert.pem", want: "STRANGERS_TLS_KEY_FILE: must be set"}},
		"STRANGERS_TLS_KEY_FILE": {{value: "/x/key.pem", ok: true, with: map[string]string{"STRANGERS_TLS_CERT_FILE": "/x/cert.pem"}},
			{value: "/x/key.pem", want: "STRANGERS_TLS_CERT_FILE: must be set"}},
		"STRANGERS_ACME_DOMAINS": {{value: "chat.example.com,www.example.com", ok: true},
			{value: "localhost", want: "not a domain name"}, {value: "chat.example.com", with: certs, want: "not both"}},
		"STRANGERS_ACME_EMAIL":     {{value: "ops@example.com", ok: true, with: acme}, {value: "ops@example.com", want: "ACME is not on"}},
		"STRANGERS_ACME_CACHE":     {{value: "/tmp/acme", ok: true, with: acme}, {value: "/tmp/acme", want: "ACME is not on"}},
		"STRANGERS_ACME_DIRECTORY": {{value: "https://acme.example.com/dir", ok: true, with: acme}, {value: "ftp://x", with: acme, want: "https:// URL"}},
		"STRANGERS_ACME_CA_FILE":   {{value: "/x/ca.pem", ok: true, with: acme}, {value: "/x/ca.pem", want: "ACME is not on"}},
		"STRANGERS_WS_RATE": {{value: "NaN", want: "finite"}, {value: "-0", want: "must be positive"}, {value: "+Inf", want: "finite"}, {value: "-1", want: "must be positive"},
			{value: "many", want: "must be a number"}},
		"STRANGERS_WS_BURST": {{value: "many", want: "a whole number"}},
		"STRANGERS_WS_PING_INTERVAL": {
			{value: "30s", want: "must be shorter than STRANGERS_WS_PONG_WAIT=30s"},
			{value: "30s", ok: true, with: map[string]string{"STRANGERS_WS_PONG_WAIT": "30.000000001s"}}},
		"STRANGERS_WS_PONG_WAIT": {
			{value: "100.000001ms", ok: true, with: map[string]string{"STRANGERS_WS_PING_INTERVAL": "100ms"}},
			{value: "100ms", with: map[string]string{"STRANGERS_WS_PING_INTERVAL": "100ms"}, want: "STRANGERS_WS_PING_INTERVAL=100ms: must be shorter than"},
			{value: "20.000000001s", ok: true}, {value: "20s", want: "must be shorter than"},
			{value: "0s", want: "must not be 0"}, {value: "-1s", want: "must be positive"}},
		"STRANGERS_TURN_ENABLED":     {{value: "false", ok: true}, {value: "maybe", want: "true or false"}},
		"STRANGERS_TURN_FAST_PATH":   {{value: "false", ok: true}, {value: "maybe", want: "true or false"}},
		"STRANGERS_TURN_MAX_BITRATE": {{value: "64000", ok: true}, {value: "1.5e6", want: "STRANGERS_TURN_MAX_BITRATE"}},
		"STRANGERS_TURN_ADDR": {{value: "127.0.0.1:65535", ok: true}, {value: ":0", ok: true},
			{value: "3478", want: "host:port"}, {value: "localhost:3478", want: "IP address as host"}, {value: ":65536", want: "0 to 65535"}},
		"STRANGERS_RELAY_BIND_IP": {{value: "127.0.0.1", ok: true}, {value: "eth0", want: "IP address"}, {value: "::1", want: "IPv4"}},
		"STRANGERS_RELAY_PORT_MIN": {{value: "50000", ok: true, with: map[string]string{"STRANGERS_RELAY_PORT_MAX": "50000"}},
			{value: "50001", with: map[string]string{"STRANGERS_RELAY_PORT_MAX": "50000"}, want: "must not be above STRANGERS_RELAY_PORT_MAX=50000"}},
		"STRANGERS_RELAY_ALLOW_PEERS": {{value: "127.0.0.0/8, 10.1.2.3", ok: true}, {value: "127.0.0.0/8,nope", want: "nope"}},
		"STRANGERS_TURN_SECRET": {{value: "0123456789abcdef", with: map[string]string{"STRANGERS_TURN_SECRET_FILE": file("other", "0123456789abcdef")},
			want: "not both"}},
		"STRANGERS_TURN_SECRET_FILE": {{value: file("secret16", "0123456789abcdef\n"), ok: true},
			{value: file("secret15", "0123456789abcde\n"), want: "STRANGERS_TURN_SECRET_FILE: must be at least 16 bytes"},
			{value: file("empty", ""), want: "the file is empty"},
			{value: filepath.Join(dir, "missing"), want: "cannot read file"}},
		"STRANGERS_TURN_OLD_SECRETS": {{value: "0123456789abcdef,fedcba9876543210", ok: true},
			{value: "0123456789abcdef,0123456789abcde", want: "STRANGERS_TURN_OLD_SECRETS: must each be at least 16 bytes"}},
		"STRANGERS_TURN_OLD_SECRETS_FILE": {{value: file("old16", "0123456789abcdef\nfedcba9876543210\n"), ok: true},
			{value: file("old15", "0123456789abcde\n"), want: "STRANGERS_TURN_OLD_SECRETS_FILE: must each be at least 16 bytes"},
			{value: filepath.Join(dir, "missing"), want: "cannot read file"}},
		"STRANGERS_ICE_SERVERS": {{value: `[{"urls":"stun:stun.example.com:3478"}]`, ok: true}, {value: "stun:x", want: "invalid ICE server list"}},
		"STRANGERS_RULES_FILE": {{value: file("rules.md", "# Rules\n- be nice\n"), ok: true},
			{value: file("rules-empty", "\n"), want: "the file is empty"},
			{value: file("rules-big", strings.Repeat("x", 64<<10+1)), want: "larger than 64 KiB"},
			{value: filepath.Join(dir, "missing"), want: "cannot read file"}},
		"STRANGERS_STATE_DIR":  {{value: "/var/lib/strangers", ok: true}, {value: "state", want: "absolute path"}},
		"STRANGERS_ADMIN_ADDR": {{value: "127.0.0.1:0", ok: true}, {value: "9091", want: "host:port"}},
		"STRANGERS_ADMIN_TOKEN_FILE": {{value: file("token16", "0123456789abcdef\n"), ok: true},
			{value: file("token15", "0123456789abcde\n"), want: "STRANGERS_ADMIN_TOKEN_FILE: the token must be at least 16 bytes"},
			{value: file("tokenempty", "\n"), want: "the file is empty"},
			{value: filepath.Join(dir, "missing"), want: "cannot read file"}},
		"STRANGERS_REDIS_URL": {
			{value: "redis://:pw@127.0.0.1:6379/0", ok: true, with: shared},
			{value: "rediss://user:pw@redis.example.com", ok: true, with: shared},
			{value: "redis://127.0.0.1:6379", ok: true, with: map[string]string{"STRANGERS_TURN_ENABLED": "false"}},
			{value: "redis://127.0.0.1:6379", want: "all nodes must share one STRANGERS_TURN_SECRET"},
			{value: "http://127.0.0.1:6379", with: shared, want: "must be a redis:// or rediss:// URL, not http://"},
			{value: "127.0.0.1:6379", with: shared, want: "redis://"},
			{value: "redis://:pw@[::1", with: shared, want: "must be a URL"},
			{value: "redis:///0", with: shared, want: "must name the Redis host"},
			{value: "redis://h:0", with: shared, want: "port must be from 1 to 65535"},
			{value: "redis://h:6379/x", with: shared, want: "database number"},
			{value: "redis://h", with: map[string]string{"STRANGERS_REDIS_URL_FILE": file("redis-both", "redis://h\n")}, want: "not both"}},
		"STRANGERS_REDIS_URL_FILE": {
			{value: file("redis-url", "rediss://:pw@redis.example.com:6380\n"), ok: true, with: shared},
			{value: file("redis-url2", "redis://h\n"), want: "STRANGERS_REDIS_URL_FILE: all nodes must share"},
			{value: file("redis-ftp", "ftp://h\n"), with: shared, want: "not ftp://"},
			{value: file("redis-empty", "\n"), want: "is empty"},
			{value: filepath.Join(dir, "missing"), want: "cannot read file"}},
		"STRANGERS_NODE_ID": {
			{value: "node-1.eu_west", ok: true, with: redis},
			{value: "node 1", with: redis, want: "only letters, digits"},
			{value: "nöde", with: redis, want: "only letters, digits"},
			{value: "node/1", with: redis, want: "only letters, digits"},
			{value: "node-1", want: "Redis is not on"}},
	}
}

// boundaryWith sets other variables for the boundary values of one, when a
// relation between them would otherwise decide.
var boundaryWith = map[string]map[string]string{
	"STRANGERS_RELAY_PORT_MAX": {"STRANGERS_RELAY_PORT_MIN": "1"},
	"STRANGERS_NODE_ID":        {"STRANGERS_REDIS_URL": "redis://127.0.0.1:6379", "STRANGERS_TURN_SECRET": "0123456789abcdef"},
}

// boundCases derives from v's bounds tag the values at each bound, which
// are accepted, and those just beyond, which are refused with the rule the
// help text states.
func boundCases(t *testing.T, v variable) []envCase {
	if v.Bounds == "" {
		return nil
	}
	b := v.Bounds
	var lo, hi string
	loOpen := false
	switch {
	case strings.HasPrefix(b, ">="):
		lo = b[2:]
	case strings.HasPrefix(b, ">"):
		lo, loOpen = b[1:], true
	case strings.HasPrefix(b, "<="):
		hi = b[2:]
	default:
		var ok bool
		if lo, hi, ok = strings.Cut(b, ".."); !ok {
			t.Fatalf("%s: bounds %q", v.Name, b)
		}
	}
	// step returns the value s moved by n of the smallest steps of v's type.
	step := func(s string, n int) string {
		switch {
		case v.typ == reflect.TypeFor[time.Duration]():
			d, err := time.ParseDuration(s)
			if err != nil {
				t.Fatalf("%s: bounds %q: %v", v.Name, b, err)
			}
			return (d + time.Duration(n)).String()
		case v.typ.Kind() == reflect.Float64:
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("%s: bounds %q: %v", v.Name, b, err)
			}
			return strconv.FormatFloat(math.Nextafter(f, f+float64(n)), 'g', -1, 64)
		case v.typ.Kind() == reflect.String:
			l, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: bounds %q: %v", v.Name, b, err)
			}
			return strings.Repeat("s", l+n)
		default:
			i, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: bounds %q: %v", v.Name, b, err)
			}
			return strconv.Itoa(i + n)
		}
	}
	with := boundaryWith[v.Name]
	var cases []envCase
	if lo != "" {
		at, beyond := step(lo, 0), step(lo, -1)
		if loOpen {
			at, beyond = step(lo, 1), step(lo, 0)
		}
		cases = append(cases, envCase{value: at, ok: true, with: with}, envCase{value: beyond, with: with})
		if v.typ.Kind() != reflect.String && !strings.HasPrefix(beyond, "-") {
			cases = append(cases, envCase{value: step("0", -1), with: with}) // negative too
		}
	}
	if hi != "" {
		cases = append(cases, envCase{value: step(hi, 0), ok: true, with: with}, envCase{value: step(hi, 1), with: with})
	}
	for i := range cases {
		if !cases[i].ok {
			cases[i].want = v.rule()
		}
	}
	return cases
}

// TestConfigBoundaries feeds every variable the values at its bounds and
// just beyond them (a valid and an invalid value, for a variable without
// bounds): each is accepted, or refused with a message naming the variable
// and the value as written. A new variable fails here until it has bounds
// or cases.
func TestConfigBoundaries(t *testing.T) {
	t.Parallel()
	explicit := explicitCases(t)
	for _, v := range variables() {
		cases := append(boundCases(t, v), explicit[v.Name]...)
		delete(explicit, v.Name)
		var accepted, refused int
		for _, c := range cases {
			if c.ok {
				accepted++
			} else {
				refused++
			}
		}
		if accepted == 0 || refused == 0 {
			t.Errorf("%s: %d accepted and %d refused values: give it a bounds tag or cases in explicitCases", v.Name, accepted, refused)
			continue
		}
		if isNumber(v.typ) && v.Bounds == "" && v.Name != "STRANGERS_WS_PONG_WAIT" {
			t.Errorf("%s: a number without a bounds tag", v.Name)
		}
		for _, c := range cases {
			env := map[string]string{v.Name: c.value}
			for k, val := range c.with {
				env[k] = val
			}
			_, _, err := load(t, env)
			switch {
			case c.ok && err != nil:
				t.Errorf("%v refused: %v", env, err)
			case c.ok:
			case err == nil:
				t.Errorf("%v accepted", env)
			default:
				msg := err.Error()
				named := v.Name + "=" + c.value
				if v.Secret {
					named = v.Name
					if c.value != "" && strings.Contains(msg, c.value) && v.Name == "STRANGERS_TURN_SECRET" {
						t.Errorf("%s: message %q repeats the secret", v.Name, msg)
					}
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("%v: one mistake, several messages: %q", env, msg)
				}
				if !strings.Contains(msg, named) || !strings.Contains(msg, c.want) {
					t.Errorf("%v: message %q, want it to name %s and say %q", env, msg, named, c.want)
				}
				if !v.Secret && c.want != "" && c.want == v.rule() && !strings.Contains(msg, named+": "+c.want) {
					t.Errorf("%v: message %q, want %q", env, msg, named+": "+c.want)
				}
			}
		}
	}
	for name := range explicit {
		t.Errorf("explicitCases names %s, which is not a variable", name)
	}
}

// TestConfigSetsTags checks that each `sets` tag names a field of the
// library's Config that the variable sets.
func TestConfigSetsTags(t *testing.T) {
	t.Parallel()
	base, _, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	libField := func(s settings, field string) (reflect.Value, bool) {
		pkg, name, _ := strings.Cut(field, ".")
		var c reflect.Value
		switch pkg {
		case "signaling":
			c = reflect.ValueOf(signalingConfig(s))
		case "relay":
			c = reflect.ValueOf(relayConfig(s))
		default:
			return reflect.Value{}, false
		}
		f := c.FieldByName(name)
		return f, f.IsValid()
	}
	explicit := explicitCases(t)
	for _, v := range variables() {
		if v.Sets == "" {
			continue
		}
		before, ok := libField(base, v.Sets)
		if !ok {
			t.Errorf("%s: sets tag %q names no field of signaling.Config or relay.Config", v.Name, v.Sets)
			continue
		}
		changed := false
		for _, c := range append(boundCases(t, v), explicit[v.Name]...) {
			if !c.ok {
				continue
			}
			env := map[string]string{v.Name: c.value}
			for k, val := range c.with {
				env[k] = val
			}
			s, _, err := load(t, env)
			if err != nil {
				t.Fatalf("%v: %v", env, err)
			}
			after, _ := libField(s, v.Sets)
			if !reflect.DeepEqual(before.Interface(), after.Interface()) {
				changed = true
			}
		}
		if !changed {
			t.Errorf("%s: no accepted value changes %s: is the sets tag right?", v.Name, v.Sets)
		}
	}
}

// TestConfigIssueExamples: values that pass no library's rules are refused
// while loading, naming the variable, before anything listens.
func TestConfigIssueExamples(t *testing.T) {
	t.Parallel()
	_, _, err := load(t, map[string]string{
		"STRANGERS_WS_BURST":       "5",
		"STRANGERS_WS_MAX_MESSAGE": "2048",
		"STRANGERS_STATS_INTERVAL": "50ms",
	})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"STRANGERS_WS_BURST=5: must be at least 10",
		"STRANGERS_WS_MAX_MESSAGE=2048: must be from 4096 to 262144 bytes",
		"STRANGERS_STATS_INTERVAL=50ms: must be at least 100ms",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "RateBurst") || strings.Contains(err.Error(), "signaling:") {
		t.Errorf("message %q names a Go field", err)
	}
}
