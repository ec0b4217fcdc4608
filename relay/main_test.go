package relay

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testSecret = []byte("test-secret-for-the-relay-0123456789")

// Test relay ports sit above Linux's default ephemeral range (32768–60999)
// so that sink sockets bound to port 0 fall outside the relay range.
const testPortMin, testPortMax = 61000, 65535

var loopback = netip.MustParseAddr("127.0.0.1")

// testConfig returns a Config for a relay on 127.0.0.1 with ephemeral ports.
func testConfig() Config {
	return Config{
		ListenAddr: "127.0.0.1:0",
		UDPSockets: 2,
		PublicIP:   loopback,
		PortMin:    testPortMin,
		PortMax:    testPortMax,
		Secret:     testSecret,
		Registerer: prometheus.NewRegistry(),
		// Every test client is on 127.0.0.1: only the tests of reply.go
		// keep the per-address reply limit.
		replyBurst: 1 << 20,
	}
}

// newServer starts a relay with cfg and closes it when the test ends.
func newServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newSID mints a session id the way the matchmaker does.
func newSID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// fakeClock is an injectable Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsupport.WaitFor(t, 10*time.Second, what, cond)
}

// eventually polls cond for up to 10 seconds and reports whether it held.
// Counters a relay goroutine bumps just after it sends can trail what a
// test has already received; tests check them through eventually and then
// report the values they see.
func eventually(cond func() bool) bool { return testsupport.Eventually(10*time.Second, cond) }

var quietPion = pionLoggerFactory{log: slog.New(slog.DiscardHandler)}

// pionClient is a pion TURN client whose allocation is released when the
// test ends (pion's relayed conn runs refresh timers until closed).
type pionClient struct {
	*turn.Client
	mu      sync.Mutex
	relayed net.PacketConn
}

// Allocate allocates a UDP relay.
func (c *pionClient) Allocate() (net.PacketConn, error) {
	pc, err := c.Client.Allocate()
	if err == nil {
		c.mu.Lock()
		c.relayed = pc
		c.mu.Unlock()
	}
	return pc, err
}

// dialPion returns a pion TURN client of s over UDP or TCP.
// pionConfig returns the configuration of a pion TURN client of s at addr
// over conn.
func pionConfig(s *Server, addr string, conn net.PacketConn, user, pass string) *turn.ClientConfig {
	return &turn.ClientConfig{
		STUNServerAddr: addr,
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          s.cfg.Realm,
		LoggerFactory:  quietPion,
	}
}

func dialPion(t testing.TB, s *Server, user, pass string, tcp bool) *pionClient {
	t.Helper()
	var conn net.PacketConn
	addr := s.UDPAddr().String()
	if tcp {
		c, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
		addr = s.TCPAddr().String()
	} else {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	}
	cfg := pionConfig(s, addr, conn, user, pass)
	cfg.RTO = 100 * time.Millisecond
	client, err := turn.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	pc := &pionClient{Client: client}
	t.Cleanup(func() {
		pc.mu.Lock()
		if pc.relayed != nil {
			pc.relayed.Close()
		}
		pc.mu.Unlock()
		client.Close()
		conn.Close()
	})
	return pc
}

// rawClient speaks TURN message by message, for requests the pion client
// cannot be made to send (refreshes on demand, mapped peer addresses,
// out-of-range channel numbers).
type rawClient struct {
	t          testing.TB
	conn       net.Conn
	tcp        bool
	user, pass string
	realm      string
	nonce      string
}

func dialRaw(t testing.TB, s *Server, user, pass string, tcp bool) *rawClient {
	t.Helper()
	var (
		c   net.Conn
		err error
	)
	// A wildcard listener is dialled on 127.0.0.1.
	port := strconv.Itoa(s.UDPAddr().Port)
	if tcp {
		c, err = net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	} else {
		c, err = net.Dial("udp4", net.JoinHostPort("127.0.0.1", port))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, tcp: tcp, user: user, pass: pass}
}

// read returns the next STUN message (skipping ChannelData) or an error
// after the deadline.
func (c *rawClient) read(deadline time.Time) (*stun.Message, error) {
	if err := c.conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		raw, err := c.frame()
		if err != nil {
			return nil, err
		}
		if raw[0]&0xC0 != 0 {
			continue // ChannelData
		}
		m := &stun.Message{Raw: raw}
		if err := m.Decode(); err != nil {
			return nil, err
		}
		return m, nil
	}
}

