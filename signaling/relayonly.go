package signaling

import (
	"net/netip"
	"regexp"
	"strings"
)

// A session that asked relayOnly ("hide my IP") must never reveal an address
// of its own to the partner, even if its browser slips one into what it
// sends. The partner's page can read every byte of a relayed signal, not
// only what its browser parses, so the hub rewrites what such a sender
// relays:
//
//   - candidates of any type but relay are dropped, and so is anything that
//     does not parse as a candidate line;
//   - a relay candidate keeps its address (the relay's) and port; its
//     related address ("raddr … rport …", which names the sender's own
//     address in some browsers) becomes 0.0.0.0 port 0;
//   - in an SDP, non-relay a=candidate lines are removed and relay ones
//     rewritten as above; the address of the o= line becomes 127.0.0.1 (or
//     ::1), as Chrome writes it, and those of c= and a=rtcp lines 0.0.0.0
//     (or ::), which trickle ICE ignores anyway;
//   - everywhere else (any line of an SDP, the other fields of a candidate,
//     sdpMid and usernameFragment) every address-like token is replaced:
//     IPv4 dotted quads, IPv6 literals in any spelling (IPv4-mapped,
//     compressed or not, any case, with a zone or a port), anything else
//     of three or more colon-separated hex groups (truncated IPv6
//     prefixes, MACs) but a certificate fingerprint, and mDNS host names
//     (….local). Loopback and unspecified addresses stay:
//     they reveal nothing.
//
// Line prefixes are matched without regard to case or leading whitespace,
// so a line a browser would reject cannot carry an address past the rules.
// Addresses written in other notations (a bare integer, hex bytes) are
// beyond reach; no browser writes them.
//
// The end-of-candidates marker (an empty candidate) passes unchanged.

// Replacements for scrubbed addresses.
const (
	hidden4     = "0.0.0.0"
	hidden6     = "::"
	hiddenOrig4 = "127.0.0.1" // the o= line's address, as Chrome writes it
	hiddenOrig6 = "::1"
)

// scrubCandidate returns the candidate line as a relayOnly sender may
// forward it, and false if it must be dropped. A kept line is a relay
// candidate, "candidate:<foundation> <component> <transport> <priority>
// <address> <port> typ relay" and attribute pairs.
func scrubCandidate(line string) (string, bool) {
	if strings.TrimSpace(line) == "" {
		return line, true
	}
	f := strings.Fields(line)
	if len(f) < 8 || !strings.EqualFold(f[6], "typ") || !strings.EqualFold(f[7], "relay") ||
		isMDNSName(f[4]) {
		return "", false
	}
	for i, v := range f {
		switch {
		case i == 4 || i == 5:
			// The relay's address and port: what the partner must reach.
		case i >= 9 && (i-8)%2 == 1 && strings.EqualFold(f[i-1], "raddr"):
			f[i] = hidden4
		case i >= 9 && (i-8)%2 == 1 && strings.EqualFold(f[i-1], "rport"):
			f[i] = "0"
		default:
			f[i] = scrubText(v)
		}
	}
	out := strings.Join(f, " ")
	if out == strings.TrimSpace(line) && !strings.ContainsAny(line, "\t\r\n") {
		return line, true
	}
	return out, true
}

// scrubICECandidate applies the relayOnly rules to a trickled candidate,
// in place (the pointers it replaces are not written through); false
// means drop it.
func scrubICECandidate(c *ICECandidate) bool {
	line, ok := scrubCandidate(c.Candidate)
	if !ok {
		return false
	}
	c.Candidate = line
	for _, p := range []**string{&c.SDPMid, &c.UsernameFragment} {
		if *p != nil {
			v := scrubText(**p)
			*p = &v
		}
	}
	return true
}

