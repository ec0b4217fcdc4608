package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// acceptedStream returns a server-side streamConn and the client end of a
// loopback TCP connection through a streamListener of s.
func acceptedStream(t *testing.T, s *Server) (*streamConn, net.Conn) {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newStreamListener(tl, s)
	t.Cleanup(func() {
		l.Close()
		_, _ = l.Accept() // returns at once: lets the tracker know accepting stopped
	})
	client, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*streamConn), client
}

func TestStreamConnWrites(t *testing.T) {
	t.Parallel()
	s := newServer(t, testConfig())

	t.Run("concurrent writers keep frames whole and in order", func(t *testing.T) {
		t.Parallel()
		sc, client := acceptedStream(t, s)
		const writers, frames, size = 4, 2000, 100
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f := make([]byte, size)
				for i := range frames {
					binary.BigEndian.PutUint32(f[0:], uint32(w))
					binary.BigEndian.PutUint32(f[4:], uint32(i))
					if n, err := sc.Write(f); err != nil || n != size {
						t.Errorf("writer %d frame %d: %d, %v", w, i, n, err)
						return
					}
				}
			}()
		}
		next := make([]uint32, writers)
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		f := make([]byte, size)
		for range writers * frames {
			if _, err := io.ReadFull(client, f); err != nil {
				t.Fatal(err)
			}
			w, i := binary.BigEndian.Uint32(f[0:]), binary.BigEndian.Uint32(f[4:])
			if w >= writers || i != next[w] {
				t.Fatalf("frame %d of writer %d, want %d", i, w, next[w])
			}
			next[w]++
		}
		wg.Wait()
	})

	t.Run("the rest of a write the socket takes in part goes first", func(t *testing.T) {
		t.Parallel()
		sc, client := acceptedStream(t, s)
		big := make([]byte, 32<<20) // more than the socket buffers hold

		for i := range big {
			big[i] = byte(i / 7)
		}
		if _, err := sc.Write(big); err != nil {
			t.Fatal(err)
		}
		// The peer reads nothing yet, so the socket took only part: the
		// rest is queued, or the writer holds it.
		sc.wmu.Lock()
		rest := len(sc.out) > 0 || sc.busy
		sc.wmu.Unlock()
		if !rest {
			t.Fatal("the socket took all at once; the test needs a partial write")
		}
		tail := make(chan error, 1)
		go func() {
			_, err := sc.Write([]byte("tail"))
			tail <- err
		}()
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		got := make([]byte, len(big)+4)
		if _, err := io.ReadFull(client, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:len(big)], big) || string(got[len(big):]) != "tail" {
			t.Fatal("the stream is not the big write followed by the tail")
		}
		if err := <-tail; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a write waiting on a peer that does not read returns on close", func(t *testing.T) {
		t.Parallel()
		sc, client := acceptedStream(t, s)
		_ = sc.Conn.(*net.TCPConn).SetWriteBuffer(4096)
		_ = client.(*net.TCPConn).SetReadBuffer(4096)
		errc := make(chan error, 1)
		go func() {
			f := make([]byte, maxStreamFrame)
			for {
				if _, err := sc.Write(f); err != nil {
					errc <- err
					return
				}
			}
		}()
		waitFor(t, "a write to wait for the writer", func() bool {
			sc.wmu.Lock()
			defer sc.wmu.Unlock()
			return sc.waiting
		})
		sc.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after close: %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("blocked write did not return after close")
		}
		if _, err := sc.Write([]byte("late")); err == nil {
			t.Fatal("write after close succeeded")
		}
	})

	t.Run("offer refuses at once when the queue is full or closed", func(t *testing.T) {
		t.Parallel()
		sc, client := acceptedStream(t, s)
		_ = sc.Conn.(*net.TCPConn).SetWriteBuffer(4096)
		_ = client.(*net.TCPConn).SetReadBuffer(4096)
		f := make([]byte, maxStreamFrame)
		offered := 0
		for sc.offer(f) {
			// The peer reads nothing: the kernel buffers fill, the writer
			// blocks, and the queue reaches streamOutMax.
			if offered++; offered > 10_000 {
				t.Fatal("offer never refused although the peer reads nothing")
			}
		}
		sc.wmu.Lock()
		queued := len(sc.out)
		sc.wmu.Unlock()
		if queued+len(f) <= streamOutMax {
			t.Errorf("offer refused with %d bytes queued, room for %d more", queued, streamOutMax-queued)
		}
		sc.Close()
		if sc.offer([]byte("late")) {
			t.Error("offer after close succeeded")
		}
	})

	t.Run("a failed write closes the connection", func(t *testing.T) {
		t.Parallel()
		sc, client := acceptedStream(t, s)
		_ = client.(*net.TCPConn).SetLinger(0)
		client.Close() // reset: the server's writes fail
		f := make([]byte, 1000)
		waitFor(t, "a write to fail", func() bool {
			_, err := sc.Write(f)
			return err != nil
		})
		waitFor(t, "the connection to close", func() bool {
			select {
			case <-sc.done:
				return true
			default:
				return false
			}
		})
	})
}
