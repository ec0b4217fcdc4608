//go:build linux

package sockio

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestSenderQueue queues a batch that mixes two sockets, three
// destinations and one datagram the kernel refuses, and checks that Flush
// sends every other datagram once, in order per destination, from the
// socket it was queued for, and reports exactly which left.
func TestSenderQueue(t *testing.T) {
	t.Parallel()
	pool := NewPool()
	socks := []*net.UDPConn{listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0")}
	us := []UDP{NewUDP(socks[0], pool, 1), NewUDP(socks[1], pool, 1)}
	rcvs := []*net.UDPConn{listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0")}
	for _, r := range rcvs {
		if _, err := SetReceiveBuffer(r, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	// dests[s][r]: receiver r as a destination of socket s.
	var dests [2][3]Dest
	for s := range us {
		for r, rc := range rcvs {
			ap := rc.LocalAddr().(*net.UDPAddr).AddrPort()
			dests[s][r] = us[s].Dest(rc.LocalAddr(), ap)
		}
	}
	// Port 0 is refused by sendmmsg (EINVAL): the datagram is dropped, the
	// ones after it still go.
	bad := us[0].Dest(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, netip.MustParseAddrPort("127.0.0.1:0"))

	type msg struct{ sock, rcv int } // rcv -1: the refused destination
	var plan []msg
	for i := range SendBatch {
		switch {
		case i == 5:
			plan = append(plan, msg{0, -1})
		case i%3 == 0:
			plan = append(plan, msg{1, i % 2})
		default:
			plan = append(plan, msg{0, (i / 2) % 3})
		}
	}
	s := NewSender(pool)
	var want uint32
	expect := map[string][]string{} // "socket→receiver": payloads in order
	for i, m := range plan {
		d := &bad
		if m.rcv >= 0 {
			d = &dests[m.sock][m.rcv]
			want |= 1 << i
			key := fmt.Sprint(m.sock, "→", m.rcv)
			expect[key] = append(expect[key], fmt.Sprint("msg ", i))
		}
		if j, ok := s.Queue(us[m.sock], d, []byte(fmt.Sprint("msg ", i))); !ok || j != i {
			t.Fatalf("Queue %d: index %d, %v", i, j, ok)
		}
	}
	if _, ok := s.Queue(us[0], &dests[0][0], []byte("one too many")); ok {
		t.Fatal("queued past SendBatch")
	}
	if got := s.Queued(); got != SendBatch {
		t.Fatalf("Queued() = %d, want %d", got, SendBatch)
	}
	if sent := s.Flush(); sent != want {
		t.Fatalf("Flush reported %016b, want %016b", sent, want)
	}
	if s.Queued() != 0 {
		t.Fatal("queue not empty after Flush")
	}

	got := map[string][]string{}
	buf := make([]byte, 64)
	for r, rc := range rcvs {
		n := 0
		for _, m := range plan {
			if m.rcv == r {
				n++
			}
		}
		_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for range n {
			k, from, err := rc.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("receiver %d: %v (got %v)", r, err, got)
			}
			sock := -1
			for i, sc := range socks {
				if int(from.Port()) == sc.LocalAddr().(*net.UDPAddr).Port {
					sock = i
				}
			}
			key := fmt.Sprint(sock, "→", r)
			got[key] = append(got[key], string(buf[:k]))
		}
	}
	for key, w := range expect {
		if fmt.Sprint(got[key]) != fmt.Sprint(w) {
			t.Errorf("%s: received %q, want %q", key, got[key], w)
		}
	}
	if len(got) != len(expect) {
		t.Errorf("received on %v, want %v", got, expect)
	}

	// Too large for a slot: not queued. A Sender without a pool never queues.
	if _, ok := s.Queue(us[0], &dests[0][0], make([]byte, queueSlot+1)); ok {
		t.Error("queued a datagram larger than a slot")
	}
	if _, ok := NewSender(nil).Queue(us[0], &dests[0][0], []byte("x")); ok {
		t.Error("a Sender without a pool queued")
	}

	// On a closed socket nothing is reported sent, and the queue empties.
	socks[1].Close()
	if _, ok := s.Queue(us[1], &dests[1][0], []byte("closed")); !ok {
		t.Fatal("Queue failed")
	}
	if sent := s.Flush(); sent != 0 || s.Queued() != 0 {
		t.Errorf("Flush on a closed socket reported %b, %d queued", sent, s.Queued())
	}
}
