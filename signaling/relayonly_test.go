package signaling

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestScrubCandidate(t *testing.T) {
	tests := []struct {
		in, want string
		keep     bool
	}{
		{"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host generation 0", "", false},
		{"candidate:1 1 udp 2122260223 3b8b0d3c-5a0d-4bd2-8f0c-1c7a4c1f8f0a.local 54321 typ host", "", false},
		{"candidate:2 1 udp 1686052607 198.51.100.7 40000 typ srflx raddr 192.0.2.1 rport 54321", "", false},
		{"candidate:3 1 udp 1686052607 198.51.100.7 40000 typ prflx raddr 192.0.2.1 rport 54321", "", false},
		{"candidate:4 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active", "", false},
		{"candidate:5 1 udp 41885439 203.0.113.5 50000 typ relay raddr 198.51.100.7 rport 40000 generation 0",
			"candidate:5 1 udp 41885439 203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 0 generation 0", true},
		{"candidate:6 1 udp 41885439 203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 0",
			"candidate:6 1 udp 41885439 203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 0", true},
		{"", "", true}, // end of candidates
		{"garbage", "", false},
	}
	for _, tt := range tests {
		got, keep := scrubCandidate(tt.in)
		if keep != tt.keep || (keep && got != tt.want) {
			t.Errorf("scrubCandidate(%q) = %q, %v; want %q, %v", tt.in, got, keep, tt.want, tt.keep)
		}
	}
}

const sdpWithCandidates = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
	"c=IN IP4 198.51.100.7\r\n" +
	"a=rtcp:40001 IN IP4 198.51.100.7\r\n" +
	"a=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host generation 0\r\n" +
	"a=candidate:2 1 udp 1686052607 198.51.100.7 40000 typ srflx raddr 192.0.2.1 rport 54321\r\n" +
	"a=candidate:5 1 udp 41885439 203.0.113.5 50000 typ relay raddr 198.51.100.7 rport 40000\r\n" +
	"a=end-of-candidates\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" +
	"c=IN IP6 2001:db8::1\r\n" +
	"a=mid:1\r\n"

func TestScrubSDP(t *testing.T) {
	got := scrubSDP(sdpWithCandidates)
	for _, leak := range []string{"192.0.2.1", "198.51.100.7", "2001:db8::1", "typ host", "typ srflx"} {
		if strings.Contains(got, leak) {
			t.Errorf("scrubbed SDP still holds %q:\n%s", leak, got)
		}
	}
	for _, keep := range []string{
		"a=candidate:5 1 udp 41885439 203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 0\r\n",
		"c=IN IP4 0.0.0.0\r\n", "a=rtcp:40001 IN IP4 0.0.0.0\r\n", "c=IN IP6 ::\r\n",
		"a=end-of-candidates\r\n", "a=mid:1\r\n", "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n",
	} {
		if !strings.Contains(got, keep) {
			t.Errorf("scrubbed SDP lacks %q:\n%s", keep, got)
		}
	}
	if plain := "v=0\r\ns=-\r\n"; scrubSDP(plain) != plain {
		t.Error("an SDP with nothing to hide changed")
	}
}

// The other side never receives a host or srflx candidate, nor an address
// in an SDP, from a side that asked to hide its IP.
func TestRelayOnlyHidesAddresses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	hider, other := e.dial(), e.dial()
	hider.hello()
	other.hello()
	hider.send(Find{Type: TypeFind, Mode: ModeVideo, RelayOnly: true})
	hider.expect(TypeWaiting)
	other.find(ModeVideo)
	mh, mo := hider.expect(TypeMatched), other.expect(TypeMatched)
	if !mh.RelayOnly || mo.RelayOnly {
		t.Fatalf("relayOnly echo: hider %v, other %v", mh.RelayOnly, mo.RelayOnly)
	}
	m := mh.Match

	hider.send(Signal{Type: TypeSignal, Match: m, SDP: &SessionDescription{Type: "offer", SDP: sdpWithCandidates}})
	for _, c := range []string{
		"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host generation 0",
		"candidate:2 1 udp 1686052607 198.51.100.7 40000 typ srflx raddr 192.0.2.1 rport 54321",
		"candidate:5 1 udp 41885439 203.0.113.5 50000 typ relay raddr 198.51.100.7 rport 40000",
		"",
	} {
		hider.send(Signal{Type: TypeSignal, Match: m, Candidate: &ICECandidate{Candidate: c, SDPMid: ptr("0")}})
	}
	hider.send(Chat{Type: TypeChat, Match: m, Text: "done"})

	offer := other.expect(TypeSignal)
	if strings.Contains(offer.SDP.SDP, "192.0.2.1") || strings.Contains(offer.SDP.SDP, "198.51.100.7") {
		t.Fatalf("offer leaks an address:\n%s", offer.SDP.SDP)
	}
	relay := other.expect(TypeSignal)
	if relay.Candidate == nil || !strings.Contains(relay.Candidate.Candidate, "typ relay raddr 0.0.0.0 rport 0") {
		t.Fatalf("relay candidate arrived as %+v", relay.Candidate)
	}
	if eoc := other.expect(TypeSignal); eoc.Candidate == nil || eoc.Candidate.Candidate != "" {
		t.Fatalf("end-of-candidates arrived as %+v", eoc)
	}
	other.expect(TypeChat) // nothing in between: host and srflx were dropped

	// The other side did not ask: its candidates pass untouched.
	host := "candidate:1 1 udp 2122260223 192.0.2.50 5000 typ host"
	other.send(Signal{Type: TypeSignal, Match: m, Candidate: &ICECandidate{Candidate: host}})
	if got := hider.expect(TypeSignal); got.Candidate.Candidate != host {
		t.Fatalf("%+v", got.Candidate)
	}
	if got := counter(e.hub.m.dropped.WithLabelValues(dropRelayOnly)); got != 2 {
		t.Fatalf("relay_only drops %v, want 2", got)
	}
}

