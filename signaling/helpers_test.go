package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// batchAll runs every hub of the package's tests with its engine calls
// taken later, through a batcher, as with a shared engine:
// go test ./signaling/ -args -batch-all.
var batchAll = flag.Bool("batch-all", false, "take engine results asynchronously, as with a shared engine")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// rx is any server message, for tests to look at.
type rx struct {
	Type       MsgType             `json:"type"`
	Version    int                 `json:"version"`
	Session    string              `json:"session"`
	Resume     string              `json:"resume"`
	Online     int                 `json:"online"`
	Resumed    bool                `json:"resumed"`
	State      State               `json:"state"`
	Match      string              `json:"match"`
	Limits     *Limits             `json:"limits"`
	Mode       Mode                `json:"mode"`
	FallbackIn int64               `json:"fallbackIn"`
	Role       Role                `json:"role"`
	ICEServers []ICEServer         `json:"iceServers"`
	Interests  []string            `json:"interests"`
	RelayOnly  bool                `json:"relayOnly"`
	SDP        *SessionDescription `json:"sdp"`
	Candidate  *ICECandidate       `json:"candidate"`
	Text       string              `json:"text"`
	Typing     bool                `json:"typing"`
	Camera     bool                `json:"camera"`
	Mic        bool                `json:"mic"`
	RetryIn    int64               `json:"retryIn"`
	Reason     LeftReason          `json:"reason"`
	Waiting    int                 `json:"waiting"`
	WaitingVid int                 `json:"waitingVideo"`
	WaitingTxt int                 `json:"waitingText"`
	Code       ErrorCode           `json:"code"`
	Message    string              `json:"message"`
	ClientKey  string              `json:"clientKey"`
	Until      int64               `json:"until"`
	Appeal     string              `json:"appeal"`
	BanReason  string              `json:"-"`
}

// fakeICE mints TURN-REST-style credentials, like the relay will.
type fakeICE struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeICE) ICEServers(sessionID string) ([]ICEServer, error) {
	f.mu.Lock()
	f.calls = append(f.calls, sessionID)
	f.mu.Unlock()
	user := fmt.Sprintf("%d:%s", time.Now().Add(time.Hour).Unix(), sessionID)
	return []ICEServer{
		{URLs: []string{"stun:turn.example.com:3478"}},
		{URLs: []string{"turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp"}, Username: user, Credential: "c2VjcmV0LWhtYWM="},
	}, nil
}

// observer records session starts and ends.
type observer struct {
	mu             sync.Mutex
	started, ended map[string]bool
}

func newObserver() *observer {
	return &observer{started: map[string]bool{}, ended: map[string]bool{}}
}

func (o *observer) SessionStarted(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started[id] = true
}

func (o *observer) SessionEnded(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended[id] = true
}

func (o *observer) hasEnded(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ended[id]
}

// testConfig is a config for tests: seeded pairing, quiet stats, generous
// limits unless a test tightens one.
func testConfig() Config {
	return Config{
		Rand:          rand.New(rand.NewPCG(1, 2)),
		StatsInterval: time.Hour,
		MaxConnsPerIP: 10000,
		RateLimit:     1000,
		RateBurst:     1000,
		Registerer:    prometheus.NewRegistry(),
		batchAll:      *batchAll,
	}
}

