package plane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// recordUDP is a sockio.UDP that records what is sent on it, in order,
// and refuses datagrams whose payload starts with "fail".
type recordUDP struct {
	sockio.UDP
	name string
	log  *[]string
}

func (u *recordUDP) Dest(addr net.Addr, _ netip.AddrPort) sockio.Dest { return sockio.Dest{} }

func (u *recordUDP) Send(_ *sockio.Sender, b []byte, _ *sockio.Dest) error {
	if len(b) >= 4 && string(b[:4]) == "fail" {
		return fmt.Errorf("refused")
	}
	*u.log = append(*u.log, u.name+":"+string(b))
	return nil
}

// TestIOQueue checks that an IO made with a pool holds what FromClient
// relays until Flush, sends each socket's datagrams in order, and counts
// to a Relay only the datagrams that left; an IO without a pool sends at
// once.
func TestIOQueue(t *testing.T) {
	t.Parallel()
	var sent []string
	newRelay := func(name string) *Relay {
		var c noCounter
		lim := NewLimits(LimitsConfig{
			Dropped: [2][2]Counter{{c, c}, {c, c}}, Denied: c,
			Guarded: func(netip.AddrPort) bool { return false },
		})
		r := NewRelay(&recordUDP{name: name, log: &sent}, netip.MustParseAddrPort("192.0.2.1:50000"), lim)
		peer := netip.MustParseAddrPort("198.51.100.1:1000")
		r.Permit(peer.Addr())
		r.Bind(0x4000, net.UDPAddrFromAddrPort(peer), peer, nil)
		r.Serve(nil, sockio.Dest{})
		return r
	}
	a, b := newRelay("a"), newRelay("b")
	frame := func(payload string) []byte {
		f := make([]byte, 4, 4+len(payload))
		binary.BigEndian.PutUint16(f, 0x4000)
		binary.BigEndian.PutUint16(f[2:], uint16(len(payload)))
		return append(f, payload...)
	}
	w := NewIO(sockio.NewPool())
	var want []string
	for i := range sockio.SendBatch + 3 { // the queue fills once and is flushed
		r, name := a, "a"
		if i%3 == 1 {
			r, name = b, "b"
		}
		payload := fmt.Sprint(i)
		if i == 4 {
			payload = "fail" // refused by the socket: not counted
		} else if name == "a" {
			want = append(want, "a:"+payload)
		}
		if !r.FromClient(&w, frame(payload)) {
			t.Fatalf("datagram %d left to pion", i)
		}
	}
	if w.Sender.Queued() == 0 {
		t.Fatal("nothing queued")
	}
	w.Flush()
	var gotA []string
	for _, s := range sent {
		if s[0] == 'a' {
			gotA = append(gotA, s)
		}
	}
	if fmt.Sprint(gotA) != fmt.Sprint(want) {
		t.Errorf("socket a sent %q, want %q", gotA, want)
	}
	total := sockio.SendBatch + 3
	if got := a.Counters.FastTo.Load() + b.Counters.FastTo.Load(); got != uint64(total-1) || len(sent) != total-1 {
		t.Errorf("counted %d datagrams sent and %d left, want %d", got, len(sent), total-1)
	}
	if got := a.Counters.PacketsTo.Load() + b.Counters.PacketsTo.Load(); got != uint64(total-1) {
		t.Errorf("PacketsTo %d, want %d", got, total-1)
	}

	// Without a pool, FromClient sends at once.
	sent = nil
	now := NewIO(nil)
	if !a.FromClient(&now, frame("now")) || len(sent) != 1 || now.Sender.Queued() != 0 {
		t.Errorf("an IO without a pool queued: sent %q", sent)
	}
}

// recordStream is a Stream that records each Deliver and has room for
// room bytes at once.
type recordStream struct {
	name      string
	room      int
	delivered *[]string
}

func (s *recordStream) Room(n int) bool { return n <= s.room }

func (s *recordStream) Deliver(b []byte, wait bool) bool {
	*s.delivered = append(*s.delivered, fmt.Sprintf("%s:%s:%v", s.name, b, wait))
	return true
}

// TestIOQueueStream checks that what one reader relays to a stream
// between Flushes is written with one Deliver, in order; that a frame for
// another stream, or past streamJoinMax bytes, writes what was joined
// first; and that a frame offered without waiting is refused, joining
// nothing, when the stream has no room for what would be written.
func TestIOQueueStream(t *testing.T) {
	t.Parallel()
	var got []string
	a := &recordStream{name: "a", room: 8, delivered: &got}
	b := &recordStream{name: "b", room: 1 << 20, delivered: &got}
	w := NewIO(nil)

	check := func(step string, want ...string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: delivered %q, want %q", step, got, want)
		}
		got = got[:0]
	}
	w.QueueStream(a, []byte("11"), false)
	w.QueueStream(a, []byte("22"), false)
	check("before Flush")
	w.Flush()
	check("Flush", "a:1122:false")
	w.Flush()
	check("second Flush")

	w.QueueStream(a, []byte("11"), false)
	w.QueueStream(b, []byte("xx"), true)
	check("another stream", "a:11:false")
	w.QueueStream(b, []byte("yy"), false)
	w.Flush()
	check("mixed wait", "b:xxyy:true")

	if !w.QueueStream(a, []byte("1234"), false) || !w.QueueStream(a, []byte("5678"), false) {
		t.Fatal("frames within the room refused")
	}
	if w.QueueStream(a, []byte("9"), false) {
		t.Fatal("a frame past the room joined")
	}
	if !w.QueueStream(a, []byte("9"), true) {
		t.Fatal("a frame that may wait refused")
	}
	w.Flush()
	check("room", "a:123456789:true")

	big := bytes.Repeat([]byte("z"), streamJoinMax/2+1)
	w.QueueStream(b, big, true)
	w.QueueStream(b, big, true)
	if len(got) != 1 {
		t.Fatalf("after %d bytes joined: %d delivers, want 1", 2*len(big), len(got))
	}
	got = got[:0]
	w.Flush()
	if len(got) != 1 {
		t.Fatalf("Flush after the join limit: %d delivers, want 1", len(got))
	}
}