// scrubSDP applies the relayOnly rules to a session description.
func scrubSDP(sdp string) string {
	lines := strings.SplitAfter(sdp, "\n")
	var b strings.Builder
	b.Grow(len(sdp))
	for _, raw := range lines {
		line, eol := splitEOL(raw)
		trimmed := strings.TrimSpace(line)
		switch {
		case hasPrefixFold(trimmed, "a=candidate:"):
			cand, ok := scrubCandidate(trimmed[len("a="):])
			if !ok {
				continue
			}
			line = "a=" + cand
		case hasPrefixFold(trimmed, "o="):
			line = scrubText(replaceAddress(line, hiddenOrig4, hiddenOrig6))
		case hasPrefixFold(trimmed, "c="), hasPrefixFold(trimmed, "a=rtcp:"):
			line = scrubText(replaceAddress(line, hidden4, hidden6))
		default:
			line = scrubText(line)
		}
		b.WriteString(line)
		b.WriteString(eol)
	}
	return b.String()
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// splitEOL separates a line from its CRLF or LF ending.
func splitEOL(s string) (line, eol string) {
	switch {
	case strings.HasSuffix(s, "\r\n"):
		return s[:len(s)-2], "\r\n"
	case strings.HasSuffix(s, "\n"):
		return s[:len(s)-1], "\n"
	}
	return s, ""
}

// replaceAddress replaces the address after "IN IP4" or "IN IP6" (any
// case; with its /ttl and /count, and whether a literal or a host name)
// with v4 or v6.
func replaceAddress(line, v4, v6 string) string {
	f := strings.Fields(line)
	for i := 0; i+2 < len(f); i++ {
		if !strings.EqualFold(f[i], "IN") && !hasSuffixFold(f[i], "IN") {
			continue
		}
		switch {
		case strings.EqualFold(f[i+1], "IP4"):
			f[i+2] = v4
		case strings.EqualFold(f[i+1], "IP6"):
			f[i+2] = v6
		default:
			continue
		}
		return strings.Join(f, " ")
	}
	return line
}

// scrub applies the relayOnly rules above to a signal; false means
// drop it.
func scrub(m *Signal) bool {
	if m.Candidate != nil {
		return scrubICECandidate(m.Candidate)
	}
	m.SDP.SDP = scrubSDP(m.SDP.SDP)
	return true
}

// scrubEncoded returns a signal as a relayOnly sender may send it, encoded,
// or drop. It leaves m as it was.
func scrubEncoded(m *Signal) (data []byte, drop bool) {
	cp := *m
	if m.Candidate != nil {
		cand := *m.Candidate
		cp.Candidate = &cand
	} else {
		sdp := *m.SDP
		cp.SDP = &sdp
	}
	if !scrub(&cp) {
		return nil, true
	}
	return encode(&cp), false
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

var (
	// hexRun is a run of the characters IP literals are written with, and
	// an optional zone.
	hexRun = regexp.MustCompile(`[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*(%[0-9A-Za-z_.-]+)?`)
	// dottedQuad is an IPv4 address, also with leading zeros.
	dottedQuad = regexp.MustCompile(`[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}`)
	// mdnsName is a host name in .local (mDNS), as browsers write host
	// candidates to hide the address.
	mdnsName = regexp.MustCompile(`(?i)[0-9a-z_-]+(\.[0-9a-z_-]+)*\.local\b`)
)

func isMDNSName(s string) bool { return mdnsName.FindString(s) == s }

// scrubText replaces every address-like token in s (see the rules above).
func scrubText(s string) string {
	if !strings.ContainsAny(s, ".:") {
		return s
	}
	var b strings.Builder
	last := 0
	for _, loc := range hexRun.FindAllStringIndex(s, -1) {
		b.WriteString(s[last:loc[0]])
		// A run that starts inside a word ("…te" of "candidate:…") keeps
		// that word's tail.
		inWord := loc[0] > 0 && isWordByte(s[loc[0]-1])
		b.WriteString(scrubRun(s[loc[0]:loc[1]], inWord))
		last = loc[1]
	}
	b.WriteString(s[last:])
	return mdnsName.ReplaceAllString(b.String(), hidden4)
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// scrubRun rewrites one run of hex digits, dots and colons; inWord says
// the run's text up to its first colon ends a word.
func scrubRun(run string, inWord bool) string {
	zone := ""
	if i := strings.IndexByte(run, '%'); i >= 0 {
		run, zone = run[:i], run[i:]
	}
	if i := strings.IndexByte(run, ':'); inWord && i >= 0 {
		// "candidate:2001:db8::1": the word's tail, then an address. If
		// what follows the colon is no address, the tail may be the first
		// group of one glued to the word, and the whole run goes.
		if _, err := netip.ParseAddr(strings.TrimRight(run[i+1:], ".")); err == nil {
			return run[:i+1] + scrubRun(run[i+1:]+zone, false)
		}
	}
	if a, err := netip.ParseAddr(run); err == nil {
		if revealing(a) {
			return hiddenFor(a)
		}
		return run + zone
	}
	if strings.Count(run, ":") >= 2 && !hexBytes(run) {
		// IPv6-like: a mangled, truncated or prefixed literal, one with a
		// port, or a MAC.
		lead := ""
		if strings.HasPrefix(run, ":") && !strings.HasPrefix(run, "::") {
			lead, run = ":", run[1:]
		}
		if a, err := netip.ParseAddr(strings.TrimRight(run, ".")); err == nil && !revealing(a) {
			return lead + run + zone
		}
		return lead + hidden6
	}
	// Dotted quads inside a run ("1.2.3.4:5000", "x:1.2.3.4.").
	return dottedQuad.ReplaceAllStringFunc(run, func(q string) string {
		if a, err := netip.ParseAddr(q); err == nil && !revealing(a) {
			return q
		}
		return hidden4
	}) + zone
}

// hexBytes reports whether run is a long string of colon-separated hex
// bytes, like a certificate fingerprint (16 or more groups of two digits),
// which no address is.
func hexBytes(run string) bool {
	groups := strings.Split(run, ":")
	if len(groups) < 16 {
		return false
	}
	for _, g := range groups {
		if len(g) != 2 {
			return false
		}
	}
	return true
}

// revealing reports whether a is an address that says something about its
// owner: anything but loopback and unspecified.
func revealing(a netip.Addr) bool {
	u := a.Unmap()
	return !u.IsLoopback() && !u.IsUnspecified()
}

func hiddenFor(a netip.Addr) string {
	if a.Is4() {
		return hidden4
	}
	return hidden6
}
