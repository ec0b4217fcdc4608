//go:build linux

package sockio

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listenUDP opens a UDP socket on network/addr, closed when the test ends.
func listenUDP(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

func TestBatchReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		network   string
		addr      string
		datagrams int
		size      int // datagram size
		buf       int // reader buffer size
		wantLen   int // bytes each read returns
	}{
		{"one", "udp4", "127.0.0.1:0", 1, 100, 1600, 100},
		{"several batches", "udp4", "127.0.0.1:0", 3*batchSize + 5, 1000, 1600, 1000},
		{"truncated to the caller's buffer", "udp4", "127.0.0.1:0", batchSize + 2, 1500, 1000, 1000},
		{"truncated at the slot size", "udp4", "127.0.0.1:0", batchSize + 2, batchSlot + 100, batchSlot, batchSlot},
		{"buffer larger than a slot", "udp4", "127.0.0.1:0", 5, batchSlot + 100, batchSlot + 500, batchSlot + 100},
		{"empty datagrams", "udp4", "127.0.0.1:0", batchSize + 1, 0, 1600, 0},
		{"ipv6", "udp6", "[::1]:0", batchSize + 3, 500, 1600, 500},
		{"dual stack, ipv4 sender", "udp", "127.0.0.1:0", batchSize + 3, 500, 1600, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := listenUDP(t, tt.network, tt.addr)
			if _, err := SetReceiveBuffer(rc, 4<<20); err != nil {
				t.Fatal(err)
			}
			rd := NewUDP(rc, NewPool(), 4)
			if rd == nil {
				t.Fatal("no batch reader for a UDP socket")
			}
			senderNet := tt.network
			if senderNet == "udp" {
				senderNet = "udp4"
			}
			host := "127.0.0.1:0"
			if senderNet == "udp6" {
				host = "[::1]:0"
			}
			senders := []*net.UDPConn{listenUDP(t, senderNet, host), listenUDP(t, senderNet, host)}
			dst := rc.LocalAddr()
			for i := range tt.datagrams {
				msg := bytes.Repeat([]byte{byte(i)}, tt.size)
				if _, err := senders[i%2].WriteTo(msg, dst); err != nil {
					t.Fatal(err)
				}
			}
			// What a plain read reports as the source, for comparison.
			plain := listenUDP(t, tt.network, tt.addr)
			if _, err := senders[0].WriteTo([]byte("x"), plain.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			_ = plain.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, wantSrc, err := plain.ReadFrom(make([]byte, 10))
			if err != nil {
				t.Fatal(err)
			}

			buf := make([]byte, tt.buf)
			_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := range tt.datagrams {
				n, addr, err := rd.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if n != tt.wantLen {
					t.Fatalf("datagram %d: got %d bytes, want %d", i, n, tt.wantLen)
				}
				if want := bytes.Repeat([]byte{byte(i)}, n); !bytes.Equal(buf[:n], want) {
					t.Fatalf("datagram %d: wrong content", i)
				}
				from := senders[i%2].LocalAddr().(*net.UDPAddr)
				ua, ok := addr.(*net.UDPAddr)
				if !ok || ua.Port != from.Port || !ua.IP.Equal(from.IP) {
					t.Fatalf("datagram %d: source %v, want %v", i, addr, from)
				}
				if i%2 == 0 && (len(ua.IP) != len(wantSrc.(*net.UDPAddr).IP) || ua.String() != wantSrc.String()) {
					t.Fatalf("datagram %d: source %#v, a plain read says %#v", i, ua, wantSrc)
				}
			}
		})
	}
}

func TestBatchReaderDeadlineAndClose(t *testing.T) {
	t.Parallel()
	rc := listenUDP(t, "udp4", "127.0.0.1:0")
	rd := NewUDP(rc, NewPool(), 4)
	buf := make([]byte, 1600)

	_ = rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, err := rd.ReadFrom(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}

	// Buffered datagrams are discarded once the reader is closed.
	snd := listenUDP(t, "udp4", "127.0.0.1:0")
	for range 4 {
		if _, err := snd.WriteTo([]byte("hello"), rc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := rd.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rd.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}

	// A reader blocked in ReadFrom returns when the socket is closed.
	rc2 := listenUDP(t, "udp4", "127.0.0.1:0")
	rd2 := NewUDP(rc2, NewPool(), 4)
	done := make(chan error, 1)
	go func() {
		_, _, err := rd2.ReadFrom(make([]byte, 1600))
		done <- err
	}()
	if err := rd2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked read after close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked read did not return after close")
	}
}

func TestAddrCache(t *testing.T) {
	t.Parallel()
	c := newAddrCache(3)
	if len(c.addrs) != 4 {
		t.Fatalf("cache of %d entries, want 4", len(c.addrs))
	}
	keys := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:1000"),
		netip.MustParseAddrPort("192.0.2.1:1001"),
		netip.MustParseAddrPort("[2001:db8::1]:1000"),
		netip.MustParseAddrPort("[::ffff:192.0.2.1]:1000"),
	}
	for i := range 3 * len(keys) {
		k := keys[i%len(keys)]
		sa := rawSockaddr(k)
		got := c.get(&sa)
		if got.Port != int(k.Port()) || !got.IP.Equal(net.IP(k.Addr().AsSlice())) {
			t.Fatalf("get(%v) = %v", k, got)
		}
		if k.Addr().Is4() && len(got.IP) != net.IPv4len {
			t.Fatalf("get(%v): IPv4 source with a %d-byte IP", k, len(got.IP))
		}
		if again := c.get(&sa); again != got {
			t.Fatalf("get(%v) twice: different addresses (not cached)", k)
		}
	}
}

