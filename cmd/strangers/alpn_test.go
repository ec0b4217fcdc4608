package main

import (
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v4"
	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/internal/tlsmux"
	"github.com/strangers-chat/strangers/relay"
)

const alpnTestSecret = "alpn-test-secret-0123456789abcdef"

// A TURN client that offers http/1.1 before stun.turn (as coturn's
// turnutils_uclient -S does) gets TURN on the shared TLS port, not HTTP.
func TestTLSTURNWhenALPNAlsoOffersHTTP(t *testing.T) {
	s := startTLSRun(t, map[string]string{"STRANGERS_TURN_SECRET": alpnTestSecret})
	host := s.tlsHost(t)
	p := dialTLSPeer(t, host) // a live session the relay accepts credentials for
	user, pass := relay.Credentials([]byte(alpnTestSecret), p.session, time.Now().Add(time.Hour))

	for _, offer := range [][]string{
		{"http/1.1", tlsmux.ALPNTURN},
		{"h2", "http/1.1", tlsmux.ALPNTURN},
		{tlsmux.ALPNTURN, "http/1.1"},
	} {
		t.Run(strings.Join(offer, ","), func(t *testing.T) {
			conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: sharedCA.pool, ServerName: "localhost", NextProtos: offer})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := conn.ConnectionState().NegotiatedProtocol; got != tlsmux.ALPNTURN {
				t.Fatalf("offering %v negotiated %q, want %s", offer, got, tlsmux.ALPNTURN)
			}
			c, err := turn.NewClient(&turn.ClientConfig{
				STUNServerAddr: host,
				TURNServerAddr: host,
				Conn:           turn.NewSTUNConn(conn),
				Username:       user,
				Password:       pass,
				Realm:          "strangers",
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Listen(); err != nil {
				t.Fatal(err)
			}
			relayed, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate over TLS offering %v: %v", offer, err)
			}
			relayed.Close()
		})
	}

	// A browser's HTTPS offer still gets HTTP.
	conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: sharedCA.pool, ServerName: "localhost", NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ConnectionState().NegotiatedProtocol; got != "h2" {
		t.Errorf("a browser's offer negotiated %q, want h2", got)
	}
	conn.Close()
}

var uclientTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)

// coturn's own client relays over TLS on the shared port (-S), with the
// ALPN list it sends.
func TestTLSTurnutilsUclient(t *testing.T) {
	uclient := testsupport.Require(t, "turnutils_uclient", "coturn")
	s := startTLSRun(t, map[string]string{
		"STRANGERS_TURN_SECRET": alpnTestSecret,
		// turnutils_uclient mints credentials valid for a day.
		"STRANGERS_TURN_CREDENTIAL_TTL": "25h",
	})
	_, port, _ := net.SplitHostPort(s.tlsHost(t))
	p := dialTLSPeer(t, s.tlsHost(t))

	const clients, msgs = 2, 50
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, uclient, "-t", "-S", "-y", "-c", "-m", strconv.Itoa(clients), "-n", strconv.Itoa(msgs),
		"-l", "200", "-W", alpnTestSecret, "-u", p.session, "-p", port, "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("turnutils_uclient -S: %v\n%.3000s", err, out)
	}
	all := uclientTotals.FindAllSubmatch(out, -1)
	if all == nil {
		t.Fatalf("no totals in turnutils_uclient output:\n%s", lastBytes(out, 3000))
	}
	m := all[len(all)-1]
	sent, _ := strconv.Atoi(string(m[1]))
	recv, _ := strconv.Atoi(string(m[2]))
	t.Logf("turnutils_uclient -S: sent %d, received %d", sent, recv)
	// The relayed leg between its clients is UDP: a loaded machine may drop
	// a datagram, but TURN over TLS must carry the exchange.
	if sent != clients*msgs || recv < sent/2 {
		t.Errorf("turnutils_uclient -S sent %d, received %d; want %d sent and most received", sent, recv, clients*msgs)
	}
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