// leaks are the sender's own addresses that crafted SDPs below slip in.
var leaks = []netip.Addr{
	netip.MustParseAddr("192.0.2.1"),
	netip.MustParseAddr("198.51.100.7"),
	netip.MustParseAddr("10.1.2.3"),
	netip.MustParseAddr("2001:db8:1:2:3:4:5:6"),
	netip.MustParseAddr("2001:db8::1"),
	netip.MustParseAddr("fe80::1234:5678"),
}

// relayAddr is the relay's address, which must survive.
const relayAddr = "203.0.113.5"

// leakForms are the spellings of a that could reach the partner.
func leakForms(a netip.Addr) []string {
	forms := []string{a.String(), a.StringExpanded(), strings.ToUpper(a.String())}
	if a.Is4() {
		b := a.As4()
		forms = append(forms,
			"::ffff:"+a.String(),
			fmt.Sprintf("%03d.%03d.%03d.%03d", b[0], b[1], b[2], b[3]),
			fmt.Sprintf("::ffff:%02x%02x:%02x%02x", b[0], b[1], b[2], b[3]))
	}
	return forms
}

// tellingForms are leakForms and, for IPv6, the /64 prefix alone when it
// is more than one group: what must not be left of a leak. (A group glued
// to a word is taken for the word's tail, "candidate:" style, so 16 bits
// may stay.)
func tellingForms(a netip.Addr) []string {
	forms := leakForms(a)
	if a.Is6() {
		p, _ := a.Prefix(64)
		if prefix := strings.TrimSuffix(p.Addr().String(), "::"); strings.Contains(prefix, ":") {
			forms = append(forms, prefix)
		}
	}
	return forms
}

// craftedLines slip the leaks in every way we could think of; %s is one
// leak, as written.
var craftedLines = []string{
	"o=- 4611731400430051336 2 IN IP4 %s",
	"o=- 4611731400430051336 2 in ip6 %s",
	"o=%s 1 1 IN IP4 127.0.0.1",
	"c=IN IP4 %s/127/2",
	"c=IN  IP6   %s",
	"  c=IN IP4 %s",
	"C=IN IP4 %s",
	"a=rtcp:9 IN IP4 %s",
	"A=RTCP:9 in ip4 %s",
	"a=x-foo:%s",
	"a=x-feed:%s",
	"a=x-abcde:%s",
	"a=x-addr:[%s]:5000",
	"a=x-addr:%s:5000",
	"a=x-note:reach me at %s.",
	"a=x-zone:%s%%eth0",
	"a=candidate:1 1 udp 2122260223 %s 54321 typ host generation 0",
	"A=CANDIDATE:1 1 UDP 2122260223 %s 54321 TYP HOST",
	"\ta=candidate:1 1 udp 2122260223 %s 54321 typ host",
	"a=candidate:2 1 udp 1686052607 %s 40000 typ srflx raddr 192.0.2.1 rport 54321",
	"a=candidate:5 1 udp 41885439 " + relayAddr + " 50000 typ relay raddr %s rport 40000",
	"a=candidate:5 1 udp 41885439 " + relayAddr + " 50000 TYP RELAY RADDR %s RPORT 40000",
	"a=candidate:5 1 udp 41885439 " + relayAddr + " 50000 typ relay raddr 0.0.0.0 rport 0 x-leak %s",
	"a=candidate:5 1 udp 41885439 %s 50000 typ host x relay",
	"a=candidate:%s 1 udp 41885439 " + relayAddr + " 50000 typ relay",
	"a=mid:0\ra=candidate:1 1 udp 2122260223 %s 54321 typ host",
	"a=ice-options:trickle %s",
}

