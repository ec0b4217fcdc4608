package signaling

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{`{"type":"hello","version":1}`, &Hello{Type: TypeHello, Version: 1}},
		{`{"type":"hello","version":1,"resume":"tok"}`, &Hello{Type: TypeHello, Version: 1, Resume: "tok"}},
		{`{"type":"find","mode":"text"}`, &Find{Type: TypeFind, Mode: ModeText}},
		{`{"type":"find","mode":"video","interests":[" Go ","go","", "MUSIC"],"relayOnly":true,"interestsOnly":true}`,
			&Find{Type: TypeFind, Mode: ModeVideo, Interests: []string{"go", "music"}, RelayOnly: true, InterestsOnly: true}},
		{`{"type":"find","mode":"video","interests":["   "]}`, &Find{Type: TypeFind, Mode: ModeVideo}},
		{`{"type":"next"}`, &Next{Type: TypeNext}},
		{` {"type":"stop"} `, &Stop{Type: TypeStop}},
		{`{"type":"signal","match":"m","sdp":{"type":"answer","sdp":"v=0"}}`,
			&Signal{Type: TypeSignal, Match: "m", SDP: &SessionDescription{Type: "answer", SDP: "v=0"}}},
		{`{"type":"signal","match":"m","candidate":{"candidate":"c","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":null}}`,
			&Signal{Type: TypeSignal, Match: "m", Candidate: &ICECandidate{Candidate: "c"}}},
		{`{"type":"signal","match":"m","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":1,"usernameFragment":"u"}}`,
			&Signal{Type: TypeSignal, Match: "m", Candidate: &ICECandidate{Candidate: "c", SDPMid: ptr("0"), SDPMLineIndex: ptr[uint16](1), UsernameFragment: ptr("u")}}},
		{`{"type":"chat","match":"m","text":"` + strings.Repeat("é", MaxChatLen) + `"}`, &Chat{Type: TypeChat, Match: "m", Text: strings.Repeat("é", MaxChatLen)}},
		{`{"type":"typing","match":"m","typing":true}`, &Typing{Type: TypeTyping, Match: "m", Typing: true}},
		{`{"type":"media","match":"m","camera":false,"mic":true}`, &Media{Type: TypeMedia, Match: "m", Mic: true}},
		{`{"type":"report","match":"m","reason":"spam"}`, &Report{Type: TypeReport, Match: "m", Reason: "spam"}},
	}
	for _, tt := range tests {
		got, err := Decode([]byte(tt.in))
		if err != nil {
			t.Errorf("Decode(%.60s): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(%.60s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeErrorsAreTyped(t *testing.T) {
	_, err := Decode([]byte(`{"type":"find","mode":"video","extra":true}`))
	var de *DecodeError
	if !errors.As(err, &de) || de.Code != CodeBadMessage {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(de.Error(), "true") && len(de.Error()) > 200 {
		t.Fatal("error echoes input at length")
	}
}

func TestNormalizeInterests(t *testing.T) {
	got, err := normalizeInterests([]string{" Ünïcode ", "ünïcode", "a", "A ", "\tb\n"})
	if err != nil || !slices.Equal(got, []string{"ünïcode", "a", "b"}) {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := normalizeInterests([]string{strings.Repeat("ж", MaxInterestLen)}); err != nil {
		t.Fatalf("32 characters (64 bytes) refused: %v", err)
	}
	if _, err := normalizeInterests([]string{"a\x00b"}); err == nil {
		t.Fatal("control character accepted")
	}
	dups := make([]string, maxRawInterests)
	for i := range dups {
		dups[i] = "same"
	}
	if got, err := normalizeInterests(dups); err != nil || len(got) != 1 {
		t.Fatalf("%q %v", got, err)
	}
}

// FuzzDecode: Decode never panics; what it accepts re-encodes to something
// it accepts again, unchanged (normalisation is idempotent), within the
// bounds it promises.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","version":1}`,
		`{"type":"find","mode":"video","interests":["Go"," music "]}`,
		`{"type":"signal","match":"m","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
		`{"type":"signal","match":"m","sdp":{"type":"offer","sdp":"v=0\r\n"}}`,
		`{"type":"chat","match":"m","text":"hi"}`,
		`{"type":"report","match":"m","reason":"spam"}`,
		`{"type":"media","match":"m","camera":true,"mic":false}`,
		`{"type":"find","mode":"video","interests":[[[[[]]]]]}`,
		`{"type":"next"}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := Decode(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Code == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if f, ok := msg.(*Find); ok {
			if len(f.Interests) > MaxInterests {
				t.Fatalf("%d interests accepted", len(f.Interests))
			}
		}
		again, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		msg2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded %s refused: %v", again, err)
		}
		if !reflect.DeepEqual(msg, msg2) {
			t.Fatalf("not stable: %+v then %+v", msg, msg2)
		}
	})
}

func TestTokenBucket(t *testing.T) {
	now := time.Unix(0, 0)
	b := newTokenBucket(10, 20, now)
	for i := range 20 {
		if !b.take(now) {
			t.Fatalf("message %d of the burst refused", i)
		}
	}
	if b.take(now) {
		t.Fatal("burst exceeded")
	}
	now = now.Add(100 * time.Millisecond) // one token back
	if !b.take(now) || b.take(now) {
		t.Fatal("refill is not 10/s")
	}
	// Flooding beyond the burst is abuse; a short excess is not.
	if b.abusive() {
		t.Fatal("two drops called abuse")
	}
	for range 20 {
		b.take(now)
	}
	if !b.abusive() {
		t.Fatal("sustained flood not called abuse")
	}
	now = now.Add(10 * time.Second)
	if !b.take(now) || b.abusive() {
		t.Fatal("strikes do not leak")
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		remote, xff, want string
	}{
		{"192.0.2.1:5000", "", "192.0.2.1"},
		{"192.0.2.1:5000", "203.0.113.1", "192.0.2.1"}, // untrusted peer: header ignored
		{"10.1.1.1:5000", "203.0.113.1", "203.0.113.1"},
		{"10.1.1.1:5000", "198.51.100.1, 203.0.113.1, 10.2.2.2", "203.0.113.1"}, // rightmost untrusted
		{"10.1.1.1:5000", "bogus, 203.0.113.1", "203.0.113.1"},
		{"10.1.1.1:5000", "203.0.113.1, bogus", "10.1.1.1"},
		{"10.1.1.1:5000", "", "10.1.1.1"},
		{"[::ffff:192.0.2.7]:1", "", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:1", "", "2001:db8:1:2::"},
		{"[::1]:1", "2001:db8::9", "2001:db8::"},
		{"pipe", "", "invalid IP"},
	}
	for _, tt := range tests {
		r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := clientAddr(r, trusted).String(); got != tt.want {
			t.Errorf("clientAddr(%s, XFF %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
		}
	}
}

func TestNormalizeOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://Chat.Example.com":      "https://chat.example.com",
		"https://chat.example.com:443/": "https://chat.example.com",
		"http://chat.example.com:80":    "http://chat.example.com",
		"http://chat.example.com:8080":  "http://chat.example.com:8080",
		"https://chat.example.com/path": "",
		"chat.example.com":              "",
		"ftp://chat.example.com":        "",
		"https://user@chat.example.com": "",
		"null":                          "",
	} {
		got, ok := normalizeOrigin(in)
		if ok != (want != "") || got != want {
			t.Errorf("normalizeOrigin(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestConfig(t *testing.T) {
	bad := []Config{
		{PingInterval: time.Minute, PongWait: time.Second},
		{PingInterval: time.Millisecond, PongWait: time.Second},
		{StatsInterval: time.Nanosecond},
		{MaxMessageSize: 100},
		{RateBurst: 3},
		{RateLimit: -1},
		{SendQueue: -1},
		{ResumeGrace: -time.Second},
		{AllowedOrigins: []string{"chat.example.com"}},
		{TrustedProxies: []netip.Prefix{{}}},
	}
	for _, cfg := range bad {
		if h, err := New(cfg); !errors.Is(err, ErrConfig) {
			if h != nil {
				h.Shutdown(t.Context())
			}
			t.Errorf("New(%+v): %v, want ErrConfig", cfg, err)
		}
	}
	cfg := Config{Rand: rand.New(rand.NewPCG(1, 1))}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(t.Context())
	if h.cfg.InterestWait != 5*time.Second || h.cfg.ResumeGrace != 15*time.Second || h.cfg.MaxMessageSize != 64<<10 {
		t.Fatalf("defaults not filled: %+v", h.cfg)
	}
}
