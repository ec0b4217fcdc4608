package main

import (
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/strangers-chat/strangers/internal/nstest"
	"github.com/strangers-chat/strangers/internal/tlsmux"
)

// metric returns the value of the sample line "name value" in s's
// /metrics, -1 when there is none.
func metric(t *testing.T, s *server, name string) float64 {
	t.Helper()
	_, body := get(t, s.url("/metrics"))
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// waitMetric waits until metric name reaches want.
func waitMetric(t *testing.T, s *server, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := metric(t, s, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bindingMessage is a STUN Binding request.
func bindingMessage(t *testing.T) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}

// TestTLSPortCountsIPv6Per64 connects to the shared TLS port from many
// addresses of one IPv6 /64: they share one per-IP cap, both for
// connections not yet classified and for TURN over TLS; another /64 keeps
// its own.
func TestTLSPortCountsIPv6Per64(t *testing.T) {
	const muxPerIP, turnPerIP = 16, 4 // defaultMuxLimits.maxPerIP; STRANGERS_TURN_TCP_MAX_PER_IP below
	stalls, setup1 := nstest.Addrs("2001:db8:0:1::", 0x10, muxPerIP+4)
	turners, setup2 := nstest.Addrs("2001:db8:0:2::", 0x10, 2*turnPerIP)
	others, setup3 := nstest.Addrs("2001:db8:0:3::", 0x10, 1)
	_, setup4 := nstest.Addrs("2001:db8:0:1::", 1, 1)
	if !nstest.Run(t, append(append(append(setup1, setup2...), setup3...), setup4...)...) {
		return
	}
	s := startTLSRun(t, map[string]string{
		"STRANGERS_TLS_ADDR":            "[2001:db8:0:1::1]:0",
		"STRANGERS_TURN_TCP_MAX_PER_IP": strconv.Itoa(turnPerIP),
	})
	_, port, _ := net.SplitHostPort(s.addrs["tls"].(string))
	addr := net.JoinHostPort("2001:db8:0:1::1", port)
	tlsConfig := func(protos ...string) *tls.Config {
		return &tls.Config{RootCAs: sharedCA.pool, ServerName: "localhost", NextProtos: protos}
	}

	// Connections that say nothing: one /64 holds at most muxPerIP of them.
	for _, src := range stalls[:muxPerIP] {
		c, err := dialerFrom(src).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for _, src := range stalls[muxPerIP:] {
		c, err := dialerFrom(src).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitMetric(t, s, `strangers_tls_refused_total{reason="per_ip"}`, 4)
	// Another /64 is served meanwhile.
	c, err := tls.DialWithDialer(dialerFrom(others[0]), "tcp", addr, tlsConfig("h2"))
	if err != nil {
		t.Fatalf("another /64 refused while the first is at its cap: %v", err)
	}
	c.Close()

	// TURN over TLS: one /64 holds at most turnPerIP connections.
	served := 0
	for _, src := range turners {
		c, err := tls.DialWithDialer(dialerFrom(src), "tcp", addr, tlsConfig(tlsmux.ALPNTURN))
		if err != nil {
			t.Fatalf("TLS from %s: %v", src, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(bindingMessage(t)); err != nil {
			continue
		}
		if _, err := c.Read(make([]byte, 256)); err == nil {
			served++
		}
	}
	if served != turnPerIP {
		t.Errorf("TURN over TLS from one /64: %d connections served, want %d", served, turnPerIP)
	}
	waitMetric(t, s, `strangers_relay_stream_conns_closed_total{reason="per_ip"}`, float64(len(turners)-turnPerIP))
}
