package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Bounds of Config fields that Validate enforces.
const (
	// MinSecretLen is the shortest Secret accepted, in bytes.
	MinSecretLen = 16
	// MaxRealmLen is the longest Realm accepted, in bytes. The 401
	// challenge carries the realm and a nonce, and every response to an
	// unauthenticated request stays within three times the request's size;
	// the smallest Allocate a client may send (REQUESTED-TRANSPORT only) is
	// 28 bytes, so the challenge must fit 84: header 20, ERROR-CODE 8 (no
	// reason phrase), NONCE 32, REALM 4+20.
	MaxRealmLen = 20
	// MaxUDPSockets is the most UDPSockets accepted.
	MaxUDPSockets = maxUDPSockets
	// MaxChannels is the most MaxChannelsPerAllocation accepted: the
	// channel numbers TURN has (0x4000-0x7FFF).
	MaxChannels = 0x4000
)

// FieldError reports a Config field whose value breaks a rule. Validate and
// New report every broken rule as one *FieldError, joined with errors.Join;
// errors.Is(err, ErrConfig) holds for each. A program that reads its
// configuration from elsewhere (environment variables, flags) finds them
// with errors.As and names Field in its own terms.
type FieldError struct {
	// Field is the Config field's name, e.g. "PortMin".
	Field string
	// Value is the field's value as New would use it (a zero field counts
	// as its default); nil for Secret, which is never repeated.
	Value any
	// Rule says what the value must be, e.g. "must be from 1 to 65535".
	Rule string
	// Other, when set, is the Config field the rule compares Field with,
	// and OtherValue its value: the rule reads Rule, then Other, as in
	// "must not be above" PortMax.
	Other      string
	OtherValue any

	err error // the underlying cause, if any
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString("relay: invalid config: ")
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

// Unwrap returns ErrConfig and the cause, if there is one (ErrNoSecret for
// a missing Secret).
func (e *FieldError) Unwrap() []error {
	if e.err != nil {
		return []error{ErrConfig, e.err}
	}
	return []error{ErrConfig}
}

// Validate reports every field of cfg that breaks a rule, each as a
// *FieldError, joined; nil means New accepts cfg (it can still fail to
// open its sockets). Zero fields count as their defaults, as in New.
// Validate opens nothing.
func (cfg Config) Validate() error {
	c := cfg.defaulted()
	var errs []error
	bad := func(field string, value any, rule string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Rule: rule})
	}

	if host, port, err := net.SplitHostPort(c.ListenAddr); err != nil {
		bad("ListenAddr", c.ListenAddr, "must be host:port or :port")
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("ListenAddr", c.ListenAddr, "must have a port from 0 to 65535")
	} else if _, err := netip.ParseAddr(host); host != "" && err != nil {
		bad("ListenAddr", c.ListenAddr, "must have an IP address as host (or none, for all addresses)")
	}
	if c.UDPSockets < 0 || c.UDPSockets > MaxUDPSockets {
		bad("UDPSockets", c.UDPSockets, fmt.Sprintf("must be from 0 to %d (0: one per CPU)", MaxUDPSockets))
	}
	if a := c.PublicIP.Unmap(); c.PublicIP.IsValid() &&
		(!a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		bad("PublicIP", c.PublicIP, "must be a unicast IPv4 address (relay addresses are IPv4)")
	}
	if a := c.BindIP.Unmap(); c.BindIP.IsValid() &&
		(!a.Is4() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		bad("BindIP", c.BindIP, "must be an IPv4 address (relay addresses are IPv4)")
	}
	if c.PublicHost != "" {
		if err := validHost(c.PublicHost); err != nil || strings.HasPrefix(c.PublicHost, "[") {
			bad("PublicHost", c.PublicHost, "must be a host name or an IP address, without scheme, brackets or port")
		}
	}

	if c.TLSPort < 0 || c.TLSPort > 65535 {
		bad("TLSPort", c.TLSPort, "must be from 1 to 65535, or 0 for none")
	}

	portsOK := true
	for _, p := range []struct {
		name string
		v    int
	}{{"PortMin", c.PortMin}, {"PortMax", c.PortMax}} {
		if p.v < 1 || p.v > 65535 {
			bad(p.name, p.v, "must be from 1 to 65535")
			portsOK = false
		}
	}
	if portsOK && c.PortMin > c.PortMax {
		errs = append(errs, &FieldError{Field: "PortMin", Value: c.PortMin, Rule: "must not be above", Other: "PortMax", OtherValue: c.PortMax})
	}

	if len(c.Realm) > MaxRealmLen {
		bad("Realm", c.Realm, fmt.Sprintf("must be at most %d bytes (the 401 challenge must fit three times the smallest Allocate)", MaxRealmLen))
	}
	switch {
	case len(c.Secret) == 0:
		errs = append(errs, &FieldError{Field: "Secret", Rule: "is required", err: ErrNoSecret})
	case len(c.Secret) < MinSecretLen:
		bad("Secret", nil, fmt.Sprintf("must be at least %d bytes", MinSecretLen))
	}
	for _, sec := range c.OldSecrets {
		if len(sec) < MinSecretLen {
			bad("OldSecrets", nil, fmt.Sprintf("must each be at least %d bytes", MinSecretLen))
			break
		}
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"CredentialTTL", c.CredentialTTL},
		{"SessionGrace", c.SessionGrace},
		{"TCPFirstMessageTimeout", c.TCPFirstMessageTimeout},
		{"TCPIdleTimeout", c.TCPIdleTimeout},
	} {
		if d.v <= 0 {
			bad(d.name, d.v, "must be positive")
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"SessionQuota", c.SessionQuota},
		{"TotalQuota", c.TotalQuota},
		{"IPQuota", c.IPQuota},
		{"MaxPermissionsPerAllocation", c.MaxPermissionsPerAllocation},
		{"TCPMaxConnsPerIP", c.TCPMaxConnsPerIP},
	} {
		if n.v < 1 {
			bad(n.name, n.v, "must be at least 1")
		}
	}
	if n := c.MaxChannelsPerAllocation; n < 1 || n > MaxChannels {
		bad("MaxChannelsPerAllocation", n, fmt.Sprintf("must be from 1 to %d", MaxChannels))
	}

	for _, p := range c.AllowPeers {
		if !p.IsValid() {
			bad("AllowPeers", c.AllowPeers, "must hold only valid prefixes")
			break
		}
	}
	for i, l := range c.StreamListeners {
		if l == nil {
			bad("StreamListeners", nil, fmt.Sprintf("element %d is nil", i))
		}
	}
	for i, srv := range c.ExtraICEServers {
		if err := srv.validate(); err != nil {
			errs = append(errs, &FieldError{Field: "ExtraICEServers", Rule: fmt.Sprintf("server %d: %v", i, err), err: err})
		}
	}
	return errors.Join(errs...)
}

