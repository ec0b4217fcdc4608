package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

// wsPeer is a test's signaling client: a wsclient.Conn with its reader
// started, said hello, closed when the test ends.
type wsPeer struct {
	*wsclient.Conn
	t       *testing.T
	session string
}

// dialPeer opens /ws on httpAddr, says hello and waits for welcome.
func dialPeer(t *testing.T, httpAddr string) *wsPeer {
	t.Helper()
	return openPeer(t, "ws://"+httpAddr+"/ws", wsclient.Options{Origin: "http://" + httpAddr})
}

// openPeer dials url, starts reading, says hello and waits for welcome.
func openPeer(t *testing.T, url string, opts wsclient.Options) *wsPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	w, err := c.Hello(ctx, "")
	if err != nil {
		t.Fatalf("waiting for welcome: %v", err)
	}
	if w.Session == "" {
		t.Fatalf("welcome without a session: %+v", w)
	}
	return &wsPeer{Conn: c, t: t, session: w.Session}
}

// send writes msg (a signaling client message), failing the test on error.
func (p *wsPeer) send(msg any) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Send(ctx, msg); err != nil {
		p.t.Errorf("send: %v", err)
	}
}

// expect waits for the next message other than stats and waiting, failing
// unless it is a T.
func expect[T any](p *wsPeer, d time.Duration) *T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := p.Next(ctx)
	if err != nil {
		p.t.Fatalf("waiting for a %T: %v", *new(T), err)
	}
	t, ok := m.(*T)
	if !ok {
		p.t.Fatalf("got %+v, want a %T", m, *new(T))
	}
	return t
}

// callOptions shape one side of a WebRTC call.
type callOptions struct {
	relayOnly bool // ICETransportPolicy relay, and relayOnly in find
	tcpOnly   bool // only the TURN-over-TCP URL: nothing but TCP reaches the TURN server
	turnsOnly bool // only the TURN-over-TLS URL
	leakHost  bool // also send a host candidate, as a careless or hostile client would

	// turnsRoots, with turnsOnly, are the roots trusted for TURN over
	// TLS (pion's own dial trusts only the system roots).
	turnsRoots *x509.CertPool
	// relayWait, when set, is how long the controlling side waits before
	// it may nominate a relay pair (pion's default: 2s).
	relayWait time.Duration
}

// callResult is what one side saw of its call.
type callResult struct {
	local, remote    webrtc.ICECandidateType
	relayProtocol    string // for a relay local candidate: udp, tcp or tls
	echoed           int
	receivedNonRelay []string // candidates received from the partner that are not relay
}

// keep returns the filter on ICE server URLs that opt asks for.
func (opt callOptions) keep(u string) bool {
	switch {
	case opt.tcpOnly:
		return strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "?transport=tcp")
	case opt.turnsOnly:
		return strings.HasPrefix(u, "turns:")
	}
	return true
}

// iceServersFrom converts matched.iceServers into pion's form, keeping
// the URLs for which keep is true (all when keep is nil).
func iceServersFrom(m *signaling.Matched, keep func(string) bool) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range m.ICEServers {
		var kept []string
		for _, u := range s.URLs {
			if keep != nil && !keep(u) {
				continue
			}
			kept = append(kept, u)
		}
		if len(kept) > 0 {
			out = append(out, webrtc.ICEServer{URLs: kept, Username: s.Username, Credential: s.Credential})
		}
	}
	return out
}

