package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// The peer role: one side of a call, run inside a client namespace. It
// speaks the signaling protocol over wss, finds a partner with the cell's
// interest tag, opens a data channel (the offerer sends, the answerer
// echoes) and prints one peerResult as JSON on stdout.

const (
	// peerMessages is how many messages the offerer sends and wants back.
	peerMessages = 10
	// wsWriteWait bounds each write to the signaling connection.
	wsWriteWait = 5 * time.Second
	// maxSignal caps one signaling message read from the server.
	maxSignal = 1 << 20
	// tcpDialTimeout bounds pion's TCP connects to TURN servers. Without
	// it a connect that a firewall silently drops lasts until the kernel
	// gives up (minutes), and closing the peer connection waits for it.
	tcpDialTimeout = 3 * time.Second
)

// dialNet is the host network with a deadline on TCP connects, which
// also end when the call does (ctx).
type dialNet struct {
	*stdnet.Net
	ctx context.Context
}

func newDialNet(ctx context.Context) (*dialNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("%w: network: %w", ErrCall, err)
	}
	return &dialNet{Net: n, ctx: ctx}, nil
}

// DialTCP connects like net.DialTCP, giving up after tcpDialTimeout or
// when the call ends.
func (n *dialNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	d := net.Dialer{Timeout: tcpDialTimeout}
	if laddr != nil {
		d.LocalAddr = laddr
	}
	c, err := d.DialContext(n.ctx, network, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

var (
	// ErrProtocol is returned when the server says something unexpected.
	ErrProtocol = errors.New("strangers-lab: signaling protocol")
	// ErrCall is returned when a call does not complete.
	ErrCall = errors.New("strangers-lab: call")
)

// peerConfig is one side's part in a call.
type peerConfig struct {
	// WS is the signaling URL, e.g. wss://203.0.113.1/ws.
	WS string
	// Origin is sent with the WebSocket handshake.
	Origin string
	// Tag is the interest both sides of a run share, so they pair with
	// each other. Default: none (anyone).
	Tag string
	// Hide asks for "hide my IP": relay-only ICE, and relayOnly in find.
	Hide bool
	// Leak makes a hiding side also send candidates naming its own
	// addresses, as a careless client might; the server must drop them.
	Leak bool
	// Timeout bounds the whole call. Default peerTimeout.
	Timeout time.Duration
	// Waits before the controlling side may nominate a pair of this
	// candidate type (pion's defaults are 0, 500ms, 1s and 2s).
	SrflxWait, PrflxWait, RelayWait time.Duration
}

// peerResult is what one side saw of its call.
type peerResult struct {
	Role        string  `json:"role"`                 // offerer or answerer
	Connected   bool    `json:"connected"`            // the peer connection reached "connected"
	ConnectedMs float64 `json:"connectedMs"`          // from matched to connected
	Local       string  `json:"local"`                // selected pair: local candidate type
	Remote      string  `json:"remote"`               // selected pair: remote candidate type
	RemoteAddr  string  `json:"remoteAddr,omitempty"` // selected pair: remote candidate address
	RelayProto  string  `json:"relayProto,omitempty"` // udp, tcp or tls: how a local relay candidate reaches TURN
	Echoed      int     `json:"echoed"`               // messages that came back (offerer) or were echoed (answerer)
	Frames      int     `json:"frames,omitempty"`     // video frames decoded from the partner (browser)
	Leaked      int     `json:"leaked"`               // candidates naming our own addresses sent while hiding (-leak)
	// Received lists every candidate the server forwarded from the partner
	// (trickled or in an SDP), and Addrs every address named in what it
	// forwarded.
	Received []string `json:"received"`
	Addrs    []string `json:"addrs"`
	Error    string   `json:"error,omitempty"`
}

// direct reports whether this side's end of the path avoids the relay.
func (r peerResult) direct() bool { return r.Local != "" && r.Local != "relay" && r.Remote != "relay" }

// runPeer parses the peer role's flags, plays the call and writes the
// result as one JSON line to stdout. A failed call is reported in the
// result, not as an error.
func runPeer(ctx context.Context, args []string, stdout io.Writer) error {
	var cfg peerConfig
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	fs.StringVar(&cfg.WS, "ws", "wss://"+serverAddr+"/ws", "signaling URL")
	fs.StringVar(&cfg.Origin, "origin", "https://"+serverAddr, "Origin header")
	fs.StringVar(&cfg.Tag, "tag", "", "interest tag shared with the partner")
	fs.BoolVar(&cfg.Hide, "hide", false, "hide my IP (relay only)")
	fs.BoolVar(&cfg.Leak, "leak", false, "while hiding, also send candidates naming our own addresses")
	fs.DurationVar(&cfg.Timeout, "timeout", peerTimeout, "bound on the whole call")
	fs.DurationVar(&cfg.SrflxWait, "srflx-wait", defaultSrflxWait, "nomination wait for srflx pairs")
	fs.DurationVar(&cfg.PrflxWait, "prflx-wait", defaultPrflxWait, "nomination wait for prflx pairs")
	fs.DurationVar(&cfg.RelayWait, "relay-wait", defaultRelayWait, "nomination wait for relay pairs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = peerTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res, err := playCall(ctx, cfg)
	if err != nil {
		res.Error = err.Error()
	}
	return json.NewEncoder(stdout).Encode(res)
}

// Nomination waits of the lab's pion peers. Pion holds a pair back by its
// type before the controlling side may nominate it (by default srflx
// 500ms, prflx 1s, relay 2s) so that better pairs get their chance; a
// browser nominates the first pair that works and switches later. The
// lab keeps the order (host, then srflx/prflx, then relay) with shorter
// waits, ample on a network whose round trips take microseconds.
const (
	defaultSrflxWait = 100 * time.Millisecond
	defaultPrflxWait = 150 * time.Millisecond
	defaultRelayWait = 400 * time.Millisecond
)

// signalConn is the signaling WebSocket: one reader goroutine feeding in,
// writes serialised by mu.
type signalConn struct {
	conn *websocket.Conn
	in   chan map[string]any // closed when the reader ends
	err  error               // why the reader ended; read after in is closed
	mu   sync.Mutex
}

func dialSignal(ctx context.Context, cfg peerConfig) (*signalConn, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.DialContext(ctx, cfg.WS, http.Header{"Origin": {cfg.Origin}})
	if err != nil {
		return nil, fmt.Errorf("%w: dialing %s: %w", ErrProtocol, cfg.WS, err)
	}
	resp.Body.Close()
	conn.SetReadLimit(maxSignal)
	s := &signalConn{conn: conn, in: make(chan map[string]any, 64)}
	go s.read()
	return s, nil
}

func (s *signalConn) read() {
	defer close(s.in)
	for {
		_, data, err := s.conn.ReadMessage()
		if err != nil {
			s.err = err
			return
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			s.err = fmt.Errorf("%w: invalid JSON from the server: %w", ErrProtocol, err)
			return
		}
		s.in <- m
	}
}

func (s *signalConn) send(m map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
	if err := s.conn.WriteJSON(m); err != nil {
		return fmt.Errorf("%w: sending %v: %w", ErrProtocol, m["type"], err)
	}
	return nil
}

// close says goodbye and waits for the reader to end.
func (s *signalConn) close() {
	s.mu.Lock()
	s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	s.mu.Unlock()
	s.conn.Close()
	for range s.in {
	}
}

// next returns the next message other than stats and waiting.
func (s *signalConn) next(ctx context.Context) (map[string]any, error) {
	for {
		select {
		case m, ok := <-s.in:
			if !ok {
				return nil, fmt.Errorf("%w: connection closed: %w", ErrProtocol, s.err)
			}
			if m["type"] == "stats" || m["type"] == "waiting" {
				continue
			}
			return m, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// playCall runs one side of a call from hello to an echoed data channel.
func playCall(ctx context.Context, cfg peerConfig) (peerResult, error) {
	res := peerResult{Received: []string{}, Addrs: []string{}}
	sig, err := dialSignal(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer sig.close()
	if err := sig.send(map[string]any{"type": "hello", "version": 1}); err != nil {
		return res, err
	}
	if m, err := sig.next(ctx); err != nil || m["type"] != "welcome" {
		return res, fmt.Errorf("%w: waiting for welcome: got %v, %v", ErrProtocol, m["type"], err)
	}
	find := map[string]any{"type": "find", "mode": "text", "relayOnly": cfg.Hide}
	if cfg.Tag != "" {
		find["interests"] = []string{cfg.Tag}
		find["interestsOnly"] = true
	}
	if err := sig.send(find); err != nil {
		return res, err
	}
	var matched map[string]any
	for matched == nil {
		m, err := sig.next(ctx)
		if err != nil {
			return res, fmt.Errorf("%w: waiting for matched: %w", ErrProtocol, err)
		}
		switch m["type"] {
		case "matched":
			matched = m
		case "error":
			return res, fmt.Errorf("%w: server error %v: %v", ErrProtocol, m["code"], m["message"])
		}
	}
	t0 := time.Now()
	match, _ := matched["match"].(string)
	res.Role, _ = matched["role"].(string)
	offerer := res.Role == "offerer"

	se := webrtc.SettingEngine{}
	// Dials still pending when the call ends are abandoned, so that
	// closing the peer connection does not wait for them.
	dialCtx, cancelDials := context.WithCancel(ctx)
	n, err := newDialNet(dialCtx)
	if err != nil {
		cancelDials()
		return res, err
	}
	se.SetNet(n)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	se.SetSrflxAcceptanceMinWait(cfg.SrflxWait)
	se.SetPrflxAcceptanceMinWait(cfg.PrflxWait)
	policy := webrtc.ICETransportPolicyAll
	if cfg.Hide {
		policy = webrtc.ICETransportPolicyRelay
		se.SetRelayAcceptanceMinWait(0) // nothing better can come
	} else {
		se.SetRelayAcceptanceMinWait(cfg.RelayWait)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{
		ICEServers:         iceServers(matched),
		ICETransportPolicy: policy,
	})
	if err != nil {
		cancelDials()
		return res, fmt.Errorf("%w: new peer connection: %w", ErrCall, err)
	}
	defer func() {
		cancelDials()
		closeBounded(pc)
	}()

	var mu sync.Mutex // guards res from here on: pion's callbacks write to it
	snapshot := func() peerResult {
		mu.Lock()
		defer mu.Unlock()
		return res
	}
	done := make(chan error, 1)
	finish := func(err error) {
		select {
		case done <- err:
		default:
		}
	}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			mu.Lock()
			if !res.Connected {
				res.Connected = true
				res.ConnectedMs = float64(time.Since(t0).Microseconds()) / 1000
			}
			mu.Unlock()
		}
		if s == webrtc.PeerConnectionStateFailed {
			finish(fmt.Errorf("%w: peer connection failed", ErrCall))
		}
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		sig.send(map[string]any{"type": "signal", "match": match, "candidate": c.ToJSON()})
		if cfg.Hide && cfg.Leak && c.Typ == webrtc.ICECandidateTypeRelay {
			for _, line := range leakCandidates(c) {
				mu.Lock()
				res.Leaked++
				mu.Unlock()
				sig.send(map[string]any{"type": "signal", "match": match, "candidate": map[string]any{"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}})
			}
		}
	})

	pathOnce := sync.Once{}
	var pathErr error
	recordPath := func() {
		pathOnce.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			pathErr = selectedPath(pc, &res)
		})
	}
	if offerer {
		dc, err := pc.CreateDataChannel("lab", nil)
		if err != nil {
			return snapshot(), fmt.Errorf("%w: data channel: %w", ErrCall, err)
		}
		dc.OnOpen(func() {
			for i := range peerMessages {
				if err := dc.SendText(fmt.Sprintf("ping %d", i)); err != nil {
					finish(err)
					return
				}
			}
		})
		dc.OnMessage(func(webrtc.DataChannelMessage) {
			mu.Lock()
			res.Echoed++
			n := res.Echoed
			mu.Unlock()
			if n == peerMessages {
				recordPath()
				finish(nil)
			}
		})
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			return snapshot(), fmt.Errorf("%w: offer: %w", ErrCall, err)
		}
		if err := pc.SetLocalDescription(offer); err != nil {
			return snapshot(), fmt.Errorf("%w: set local offer: %w", ErrCall, err)
		}
		if err := sig.send(map[string]any{"type": "signal", "match": match, "sdp": map[string]any{"type": "offer", "sdp": offer.SDP}}); err != nil {
			return snapshot(), err
		}
	} else {
		pc.OnDataChannel(func(dc *webrtc.DataChannel) {
			dc.OnMessage(func(msg webrtc.DataChannelMessage) {
				// The path is recorded while the call is up: once the
				// offerer hangs up it is torn down.
				recordPath()
				mu.Lock()
				res.Echoed++
				mu.Unlock()
				if err := dc.SendText(string(msg.Data)); err != nil {
					finish(err)
				}
			})
		})
	}

	err = signalLoop(ctx, sig, pc, match, offerer, done, &mu, &res)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		return res, err
	}
	if pathErr != nil {
		return res, pathErr
	}
	if offerer {
		// Hang up, so that the answerer ends too.
		return res, sig.send(map[string]any{"type": "stop"})
	}
	return res, nil
}

// signalLoop applies the partner's signals until the call is done: for the
// offerer when every message came back, for the answerer when the partner
// hangs up after that.
func signalLoop(ctx context.Context, sig *signalConn, pc *webrtc.PeerConnection, match string, offerer bool, done chan error, mu *sync.Mutex, res *peerResult) error {
	var pending []webrtc.ICECandidateInit
	haveRemote := false
	note := func(text string) {
		mu.Lock()
		defer mu.Unlock()
		noteAddrs(res, text)
	}
	for {
		var m map[string]any
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("%w: not done in time (ICE %s): %w", ErrCall, pc.ICEConnectionState(), ctx.Err())
		case msg, ok := <-sig.in:
			if !ok {
				// The reader sets sig.err before it closes sig.in.
				return fmt.Errorf("%w: signaling ended before the call was done: %w", ErrProtocol, sig.err)
			}
			m = msg
		}
		switch m["type"] {
		case "signal":
			if m["match"] != match {
				return fmt.Errorf("%w: signal for match %v, ours is %s", ErrProtocol, m["match"], match)
			}
			if sdp, ok := m["sdp"].(map[string]any); ok {
				text, _ := sdp["sdp"].(string)
				note(text)
				for _, line := range strings.Split(text, "\n") {
					if c, ok := strings.CutPrefix(strings.TrimSpace(line), "a="); ok && strings.HasPrefix(c, "candidate:") {
						mu.Lock()
						res.Received = append(res.Received, c)
						mu.Unlock()
					}
				}
				var desc webrtc.SessionDescription
				raw, _ := json.Marshal(sdp)
				if err := json.Unmarshal(raw, &desc); err != nil {
					return fmt.Errorf("%w: session description: %w", ErrProtocol, err)
				}
				if err := pc.SetRemoteDescription(desc); err != nil {
					return fmt.Errorf("%w: set remote description: %w", ErrCall, err)
				}
				haveRemote = true
				for _, c := range pending {
					if err := pc.AddICECandidate(c); err != nil {
						return fmt.Errorf("%w: add candidate: %w", ErrCall, err)
					}
				}
				pending = nil
				if desc.Type == webrtc.SDPTypeOffer {
					answer, err := pc.CreateAnswer(nil)
					if err != nil {
						return fmt.Errorf("%w: answer: %w", ErrCall, err)
					}
					if err := pc.SetLocalDescription(answer); err != nil {
						return fmt.Errorf("%w: set local answer: %w", ErrCall, err)
					}
					if err := sig.send(map[string]any{"type": "signal", "match": match, "sdp": map[string]any{"type": "answer", "sdp": answer.SDP}}); err != nil {
						return err
					}
				}
			}
			if cand, ok := m["candidate"].(map[string]any); ok {
				var init webrtc.ICECandidateInit
				raw, _ := json.Marshal(cand)
				if err := json.Unmarshal(raw, &init); err != nil {
					return fmt.Errorf("%w: candidate: %w", ErrProtocol, err)
				}
				if init.Candidate == "" {
					continue
				}
				note(init.Candidate)
				mu.Lock()
				res.Received = append(res.Received, init.Candidate)
				mu.Unlock()
				if !haveRemote {
					pending = append(pending, init)
				} else if err := pc.AddICECandidate(init); err != nil {
					return fmt.Errorf("%w: add candidate: %w", ErrCall, err)
				}
			}
		case "partner_left":
			if offerer {
				return fmt.Errorf("%w: partner left: %v", ErrCall, m["reason"])
			}
			mu.Lock()
			echoed := res.Echoed
			mu.Unlock()
			if echoed == 0 {
				return fmt.Errorf("%w: partner left before any message arrived: %v", ErrCall, m["reason"])
			}
			return nil
		case "error":
			return fmt.Errorf("%w: server error %v: %v", ErrProtocol, m["code"], m["message"])
		}
	}
}

// closeWait bounds closing a peer connection at the end of a peer process.
// Pion's Close waits for candidate gathering, and STUN and TURN over UDP
// that a firewall silently drops retry for seconds before giving up.
const closeWait = time.Second

// closeBounded closes pc, waiting at most closeWait. It is for the end of
// the peer process: a Close still pending is cut short when it exits.
func closeBounded(pc *webrtc.PeerConnection) {
	closed := make(chan struct{})
	go func() {
		pc.Close()
		close(closed)
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
	}
}

// addrsIn returns the IP addresses named in text (as whitespace-separated
// words, as in candidate lines and SDP).
func addrsIn(text string) []string {
	var out []string
	for _, f := range strings.Fields(text) {
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, a.String())
		}
	}
	return out
}