// defaulted returns cfg with every zero field that has a default set to it.
// UDPSockets and the addresses are resolved later, in withDefaults and New.
func (cfg Config) defaulted() Config {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultListenAddr
	}
	if cfg.PortMin == 0 {
		cfg.PortMin = DefaultPortMin
	}
	if cfg.PortMax == 0 {
		cfg.PortMax = DefaultPortMax
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.MaxBitrate == 0 {
		cfg.MaxBitrate = DefaultMaxBitrate
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.CredentialTTL, DefaultCredentialTTL},
		{&cfg.SessionGrace, DefaultSessionGrace},
		{&cfg.TCPFirstMessageTimeout, DefaultTCPFirstMessageTimeout},
		{&cfg.TCPIdleTimeout, DefaultTCPIdleTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		v   *int
		def int
	}{
		{&cfg.SessionQuota, DefaultSessionQuota},
		{&cfg.TotalQuota, DefaultTotalQuota},
		{&cfg.IPQuota, DefaultIPQuota},
		{&cfg.MaxPermissionsPerAllocation, DefaultMaxPermissions},
		{&cfg.MaxChannelsPerAllocation, DefaultMaxChannels},
		{&cfg.TCPMaxConnsPerIP, DefaultTCPMaxConnsPerIP},
	} {
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	return cfg
}
