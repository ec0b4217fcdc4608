package main

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"

	"github.com/strangers-chat/strangers/relay"
	"github.com/strangers-chat/strangers/signaling"
)

// The rules a value must follow live with the library it configures: each
// library's Config.Validate reports broken rules as *FieldError values
// naming its own fields. A config field's `sets` tag names the library
// field it sets ("signaling.RateBurst"), so that such an error is reported
// as the variable and the value the operator wrote. Its `bounds` tag states
// the range for the help text and the README; the tests hold it to the
// library's rule.

// signalingConfig is the part of signaling.Config the settings decide; the
// caller adds the ICE provider, the session observer, the logger and the
// registry.
func signalingConfig(s settings) signaling.Config {
	return signaling.Config{
		AllowedOrigins: s.AllowedOrigins,
		TrustedProxies: s.trustedProxies,
		InterestWait:   s.InterestWait,
		ResumeGrace:    s.ResumeGrace,
		MaxMessageSize: s.WSMaxMessage,
		RateLimit:      s.WSRate,
		RateBurst:      s.WSBurst,
		MaxConnsPerIP:  s.WSMaxPerIP,
		HelloTimeout:   s.WSHelloTimeout,
		PingInterval:   s.WSPingInterval,
		PongWait:       s.WSPongWait,
		WriteWait:      s.WSWriteTimeout,
		SendQueue:      s.WSSendQueue,
		StatsInterval:  s.StatsInterval,
		NextRate:       nextRate(s.NextRate),
	}
}

// nextRate maps STRANGERS_NEXT_RATE to signaling.Config.NextRate: the
// variable's 0 (no limit) is the library's negative.
func nextRate(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// relayConfig is the part of relay.Config the settings decide; the caller
// adds the stream listeners, the logger and the registry, and may replace
// PublicHost with the certificate's host name.
func relayConfig(s settings) relay.Config {
	return relay.Config{
		ListenAddr:    s.TURNAddr,
		UDPSockets:    s.TURNUDPSockets,
		PublicIP:      advertisedIP(s),
		PublicHost:    s.PublicHost,
		BindIP:        s.relayBindIP,
		PortMin:       s.RelayPortMin,
		PortMax:       s.RelayPortMax,
		Realm:         s.TURNRealm,
		Secret:        s.turnSecret,
		OldSecrets:    s.turnOldSecrets,
		CredentialTTL: s.TURNCredentialTTL,
		SessionQuota:  s.TURNSessionQuota,
		IPQuota:       s.TURNIPQuota,
		TotalQuota:    s.TURNTotalQuota,
		AllowPeers:    s.allowPeers,
		SessionGrace:  s.TURNSessionGrace,

		MaxPermissionsPerAllocation: s.TURNMaxPerms,
		MaxChannelsPerAllocation:    s.TURNMaxChannels,
		TCPMaxConnsPerIP:            s.TURNTCPMaxPerIP,
		TCPFirstMessageTimeout:      s.TURNTCPFirstMsg,
		TCPIdleTimeout:              s.TURNTCPIdle,
		MaxBitrate:                  relayBitrate(s.TURNMaxBitrate),
		NoFastPath:                  !s.TURNFastPath,

		ExtraICEServers: s.extraICE,
	}
}

// relayBitrate maps STRANGERS_TURN_MAX_BITRATE to relay.Config.MaxBitrate:
// the variable's 0 (no cap) is the relay's negative.
func relayBitrate(bits int64) int64 {
	if bits == 0 {
		return -1
	}
	return bits
}

// checkLibraries validates what the settings give each library, with the
// library's own rules, and reports each broken rule as the variable that
// sets the field. It also refuses an explicit 0 for a variable whose
// library would take 0 to mean its own default: unset the variable for the
// default instead.
func checkLibraries(c config, s settings, vars []variable, environment map[string]string) []error {
	var errs []error
	cv := reflect.ValueOf(c)
	for _, v := range vars {
		raw, set := environment[v.Name]
		if !set || v.Sets == "" || v.Default == "" || v.Zero != "" || !isZeroNumber(cv.FieldByName(v.field)) {
			continue
		}
		rule := v.rule()
		if rule == "" {
			rule = "must not be 0"
		}
		errs = append(errs, varError(v, raw, rule))
	}
	errs = append(errs, nameFields(signalingConfig(s).Validate(), vars, environment)...)
	errs = append(errs, nameFields(relayConfig(s).Validate(), vars, environment)...)
	return errs
}

// nameFields rewrites every library *FieldError in err as an error naming
// the variable that sets the field and its value; other errors are kept.
func nameFields(err error, vars []variable, environment map[string]string) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		switch fe := e.(type) { //nolint:errorlint // walks the joined tree itself, one level at a time
		case nil:
		case *signaling.FieldError:
			out = append(out, fieldError(e, "signaling.", fe.Field, fe.Rule, fe.Other, fe.OtherValue, vars, environment))
		case *relay.FieldError:
			out = append(out, fieldError(e, "relay.", fe.Field, fe.Rule, fe.Other, fe.OtherValue, vars, environment))
		case interface{ Unwrap() []error }:
			for _, inner := range fe.Unwrap() {
				walk(inner)
			}
		default:
			out = append(out, e)
		}
	}
	walk(err)
	return out
}