// leakCandidates returns host and srflx candidate lines naming the
// addresses behind a relay candidate, as a client that ignored its own
// "hide my IP" would send them.
func leakCandidates(c *webrtc.ICECandidate) []string {
	var out []string
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
				out = append(out, fmt.Sprintf("candidate:2 1 udp 2130706431 %s 40000 typ host", p.Addr()))
			}
		}
	}
	if c.RelatedAddress != "" && c.RelatedAddress != "0.0.0.0" {
		out = append(out, fmt.Sprintf("candidate:1 1 udp 1694498815 %s %d typ srflx raddr 0.0.0.0 rport 0", c.RelatedAddress, c.RelatedPort))
	}
	return out
}

// iceServers converts matched.iceServers into pion's form.
func iceServers(m map[string]any) []webrtc.ICEServer {
	raw, _ := json.Marshal(m["iceServers"])
	var servers []struct {
		URLs       json.RawMessage `json:"urls"`
		Username   string          `json:"username"`
		Credential string          `json:"credential"`
	}
	json.Unmarshal(raw, &servers)
	var out []webrtc.ICEServer
	for _, s := range servers {
		var urls []string
		if json.Unmarshal(s.URLs, &urls) != nil {
			var one string
			if json.Unmarshal(s.URLs, &one) != nil {
				continue
			}
			urls = []string{one}
		}
		out = append(out, webrtc.ICEServer{URLs: urls, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// selectedPath records the selected candidate pair and, for a local relay
// candidate, how it reaches the TURN server.
func selectedPath(pc *webrtc.PeerConnection, res *peerResult) error {
	sctp := pc.SCTP()
	if sctp == nil {
		return fmt.Errorf("%w: no SCTP transport", ErrCall)
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return fmt.Errorf("%w: no selected candidate pair (%v)", ErrCall, err)
	}
	res.Local, res.Remote, res.RemoteAddr = pair.Local.Typ.String(), pair.Remote.Typ.String(), pair.Remote.Address
	if pair.Local.Typ == webrtc.ICECandidateTypeRelay {
		for _, s := range pc.GetStats() {
			c, ok := s.(webrtc.ICECandidateStats)
			if ok && c.CandidateType == webrtc.ICECandidateTypeRelay && c.IP == pair.Local.Address && int(c.Port) == int(pair.Local.Port) {
				res.RelayProto = c.RelayProtocol
			}
		}
	}
	return nil
}
