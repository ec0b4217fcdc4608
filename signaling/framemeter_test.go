package signaling

import (
	"encoding/binary"
	"math/rand/v2"
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