// frame reads the next STUN message or ChannelData frame (padded, over
// TCP) under the connection's read deadline.
func (c *rawClient) frame() ([]byte, error) {
	if !c.tcp {
		buf := make([]byte, 2048)
		n, err := c.conn.Read(buf)
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	if hdr[0]&0xC0 == 0 {
		n += 16
	} else {
		n = (n + 3) &^ 3
	}
	raw := make([]byte, 4+n)
	copy(raw, hdr)
	if _, err := io.ReadFull(c.conn, raw[4:]); err != nil {
		return nil, err
	}
	return raw, nil
}

// do sends one request and returns its response, authenticating (and
// retrying once on 401/438) when the client has credentials.
func (c *rawClient) do(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if c.nonce != "" {
			setters = append(setters, stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce),
				stun.NewLongTermIntegrity(c.user, c.realm, c.pass))
		}
		setters = append(setters, stun.Fingerprint)
		req, err := stun.Build(setters...)
		if err != nil {
			c.t.Fatal(err)
		}
		if _, err := c.conn.Write(req.Raw); err != nil {
			c.t.Fatal(err)
		}
		var resp *stun.Message
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err = c.read(deadline)
			if err != nil {
				c.t.Fatalf("%s: no response: %v", method, err)
			}
			if resp.TransactionID == req.TransactionID {
				break
			}
		}
		code := errorCode(resp)
		if (code == stun.CodeUnauthorized || code == stun.CodeStaleNonce) && attempt == 0 {
			var nonce stun.Nonce
			var realm stun.Realm
			if nonce.GetFrom(resp) == nil && realm.GetFrom(resp) == nil {
				c.nonce = nonce.String()
				if c.realm == "" {
					c.realm = realm.String()
				}
				continue
			}
		}
		return resp
	}
}

// indicate sends a Send indication with data to peer.
func (c *rawClient) indicate(peer netip.AddrPort, data []byte) {
	c.t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeer(peer), stun.RawAttribute{Type: stun.AttrData, Value: data}, stun.Fingerprint)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(m.Raw); err != nil {
		c.t.Fatal(err)
	}
}

// allocate sends an Allocate for a UDP relay and returns the response.
func (c *rawClient) allocate() *stun.Message {
	c.t.Helper()
	return c.do(stun.MethodAllocate, stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}})
}

func (c *rawClient) refresh(lifetime time.Duration) *stun.Message {
	c.t.Helper()
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(lifetime/time.Second))
	return c.do(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: v})
}

func (c *rawClient) permit(peers ...netip.AddrPort) *stun.Message {
	c.t.Helper()
	attrs := make([]stun.Setter, 0, len(peers))
	for _, p := range peers {
		attrs = append(attrs, xorPeer(p))
	}
	return c.do(stun.MethodCreatePermission, attrs...)
}

func (c *rawClient) bind(number uint16, peer netip.AddrPort) *stun.Message {
	c.t.Helper()
	return c.do(stun.MethodChannelBind,
		stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(number >> 8), byte(number), 0, 0}},
		xorPeer(peer))
}

// channelData sends data on a bound channel.
func (c *rawClient) channelData(number uint16, data []byte) {
	c.t.Helper()
	n := (len(data) + 3) &^ 3
	b := make([]byte, 4+n)
	binary.BigEndian.PutUint16(b, number)
	binary.BigEndian.PutUint16(b[2:], uint16(len(data)))
	copy(b[4:], data)
	if !c.tcp {
		b = b[:4+len(data)]
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func isSuccess(m *stun.Message) bool { return m.Type.Class == stun.ClassSuccessResponse }

func errorCode(m *stun.Message) stun.ErrorCode {
	var ec stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse || ec.GetFrom(m) != nil {
		return 0
	}
	return ec.Code
}

// xorPeer encodes XOR-PEER-ADDRESS exactly as given: an IPv6 address (even
// an IPv4-mapped one) is sent with the IPv6 family, as an attacker would.
type xorPeer netip.AddrPort

func (p xorPeer) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	var raw []byte
	family := byte(1)
	if ap.Addr().Is4() {
		b := ap.Addr().As4()
		raw = b[:]
	} else {
		family = 2
		b := ap.Addr().As16()
		raw = b[:]
	}
	v := make([]byte, 4+len(raw))
	v[1] = family
	binary.BigEndian.PutUint16(v[2:], ap.Port()^0x2112)
	xor := make([]byte, 16)
	binary.BigEndian.PutUint32(xor, 0x2112A442)
	copy(xor[4:], m.TransactionID[:])
	for i := range raw {
		v[4+i] = raw[i] ^ xor[i]
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

// sink is a UDP socket on loopback that records what it receives.
type sink struct {
	conn *net.UDPConn
	got  chan []byte
	done chan struct{}
}

func newSink(t *testing.T, ip string) *sink {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ip+":0")))
	if err != nil {
		t.Fatal(err)
	}
	if port := c.LocalAddr().(*net.UDPAddr).Port; port >= testPortMin {
		c.Close()
		t.Skipf("sink port %d falls in the test relay range", port)
	}
	s := &sink{conn: c, got: make(chan []byte, 64), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case s.got <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-s.done
	})
	return s
}

func (s *sink) addr() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// next returns the next datagram, or nil after timeout.
func (s *sink) next(timeout time.Duration) []byte {
	select {
	case b := <-s.got:
		return b
	case <-time.After(timeout):
		return nil
	}
}
