package signaling

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// clientFrame encodes a masked client frame (RFC 6455, 5.2) with the given
// first byte (FIN and opcode) and payload.
func clientFrame(first byte, payload []byte) []byte {
	b := []byte{first}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{1, 2, 3, 4}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// TestFrameMeterCountsFrames: the meter parses every frame header, whatever
// the payload length's encoding and however the bytes are split between
// reads, and counts exactly the continuation frames.
func TestFrameMeterCountsFrames(t *testing.T) {
	t.Parallel()
	var stream []byte
	sizes := []int{0, 1, 125, 126, 200, 0xFFFF, 0x10000, 70000}
	for _, n := range sizes {
		stream = append(stream, clientFrame(0x81, make([]byte, n))...) // a whole text message
		stream = append(stream, clientFrame(0x01, make([]byte, n))...) // the start of one
		stream = append(stream, clientFrame(0x00, make([]byte, n))...) // a continuation
		stream = append(stream, clientFrame(0x89, []byte("ping"))...)
		stream = append(stream, clientFrame(0x80, make([]byte, n))...) // the final continuation
	}
	want := 2 * len(sizes)
	rng := rand.New(rand.NewPCG(1, 2))
	for try := range 50 {
		m := &frameMeter{frames: newTokenBucket(0, 1000, time.Now())}
		for rest := stream; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(300))
			if try == 0 {
				k = 1 // byte by byte
			}
			if !m.scan(rest[:k]) {
				t.Fatal("over budget")
			}
			rest = rest[k:]
		}
		if got := 1000 - int(m.frames.tokens); got != want {
			t.Fatalf("try %d: counted %d frames, want %d", try, got, want)
		}
		if m.part != partFirst {
			t.Fatalf("try %d: stream ends inside a frame (part %d)", try, m.part)
		}
	}
}

// TestLimitContinuationFlood: empty continuation frames inside one
// message, which gorilla consumes without returning a message, close the
// flooder with 1008 all the same; another pair keeps chatting.
func TestLimitContinuationFlood(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 10, 20
	e := newEnv(t, cfg)
	bystander, partner, mb, _ := e.pair()
	f := e.dial()
	f.hello()
	raw := f.ws.NetConn()
	flood := clientFrame(0x01, []byte("{")) // a text message, not final
	for range 5000 {
		flood = append(flood, clientFrame(0x00, nil)...)
	}
	raw.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = raw.Write(flood) // the server may close before it has read it all
	f.expectClose(websocket.ClosePolicyViolation)
	eventually(t, func() bool { return counter(e.hub.m.closes.WithLabelValues(string(reasonRateLimit))) == 1 })
	bystander.send(Chat{Type: TypeChat, Match: mb.Match, Text: "still here"})
	partner.expect(TypeChat)
}

// newConnForTest is a conn of h around ws, for tests of its writes.
func newConnForTest(h *Hub, ws *websocket.Conn) *conn {
	out, _ := ws.NetConn().(*frameMeter)
	return &conn{h: h, ws: ws, out: out}
}

// countingConn counts the writes that reach the network.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A batch of messages and a ping leave in one write, whole and in order; a
// single message is written as it is.
func TestWriteBatchInOneWrite(t *testing.T) {
	t.Parallel()
	h := &Hub{cfg: Config{WriteWait: 5 * time.Second}}
	up := websocket.Upgrader{}
	var counted *countingConn
	server := make(chan *conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		meter := func(c net.Conn) net.Conn {
			counted = &countingConn{Conn: c}
			return newFrameMeter(counted, 1000, 1000)
		}
		ws, err := up.Upgrade(meteredWriter{ResponseWriter: w, meter: meter}, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		server <- newConnForTest(h, ws)
	}))
	defer srv.Close()
	cl, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := <-server
	defer c.ws.Close()
	if c.out == nil {
		t.Fatal("the connection is not corkable")
	}
	pinged := make(chan struct{}, 1)
	cl.SetPingHandler(func(string) error { pinged <- struct{}{}; return nil })

	before := counted.writes.Load()
	var batch [][]byte
	for i := range 20 {
		batch = append(batch, []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	if err := c.write(batch, true); err != nil {
		t.Fatal(err)
	}
	if n := counted.writes.Load() - before; n != 1 {
		t.Errorf("20 messages and a ping took %d writes, want 1", n)
	}
	_ = cl.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range 20 {
		_, data, err := cl.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(data) != want {
			t.Fatalf("message %d is %s, want %s", i, data, want)
		}
	}
	go func() { _, _, _ = cl.ReadMessage() }() // runs the ping handler
	select {
	case <-pinged:
	case <-time.After(10 * time.Second):
		t.Fatal("no ping after the batch")
	}

	before = counted.writes.Load()
	if err := c.write([][]byte{[]byte(`{"one":1}`)}, false); err != nil {
		t.Fatal(err)
	}
	if n := counted.writes.Load() - before; n != 1 {
		t.Errorf("one message took %d writes, want 1", n)
	}
}

// While corked, a frame gorilla writes from another goroutine (the answer
// to a client's ping) joins the batch; uncorked, writes pass straight on.
func TestFrameMeterCork(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	counted := &countingConn{Conn: a}
	m := newFrameMeter(counted, 1000, 1000)
	got := make(chan []byte, 4)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	m.cork()
	_, _ = m.Write([]byte("one "))
	done := make(chan struct{})
	go func() { _, _ = m.Write([]byte("pong ")); close(done) }()
	<-done
	_, _ = m.Write([]byte("two"))
	if n := counted.writes.Load(); n != 0 {
		t.Fatalf("%d writes while corked", n)
	}
	if err := m.uncork(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if s := string(<-got); s != "one pong two" {
		t.Errorf("uncork wrote %q", s)
	}
	if _, err := m.Write([]byte("three")); err != nil {
		t.Fatal(err)
	}
	if s := string(<-got); s != "three" {
		t.Errorf("uncorked write %q", s)
	}
	if n := counted.writes.Load(); n != 2 {
		t.Errorf("%d writes, want 2", n)
	}

	// A batch larger than maxCorkBuffer goes out in pieces of at most
	// that, whole frames each, in order.
	frame := bytes.Repeat([]byte("x"), maxCorkBuffer/3+1)
	var want []byte
	for i := range 7 {
		want = append(want, byte('0'+i))
		want = append(want, frame...)
	}
	var all []byte
	read := make(chan struct{})
	go func() {
		for len(all) < len(want) {
			all = append(all, <-got...)
		}
		close(read)
	}()
	m.cork()
	_ = a.SetWriteDeadline(time.Now().Add(5 * time.Second)) // as gorilla sets before each frame
	for i := range 7 {
		if _, err := m.Write(want[i*(len(frame)+1) : (i+1)*(len(frame)+1)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.uncork(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	<-read
	if !bytes.Equal(all, want) {
		t.Error("a large corked batch came out changed")
	}
	if n := counted.writes.Load() - 2; n != 4 {
		t.Errorf("7 frames of a third of the bound took %d writes, want 4 (two frames each)", n)
	}
}
