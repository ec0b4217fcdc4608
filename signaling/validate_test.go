package signaling

import (
	"errors"
	"math"
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
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name  string
		cfg   Config
		field string // "": valid
		rule  string // part of the rule
	}{
		{"origins", Config{AllowedOrigins: []string{"https://chat.example.com", "http://localhost:8080", "*"}}, "", ""},
		{"origin without scheme", Config{AllowedOrigins: []string{"https://a.example", "chat.example.com"}}, "AllowedOrigins", `"chat.example.com" is not an origin`},
		{"origin with path", Config{AllowedOrigins: []string{"https://chat.example.com/x"}}, "AllowedOrigins", "not an origin"},
		{"invalid proxy prefix", Config{TrustedProxies: []netip.Prefix{{}}}, "TrustedProxies", "valid prefixes"},
		{"interest wait 1ns", Config{InterestWait: time.Nanosecond}, "", ""},
		{"interest wait negative", Config{InterestWait: -time.Nanosecond}, "InterestWait", "positive"},
		{"resume grace negative", Config{ResumeGrace: -time.Second}, "ResumeGrace", "positive"},
		{"handshake timeout negative", Config{HandshakeTimeout: -1}, "HandshakeTimeout", "positive"},
		{"hello timeout negative", Config{HelloTimeout: -1}, "HelloTimeout", "positive"},
		{"write wait negative", Config{WriteWait: -1}, "WriteWait", "positive"},
		{"pong wait negative", Config{PongWait: -1}, "PongWait", "positive"},
		{"ping interval 100ms", Config{PingInterval: 100 * time.Millisecond}, "", ""},
		{"ping interval below 100ms", Config{PingInterval: 100*time.Millisecond - 1}, "PingInterval", "at least 100ms"},
		{"stats interval 100ms", Config{StatsInterval: 100 * time.Millisecond}, "", ""},
		{"stats interval below 100ms", Config{StatsInterval: 100*time.Millisecond - 1}, "StatsInterval", "at least 100ms"},
		{"pong wait just over ping", Config{PingInterval: time.Second, PongWait: time.Second + 1}, "", ""},
		{"pong wait equal to ping", Config{PingInterval: time.Second, PongWait: time.Second}, "PingInterval", "must be shorter than"},
		{"ping over default pong", Config{PingInterval: time.Minute}, "PingInterval", "must be shorter than"},
		{"message 4 KiB", Config{MaxMessageSize: 4096}, "", ""},
		{"message below 4 KiB", Config{MaxMessageSize: 4095}, "MaxMessageSize", "from 4096 to 262144 bytes"},
		{"message 256 KiB", Config{MaxMessageSize: 256 << 10}, "", ""},
		{"message above 256 KiB", Config{MaxMessageSize: 256<<10 + 1}, "MaxMessageSize", "from 4096 to 262144 bytes"},
		{"rate tiny", Config{RateLimit: math.SmallestNonzeroFloat64}, "", ""},
		{"rate negative", Config{RateLimit: -1}, "RateLimit", "positive"},
		{"rate NaN", Config{RateLimit: math.NaN()}, "RateLimit", "finite"},
		{"rate infinite", Config{RateLimit: math.Inf(1)}, "RateLimit", "finite"},
		{"burst 10", Config{RateBurst: 10}, "", ""},
		{"burst 9", Config{RateBurst: 9}, "RateBurst", "at least 10"},
		{"recent partners 1", Config{RecentPartners: 1}, "", ""},
		{"recent partners -1", Config{RecentPartners: -1}, "RecentPartners", "at least 1"},
		{"conns per ip 1", Config{MaxConnsPerIP: 1}, "", ""},
		{"conns per ip -1", Config{MaxConnsPerIP: -1}, "MaxConnsPerIP", "at least 1"},
		{"send queue 1", Config{SendQueue: 1}, "", ""},
		{"send queue -1", Config{SendQueue: -1}, "SendQueue", "at least 1"},
		{"read buffer 1 MiB", Config{ReadBufferSize: 1 << 20}, "", ""},
		{"read buffer above 1 MiB", Config{ReadBufferSize: 1<<20 + 1}, "ReadBufferSize", "from 1 to 1048576 bytes"},
		{"write buffer -1", Config{WriteBufferSize: -1}, "WriteBufferSize", "from 1 to 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
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
// rules at once, and that a relation names both fields.
func TestValidateReportsEveryField(t *testing.T) {
	t.Parallel()
	err := Config{RateBurst: 5, MaxMessageSize: 2048, StatsInterval: 50 * time.Millisecond, PingInterval: time.Second, PongWait: time.Second}.Validate()
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if errors.As(e, &fe) {
			fields = append(fields, fe.Field)
		}
	}
	if got, want := strings.Join(fields, " "), "StatsInterval PingInterval MaxMessageSize RateBurst"; got != want {
		t.Errorf("fields = %q, want %q", got, want)
	}
	if !strings.Contains(err.Error(), "PingInterval 1s: must be shorter than PongWait (1s)") {
		t.Errorf("message %q does not state the relation", err)
	}
}