func TestScrubSDPLeavesNoAddress(t *testing.T) {
	var sdp strings.Builder
	sdp.WriteString("v=0\r\n")
	for _, leak := range leaks {
		for _, form := range leakForms(leak) {
			for _, line := range craftedLines {
				fmt.Fprintf(&sdp, line+"\r\n", form)
			}
		}
	}
	sdp.WriteString("a=candidate:9 1 udp 41885439 " + relayAddr + " 50001 typ relay raddr 10.1.2.3 rport 1\n")
	sdp.WriteString("a=candidate:9 1 udp 41885439 3b8b0d3c-5a0d-4bd2-8f0c-1c7a4c1f8f0a.local 50001 typ relay\n")
	sdp.WriteString("a=x-name:3b8b0d3c-5a0d-4bd2-8f0c-1c7a4c1f8f0a.local\n")
	got := scrubSDP(sdp.String())
	for _, leak := range leaks {
		for _, form := range tellingForms(leak) {
			if i := strings.Index(strings.ToLower(got), strings.ToLower(form)); i >= 0 {
				start := max(0, strings.LastIndex(got[:i], "\n")+1)
				end := i + strings.Index(got[i:], "\n")
				t.Errorf("scrubbed SDP still holds %q: %q", form, got[start:end])
			}
		}
	}
	if strings.Contains(got, ".local") {
		t.Error("scrubbed SDP still holds an mDNS name")
	}
	if !strings.Contains(got, "a=candidate:9 1 udp 41885439 "+relayAddr+" 50001 typ relay raddr 0.0.0.0 rport 0\n") {
		t.Error("the relay candidate did not survive")
	}
	// Idempotent: scrubbing a scrubbed SDP changes nothing.
	if again := scrubSDP(got); again != got {
		a, b := strings.Split(got, "\n"), strings.Split(again, "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Errorf("scrubbing twice changed %q to %q", a[i], b[i])
				break
			}
		}
	}
}

// What a browser writes for a relay-only sender stays a valid SDP that
// keeps everything the call needs: relay candidates, fingerprint, ICE
// credentials, codecs.
func TestScrubSDPKeepsBrowserOfferValid(t *testing.T) {
	offer := "v=0\r\n" +
		"o=- 4611731400430051336 2 IN IP4 192.0.2.1\r\n" +
		"s=-\r\n" +
		"t=0 0\r\n" +
		"a=group:BUNDLE 0 1\r\n" +
		"a=extmap-allow-mixed\r\n" +
		"a=msid-semantic: WMS\r\n" +
		"m=audio 50000 UDP/TLS/RTP/SAVPF 111\r\n" +
		"c=IN IP4 " + relayAddr + "\r\n" +
		"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
		"a=candidate:5 1 udp 41885439 " + relayAddr + " 50000 typ relay raddr 198.51.100.7 rport 40000 generation 0 network-id 1\r\n" +
		"a=ice-ufrag:Ab+/\r\n" +
		"a=ice-pwd:0123456789abcdef+/ABCDEF\r\n" +
		"a=ice-options:trickle\r\n" +
		"a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n" +
		"a=setup:actpass\r\n" +
		"a=mid:0\r\n" +
		"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" +
		"a=sendrecv\r\n" +
		"a=rtcp-mux\r\n" +
		"a=rtpmap:111 opus/48000/2\r\n" +
		"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
		"a=ssrc:1001 cname:AbCdEf\r\n" +
		"m=application 50000 UDP/DTLS/SCTP webrtc-datachannel\r\n" +
		"c=IN IP6 2001:db8::1\r\n" +
		"a=mid:1\r\n" +
		"a=sctp-port:5000\r\n" +
		"a=max-message-size:262144\r\n"
	got := scrubSDP(offer)
	for _, line := range strings.SplitAfter(offer, "\r\n") {
		if strings.HasPrefix(line, "o=") || strings.HasPrefix(line, "c=") || strings.HasPrefix(line, "a=candidate") {
			continue
		}
		if !strings.Contains(got, line) {
			t.Errorf("line %q changed", line)
		}
	}
	for _, want := range []string{
		"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n",
		"c=IN IP4 0.0.0.0\r\n",
		"c=IN IP6 ::\r\n",
		"a=candidate:5 1 udp 41885439 " + relayAddr + " 50000 typ relay raddr 0.0.0.0 rport 0 generation 0 network-id 1\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("scrubbed offer lacks %q:\n%s", want, got)
		}
	}
	sd := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: got}
	if _, err := sd.Unmarshal(); err != nil {
		t.Errorf("scrubbed offer does not parse: %v\n%s", err, got)
	}
}