func fieldError(orig error, pkg, field, rule, other string, otherValue any, vars []variable, environment map[string]string) error {
	v, ok := variableFor(pkg+field, vars, environment)
	if !ok {
		return orig // a field no variable sets: not the operator's doing
	}
	if other != "" {
		if o, ok := variableFor(pkg+other, vars, environment); ok {
			rule += " " + o.Name + "=" + valueOf(o, environment)
		} else {
			rule += fmt.Sprintf(" %s (%v)", other, otherValue)
		}
	}
	return varError(v, valueOf(v, environment), rule)
}

// variableFor finds the variable whose `sets` tag names field, preferring
// one that is set when several are (STRANGERS_TURN_SECRET and its _FILE).
func variableFor(field string, vars []variable, environment map[string]string) (variable, bool) {
	var found variable
	ok := false
	for _, v := range vars {
		if v.Sets != field {
			continue
		}
		if _, set := environment[v.Name]; set {
			return v, true
		}
		if !ok {
			found, ok = v, true
		}
	}
	return found, ok
}

// valueOf is the value of v as written in the environment, else its
// default.
func valueOf(v variable, environment map[string]string) string {
	if raw, ok := environment[v.Name]; ok {
		return raw
	}
	return v.Default
}

// isZeroNumber reports whether v is a number equal to 0 (-0 included).
func isZeroNumber(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Int, reflect.Int64:
		return v.Int() == 0
	case reflect.Float64:
		return v.Float() == 0
	}
	return false
}

func isNumber(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Float64:
		return true
	}
	return false
}

// rule renders the `bounds` tag as the rule a value breaks, in the words
// the libraries use: ">=X" is "must be at least X", ">X" "must be more
// than X" (">0": "must be positive"), "<=Y" "must be at most Y" and "X..Y"
// "must be from X to Y". For a string the bounds are on its length. The
// `unit` tag follows a plain number. "" without bounds.
func (v variable) rule() string {
	b := v.Bounds
	unit := ""
	if v.Unit != "" {
		unit = " " + v.Unit
	}
	switch {
	case b == "":
		return ""
	case b == ">0":
		return "must be positive"
	case strings.HasPrefix(b, ">="):
		return "must be at least " + b[2:] + unit
	case strings.HasPrefix(b, ">"):
		return "must be more than " + b[1:] + unit
	case strings.HasPrefix(b, "<="):
		return "must be at most " + b[2:] + unit
	}
	lo, hi, _ := strings.Cut(b, "..")
	return "must be from " + lo + " to " + hi + unit
}

// helpText is the help tag followed by the bounds, as a sentence.
func (v variable) helpText() string {
	r := []rune(v.rule())
	if len(r) == 0 {
		return v.Help
	}
	r[0] = unicode.ToUpper(r[0])
	return v.Help + " " + string(r) + "."
}
