package signaling

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// media reaches the partner of the current match, re-encoded, and nobody
// else: not after the match ended, not with another match's id, not from a
// session in no match.
func TestMediaForwarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	a, b, ma, _ := e.pair()

	a.send(Media{Type: TypeMedia, Match: ma.Match, Camera: false, Mic: true})
	if got := b.expect(TypeMedia); got.Match != ma.Match || got.Camera || !got.Mic {
		t.Fatalf("media arrived as %+v", got)
	}
	a.sendRaw(`{ "type" : "media", "match" : "` + ma.Match + `", "camera" : true, "mic" : false }`)
	if got := b.expect(TypeMedia); got.Match != ma.Match || !got.Camera || got.Mic {
		t.Fatalf("media arrived as %+v", got)
	}
	b.send(Media{Type: TypeMedia, Match: ma.Match, Camera: true, Mic: true})
	a.expect(TypeMedia)

	// Fenced by match id: another id is dropped, so is any media of the
	// match once it ended (here by next, with a third user waiting).
	stale := counter(e.hub.m.dropped.WithLabelValues(dropStale))
	a.send(Media{Type: TypeMedia, Match: "another-match", Camera: false})
	a.barrier()
	if got := counter(e.hub.m.dropped.WithLabelValues(dropStale)); got != stale+2 { // the barrier is one more
		t.Errorf("stale drops %v → %v, want the media counted", stale, got)
	}
	c := e.dial()
	c.hello()
	c.find(ModeVideo)
	c.expect(TypeWaiting)
	b.send(Next{Type: TypeNext})
	a.expect(TypePartnerLeft)
	mc := c.expect(TypeMatched)
	b.expect(TypeMatched)
	b.send(Media{Type: TypeMedia, Match: ma.Match, Camera: false}) // the old match
	b.barrier()
	b.send(Media{Type: TypeMedia, Match: mc.Match, Camera: false})
	if got := c.expect(TypeMedia); got.Match != mc.Match {
		t.Fatalf("c got %+v", got)
	}
	// a is in no match now.
	noMatch := counter(e.hub.m.dropped.WithLabelValues(dropNoMatch))
	a.send(Media{Type: TypeMedia, Match: ma.Match, Camera: false})
	a.barrier()
	if got := counter(e.hub.m.dropped.WithLabelValues(dropNoMatch)); got != noMatch+1 {
		t.Errorf("not_in_match drops %v → %v, want the media counted", noMatch, got)
	}
	if !a.quiet() || !b.quiet() || !c.quiet() {
		t.Fatal("media went where it should not")
	}
	if got := counter(e.hub.m.msgByType[TypeMedia]); got != 7 {
		t.Errorf("strangers_messages_total{type=media} = %v, want 7", got)
	}
}

func TestMediaBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	a, b, ma, _ := e.pair()
	for _, tt := range []struct {
		name string
		msg  string
		code ErrorCode
	}{
		{"camera not a boolean", `{"type":"media","match":"` + ma.Match + `","camera":"off","mic":true}`, CodeBadMessage},
		{"mic a number", `{"type":"media","match":"` + ma.Match + `","camera":true,"mic":0}`, CodeBadMessage},
		{"no match", `{"type":"media","camera":true,"mic":true}`, CodeBadMessage},
		{"match too long", `{"type":"media","match":"` + strings.Repeat("m", 65) + `","camera":true,"mic":true}`, CodeTooLarge},
		{"unknown field", `{"type":"media","match":"` + ma.Match + `","camera":true,"mic":true,"to":"someone"}`, CodeBadMessage},
		{"nested", `{"type":"media","match":"` + ma.Match + `","camera":{"on":[[[true]]]}}`, CodeBadMessage},
	} {
		a.sendRaw(tt.msg)
		if m := a.expect(TypeError); m.Code != tt.code {
			t.Errorf("%s: code %q (%s), want %q", tt.name, m.Code, m.Message, tt.code)
		}
	}
	a.barrier()
	if !b.quiet() {
		t.Fatal("bad media reached the partner")
	}
	// Still matched: a good one goes through.
	a.send(Media{Type: TypeMedia, Match: ma.Match, Camera: true, Mic: false})
	b.expect(TypeMedia)
}

// media counts against the sender's token bucket like every message.
func TestMediaRateLimited(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 0.5, 10
	e := newEnv(t, cfg)
	a, b, ma, _ := e.pair()
	// More than the burst, but fewer drops than the burst: sustained abuse
	// (strikes beyond the burst) would close the connection while it is
	// still being written to.
	const sent = 18
	for i := range sent {
		a.send(Media{Type: TypeMedia, Match: ma.Match, Camera: i%2 == 0})
	}
	a.expectError(CodeRateLimited)
	// The partner got at most the burst (less the messages pairing took).
	// Those that passed reached the owner before the sender was told it
	// is limited, so a barrier of the partner's comes after them.
	b.send(Report{Type: TypeReport, Match: "barrier"})
	got := 0
	for m := b.recv(); m.Type != TypeError; m = b.recv() {
		if m.Type != TypeMedia {
			t.Fatalf("the partner got %+v", m)
		}
		got++
	}
	if got == 0 || got > cfg.RateBurst {
		t.Errorf("the partner got %d media messages of %d, want some and at most the burst of %d", got, sent, cfg.RateBurst)
	}
}

// Shutdown tells every client that said hello that the server restarts,
// with the retry hint, before it closes the connection with 1001.
func TestShutdownSaysRestarting(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RestartRetry = 1500 * time.Millisecond
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &env{t: t, hub: h, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	a, b, _, _ := e.pair()
	idle := e.dial()
	idle.hello()
	pre := e.dial() // no hello: not a session, nothing to tell

	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a, b, idle} {
		if m := c.expect(TypeRestarting); m.RetryIn != 1500 {
			t.Errorf("restarting %+v, want retryIn 1500", m)
		}
		c.expectClose(websocket.CloseGoingAway)
	}
	pre.expectClose(websocket.CloseGoingAway)
	select {
	case m := <-pre.in:
		t.Errorf("a connection without hello got %+v", m)
	default:
	}
}