func TestScrubICECandidate(t *testing.T) {
	mid, ufrag := "192.0.2.1", "2001:db8::1"
	c := ICECandidate{
		Candidate:        "candidate:5 1 udp 41885439 " + relayAddr + " 50000 typ relay raddr 192.0.2.1 rport 4",
		SDPMid:           &mid,
		UsernameFragment: &ufrag,
	}
	if !scrubICECandidate(&c) {
		t.Fatal("relay candidate dropped")
	}
	if *c.SDPMid != "0.0.0.0" || *c.UsernameFragment != "::" || strings.Contains(c.Candidate, "192.0.2.1") {
		t.Errorf("scrubbed candidate %q, mid %q, ufrag %q", c.Candidate, *c.SDPMid, *c.UsernameFragment)
	}
	if mid != "192.0.2.1" {
		t.Error("scrubbing wrote through the sender's sdpMid")
	}
}

// Through the hub, between real WebSocket clients: a crafted offer and
// candidate from a relayOnly sender reach the partner with no address of
// the sender in any field.
func TestRelayOnlyHidesCraftedAddresses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	hider, other := e.dial(), e.dial()
	hider.hello()
	other.hello()
	hider.send(Find{Type: TypeFind, Mode: ModeVideo, RelayOnly: true})
	hider.expect(TypeWaiting)
	other.find(ModeVideo)
	m := hider.expect(TypeMatched).Match
	other.expect(TypeMatched)

	var sdp strings.Builder
	sdp.WriteString("v=0\r\n")
	for _, line := range craftedLines {
		fmt.Fprintf(&sdp, line+"\r\n", "2001:db8:1:2:3:4:5:6")
		fmt.Fprintf(&sdp, line+"\r\n", "192.0.2.1")
	}
	hider.send(Signal{Type: TypeSignal, Match: m, SDP: &SessionDescription{Type: "offer", SDP: sdp.String()}})
	hider.send(Signal{Type: TypeSignal, Match: m, Candidate: &ICECandidate{
		Candidate:        "candidate:5 1 udp 41885439 " + relayAddr + " 50000 typ relay raddr 192.0.2.1 rport 4 x 2001:db8:1:2::9",
		SDPMid:           ptr("192.0.2.1"),
		UsernameFragment: ptr("2001:db8:1:2::7"),
	}})
	var got []string
	offer := other.expect(TypeSignal)
	got = append(got, offer.SDP.SDP)
	cand := other.expect(TypeSignal)
	got = append(got, cand.Candidate.Candidate, *cand.Candidate.SDPMid, *cand.Candidate.UsernameFragment)
	for _, field := range got {
		for _, leak := range []string{"192.0.2.1", "2001:db8:1:2", "c000:201", "2001:0db8"} {
			if strings.Contains(strings.ToLower(field), leak) {
				t.Errorf("the partner received %q in %q", leak, field)
			}
		}
	}
	if !strings.Contains(cand.Candidate.Candidate, relayAddr+" 50000 typ relay raddr 0.0.0.0 rport 0") {
		t.Errorf("relay candidate arrived as %q", cand.Candidate.Candidate)
	}
}

// FuzzScrubSDPHidesAddress puts a leak between arbitrary text: whatever
// surrounds it, no spelling of it survives, except as the address of a
// relay candidate (the relay's, by definition).
func FuzzScrubSDPHidesAddress(f *testing.F) {
	for _, line := range craftedLines {
		before, after, _ := strings.Cut(line, "%s")
		f.Add(before, after, uint8(0))
		f.Add(before, after, uint8(3))
	}
	f.Add("a=candidate:5 1 udp 1 ", " 5 typ relay", uint8(0))
	f.Add("ab", ".5", uint8(1))
	f.Fuzz(func(t *testing.T, before, after string, which uint8) {
		leak := leaks[int(which)%len(leaks)]
		for _, form := range leakForms(leak) {
			got := scrubSDP(before + form + after)
			var kept []string
			for _, line := range strings.Split(got, "\n") {
				if f := strings.Fields(line); hasPrefixFold(strings.TrimSpace(line), "a=candidate:") && len(f) > 4 {
					f[4] = "relay"
					line = strings.Join(f, " ")
				}
				kept = append(kept, strings.ToLower(line))
			}
			out := strings.Join(kept, "\n")
			for _, telling := range tellingForms(leak) {
				if strings.Contains(out, strings.ToLower(telling)) && !strings.Contains(strings.ToLower(before+after), strings.ToLower(telling)) {
					t.Fatalf("%q survives in %q (from %q)", telling, got, before+form+after)
				}
			}
		}
	})
}
