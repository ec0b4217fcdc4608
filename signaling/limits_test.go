package signaling

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestLimitOversizeFrame(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxMessageSize = 8 << 10
	e := newEnv(t, cfg)
	a, b, ma, _ := e.pair()
	// Just under the cap passes (each line is 7 bytes once JSON-escaped).
	sdp := "v=0\r\n" + strings.Repeat("a=x\r\n", 1100)
	a.send(Signal{Type: TypeSignal, Match: ma.Match, SDP: &SessionDescription{Type: "offer", SDP: sdp}})
	if got := b.expect(TypeSignal); got.SDP.SDP != sdp {
		t.Fatal("SDP mangled")
	}
	// Over it closes with 1009.
	a.sendRaw(`{"type":"chat","match":"` + ma.Match + `","text":"` + strings.Repeat("x", 9<<10) + `"}`)
	a.expectClose(websocket.CloseMessageTooBig)
	eventually(t, func() bool { return counter(e.hub.m.closes.WithLabelValues(string(reasonTooLarge))) == 1 })
}

func TestLimitFlood(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 10, 20
	e := newEnv(t, cfg)
	bystander, partner, mb, _ := e.pair()
	f := e.dial()
	f.hello()
	typing := []byte(`{"type":"typing","match":"none","typing":true}`)
	for range 500 {
		if f.ws.WriteMessage(websocket.TextMessage, typing) != nil {
			break // closed under us, as it should be
		}
	}
	f.expectError(CodeRateLimited) // once, not once per dropped message
	f.expectClose(websocket.ClosePolicyViolation)
	eventually(t, func() bool { return counter(e.hub.m.closes.WithLabelValues(string(reasonRateLimit))) == 1 })
	if counter(e.hub.m.rateLimited) < 20 {
		t.Fatal("rate limit hits not counted")
	}
	// Others are unaffected.
	bystander.send(Chat{Type: TypeChat, Match: mb.Match, Text: "still here"})
	partner.expect(TypeChat)
}

// A normal burst of ICE candidates fits the default bucket.
func TestLimitCandidateBurstFits(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 0, 0 // defaults
	e := newEnv(t, cfg)
	a, b, ma, _ := e.pair()
	const n = 40
	for i := range n {
		a.send(Signal{Type: TypeSignal, Match: ma.Match, Candidate: &ICECandidate{Candidate: "candidate:" + string(rune('a'+i%26)) + " 1 udp 1 192.0.2.1 1 typ host"}})
	}
	for range n {
		b.expect(TypeSignal)
	}
	if a.quiet(); counter(e.hub.m.rateLimited) != 0 {
		t.Fatal("a candidate burst was rate limited")
	}
}

func TestLimitOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allowed []string
		origin  string // "self": the test server's own origin
		ok      bool
	}{
		{"same host by default", nil, "self", true},
		{"no Origin header (not a browser)", nil, "", true},
		{"other site by default", nil, "https://evil.example", false},
		{"same host, other port", nil, "http://127.0.0.1:1", false},
		{"listed", []string{"https://chat.example.com"}, "https://chat.example.com", true},
		{"listed, case and default port", []string{"https://chat.example.com"}, "HTTPS://Chat.Example.com:443", true},
		{"listed host, other scheme", []string{"https://chat.example.com"}, "http://chat.example.com", false},
		{"allowlist replaces same-host", []string{"https://chat.example.com"}, "self", false},
		{"star", []string{"*"}, "https://anything.example", true},
		{"garbage", nil, "null", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.AllowedOrigins = tt.allowed
			e := newEnv(t, cfg)
			hdr := http.Header{}
			switch tt.origin {
			case "self":
				hdr.Set("Origin", e.srv.URL)
			case "":
			default:
				hdr.Set("Origin", tt.origin)
			}
			ws, resp, err := websocket.DefaultDialer.Dial(e.url, hdr)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				ws.Close()
				return
			}
			if err == nil {
				ws.Close()
				t.Fatal("accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("want 403, got %v", resp)
			}
			if got := counter(e.hub.m.rejected.WithLabelValues(rejectOrigin)); got != 1 {
				t.Fatalf("origin rejections %v", got)
			}
		})
	}
}

func TestLimitPerIP(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxConnsPerIP = 3
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} // not us: our XFF is ignored
	e := newEnv(t, cfg)
	var cs []*client
	for range 3 {
		cs = append(cs, e.dial())
	}
	hdr := http.Header{"X-Forwarded-For": {"203.0.113.9"}}
	_, resp, err := websocket.DefaultDialer.Dial(e.url, hdr)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th connection from one IP: %v %v, want 429", err, resp)
	}
	if got := counter(e.hub.m.rejected.WithLabelValues(rejectPerIP)); got != 1 {
		t.Fatalf("per-IP rejections %v", got)
	}
	// A closed connection frees its place.
	cs[0].ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	cs[0].closed()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws, _, err := websocket.DefaultDialer.Dial(e.url, nil)
		if err == nil {
			ws.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("place not freed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLimitPerIPBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxConnsPerIP = 2
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	e := newEnv(t, cfg)
	from := func(ip string) (*websocket.Conn, *http.Response, error) {
		return websocket.DefaultDialer.Dial(e.url, http.Header{"X-Forwarded-For": {"198.51.100.1, " + ip}})
	}
	for range 2 {
		ws, _, err := from("203.0.113.1")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
	}
	if _, resp, err := from("203.0.113.1"); err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("3rd from one client behind the proxy: %v", err)
	}
	ws, _, err := from("203.0.113.2") // another client behind the same proxy
	if err != nil {
		t.Fatalf("another client refused: %v", err)
	}
	ws.Close()
}

