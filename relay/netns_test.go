package relay

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/strangers-chat/strangers/internal/nstest"
)

// dialFrom opens a TCP connection to s from the local address src.
func dialFrom(t *testing.T, s *Server, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })

	return c
}

// servesBindingOn reports whether c gets an answer to a Binding request.
func servesBindingOn(t *testing.T, c net.Conn) bool {
	t.Helper()
	if _, err := c.Write(bindingRequest(t)); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 256))

	return err == nil
}

// TestStreamCapCountsIPv6Per64 holds TURN-over-TCP connections from many
// addresses of one IPv6 /64: together they get the per-IP cap, not one
// cap each; another /64 is not affected.
func TestStreamCapCountsIPv6Per64(t *testing.T) {
	const perIP, tries = 4, 12
	one, setup := nstest.Addrs("2001:db8:0:1::", 1, tries)
	other, setup2 := nstest.Addrs("2001:db8:0:2::", 1, 1)
	if !nstest.Run(t, append(setup, setup2...)...) {
		return
	}
	cfg := testConfig()
	cfg.ListenAddr = "[2001:db8:0:1::1]:0"
	cfg.TCPMaxConnsPerIP = perIP
	s := newServer(t, cfg)

	served, refused := 0, 0
	for _, src := range one {
		c := dialFrom(t, s, src)
		if servesBindingOn(t, c) {
			served++
		} else {
			refused++
		}
	}
	if served != perIP || refused != tries-perIP {
		t.Errorf("from one /64: %d connections served, %d refused; want %d and %d", served, refused, perIP, tries-perIP)
	}
	if got := testutil.ToFloat64(s.metrics.tcpRejected.WithLabelValues(streamPerIP)); got != tries-perIP {
		t.Errorf("stream_conns_closed_total{reason=per_ip} = %v, want %d", got, tries-perIP)
	}
	if !servesBindingOn(t, dialFrom(t, s, other[0])) {
		t.Error("a client of another /64 was refused")
	}
}
