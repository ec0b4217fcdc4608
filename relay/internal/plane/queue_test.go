package plane

import (
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