// env is a hub behind a real HTTP server on loopback.
type env struct {
	t   testing.TB
	hub *Hub
	srv *httptest.Server
	url string
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	e := &env{t: t, hub: h, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil && !errors.Is(err, ErrShutdown) {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	return e
}

func (e *env) dial() *client {
	e.t.Helper()
	return dialWith(e.t, websocket.DefaultDialer, e.url, nil)
}

// client is a test WebSocket client whose messages are read by a goroutine
// into a channel.
type client struct {
	t   testing.TB
	ws  *websocket.Conn
	in  chan rx
	end chan struct{} // closed when the read goroutine has stopped
	err error         // why it stopped; read after end is closed
	// patience bounds every wait: 10s of real time, or an hour of a
	// synctest bubble's fake time (longer than any timeout under test).
	patience time.Duration
}

func dialWith(t testing.TB, d *websocket.Dialer, url string, hdr http.Header) *client {
	t.Helper()
	ws, resp, err := d.Dial(url, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	return startClient(t, ws)
}

func startClient(t testing.TB, ws *websocket.Conn) *client {
	c := &client{t: t, ws: ws, in: make(chan rx, 4096), end: make(chan struct{}), patience: 10 * time.Second}
	go func() {
		defer close(c.end)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			var m rx
			if err := json.Unmarshal(data, &m); err != nil {
				c.err = fmt.Errorf("undecodable server message %q: %w", data, err)
				return
			}
			c.in <- m
		}
	}()
	t.Cleanup(func() {
		ws.Close()
		<-c.end
	})
	return c
}

func (c *client) send(v any) {
	c.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(data))
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv returns the next message that is not stats.
func (c *client) recv() rx {
	c.t.Helper()
	timeout := time.After(c.patience)
	for {
		select {
		case m := <-c.in:
			if m.Type == TypeStats {
				continue
			}
			return m
		case <-c.end:
			select {
			case m := <-c.in:
				if m.Type != TypeStats {
					return m
				}
			default:
				c.t.Fatalf("connection ended while a message was expected: %v", c.err)
			}
		case <-timeout:
			c.t.Fatalf("no message within %v", c.patience)
		}
	}
}

func (c *client) expect(typ MsgType) rx {
	c.t.Helper()
	m := c.recv()
	if m.Type != typ {
		c.t.Fatalf("got %s %+v, want %s", m.Type, m, typ)
	}
	return m
}

func (c *client) expectError(code ErrorCode) {
	c.t.Helper()
	if m := c.expect(TypeError); m.Code != code {
		c.t.Fatalf("error code %q (%s), want %q", m.Code, m.Message, code)
	}
}

// closed waits for the connection to end and returns the close error.
func (c *client) closed() error {
	c.t.Helper()
	select {
	case <-c.end:
		return c.err
	case <-time.After(c.patience):
		c.t.Fatalf("connection still open after %v", c.patience)
		return nil
	}
}

func (c *client) expectClose(code int) {
	c.t.Helper()
	err := c.closed()
	if !websocket.IsCloseError(err, code) {
		c.t.Fatalf("connection ended with %v, want close %d", err, code)
	}
}

// quiet reports whether nothing but stats is waiting to be read.
func (c *client) quiet() bool {
	for {
		select {
		case m := <-c.in:
			if m.Type != TypeStats {
				c.t.Errorf("unexpected %s %+v", m.Type, m)
				return false
			}
		default:
			return true
		}
	}
}

// barrier returns once the hub's owner goroutine has handled everything c
// sent before: a report naming no match is answered by the owner, in order.
// (It counts as one stale_match drop.)
func (c *client) barrier() {
	c.t.Helper()
	c.send(Report{Type: TypeReport, Match: "barrier"})
	c.expectError(CodeNotInMatch)
}

func (c *client) hello() rx {
	c.t.Helper()
	c.send(Hello{Type: TypeHello, Version: ProtocolVersion})
	return c.expect(TypeWelcome)
}

func (c *client) find(mode Mode, interests ...string) {
	c.t.Helper()
	c.send(Find{Type: TypeFind, Mode: mode, Interests: interests})
}

// pair says hello on two new clients and pairs them.
func (e *env) pair() (a, b *client, ma, mb rx) {
	e.t.Helper()
	a, b = e.dial(), e.dial()
	a.hello()
	b.hello()
	a.find(ModeVideo)
	a.expect(TypeWaiting)
	b.find(ModeVideo)
	ma, mb = a.expect(TypeMatched), b.expect(TypeMatched)
	return a, b, ma, mb
}

func counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// eventually waits up to 10s for cond, for effects that have no message to
// wait on (a connection's bookkeeping after its close frame went out).
func eventually(t testing.TB, cond func() bool) {
	t.Helper()
	testsupport.WaitFor(t, 10*time.Second, "the condition", cond)
}

// pipeNet is an in-memory network for synctest bubbles: net.Pipe
// connections, whose blocking is durable, with a listener for http.Server.
type pipeNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeNet() *pipeNet {
	return &pipeNet{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (p *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pipeNet) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *pipeNet) Addr() net.Addr { return pipeAddr{} }

func (p *pipeNet) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case p.conns <- server:
		return client, nil
	case <-p.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// pipeEnv is a hub served over a pipeNet; for use inside synctest.Test.
type pipeEnv struct {
	t      *testing.T
	hub    *Hub
	net    *pipeNet
	dialer *websocket.Dialer
}

func newPipeEnv(t *testing.T, cfg Config) *pipeEnv {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pn := newPipeNet()
	srv := &http.Server{Handler: h}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(pn)
	}()
	t.Cleanup(func() {
		h.Shutdown(context.Background())
		srv.Close()
		<-served
	})
	return &pipeEnv{t: t, hub: h, net: pn, dialer: &websocket.Dialer{NetDialContext: pn.dial}}
}

func (e *pipeEnv) dial() *client {
	e.t.Helper()
	c := dialWith(e.t, e.dialer, "ws://pipe/ws", nil)
	c.patience = time.Hour
	return c
}
