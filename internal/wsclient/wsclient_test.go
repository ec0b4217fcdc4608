package wsclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startHub serves a signaling hub on loopback until the test ends.
func startHub(t *testing.T) string {
	t.Helper()
	hub, err := signaling.New(signaling.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func dial(ctx context.Context, t *testing.T, url string) *wsclient.Conn {
	t.Helper()
	c, err := wsclient.Dial(ctx, url, wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestHelloFindMatchSignal(t *testing.T) {
	url := startHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := dial(ctx, t, url), dial(ctx, t, url)
	b.Start() // one side reads in its own goroutine, the other with Recv
	for _, c := range []*wsclient.Conn{a, b} {
		w, err := c.Hello(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if w.Version != signaling.ProtocolVersion || w.Session == "" || w.Resume == "" {
			t.Fatalf("welcome %+v", w)
		}
		if err := c.Send(ctx, signaling.Find{Mode: signaling.ModeText, Interests: []string{"Go"}}); err != nil {
			t.Fatal(err)
		}
	}
	ma, err := wsclient.Wait[signaling.Matched](ctx, a, signaling.TypeMatched)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := wsclient.Wait[signaling.Matched](ctx, b, signaling.TypeMatched)
	if err != nil {
		t.Fatal(err)
	}
	if ma.Match == "" || ma.Match != mb.Match || ma.Role == mb.Role || ma.Mode != signaling.ModeText {
		t.Fatalf("matched %+v and %+v", ma, mb)
	}
	if len(ma.Interests) != 1 || ma.Interests[0] != "go" {
		t.Errorf("common interests %q, want [go]", ma.Interests)
	}

	mid, index := "0", uint16(0)
	cand := signaling.ICECandidate{Candidate: "candidate:1 1 udp 2122260223 192.0.2.1 9 typ host", SDPMid: &mid, SDPMLineIndex: &index}
	if err := a.Send(ctx, signaling.Signal{Match: ma.Match, Candidate: &cand}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sig, ok := got.(*signaling.Signal)
	if !ok || sig.Type != signaling.TypeSignal || sig.Match != ma.Match || sig.Candidate == nil || sig.Candidate.Candidate != cand.Candidate {
		t.Fatalf("b got %+v, want the signal a sent", got)
	}

	if err := a.Send(ctx, signaling.Media{Match: ma.Match, Camera: false, Mic: true}); err != nil {
		t.Fatal(err)
	}
	got, err = b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if med, ok := got.(*signaling.Media); !ok || med.Type != signaling.TypeMedia || med.Match != ma.Match || med.Camera || !med.Mic {
		t.Fatalf("b got %+v, want the media a sent", got)
	}

	if err := a.Send(ctx, signaling.Stop{}); err != nil {
		t.Fatal(err)
	}
	left, err := wsclient.Wait[signaling.PartnerLeft](ctx, b, signaling.TypePartnerLeft)
	if err != nil {
		t.Fatal(err)
	}
	if left.Reason != signaling.LeftStop {
		t.Errorf("partner_left %+v", left)
	}
}

func TestICEAndServerErrors(t *testing.T) {
	url := startHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(ctx, t, url)
	if _, err := c.Hello(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, signaling.ICERequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[signaling.ICEReply](ctx, c, signaling.TypeICE); err != nil {
		t.Fatal(err)
	}
	// next before any find makes no sense: the server says so.
	if err := c.Send(ctx, signaling.Next{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.WaitFor(ctx, signaling.TypeMatched)
	var serr *wsclient.ServerError
	if !errors.As(err, &serr) || serr.Code != signaling.CodeBadState {
		t.Fatalf("WaitFor after a bad next: %v, want a bad_state server error", err)
	}
}

func TestSendRefusesWhatIsNotAClientMessage(t *testing.T) {
	url := startHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(ctx, t, url)
	for _, m := range []any{signaling.Welcome{}, &signaling.Find{}, "hello", nil} {
		if err := c.Send(ctx, m); !errors.Is(err, wsclient.ErrNotClientMessage) {
			t.Errorf("Send(%T) = %v, want ErrNotClientMessage", m, err)
		}
	}
}

func TestDialReportsARefusedHandshake(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := wsclient.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", wsclient.Options{Origin: "https://elsewhere.invalid"})
	var herr *wsclient.HandshakeError
	if !errors.As(err, &herr) || herr.StatusCode != http.StatusForbidden {
		t.Fatalf("Dial = %v, want a HandshakeError with 403", err)
	}
}

func TestDecodeServer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want signaling.MsgType
	}{
		{`{"type":"welcome","version":1,"session":"s","resume":"r","online":1,"state":"idle","limits":{}}`, signaling.TypeWelcome},
		{`{"type":"stats","online":3,"waiting":1,"later":true}`, signaling.TypeStats},
		{`{"type":"ice","iceServers":[{"urls":["stun:127.0.0.1:3478"]}]}`, signaling.TypeICE},
		{`{"type":"media","match":"m","camera":false,"mic":true}`, signaling.TypeMedia},
		{`{"type":"restarting","retryIn":2000}`, signaling.TypeRestarting},
		{`{"type":"from_the_future","x":1}`, "from_the_future"},
	} {
		m, err := wsclient.DecodeServer([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := wsclient.TypeOf(m); got != tc.want {
			t.Errorf("%s: type %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, m := range []any{nil, 3, new(int), signaling.Stats{}, &signaling.Find{}} {
		if got := wsclient.TypeOf(m); got != "" {
			t.Errorf("TypeOf(%T) = %q, want none", m, got)
		}
	}
	for _, bad := range []string{`not json`, `{"type":"matched","iceServers":"x"}`} {
		if _, err := wsclient.DecodeServer([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestCloseEndsTheReaderAndIsIdempotent(t *testing.T) {
	url := startHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, url, wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	if _, err := c.Hello(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages still open after Close")
	}
	if _, err := c.Next(ctx); !errors.Is(err, wsclient.ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
}

// TestRecvRawOutlivesHellosDeadline checks that RecvRaw reads messages
// after the deadline of the context Hello (or any Recv) was given has
// passed: a load client says hello with a short context and then reads
// for minutes.
func TestRecvRawOutlivesHellosDeadline(t *testing.T) {
	url := startHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := dial(ctx, t, url), dial(ctx, t, url)
	// pastDeadline waits until the deadline a Recv with rctx left on b's
	// connection has passed.
	pastDeadline := func(rctx context.Context) {
		dl, _ := rctx.Deadline()
		for time.Now().Before(dl.Add(50 * time.Millisecond)) {
			time.Sleep(time.Until(dl.Add(50 * time.Millisecond)))
		}
	}
	recvRaw := func(step string, want signaling.MsgType) any {
		t.Helper()
		for {
			data, err := b.RecvRaw()
			if err != nil {
				t.Fatalf("%s: RecvRaw: %v", step, err)
			}
			m, err := wsclient.DecodeServer(data)
			if err != nil {
				t.Fatal(err)
			}
			if wsclient.TypeOf(m) == want {
				return m
			}
		}
	}

	hctx, hcancel := context.WithTimeout(ctx, 3*time.Second)
	defer hcancel()
	for _, c := range []*wsclient.Conn{a, b} {
		if _, err := c.Hello(hctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	pastDeadline(hctx)
	for _, c := range []*wsclient.Conn{a, b} {
		if err := c.Send(ctx, signaling.Find{Mode: signaling.ModeText}); err != nil {
			t.Fatal(err)
		}
	}
	matched := recvRaw("after Hello's deadline", signaling.TypeMatched).(*signaling.Matched)

	// A Recv with a deadline between two RecvRaws: the second still waits
	// without one.
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	if err := a.Send(ctx, signaling.Chat{Match: matched.Match, Text: "one"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[signaling.Chat](rctx, b, signaling.TypeChat); err != nil {
		t.Fatal(err)
	}
	pastDeadline(rctx)
	if err := a.Send(ctx, signaling.Chat{Match: matched.Match, Text: "two"}); err != nil {
		t.Fatal(err)
	}
	if c := recvRaw("after a Recv's deadline", signaling.TypeChat).(*signaling.Chat); c.Text != "two" {
		t.Fatalf("chat %q, want two", c.Text)
	}
}
