package signaling

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Bounds of Config fields that Validate enforces.
const (
	minMessageSize = 4 << 10          // an SDP must fit
	maxMessageSize = maxDecodeMessage // Decode reads no more
	minRateBurst   = 10               // a burst of ICE candidates must fit
	minInterval    = 100 * time.Millisecond
	maxBufferSize  = 1 << 20
)

// FieldError reports a Config field whose value breaks a rule. Validate and
// New report every broken rule as one *FieldError, joined with errors.Join;
// errors.Is(err, ErrConfig) holds for each. A program that reads its
// configuration from elsewhere (environment variables, flags) finds them
// with errors.As and names Field in its own terms.
type FieldError struct {
	// Field is the Config field's name, e.g. "RateBurst".
	Field string
	// Value is the field's value as New would use it (a zero field counts
	// as its default).
	Value any
	// Rule says what the value must be, e.g. "must be at least 10".
	Rule string
	// Other, when set, is the Config field the rule compares Field with,
	// and OtherValue its value: the rule reads Rule, then Other, as in
	// "must be shorter than" PongWait.
	Other      string
	OtherValue any
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString("signaling: invalid config: ")
	b.WriteString(e.Field)
	if e.Value != nil {
		fmt.Fprintf(&b, " %v", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Rule)
	if e.Other != "" {
		fmt.Fprintf(&b, " %s (%v)", e.Other, e.OtherValue)
	}
	return b.String()
}

// Unwrap returns ErrConfig.
func (e *FieldError) Unwrap() error { return ErrConfig }

// Validate reports every field of c that breaks a rule, each as a
// *FieldError, joined; nil means New accepts c. Zero fields count as their
// defaults, as in New.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field string, value any, rule string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Rule: rule})
	}

	for _, o := range c.AllowedOrigins {
		if _, ok := normalizeOrigin(o); !ok && o != "*" {
			bad("AllowedOrigins", strings.Join(c.AllowedOrigins, ","), fmt.Sprintf("%q is not an origin like https://chat.example.com, nor *", o))
			break
		}
	}
	if n := len(c.IdentityKey); n > 0 && n < IdentityKeyLen {
		bad("IdentityKey", fmt.Sprintf("%d bytes", n), fmt.Sprintf("must be at least %d bytes", IdentityKeyLen))
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			bad("TrustedProxies", c.TrustedProxies, "must hold only valid prefixes")
			break
		}
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"InterestWait", c.InterestWait},
		{"ResumeGrace", c.ResumeGrace},
		{"RestartRetry", c.RestartRetry},
		{"HandshakeTimeout", c.HandshakeTimeout},
		{"HelloTimeout", c.HelloTimeout},
		{"PongWait", c.PongWait},
		{"WriteWait", c.WriteWait},
		{"NextCooldown", c.NextCooldown},
	} {
		if d.v <= 0 {
			bad(d.name, d.v, "must be positive")
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"PingInterval", c.PingInterval}, {"StatsInterval", c.StatsInterval}} {
		if d.v < minInterval {
			bad(d.name, d.v, "must be at least "+minInterval.String())
		}
	}
	if c.PingInterval >= minInterval && c.PongWait > 0 && c.PongWait <= c.PingInterval {
		errs = append(errs, &FieldError{Field: "PingInterval", Value: c.PingInterval, Rule: "must be shorter than", Other: "PongWait", OtherValue: c.PongWait})
	}

	if c.MaxMessageSize < minMessageSize || c.MaxMessageSize > maxMessageSize {
		bad("MaxMessageSize", c.MaxMessageSize, fmt.Sprintf("must be from %d to %d bytes", minMessageSize, maxMessageSize))
	}
	if !(c.RateLimit > 0) || math.IsInf(c.RateLimit, 0) {
		bad("RateLimit", c.RateLimit, "must be positive and finite (messages per second)")
	}
	if c.RateBurst < minRateBurst {
		bad("RateBurst", c.RateBurst, fmt.Sprintf("must be at least %d", minRateBurst))
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"RecentPartners", c.RecentPartners},
		{"MaxConnsPerIP", c.MaxConnsPerIP},
		{"SendQueue", c.SendQueue},
	} {
		if n.v < 1 {
			bad(n.name, n.v, "must be at least 1")
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"ReadBufferSize", c.ReadBufferSize}, {"WriteBufferSize", c.WriteBufferSize}} {
		if n.v < 1 || n.v > maxBufferSize {
			bad(n.name, n.v, fmt.Sprintf("must be from 1 to %d bytes", maxBufferSize))
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns c with every zero field that has a default set to
// it. Logger, Registerer and Rand are filled by New.
func (c Config) withDefaults() Config {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.InterestWait, 5 * time.Second},
		{&c.ResumeGrace, 15 * time.Second},
		{&c.RestartRetry, 2 * time.Second},
		{&c.HandshakeTimeout, 10 * time.Second},
		{&c.HelloTimeout, 10 * time.Second},
		{&c.PingInterval, 20 * time.Second},
		{&c.PongWait, 30 * time.Second},
		{&c.WriteWait, 10 * time.Second},
		{&c.StatsInterval, 5 * time.Second},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		v   *int
		def int
	}{
		{&c.RecentPartners, 3},
		{&c.RateBurst, 60},
		{&c.MaxConnsPerIP, 32},
		{&c.SendQueue, 256},
		{&c.ReadBufferSize, 512},
		{&c.WriteBufferSize, 4 << 10},
	} {
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if c.NextRate == 0 {
		c.NextRate = 20
	}
	if c.NextCooldown == 0 {
		c.NextCooldown = 30 * time.Second
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 64 << 10
	}
	if c.RateLimit == 0 {
		c.RateLimit = 20
	}
	return c
}
