package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
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

// dialSignal opens the signaling WebSocket with its reader started.
func dialSignal(ctx context.Context, cfg peerConfig) (*wsclient.Conn, error) {
	c, err := wsclient.Dial(ctx, cfg.WS, wsclient.Options{Origin: cfg.Origin, WriteWait: wsWriteWait, ReadLimit: maxSignal})
	if err != nil {
		return nil, fmt.Errorf("%w: dialing %s: %w", ErrProtocol, cfg.WS, err)
	}
	c.Start()
	return c, nil
}

// send writes one client message on sig.
func send(ctx context.Context, sig *wsclient.Conn, msg any) error {
	if err := sig.Send(ctx, msg); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return nil
}

// playCall runs one side of a call from hello to an echoed data channel.
func playCall(ctx context.Context, cfg peerConfig) (peerResult, error) {
	res := peerResult{Received: []string{}, Addrs: []string{}}
	sig, err := dialSignal(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer sig.Close()
	if _, err := sig.Hello(ctx, ""); err != nil {
		return res, fmt.Errorf("%w: waiting for welcome: %w", ErrProtocol, err)
	}
	find := signaling.Find{Mode: signaling.ModeText, RelayOnly: cfg.Hide}
	if cfg.Tag != "" {
		find.Interests = []string{cfg.Tag}
		find.InterestsOnly = true
	}
	if err := send(ctx, sig, find); err != nil {
		return res, err
	}
	matched, err := wsclient.Wait[signaling.Matched](ctx, sig, signaling.TypeMatched)
	if err != nil {
		return res, fmt.Errorf("%w: waiting for matched: %w", ErrProtocol, err)
	}
	t0 := time.Now()
	match := matched.Match
	res.Role = string(matched.Role)
	offerer := matched.Role == signaling.RoleOfferer

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
		cand := signaling.ICECandidate(c.ToJSON())
		// A failed send ends the call: the reader sees the connection go.
		_ = send(ctx, sig, signaling.Signal{Match: match, Candidate: &cand})
		if cfg.Hide && cfg.Leak && c.Typ == webrtc.ICECandidateTypeRelay {
			for _, line := range leakCandidates(c) {
				mu.Lock()
				res.Leaked++
				mu.Unlock()
				mid, index := "0", uint16(0)
				_ = send(ctx, sig, signaling.Signal{Match: match, Candidate: &signaling.ICECandidate{Candidate: line, SDPMid: &mid, SDPMLineIndex: &index}})
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
		if err := send(ctx, sig, signaling.Signal{Match: match, SDP: &signaling.SessionDescription{Type: "offer", SDP: offer.SDP}}); err != nil {
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
		return res, send(ctx, sig, signaling.Stop{})
	}
	return res, nil
}

// signalLoop applies the partner's signals until the call is done: for the
// offerer when every message came back, for the answerer when the partner
// hangs up after that.
func signalLoop(ctx context.Context, sig *wsclient.Conn, pc *webrtc.PeerConnection, match string, offerer bool, done chan error, mu *sync.Mutex, res *peerResult) error {
	var pending []webrtc.ICECandidateInit
	haveRemote := false
	note := func(text string) {
		mu.Lock()
		defer mu.Unlock()
		noteAddrs(res, text)
	}
	for {
		var msg any
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("%w: not done in time (ICE %s): %w", ErrCall, pc.ICEConnectionState(), ctx.Err())
		case m, ok := <-sig.Messages():
			if !ok {
				return fmt.Errorf("%w: signaling ended before the call was done: %w", ErrProtocol, sig.Err())
			}
			msg = m
		}
		switch m := msg.(type) {
		case *signaling.Signal:
			if m.Match != match {
				return fmt.Errorf("%w: signal for match %v, ours is %s", ErrProtocol, m.Match, match)
			}
			if m.SDP != nil {
				text := m.SDP.SDP
				note(text)
				for _, line := range strings.Split(text, "\n") {
					if c, ok := strings.CutPrefix(strings.TrimSpace(line), "a="); ok && strings.HasPrefix(c, "candidate:") {
						mu.Lock()
						res.Received = append(res.Received, c)
						mu.Unlock()
					}
				}
				desc := webrtc.SessionDescription{Type: webrtc.NewSDPType(m.SDP.Type), SDP: text}
				if desc.Type == webrtc.SDPTypeUnknown {
					return fmt.Errorf("%w: session description of type %q", ErrProtocol, m.SDP.Type)
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
					if err := send(ctx, sig, signaling.Signal{Match: match, SDP: &signaling.SessionDescription{Type: "answer", SDP: answer.SDP}}); err != nil {
						return err
					}
				}
			}
			if m.Candidate != nil {
				init := webrtc.ICECandidateInit(*m.Candidate)
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
		case *signaling.PartnerLeft:
			if offerer {
				return fmt.Errorf("%w: partner left: %v", ErrCall, m.Reason)
			}
			mu.Lock()
			echoed := res.Echoed
			mu.Unlock()
			if echoed == 0 {
				return fmt.Errorf("%w: partner left before any message arrived: %v", ErrCall, m.Reason)
			}
			return nil
		case *signaling.Error:
			return fmt.Errorf("%w: server error %v: %v", ErrProtocol, m.Code, m.Message)
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
func iceServers(m *signaling.Matched) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range m.ICEServers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
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