// rawSockaddr encodes k as the kernel does in recvmmsg's name buffer.
func rawSockaddr(k netip.AddrPort) unix.RawSockaddrInet6 {
	var sa unix.RawSockaddrInet6
	port := [2]byte{byte(k.Port() >> 8), byte(k.Port())}
	if k.Addr().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family = unix.AF_INET
		sa4.Port = *(*uint16)(unsafe.Pointer(&port))
		sa4.Addr = k.Addr().As4()
		return sa
	}
	sa.Family = unix.AF_INET6
	sa.Port = *(*uint16)(unsafe.Pointer(&port))
	sa.Addr = k.Addr().As16()
	return sa
}

// takeEven is a Handler that takes datagrams whose first byte is even and
// records what it was offered, and when Flush was called.
type takeEven struct {
	mu      sync.Mutex
	offered []byte // first bytes, in order
	taken   []byte
	flushes int
	seen    chan struct{} // gets a token per datagram offered
}

func (h *takeEven) Handle(b []byte, _ net.Addr) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.offered = append(h.offered, b[0])
	take := b[0]%2 == 0
	if take {
		h.taken = append(h.taken, b[0])
	}
	select {
	case h.seen <- struct{}{}:
	default:
	}
	return take
}

func (h *takeEven) Flush() {
	h.mu.Lock()
	h.flushes++
	h.mu.Unlock()
}

// TestBatchReaderHandler checks that a reader offers every datagram to
// its handler in order and returns only those the handler leaves, and
// that a reader whose handler took a whole batch that drained the socket
// still wakes for the next datagram.
func TestBatchReaderHandler(t *testing.T) {
	t.Parallel()
	for _, bufSize := range []int{1600, batchSlot + 100} { // batched, and one datagram per call
		t.Run(fmt.Sprint(bufSize), func(t *testing.T) {
			t.Parallel()
			rc := listenUDP(t, "udp4", "127.0.0.1:0")
			if _, err := SetReceiveBuffer(rc, 4<<20); err != nil {
				t.Fatal(err)
			}
			rd := NewUDP(rc, NewPool(), 4)
			h := &takeEven{seen: make(chan struct{}, 1000)}
			rd.SetHandler(h)
			snd := listenUDP(t, "udp4", "127.0.0.1:0")
			send := func(first byte) {
				t.Helper()
				if _, err := snd.WriteTo(bytes.Repeat([]byte{first}, 100), rc.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			// Runs of taken datagrams longer than a batch between the kept
			// ones, and kept ones back to back.
			var sent []byte
			for i := range 3*batchSize + 7 {
				b := byte(2 * i)
				if i%11 == 10 || i%11 == 0 {
					b++
				}
				send(b)
				sent = append(sent, b)
			}
			send(255) // the last one is kept
			sent = append(sent, 255)
			var kept, wantKept []byte
			for _, b := range sent {
				if b%2 == 1 {
					wantKept = append(wantKept, b)
				}
			}
			buf := make([]byte, bufSize)
			_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
			for range wantKept {
				n, _, err := rd.ReadFrom(buf)
				if err != nil {
					t.Fatalf("after %v: %v", kept, err)
				}
				if n != 100 {
					t.Fatalf("read %d bytes, want 100", n)
				}
				kept = append(kept, buf[0])
			}
			h.mu.Lock()
			offered, flushes := append([]byte(nil), h.offered...), h.flushes
			h.mu.Unlock()
			if !bytes.Equal(kept, wantKept) || !bytes.Equal(offered, sent) {
				t.Fatalf("offered %v and returned %v; sent %v, want %v returned", offered, kept, sent, wantKept)
			}
			if flushes < len(wantKept) {
				t.Errorf("Flush called %d times, want at least once per return (%d)", flushes, len(wantKept))
			}

			// Everything taken and the queue drained: the reader waits, and
			// a datagram sent then wakes it.
			for len(h.seen) > 0 {
				<-h.seen
			}
			_ = rc.SetReadDeadline(time.Now().Add(20 * time.Second))
			done := make(chan error, 1)
			go func() {
				n, _, err := rd.ReadFrom(buf)
				if err == nil && (n != 100 || buf[0] != 7) {
					err = fmt.Errorf("read %d bytes starting %d, want 100 starting 7", n, buf[0])
				}
				done <- err
			}()
			for i := range 5 {
				send(byte(100 + 2*i))
			}
			for range 5 {
				select {
				case <-h.seen:
				case err := <-done:
					t.Fatalf("read returned before the kept datagram: %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("taken datagrams not offered")
				}
			}
			send(7)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("reader did not wake for a datagram after a drained batch")
			}
		})
	}
}