// smallBufListener shrinks the server side's socket send buffer, so that a
// client that stops reading fills it after a few kilobytes.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

func TestLimitSlowReader(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.SendQueue = 16
	cfg.WriteWait = 2 * time.Second
	cfg.ResumeGrace = 100 * time.Millisecond
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	e := &env{t: t, hub: h, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	t.Cleanup(func() {
		h.Shutdown(context.Background())
		srv.Close()
	})

	// The slow client reads its welcome and match, then nothing more.
	d := &websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	slowWS, _, err := d.Dial(e.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slowWS.Close()
	slowWS.WriteJSON(Hello{Type: TypeHello, Version: ProtocolVersion})
	slowWS.WriteJSON(Find{Type: TypeFind, Mode: ModeText})
	for range 2 { // welcome, waiting
		if _, _, err := slowWS.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	fast := e.dial()
	fast.hello()
	fast.find(ModeText)
	m := fast.expect(TypeMatched).Match
	c1, c2, mc, _ := e.pair()

	text := strings.Repeat("z", MaxChatLen)
	slowCloses := e.hub.m.closes.WithLabelValues(string(reasonSlow))
	for i := 0; counter(slowCloses) == 0; i++ {
		if i == 10000 {
			t.Fatal("the slow reader was never dropped")
		}
		fast.send(Chat{Type: TypeChat, Match: m, Text: text})
		if i%100 == 0 {
			// Everyone else carries on at full speed meanwhile.
			start := time.Now()
			c1.send(Chat{Type: TypeChat, Match: mc.Match, Text: "ping"})
			c2.expect(TypeChat)
			if d := time.Since(start); d > time.Second {
				t.Fatalf("another pair's message took %v while a reader was stuck", d)
			}
		}
	}
	// Its partner is told once the grace runs out, like any drop.
	if pl := fast.expect(TypePartnerLeft); pl.Reason != LeftDisconnected {
		t.Fatalf("%+v", pl)
	}
}

// A client that stops reading is dropped when a write misses WriteWait,
// even while its queue has room.
func TestLimitWriteDeadline(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.SendQueue = 1 << 20 // never the reason
	cfg.WriteWait = 300 * time.Millisecond
	cfg.ResumeGrace = 100 * time.Millisecond
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	t.Cleanup(func() {
		h.Shutdown(context.Background())
		srv.Close()
	})
	e := &env{t: t, hub: h, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	slowWS, _, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slowWS.Close()
	slowWS.WriteJSON(Hello{Type: TypeHello, Version: ProtocolVersion})
	slowWS.WriteJSON(Find{Type: TypeFind, Mode: ModeText})
	for range 2 {
		slowWS.ReadMessage()
	}
	fast := e.dial()
	fast.hello()
	fast.find(ModeText)
	m := fast.expect(TypeMatched).Match
	text := strings.Repeat("w", MaxChatLen)
	slow := e.hub.m.closes.WithLabelValues(string(reasonSlow))
	start := time.Now()
	for counter(slow) == 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the stuck reader was never dropped")
		}
		fast.send(Chat{Type: TypeChat, Match: m, Text: text})
		time.Sleep(time.Millisecond) // pace the sender, not a synchronisation
	}
	fast.expect(TypePartnerLeft)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	// A pair chatting throughout must not notice anything.
	pa, pb, pm, _ := e.pair()

	tests := []struct {
		name string
		msg  string
		code ErrorCode
	}{
		{"malformed JSON", `{"type":`, CodeBadMessage},
		{"not an object", `[1,2,3]`, CodeBadMessage},
		{"null", `null`, CodeBadMessage},
		{"no type", `{"mode":"video"}`, CodeBadMessage},
		{"type not a string", `{"type":7}`, CodeBadMessage},
		{"unknown type", `{"type":"dance"}`, CodeUnknownType},
		{"unknown field", `{"type":"next","x":1}`, CodeBadMessage},
		{"wrong field type", `{"type":"find","mode":5}`, CodeBadMessage},
		{"bad mode", `{"type":"find","mode":"audio"}`, CodeBadMessage},
		{"interests not strings", `{"type":"find","mode":"video","interests":[1]}`, CodeBadMessage},
		{"too many interests", `{"type":"find","mode":"video","interests":["a","b","c","d","e","f","g","h","i","j","k"]}`, CodeTooLarge},
		{"interest too long", `{"type":"find","mode":"video","interests":["` + strings.Repeat("x", 33) + `"]}`, CodeTooLarge},
		{"deep nesting", `{"type":"find","mode":"video","interests":[[[[["x"]]]]]}`, CodeBadMessage},
		{"very deep nesting", strings.Repeat("[", 30000) + strings.Repeat("]", 30000), CodeBadMessage},
		{"chat too long", `{"type":"chat","match":"m","text":"` + strings.Repeat("é", MaxChatLen+1) + `"}`, CodeTooLarge},
		{"empty chat", `{"type":"chat","match":"m","text":""}`, CodeBadMessage},
		{"sdp too long", `{"type":"signal","match":"m","sdp":{"type":"offer","sdp":"` + strings.Repeat("a", MaxSDPLen+1) + `"}}`, CodeTooLarge},
		{"sdp and candidate", `{"type":"signal","match":"m","sdp":{"type":"offer","sdp":""},"candidate":{"candidate":""}}`, CodeBadMessage},
		{"neither sdp nor candidate", `{"type":"signal","match":"m"}`, CodeBadMessage},
		{"bad sdp type", `{"type":"signal","match":"m","sdp":{"type":"hello","sdp":""}}`, CodeBadMessage},
		{"no match", `{"type":"typing","typing":true}`, CodeBadMessage},
		{"match too long", `{"type":"typing","match":"` + strings.Repeat("m", 65) + `","typing":true}`, CodeTooLarge},
		{"trailing data", `{"type":"next"} {"type":"stop"}`, CodeBadMessage},
		{"sdpMLineIndex out of range", `{"type":"signal","match":"m","candidate":{"candidate":"","sdpMLineIndex":70000}}`, CodeBadMessage},
	}
	for _, tt := range tests {
		c := e.dial()
		c.hello()
		c.sendRaw(tt.msg)
		m := c.expect(TypeError)
		if m.Code != tt.code {
			t.Errorf("%s: code %q (%s), want %q", tt.name, m.Code, m.Message, tt.code)
		}
		c.barrier() // still served
	}
	c := e.dial()
	c.hello()
	c.ws.WriteMessage(websocket.BinaryMessage, []byte(`{"type":"next"}`))
	c.expectError(CodeBadMessage)
	c.barrier()

	pa.send(Chat{Type: TypeChat, Match: pm.Match, Text: "unaffected"})
	if got := pb.expect(TypeChat); got.Text != "unaffected" {
		t.Fatalf("%+v", got)
	}

	// Keeping it up gets the connection closed.
	for range maxBadMessages {
		c.sendRaw(`{`)
	}
	c.expectClose(websocket.ClosePolicyViolation)
}

func TestFirstMessageMustBeHello(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	c := e.dial()
	c.find(ModeVideo)
	c.expectError(CodeNotHello)
	c.expectClose(websocket.CloseProtocolError)

	v := e.dial()
	v.send(Hello{Type: TypeHello, Version: 2})
	v.expectError(CodeBadVersion)
	v.expectClose(websocket.CloseProtocolError)

	// Garbage first is answered, and the connection may still say hello.
	g := e.dial()
	g.sendRaw(`{"type":"hello","version":"1"}`)
	g.expectError(CodeBadMessage)
	g.hello()
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	obs := newObserver()
	cfg := testConfig()
	cfg.Sessions = obs
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &env{t: t, hub: h, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	a, b, _, _ := e.pair()
	wc := e.dial()
	idle := wc.hello()
	pre := e.dial() // connected, no hello yet

	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a, b, wc, pre} {
		c.expectClose(websocket.CloseGoingAway)
	}
	if !obs.hasEnded(idle.Session) {
		t.Fatal("sessions not ended")
	}
	_, resp, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade after shutdown: %v %v, want 503", err, resp)
	}
	if err := h.Shutdown(context.Background()); !errors.Is(err, ErrShutdown) {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// A client that does not answer the close frame is dropped when the
// Shutdown context ends.
func TestShutdownContext(t *testing.T) {
	t.Parallel()
	h, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close() // never read: the close frame is never answered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
}

// Ping and pong frames count against the rate limit like messages: a
// client that floods them is closed like any other flooder, and another
// pair keeps chatting meanwhile.
func TestLimitControlFrameFlood(t *testing.T) {
	t.Parallel()
	for _, kind := range []int{websocket.PingMessage, websocket.PongMessage} {
		t.Run(map[int]string{websocket.PingMessage: "ping", websocket.PongMessage: "pong"}[kind], func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.RateLimit, cfg.RateBurst = 10, 20
			e := newEnv(t, cfg)
			bystander, partner, mb, _ := e.pair()
			f := e.dial()
			f.hello()
			for range 5000 {
				if f.ws.WriteControl(kind, []byte("flood"), time.Now().Add(10*time.Second)) != nil {
					break // closed under us, as it should be
				}
			}
			f.expectError(CodeRateLimited)
			f.expectClose(websocket.ClosePolicyViolation)
			eventually(t, func() bool { return counter(e.hub.m.closes.WithLabelValues(string(reasonRateLimit))) == 1 })
			if counter(e.hub.m.rateLimited) < 20 {
				t.Fatal("rate limit hits not counted")
			}
			bystander.send(Chat{Type: TypeChat, Match: mb.Match, Text: "still here"})
			partner.expect(TypeChat)
		})
	}
}
