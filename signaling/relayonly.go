package signaling

import "strings"

// A session that asked relayOnly ("hide my IP") must never reveal an address
// of its own to the partner, even if its browser slips one into what it
// sends. The hub therefore rewrites what such a sender relays:
//
//   - candidates of any type but relay are dropped;
//   - a relay candidate's related address ("raddr … rport …", which names the
//     sender's own address in some browsers) becomes 0.0.0.0 port 0;
//   - in an SDP, non-relay a=candidate lines are removed, relay ones rewritten
//     as above, and the connection addresses of c= and a=rtcp lines become
//     0.0.0.0 (or ::), which trickle ICE ignores anyway.
//
// The end-of-candidates marker (an empty candidate) passes unchanged.

// candidateType returns the value after "typ" in a candidate line, "" if
// there is none.
func candidateType(line string) string {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "typ" {
			return f[i+1]
		}
	}
	return ""
}

// scrubCandidate returns the candidate line as a relayOnly sender may
// forward it, and false if it must be dropped.
func scrubCandidate(line string) (string, bool) {
	if strings.TrimSpace(line) == "" {
		return line, true
	}
	if candidateType(line) != "relay" {
		return "", false
	}
	f := strings.Fields(line)
	changed := false
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "raddr":
			if f[i+1] != "0.0.0.0" {
				f[i+1], changed = "0.0.0.0", true
			}
		case "rport":
			if f[i+1] != "0" {
				f[i+1], changed = "0", true
			}
		}
	}
	if !changed {
		return line, true
	}
	return strings.Join(f, " "), true
}

// scrubSDP applies the relayOnly rules to a session description.
func scrubSDP(sdp string) string {
	if !strings.Contains(sdp, "a=candidate:") && !strings.Contains(sdp, "IN IP") {
		return sdp
	}
	lines := strings.SplitAfter(sdp, "\n")
	var b strings.Builder
	b.Grow(len(sdp))
	for _, raw := range lines {
		line, eol := splitEOL(raw)
		switch {
		case strings.HasPrefix(line, "a=candidate:"):
			cand, ok := scrubCandidate(strings.TrimPrefix(line, "a="))
			if !ok {
				continue
			}
			line = "a=" + cand
		case strings.HasPrefix(line, "c="), strings.HasPrefix(line, "a=rtcp:"):
			line = blankAddress(line)
		}
		b.WriteString(line)
		b.WriteString(eol)
	}
	return b.String()
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

// blankAddress replaces the address after "IN IP4" or "IN IP6".
func blankAddress(line string) string {
	f := strings.Fields(line)
	for i := 0; i+2 < len(f); i++ {
		if f[i] != "IN" && !strings.HasSuffix(f[i], "IN") {
			continue
		}
		switch f[i+1] {
		case "IP4":
			f[i+2] = "0.0.0.0"
		case "IP6":
			f[i+2] = "::"
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
		line, ok := scrubCandidate(m.Candidate.Candidate)
		m.Candidate.Candidate = line
		return ok
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
