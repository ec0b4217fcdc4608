package tlsmux

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// muxFixture runs a Mux on 127.0.0.1 and collects what it hands on.
type muxFixture struct {
	mux        *Mux
	addr       string
	ca         *testCA
	toHTTP     chan net.Conn
	toTURN     chan net.Conn
	cancel     context.CancelFunc
	servedDone chan error
}

func newMuxFixture(t *testing.T, limits Limits) *muxFixture {
	t.Helper()
	ca := newTestCA(t)
	cert := ca.serverCert(t, "localhost", "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1", ALPNTURN, ALPNSTUN},
	}
	f := &muxFixture{
		mux:        New(ln, cfg, limits, slog.New(slog.DiscardHandler)),
		addr:       ln.Addr().String(),
		ca:         ca,
		toHTTP:     make(chan net.Conn, 16),
		toTURN:     make(chan net.Conn, 16),
		servedDone: make(chan error, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.servedDone <- f.mux.Serve(ctx) }()
	drain := func(l *connListener, out chan net.Conn) {
		for {
			c, err := l.Accept()
			if err != nil {
				close(out)
				return
			}
			out <- c
		}
	}
	go drain(f.mux.http, f.toHTTP)
	go drain(f.mux.turn, f.toTURN)
	t.Cleanup(func() {
		cancel()
		if err := <-f.servedDone; err != nil {
			t.Errorf("serve: %v", err)
		}
		for _, ch := range []chan net.Conn{f.toHTTP, f.toTURN} {
			for c := range ch {
				c.Close()
			}
		}
	})
	return f
}

// receive waits for the mux to hand a connection to ch and reads n bytes
// from it.
func receive(t *testing.T, ch chan net.Conn, n int) (net.Conn, []byte) {
	t.Helper()
	select {
	case c := <-ch:
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("reading handed-on connection: %v", err)
		}
		return c, buf
	case <-time.After(10 * time.Second):
		t.Fatal("no connection handed on")
		return nil, nil
	}
}

// stunBinding is a STUN Binding request header with no attributes.
func stunBinding() []byte {
	msg := make([]byte, 20)
	binary.BigEndian.PutUint16(msg[0:2], 0x0001)
	binary.BigEndian.PutUint32(msg[4:8], stunMagicCookie)
	copy(msg[8:20], "transaction!")
	return msg
}

// expectClosed asserts that the server closes c (reads end in EOF or
// reset) instead of leaving it open.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open: the server did not close it")
	}
}

func TestMuxHTTP1WithoutALPN(t *testing.T) {
	t.Parallel()
	f := newMuxFixture(t, DefaultLimits)
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "" {
		t.Fatalf("negotiated %q without offering ALPN", p)
	}
	req := "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
	io.WriteString(c, req)
	_, got := receive(t, f.toHTTP, len(req))
	if string(got) != req {
		t.Errorf("HTTP side read %q", got)
	}
}

func TestMuxH2ByALPN(t *testing.T) {
	t.Parallel()
	f := newMuxFixture(t, DefaultLimits)
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	select {
	case hc := <-f.toHTTP:
		if _, ok := hc.(*tls.Conn); !ok {
			t.Errorf("h2 connection handed on as %T, want *tls.Conn so the HTTP server sees TLS", hc)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("h2 connection not handed to HTTP")
	}
}

func TestMuxTURNOverTLSWithoutSNIOrALPN(t *testing.T) {
	t.Parallel()
	f := newMuxFixture(t, DefaultLimits)
	// No ServerName: no SNI. Verify the default certificate by hand.
	c, err := tls.Dial("tcp", f.addr, &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: f.ca.pool, DNSName: "localhost"})
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := stunBinding()
	c.Write(msg)
	_, got := receive(t, f.toTURN, len(msg))
	if string(got) != string(msg) {
		t.Errorf("relay side read %x, want %x", got, msg)
	}
}

func TestMuxTURNByALPN(t *testing.T) {
	t.Parallel()
	f := newMuxFixture(t, DefaultLimits)
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.pool, ServerName: "localhost", NextProtos: []string{ALPNTURN}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := stunBinding()
	c.Write(msg)
	receive(t, f.toTURN, len(msg))
}

func TestMuxPlainSTUN(t *testing.T) {
	t.Parallel()
	f := newMuxFixture(t, DefaultLimits)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := stunBinding()
	c.Write(msg)
	_, got := receive(t, f.toTURN, len(msg))
	if string(got) != string(msg) {
		t.Errorf("relay side read %x", got)
	}
}

func TestMuxClosesGarbage(t *testing.T) {
	t.Parallel()
	f := newMuxFixture(t, DefaultLimits)
	for _, garbage := range []string{"GET / HTTP/1.1\r\n\r\n", "\x80\x01\x02\x03\x04\x05\x06\x07\x08", "\x16\x03\x01\x00\x05hello"} {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, garbage)
		expectClosed(t, c)
		c.Close()
	}
	select {
	case c := <-f.toHTTP:
		t.Errorf("garbage handed to HTTP: %v", c.RemoteAddr())
	case c := <-f.toTURN:
		t.Errorf("garbage handed to the relay: %v", c.RemoteAddr())
	default:
	}
}

func TestMuxClosesStalledHandshakes(t *testing.T) {
	t.Parallel()
	limits := DefaultLimits
	limits.HandshakeTimeout = 300 * time.Millisecond
	f := newMuxFixture(t, limits)

	// Connects and sends nothing.
	silent, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// Sends half a ClientHello record.
	half, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
	// Completes the handshake, then sends nothing.
	quiet, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()

	expectClosed(t, silent)
	expectClosed(t, half)
	expectClosed(t, quiet)
}

func TestMuxCapsUnclassifiedConnectionsPerIP(t *testing.T) {
	t.Parallel()
	limits := DefaultLimits
	limits.MaxPerIP = 3
	f := newMuxFixture(t, limits)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range limits.MaxPerIP {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// Wait until the mux has admitted all of them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mux.mu.Lock()
		n := f.mux.pending
		f.mux.mu.Unlock()
		if n == limits.MaxPerIP {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending = %d, want %d", n, limits.MaxPerIP)
		}
		time.Sleep(5 * time.Millisecond)
	}
	extra, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	expectClosed(t, extra)

	// Once the held ones go, the same IP is welcome again.
	for _, c := range held {
		c.Close()
	}
	held = nil
	deadline = time.Now().Add(10 * time.Second)
	for {
		f.mux.mu.Lock()
		n := f.mux.pending
		f.mux.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending = %d after the clients left", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("after the cap cleared: %v", err)
	}
	c.Close()
}
