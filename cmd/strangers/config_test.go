package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, env map[string]string) (settings, []string, error) {
	t.Helper()
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	return loadConfig(func(k string) string { return env[k] }, names)
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	s, warnings, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %v", warnings)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"HTTPAddr", s.HTTPAddr, ":8080"},
		{"TURNAddr", s.TURNAddr, ":3478"},
		{"TURNEnabled", s.TURNEnabled, true},
		{"LogLevel", s.LogLevel, "info"},
		{"LogFormat", s.LogFormat, "text"},
		{"ShutdownGrace", s.ShutdownGrace, 10 * time.Second},
		{"InterestWait", s.InterestWait, 5 * time.Second},
		{"ResumeGrace", s.ResumeGrace, 15 * time.Second},
		{"WSMaxMessage", s.WSMaxMessage, int64(64 << 10)},
		{"RelayPortMin", s.RelayPortMin, 49152},
		{"RelayPortMax", s.RelayPortMax, 65535},
		{"TURNRealm", s.TURNRealm, "strangers"},
		{"TURNCredentialTTL", s.TURNCredentialTTL, time.Hour},
		{"TURNSessionQuota", s.TURNSessionQuota, 10},
		{"publicIP set", s.publicIP.IsValid(), false},
		{"secretRandom", s.secretRandom && len(s.turnSecret) == 32, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestConfigRejectsInvalidValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  map[string]string
		want string // the message must contain this: the variable and its value
	}{
		{map[string]string{"STRANGERS_HTTP_ADDR": "8080"}, "STRANGERS_HTTP_ADDR=8080"},
		{map[string]string{"STRANGERS_HTTP_ADDR": ":99999"}, "STRANGERS_HTTP_ADDR=:99999"},
		{map[string]string{"STRANGERS_TURN_ADDR": "localhost"}, "STRANGERS_TURN_ADDR=localhost"},
		{map[string]string{"STRANGERS_PUBLIC_IP": "1.2.3"}, "STRANGERS_PUBLIC_IP=1.2.3"},
		{map[string]string{"STRANGERS_PUBLIC_IP": "0.0.0.0"}, "STRANGERS_PUBLIC_IP=0.0.0.0"},
		{map[string]string{"STRANGERS_PUBLIC_HOST": "https://chat.example.com"}, "STRANGERS_PUBLIC_HOST=https://chat.example.com"},
		{map[string]string{"STRANGERS_ALLOWED_ORIGINS": "chat.example.com"}, "STRANGERS_ALLOWED_ORIGINS=chat.example.com"},
		{map[string]string{"STRANGERS_TRUSTED_PROXIES": "10.0.0.0/33"}, "STRANGERS_TRUSTED_PROXIES=10.0.0.0/33"},
		{map[string]string{"STRANGERS_LOG_LEVEL": "loud"}, "STRANGERS_LOG_LEVEL=loud"},
		{map[string]string{"STRANGERS_LOG_FORMAT": "xml"}, "STRANGERS_LOG_FORMAT=xml"},
		{map[string]string{"STRANGERS_SHUTDOWN_GRACE": "soon"}, "STRANGERS_SHUTDOWN_GRACE=soon"},
		{map[string]string{"STRANGERS_SHUTDOWN_GRACE": "-1s"}, "STRANGERS_SHUTDOWN_GRACE=-1s"},
		{map[string]string{"STRANGERS_INTEREST_WAIT": "0s"}, "STRANGERS_INTEREST_WAIT=0s"},
		{map[string]string{"STRANGERS_RESUME_GRACE": "x"}, "STRANGERS_RESUME_GRACE=x"},
		{map[string]string{"STRANGERS_WS_MAX_MESSAGE": "12"}, "STRANGERS_WS_MAX_MESSAGE=12"},
		{map[string]string{"STRANGERS_WS_RATE": "0"}, "STRANGERS_WS_RATE=0"},
		{map[string]string{"STRANGERS_WS_BURST": "many"}, "STRANGERS_WS_BURST=many"},
		{map[string]string{"STRANGERS_WS_MAX_PER_IP": "0"}, "STRANGERS_WS_MAX_PER_IP=0"},
		{map[string]string{"STRANGERS_WS_PING_INTERVAL": "1m"}, "STRANGERS_WS_PING_INTERVAL=1m: must be shorter than STRANGERS_WS_PONG_WAIT=30s"},
		{map[string]string{"STRANGERS_WS_SEND_QUEUE": "0"}, "STRANGERS_WS_SEND_QUEUE=0"},
		{map[string]string{"STRANGERS_TURN_ENABLED": "maybe"}, "STRANGERS_TURN_ENABLED=maybe"},
		{map[string]string{"STRANGERS_TURN_UDP_SOCKETS": "-1"}, "STRANGERS_TURN_UDP_SOCKETS=-1"},
		{map[string]string{"STRANGERS_RELAY_BIND_IP": "eth0"}, "STRANGERS_RELAY_BIND_IP=eth0"},
		{map[string]string{"STRANGERS_RELAY_PORT_MIN": "70000"}, "STRANGERS_RELAY_PORT_MIN=70000: must be from 1 to 65535"},
		{map[string]string{"STRANGERS_RELAY_PORT_MAX": "0"}, "STRANGERS_RELAY_PORT_MAX=0: must be from 1 to 65535"},
		{map[string]string{"STRANGERS_RELAY_PORT_MIN": "60000", "STRANGERS_RELAY_PORT_MAX": "50000"}, "STRANGERS_RELAY_PORT_MIN=60000"},
		{map[string]string{"STRANGERS_RELAY_ALLOW_PEERS": "127.0.0.0/8,nope"}, "STRANGERS_RELAY_ALLOW_PEERS=127.0.0.0/8,nope"},
		{map[string]string{"STRANGERS_TURN_SECRET": "short"}, "STRANGERS_TURN_SECRET: must be at least 16 bytes"},
		{map[string]string{"STRANGERS_TURN_REALM": ""}, ""}, // empty means default: accepted
		{map[string]string{"STRANGERS_TURN_CREDENTIAL_TTL": "0s"}, "STRANGERS_TURN_CREDENTIAL_TTL=0s"},
		{map[string]string{"STRANGERS_TURN_SESSION_QUOTA": "0"}, "STRANGERS_TURN_SESSION_QUOTA=0"},
		{map[string]string{"STRANGERS_TURN_TOTAL_QUOTA": "-5"}, "STRANGERS_TURN_TOTAL_QUOTA=-5"},
		{map[string]string{"STRANGERS_TURN_IP_QUOTA": "0"}, "STRANGERS_TURN_IP_QUOTA=0"},
		{map[string]string{"STRANGERS_TURN_REALM": "a-realm-of-21-bytes.x"}, "STRANGERS_TURN_REALM=a-realm-of-21-bytes.x: must be at most 20 bytes"},
		{map[string]string{"STRANGERS_TURN_OLD_SECRETS": "0123456789abcdef0123,short"}, "STRANGERS_TURN_OLD_SECRETS: must each be at least 16 bytes"},
		{map[string]string{"STRANGERS_TURN_OLD_SECRETS": "0123456789abcdef0123", "STRANGERS_TURN_OLD_SECRETS_FILE": "/dev/null"},
			"set either it or STRANGERS_TURN_OLD_SECRETS_FILE"},
		{map[string]string{"STRANGERS_ICE_SERVERS": "stun:x"}, "STRANGERS_ICE_SERVERS=stun:x"},
		{map[string]string{"STRANGERS_TURN_SECRET_FILE": "/nonexistent/secret"}, "STRANGERS_TURN_SECRET_FILE=/nonexistent/secret: cannot read file"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			_, _, err := load(t, c.env)
			if c.want == "" {
				if err != nil {
					t.Fatalf("%v: unexpected error %v", c.env, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%v accepted", c.env)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestConfigNeverEchoesSecrets(t *testing.T) {
	t.Parallel()
	_, _, err := load(t, map[string]string{"STRANGERS_TURN_SECRET": "hunter2"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want a refusal that does not repeat the secret", err)
	}
	_, _, err = load(t, map[string]string{"STRANGERS_TURN_SECRET": "0123456789abcdef0123", "STRANGERS_TURN_SECRET_FILE": "/dev/null"})
	if err == nil || strings.Contains(err.Error(), "0123456789abcdef") {
		t.Fatalf("error %v: want a refusal that does not repeat the secret", err)
	}
}

func TestConfigReadsSecretFromFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("a-long-shared-secret-from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, err := load(t, map[string]string{"STRANGERS_TURN_SECRET_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.turnSecret); got != "a-long-shared-secret-from-a-file" {
		t.Errorf("secret = %q", got)
	}
	s, _, err = load(t, map[string]string{"STRANGERS_TURN_SECRET": "0123456789abcdef0123"})
	if err != nil || string(s.turnSecret) != "0123456789abcdef0123" {
		t.Errorf("secret from variable = %q, %v", s.turnSecret, err)
	}
}

func TestConfigWarnsAboutUnknownVariables(t *testing.T) {
	t.Parallel()
	_, warnings, err := load(t, map[string]string{
		"STRANGERS_HTTP_ADRR":    ":9090", // a typo
		"STRANGERS_HTTP_ADDR":    ":9091",
		"STRANGERS_TEST_REQUIRE": "all",
		"HOME":                   "/root",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "STRANGERS_HTTP_ADRR") {
		t.Fatalf("warnings = %q, want one naming STRANGERS_HTTP_ADRR", warnings)
	}
}

func TestConfigParsesListsAndAddresses(t *testing.T) {
	t.Parallel()
	s, _, err := load(t, map[string]string{
		"STRANGERS_PUBLIC_IP":         "203.0.113.7",
		"STRANGERS_PUBLIC_HOST":       "chat.example.com",
		"STRANGERS_ALLOWED_ORIGINS":   "https://chat.example.com,http://localhost:8080",
		"STRANGERS_RELAY_ALLOW_PEERS": "127.0.0.0/8, 10.1.2.3",
		"STRANGERS_ICE_SERVERS":       `[{"urls":"stun:stun.example.com:3478"}]`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.publicIP.String() != "203.0.113.7" {
		t.Errorf("publicIP = %v", s.publicIP)
	}
	if len(s.AllowedOrigins) != 2 {
		t.Errorf("AllowedOrigins = %q", s.AllowedOrigins)
	}
	if len(s.allowPeers) != 2 || s.allowPeers[1].String() != "10.1.2.3/32" {
		t.Errorf("allowPeers = %v", s.allowPeers)
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	printUsage(&b)
	for _, v := range variables() {
		if v.Name == "" || v.Help == "" {
			t.Errorf("field %s lacks an env name or help text", v.field)
		}
		if !strings.Contains(b.String(), v.Name) {
			t.Errorf("usage lacks %s", v.Name)
		}
		if r := v.rule(); r != "" && !strings.Contains(b.String(), strings.TrimPrefix(r, "must")+".") {
			t.Errorf("usage does not state the bounds of %s (%s)", v.Name, r)
		}
	}
}

func TestConfigReadsOldSecrets(t *testing.T) {
	t.Parallel()
	s, _, err := load(t, map[string]string{"STRANGERS_TURN_OLD_SECRETS": " first-old-secret-0123 ,second-old-secret-4567"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.turnOldSecrets) != 2 || string(s.turnOldSecrets[0]) != "first-old-secret-0123" ||
		string(s.turnOldSecrets[1]) != "second-old-secret-4567" {
		t.Errorf("old secrets = %q", s.turnOldSecrets)
	}
	path := filepath.Join(t.TempDir(), "old-secrets")
	if err := os.WriteFile(path, []byte("first-old-secret-0123\nsecond-old-secret-4567,third-old-secret-89ab\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, err = load(t, map[string]string{"STRANGERS_TURN_OLD_SECRETS_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.turnOldSecrets) != 3 || string(s.turnOldSecrets[2]) != "third-old-secret-89ab" {
		t.Errorf("old secrets from file = %q", s.turnOldSecrets)
	}
	s, _, err = load(t, map[string]string{})
	if err != nil || len(s.turnOldSecrets) != 0 {
		t.Errorf("default old secrets = %q, %v", s.turnOldSecrets, err)
	}
	_, _, err = load(t, map[string]string{"STRANGERS_TURN_OLD_SECRETS": "tiny-secret"})
	if err == nil || strings.Contains(err.Error(), "tiny-secret") {
		t.Errorf("error %v: want a refusal that does not repeat the secret", err)
	}
}

func TestConfigRedis(t *testing.T) {
	t.Parallel()
	const secret = "0123456789abcdef"
	s, _, err := load(t, nil)
	if err != nil || s.redisURL != "" || s.nodeID != "" {
		t.Fatalf("default: redisURL %q, nodeID %q, %v: want no Redis", s.redisURL, s.nodeID, err)
	}

	path := filepath.Join(t.TempDir(), "redis-url")
	if err := os.WriteFile(path, []byte("rediss://:hunter2-password@redis.internal:6380/2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, err = load(t, map[string]string{"STRANGERS_REDIS_URL_FILE": path, "STRANGERS_TURN_SECRET": secret})
	if err != nil {
		t.Fatal(err)
	}
	if s.redisURL != "rediss://:hunter2-password@redis.internal:6380/2" || s.redisHost != "redis.internal:6380" {
		t.Errorf("from the file: redisURL %q, redisHost %q", s.redisURL, s.redisHost)
	}

	s, _, err = load(t, map[string]string{"STRANGERS_REDIS_URL": "redis://[::1]", "STRANGERS_TURN_SECRET": secret, "STRANGERS_NODE_ID": "eu-1"})
	if err != nil || s.redisHost != "[::1]:6379" || s.nodeID != "eu-1" {
		t.Errorf("redisHost %q, nodeID %q, %v", s.redisHost, s.nodeID, err)
	}

	// The default node id: the host name and a random suffix, in the safe
	// set, different at every start.
	ids := map[string]bool{}
	for range 2 {
		s, _, err := load(t, map[string]string{"STRANGERS_REDIS_URL": "redis://h", "STRANGERS_TURN_SECRET": secret})
		if err != nil {
			t.Fatal(err)
		}
		if s.nodeID == "" || len(s.nodeID) > maxNodeID || strings.IndexFunc(s.nodeID, func(r rune) bool { return !nodeIDRune(r) }) >= 0 {
			t.Errorf("default node id %q", s.nodeID)
		}
		if host, _ := os.Hostname(); host != "" && validHost(host) && !strings.HasPrefix(s.nodeID, host[:min(len(host), 20)]) {
			t.Errorf("default node id %q does not start with the host name %q", s.nodeID, host)
		}
		ids[s.nodeID] = true
	}
	if len(ids) != 2 {
		t.Errorf("two starts, node ids %v: want two", ids)
	}
}

// TestConfigRedisNeedsSharedSecret: with Redis, a random TURN secret would
// differ on every node; the error says why.
func TestConfigRedisNeedsSharedSecret(t *testing.T) {
	t.Parallel()
	_, _, err := load(t, map[string]string{"STRANGERS_REDIS_URL": "redis://:pw@127.0.0.1:6379"})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"STRANGERS_TURN_SECRET", "STRANGERS_REDIS_URL", "all nodes must share"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	for _, env := range []map[string]string{
		{"STRANGERS_REDIS_URL": "redis://h", "STRANGERS_TURN_ENABLED": "false"},
		{"STRANGERS_REDIS_URL": "redis://h", "STRANGERS_TURN_SECRET": "0123456789abcdef"},
	} {
		if _, _, err := load(t, env); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}

// TestConfigNeverEchoesRedisPassword: whatever is wrong with the URL, the
// message does not repeat it.
func TestConfigNeverEchoesRedisPassword(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"http://:hunter2@h:6379", "redis://:hunter2@h:99999", "redis://:hunter2@[::1", "redis://:hunter2@h/db",
		"redis://:hunter2@h", // refused for the random TURN secret
	} {
		_, _, err := load(t, map[string]string{"STRANGERS_REDIS_URL": u})
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "STRANGERS_REDIS_URL") {
			t.Errorf("%s: error %v: want a refusal naming the variable, without the password", u, err)
		}
	}
}
