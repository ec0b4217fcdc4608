package relay

import (
	"net"
	"net/netip"
	"os/exec"
	"strconv"
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
	// The listener counts a refusal after closing the connection, so the
	// client may see the close first.
	perIPRefused := func() float64 { return testutil.ToFloat64(s.metrics.tcpRejected.WithLabelValues(streamPerIP)) }
	if !eventually(func() bool { return perIPRefused() == tries-perIP }) {
		t.Errorf("stream_conns_closed_total{reason=per_ip} = %v, want %d", perIPRefused(), tries-perIP)
	}
	if !servesBindingOn(t, dialFrom(t, s, other[0])) {
		t.Error("a client of another /64 was refused")
	}
}

// TestHostAddressesDenied runs the relay on a host with two public
// addresses (a veth end in a namespace of its own): a UDP service bound to
// the wildcard address is reachable through neither of them, nor through
// an address added while the relay runs, while relay to relay still works
// through both.
func TestHostAddressesDenied(t *testing.T) {
	// Global unicast addresses that the peer policy lets through; they
	// exist only inside the namespace.
	const a1, a2, a3, client = "192.31.196.1", "192.31.196.2", "192.31.196.3", "192.31.196.10"
	if !nstest.Run(t,
		[]string{"link", "add", "strangers0", "type", "veth", "peer", "name", "strangers1"},
		[]string{"addr", "add", a1 + "/24", "dev", "strangers0"},
		[]string{"addr", "add", a2 + "/24", "dev", "strangers0"},
		[]string{"addr", "add", client + "/24", "dev", "strangers1"},
		[]string{"link", "set", "strangers0", "up"},
		[]string{"link", "set", "strangers1", "up"},
	) {
		return
	}
	for _, c := range []struct {
		path dataPath
		tcp  bool
	}{{dataPaths()[0], false}, {dataPaths()[0], true}, {dataPaths()[1], false}, {dataPaths()[1], true}} {
		path, tcp := c.path, c.tcp
		t.Run(path.name+"/"+transportName(tcp), func(t *testing.T) {
			cfg := path.config()
			cfg.ListenAddr = "0.0.0.0:0"
			cfg.PublicIP = netip.MustParseAddr(a1)
			cfg.hostRefresh = 20 * time.Millisecond
			s := newServer(t, cfg)
			a, b, _, relB := relayPair(t, s, tcp, false)
			service := newSink(t, "0.0.0.0") // a UDP service of the host, on every address
			port := service.addr().Port()
			before := testutil.ToFloat64(s.metrics.peerDeniedHost)

			// The service through each address of the host: the permission
			// passes (the policy sees only the IP), the data goes nowhere.
			try := func(ip string, number uint16) {
				t.Helper()
				peer := netip.AddrPortFrom(netip.MustParseAddr(ip), port)
				if resp := a.permit(peer); !isSuccess(resp) {
					t.Fatalf("CreatePermission to %s: error %d", peer, errorCode(resp))
				}
				a.indicate(peer, []byte("leak via send to "+ip))
				if resp := a.bind(number, peer); !isSuccess(resp) {
					t.Fatalf("ChannelBind to %s: error %d", peer, errorCode(resp))
				}
				a.channelData(number, []byte("leak via channel to "+ip))
			}
			try(a1, 0x4000)
			try(a2, 0x4001)
			// An address added while the relay runs is guarded once seen.
			if out, err := exec.Command("ip", "addr", "add", a3+"/24", "dev", "strangers0").CombinedOutput(); err != nil {
				t.Fatalf("ip addr add: %v: %s", err, out)
			}
			t.Cleanup(func() { exec.Command("ip", "addr", "del", a3+"/24", "dev", "strangers0").Run() })
			waitFor(t, "the new address in the host set", func() bool {
				return s.hosts.Load().has(netip.MustParseAddr(a3))
			})
			try(a3, 0x4002)
			a.flush()
			canary, err := net.Dial("udp4", net.JoinHostPort(a2, strconv.Itoa(int(port))))
			if err != nil {
				t.Fatal(err)
			}
			defer canary.Close()
			canary.Write([]byte("canary"))
			if got := service.next(5 * time.Second); string(got) != "canary" {
				t.Errorf("the host's service received %q before the canary", got)
			}
			if got := testutil.ToFloat64(s.metrics.peerDeniedHost) - before; got != 6 {
				t.Errorf("peer_denied_total{reason=host} went up by %v, want 6", got)
			}

			// Relay to relay: b's relay port, through either address.
			for _, ip := range []string{a1, a2} {
				if resp := b.permit(netip.AddrPortFrom(netip.MustParseAddr(ip), 1)); !isSuccess(resp) {
					t.Fatalf("b: CreatePermission to %s: error %d", ip, errorCode(resp))
				}
			}
			for _, ip := range []string{a1, a2} {
				peer := netip.AddrPortFrom(netip.MustParseAddr(ip), relB.Port())
				if resp := a.permit(peer); !isSuccess(resp) {
					t.Fatalf("CreatePermission to our relay at %s: error %d", peer, errorCode(resp))
				}
				a.indicate(peer, []byte("relay to relay via "+ip))
				expectRelayed(t, b, 0, "relay to relay via "+ip)
			}
		})
	}
}
