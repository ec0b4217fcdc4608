package relay

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// readClosed reports whether the server closed c within a generous bound,
// draining anything it sent first.
func readClosed(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true // EOF or reset
}

// servesBinding reports whether a fresh TCP connection gets a Binding
// response.
func servesBinding(t *testing.T, s *Server) bool {
	t.Helper()
	c, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		return false
	}
	defer c.Close()
	if _, err := c.Write(bindingRequest(t)); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 256))
	return err == nil
}

func bindingRequest(t *testing.T) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestStreamListenerHardening(t *testing.T) {
	t.Parallel()
	eachPath(t, testStreamListenerHardening)
}

func testStreamListenerHardening(t *testing.T, path dataPath) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    func(*Config)
		run    func(t *testing.T, s *Server)
		reason string
	}{
		{
			name: "per-IP cap",
			cfg:  func(c *Config) { c.TCPMaxConnsPerIP = 2 },
			run: func(t *testing.T, s *Server) {
				var conns []*rawClient
				for range 2 {
					c := dialRaw(t, s, "", "", true)
					if resp := c.do(stun.MethodBinding); !isSuccess(resp) {
						t.Fatal("Binding on an admitted connection failed")
					}
					conns = append(conns, c)
				}
				extra, err := net.Dial("tcp", s.TCPAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer extra.Close()
				if !readClosed(t, extra) {
					t.Fatal("third connection from one IP was not closed")
				}
				// Closing one admits a new one.
				conns[0].conn.Close()
				waitFor(t, "slot released", func() bool { return servesBinding(t, s) })
			},
			reason: streamPerIP,
		},
		{
			name: "silent connection hits the first-message deadline",
			cfg:  func(c *Config) { c.TCPFirstMessageTimeout = 100 * time.Millisecond },
			run: func(t *testing.T, s *Server) {
				c, err := net.Dial("tcp", s.TCPAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if !readClosed(t, c) {
					t.Fatal("silent connection not closed")
				}
			},
			reason: streamFirstMessage,
		},
		{
			name: "partial first message hits the first-message deadline",
			cfg:  func(c *Config) { c.TCPFirstMessageTimeout = 100 * time.Millisecond },
			run: func(t *testing.T, s *Server) {
				c, err := net.Dial("tcp", s.TCPAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write(bindingRequest(t)[:10])
				if !readClosed(t, c) {
					t.Fatal("connection with a partial frame not closed")
				}
			},
			reason: streamFirstMessage,
		},
		{
			name: "idle connection closed",
			cfg: func(c *Config) {
				c.TCPFirstMessageTimeout = 10 * time.Second
				c.TCPIdleTimeout = 150 * time.Millisecond
			},
			run: func(t *testing.T, s *Server) {
				c := dialRaw(t, s, "", "", true)
				if resp := c.do(stun.MethodBinding); !isSuccess(resp) {
					t.Fatal("Binding failed")
				}
				if !readClosed(t, c.conn) {
					t.Fatal("idle connection not closed")
				}
			},
			reason: streamIdle,
		},
		{
			name: "garbage closes the connection",
			run: func(t *testing.T, s *Server) {
				c, err := net.Dial("tcp", s.TCPAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
				if !readClosed(t, c) {
					t.Fatal("HTTP request on the TURN port not closed")
				}
			},
			reason: streamFrame,
		},
		{
			name: "oversized frame closes the connection",
			run: func(t *testing.T, s *Server) {
				c, err := net.Dial("tcp", s.TCPAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write([]byte{0x00, 0x01, 0xFF, 0xF0, 0x21, 0x12, 0xA4, 0x42})
				if !readClosed(t, c) {
					t.Fatal("connection announcing a 64 KiB frame not closed")
				}
			},
			reason: streamFrame,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := path.config()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			s := newServer(t, cfg)
			tc.run(t, s)
			waitFor(t, "metric", func() bool {
				return testutil.ToFloat64(s.metrics.tcpRejected.WithLabelValues(tc.reason)) >= 1
			})
			// The listener still serves (retried: a connection the test just
			// closed may still count against the per-IP cap for a moment).
			waitFor(t, "listener still serving", func() bool { return servesBinding(t, s) })
		})
	}
}

// TestStreamListenersServeTURN serves TURN on an extra listener, as the TLS
// demultiplexer does, and checks Close closes it and its connections.
func TestStreamListenersServeTURN(t *testing.T) {
	t.Parallel()
	eachPath(t, testStreamListenersServeTURN)
}

func testStreamListenersServeTURN(t *testing.T, path dataPath) {
	t.Parallel()
	extra, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := path.config()
	cfg.StreamListeners = []net.Listener{extra}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sid := newSID(t)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	c, err := net.Dial("tcp", extra.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := &rawClient{t: t, conn: c, tcp: true, user: user, pass: pass}
	if resp := rc.allocate(); !isSuccess(resp) {
		t.Fatalf("Allocate over the extra listener: error %d", errorCode(resp))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !readClosed(t, c) {
		t.Error("connection on the extra listener survived Close")
	}
	if _, err := net.Dial("tcp", extra.Addr().String()); err == nil {
		t.Error("extra listener still accepts after Close")
	}
}
