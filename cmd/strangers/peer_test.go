package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// wsPeer is a signaling client written against the documented protocol
// only (plain JSON maps, no Go types from the server), as a third-party
// client would be.
type wsPeer struct {
	t       *testing.T
	conn    *websocket.Conn
	in      chan map[string]any
	readErr chan error
	session string
	wmu     sync.Mutex
}

// dialPeer opens /ws on httpAddr, says hello and waits for welcome.
func dialPeer(t *testing.T, httpAddr string) *wsPeer {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	hdr := http.Header{"Origin": {"http://" + httpAddr}}
	conn, resp, err := d.Dial("ws://"+httpAddr+"/ws", hdr)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	resp.Body.Close()
	return newWSPeer(t, conn)
}

// newWSPeer starts reading conn, says hello and waits for welcome.
func newWSPeer(t *testing.T, conn *websocket.Conn) *wsPeer {
	t.Helper()
	p := &wsPeer{t: t, conn: conn, in: make(chan map[string]any, 256), readErr: make(chan error, 1)}
	go p.readLoop()
	t.Cleanup(p.close)
	p.send(map[string]any{"type": "hello", "version": 1})
	w := p.expect("welcome", 10*time.Second)
	p.session, _ = w["session"].(string)
	if p.session == "" {
		t.Fatalf("welcome without a session: %v", w)
	}
	return p
}

func (p *wsPeer) readLoop() {
	defer close(p.in)
	for {
		_, data, err := p.conn.ReadMessage()
		if err != nil {
			p.readErr <- err
			return
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			p.readErr <- fmt.Errorf("server sent invalid JSON %q: %w", data, err)
			return
		}
		p.in <- m
	}
}

func (p *wsPeer) close() {
	p.wmu.Lock()
	p.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	p.wmu.Unlock()
	p.conn.Close()
	for range p.in {
	}
}

func (p *wsPeer) send(m map[string]any) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := p.conn.WriteJSON(m); err != nil {
		p.t.Errorf("send %v: %v", m["type"], err)
	}
}

// next returns the next message other than stats and waiting.
func (p *wsPeer) next(ctx context.Context) (map[string]any, error) {
	for {
		select {
		case m, ok := <-p.in:
			if !ok {
				return nil, fmt.Errorf("connection closed: %w", <-p.readErr)
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

// expect waits for a message of type typ, failing on anything else.
func (p *wsPeer) expect(typ string, d time.Duration) map[string]any {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := p.next(ctx)
	if err != nil {
		p.t.Fatalf("waiting for %s: %v", typ, err)
	}
	if m["type"] != typ {
		p.t.Fatalf("got %v, want a %s message", m, typ)
	}
	return m
}

// callOptions shape one side of a WebRTC call.
type callOptions struct {
	relayOnly bool // ICETransportPolicy relay, and relayOnly in find
	tcpOnly   bool // only the TURN-over-TCP URL: nothing but TCP reaches the TURN server
	turnsOnly bool // only the TURN-over-TLS URL
	leakHost  bool // also send a host candidate, as a careless or hostile client would
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
func iceServersFrom(m map[string]any, keep func(string) bool) []webrtc.ICEServer {
	raw, _ := json.Marshal(m["iceServers"])
	var servers []struct {
		URLs       any    `json:"urls"`
		Username   string `json:"username"`
		Credential string `json:"credential"`
	}
	json.Unmarshal(raw, &servers)
	var out []webrtc.ICEServer
	for _, s := range servers {
		var urls []string
		switch u := s.URLs.(type) {
		case string:
			urls = []string{u}
		case []any:
			for _, x := range u {
				urls = append(urls, fmt.Sprint(x))
			}
		}
		var kept []string
		for _, u := range urls {
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
	p.send(map[string]any{"type": "find", "mode": "text", "relayOnly": opt.relayOnly})
	var matched map[string]any
	for matched == nil {
		m, err := p.next(ctx)
		if err != nil {
			return res, fmt.Errorf("waiting for matched: %w", err)
		}
		if m["type"] == "matched" {
			matched = m
		}
	}
	match, _ := matched["match"].(string)
	offerer := matched["role"] == "offerer"
	if opt.leakHost {
		// The server must drop this for a relayOnly sender.
		p.send(map[string]any{"type": "signal", "match": match, "candidate": map[string]any{
			"candidate": "candidate:1 1 udp 2122260223 192.0.2.77 54321 typ host", "sdpMid": "0", "sdpMLineIndex": 0,
		}})
	}

	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	// Host candidates on loopback only: connectivity checks never leave it.
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
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
		init := c.ToJSON()
		p.send(map[string]any{"type": "signal", "match": match, "candidate": init})
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
		p.send(map[string]any{"type": "signal", "match": match, "sdp": map[string]any{"type": "offer", "sdp": offer.SDP}})
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
	msgs := make(chan map[string]any)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go func() {
		defer close(msgs)
		for {
			m, err := p.next(readCtx)
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			case <-readCtx.Done():
				return
			}
		}
	}()

	for {
		select {
		case err := <-done:
			if err != nil {
				return res, err
			}
			return res, selectedPair(pc, &res)
		case m, ok := <-msgs:
			if !ok {
				return res, fmt.Errorf("signaling ended before the call was done: %w", ctx.Err())
			}
			switch m["type"] {
			case "signal":
				if m["match"] != match {
					return res, fmt.Errorf("signal for match %v, ours is %s", m["match"], match)
				}
				if sdp, ok := m["sdp"].(map[string]any); ok {
					desc := webrtc.SessionDescription{SDP: fmt.Sprint(sdp["sdp"])}
					if err := desc.Type.UnmarshalJSON([]byte(`"` + fmt.Sprint(sdp["type"]) + `"`)); err != nil {
						return res, err
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
						p.send(map[string]any{"type": "signal", "match": match, "sdp": map[string]any{"type": "answer", "sdp": answer.SDP}})
					}
				}
				if cand, ok := m["candidate"].(map[string]any); ok {
					raw, _ := json.Marshal(cand)
					var init webrtc.ICECandidateInit
					if err := json.Unmarshal(raw, &init); err != nil {
						return res, err
					}
					if init.Candidate != "" && !strings.Contains(init.Candidate, " typ relay") {
						res.receivedNonRelay = append(res.receivedNonRelay, init.Candidate)
					}
					if !haveRemote {
						pending = append(pending, init)
					} else if err := pc.AddICECandidate(init); err != nil {
						return res, err
					}
				}
			case "partner_left":
				if !offerer {
					// The offerer got all its echoes and hung up.
					answered.Do(func() { answerPairErr = errors.New("hung up before any message arrived") })
					return res, answerPairErr
				}
				return res, fmt.Errorf("partner left: %v", m)
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
			a.send(map[string]any{"type": "stop"})
		}
		resB = <-rb
	case resB = <-rb:
		if resB.err == nil {
			b.send(map[string]any{"type": "stop"})
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
