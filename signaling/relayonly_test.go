package signaling

import (
	"strings"
	"testing"
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