// runSide plays one side of a call from find to an echoed data channel
// message. The offerer sends messages and counts echoes; the answerer echoes.
func runSide(ctx context.Context, p *wsPeer, opt callOptions, messages int) (callResult, error) {
	var res callResult
	p.send(signaling.Find{Mode: signaling.ModeText, RelayOnly: opt.relayOnly})
	var matched *signaling.Matched
	for matched == nil {
		m, err := p.Next(ctx)
		if err != nil {
			return res, fmt.Errorf("waiting for matched: %w", err)
		}
		matched, _ = m.(*signaling.Matched)
	}
	match := matched.Match
	offerer := matched.Role == signaling.RoleOfferer
	if opt.leakHost {
		// The server must drop this for a relayOnly sender.
		mid, line := "0", uint16(0)
		p.send(signaling.Signal{Match: match, Candidate: &signaling.ICECandidate{
			Candidate: "candidate:1 1 udp 2122260223 192.0.2.77 54321 typ host", SDPMid: &mid, SDPMLineIndex: &line,
		}})
	}

	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	// Host candidates on loopback only: connectivity checks never leave it.
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	if opt.turnsOnly && opt.turnsRoots != nil {
		// pion hands TURN-over-TCP dials to a proxy dialer when there is
		// one; with only turns: URLs kept, each is a TLS connection.
		se.SetICEProxyDialer(tlsDialer{roots: opt.turnsRoots})
	}
	if opt.relayWait > 0 {
		se.SetRelayAcceptanceMinWait(opt.relayWait)
	}
	policy := webrtc.ICETransportPolicyAll
	if opt.relayOnly {
		policy = webrtc.ICETransportPolicyRelay
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		ICEServers:         iceServersFrom(matched, opt.keep),
		ICETransportPolicy: policy,
	})
	if err != nil {
		return res, fmt.Errorf("new peer connection: %w", err)
	}
	defer pc.Close()

	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		cand := signaling.ICECandidate(c.ToJSON())
		p.send(signaling.Signal{Match: match, Candidate: &cand})
	})

	done := make(chan error, 1)
	var once sync.Once
	var answered sync.Once // guards answerPairErr and res's pair fields on the answerer
	var answerPairErr error
	finish := func(err error) { once.Do(func() { done <- err }) }

	if offerer {
		dc, err := pc.CreateDataChannel("echo", nil)
		if err != nil {
			return res, err
		}
		var mu sync.Mutex
		dc.OnOpen(func() {
			for i := range messages {
				if err := dc.SendText(fmt.Sprintf("ping %d", i)); err != nil {
					finish(err)
					return
				}
			}
		})
		dc.OnMessage(func(msg webrtc.DataChannelMessage) {
			mu.Lock()
			res.echoed++
			n := res.echoed
			mu.Unlock()
			if n == messages {
				finish(nil)
			}
		})
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			return res, err
		}
		if err := pc.SetLocalDescription(offer); err != nil {
			return res, err
		}
		p.send(signaling.Signal{Match: match, SDP: &signaling.SessionDescription{Type: "offer", SDP: offer.SDP}})
	} else {
		pc.OnDataChannel(func(dc *webrtc.DataChannel) {
			dc.OnMessage(func(msg webrtc.DataChannelMessage) {
				// Record the path while the call is up: by the time the
				// partner hangs up it may be torn down.
				answered.Do(func() { answerPairErr = selectedPair(pc, &res) })
				if err := dc.SendText(string(msg.Data)); err != nil {
					finish(err)
				}
			})
		})
	}

	var pending []webrtc.ICECandidateInit
	haveRemote := false
	for {
		select {
		case err := <-done:
			if err != nil {
				return res, err
			}
			return res, selectedPair(pc, &res)
		case msg, ok := <-p.Messages():
			if !ok {
				return res, fmt.Errorf("signaling ended before the call was done: %w", p.Err())
			}
			switch m := msg.(type) {
			case *signaling.Signal:
				if m.Match != match {
					return res, fmt.Errorf("signal for match %v, ours is %s", m.Match, match)
				}
				if m.SDP != nil {
					desc := webrtc.SessionDescription{Type: webrtc.NewSDPType(m.SDP.Type), SDP: m.SDP.SDP}
					if desc.Type == webrtc.SDPTypeUnknown {
						return res, fmt.Errorf("sdp of type %q", m.SDP.Type)
					}
					if err := pc.SetRemoteDescription(desc); err != nil {
						return res, fmt.Errorf("set remote description: %w", err)
					}
					haveRemote = true
					for _, c := range pending {
						if err := pc.AddICECandidate(c); err != nil {
							return res, err
						}
					}
					pending = nil
					if desc.Type == webrtc.SDPTypeOffer {
						answer, err := pc.CreateAnswer(nil)
						if err != nil {
							return res, err
						}
						if err := pc.SetLocalDescription(answer); err != nil {
							return res, err
						}
						p.send(signaling.Signal{Match: match, SDP: &signaling.SessionDescription{Type: "answer", SDP: answer.SDP}})
					}
				}
				if m.Candidate != nil {
					init := webrtc.ICECandidateInit(*m.Candidate)
					if init.Candidate != "" && !strings.Contains(init.Candidate, " typ relay") {
						res.receivedNonRelay = append(res.receivedNonRelay, init.Candidate)
					}
					if !haveRemote {
						pending = append(pending, init)
					} else if err := pc.AddICECandidate(init); err != nil {
						return res, err
					}
				}
			case *signaling.PartnerLeft:
				if !offerer {
					// The offerer got all its echoes and hung up.
					answered.Do(func() { answerPairErr = errors.New("hung up before any message arrived") })
					return res, answerPairErr
				}
				return res, fmt.Errorf("partner left: %+v", m)
			}
		case <-ctx.Done():
			return res, fmt.Errorf("call did not complete (ICE %s): %w", pc.ICEConnectionState(), ctx.Err())
		}
	}
}

// selectedPair records the types of the selected candidate pair and, for
// a relay candidate, how it reaches the TURN server (from the same
// statistics a browser exposes).
func selectedPair(pc *webrtc.PeerConnection, res *callResult) error {
	sctp := pc.SCTP()
	if sctp == nil {
		return errors.New("no SCTP transport")
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return fmt.Errorf("no selected candidate pair (err %v)", err)
	}
	res.local, res.remote = pair.Local.Typ, pair.Remote.Typ
	if pair.Local.Typ == webrtc.ICECandidateTypeRelay {
		for _, s := range pc.GetStats() {
			c, ok := s.(webrtc.ICECandidateStats)
			if ok && c.CandidateType == webrtc.ICECandidateTypeRelay && c.IP == pair.Local.Address && int(c.Port) == int(pair.Local.Port) {
				res.relayProtocol = c.RelayProtocol
			}
		}
	}
	return nil
}

// call pairs a and b through the matchmaker and runs a data-channel echo
// between them; it returns what a and what b saw.
func call(t *testing.T, a, b *wsPeer, optA, optB callOptions) (callResult, callResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type out struct {
		res callResult
		err error
	}
	ra, rb := make(chan out, 1), make(chan out, 1)
	go func() { r, err := runSide(ctx, a, optA, 10); ra <- out{r, err} }()
	go func() { r, err := runSide(ctx, b, optB, 10); rb <- out{r, err} }()
	// The offerer finishes first, once all its messages came back; it
	// hangs up so that the answerer ends too.
	var resA, resB out
	select {
	case resA = <-ra:
		if resA.err == nil {
			a.send(signaling.Stop{})
		}
		resB = <-rb
	case resB = <-rb:
		if resB.err == nil {
			b.send(signaling.Stop{})
		}
		resA = <-ra
	}
	if resA.err != nil || resB.err != nil {
		t.Fatalf("call failed: a: %v; b: %v", resA.err, resB.err)
	}
	if resA.res.echoed == 0 && resB.res.echoed == 0 {
		t.Fatalf("no message came back over the data channel")
	}
	return resA.res, resB.res
}
