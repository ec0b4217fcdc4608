package relay

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestWebRTCRelayOnly connects two real WebRTC stacks (pion/webrtc) with
// ICETransportPolicy relay through our server, with credentials from
// ICEServers, and echoes data-channel messages. Both sides are relayed, so
// each one's peer is our own relay address: this also exercises the
// own-address exception of the peer policy (no AllowPeers). The "tcp" case
// hands out only the TCP TURN URL, as for a client whose UDP is blocked.
// (The same flow with the matchmaker pairing the peers belongs to the
// end-to-end tests of cmd/strangers.)
func TestWebRTCRelayOnly(t *testing.T) {
	t.Parallel()
	eachPath(t, testWebRTCRelayOnly)
}

func testWebRTCRelayOnly(t *testing.T, path dataPath) {
	t.Parallel()
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, path.config())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			newPeer := func() *webrtc.PeerConnection {
				sid := newSID(t)
				s.SessionStarted(sid)
				servers, err := s.ICEServers(sid)
				if err != nil {
					t.Fatal(err)
				}
				turnSrv := servers[1]
				var urls []string
				for _, u := range turnSrv.URLs {
					if strings.HasSuffix(u, "transport="+transport) {
						urls = append(urls, u)
					}
				}
				pc, err := webrtc.NewPeerConnection(webrtc.Configuration{
					ICEServers: []webrtc.ICEServer{{
						URLs: urls, Username: turnSrv.Username, Credential: turnSrv.Credential,
					}},
					ICETransportPolicy: webrtc.ICETransportPolicyRelay,
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { pc.Close() })
				return pc
			}
			offerer, answerer := newPeer(), newPeer()

			answerer.OnDataChannel(func(dc *webrtc.DataChannel) {
				dc.OnMessage(func(m webrtc.DataChannelMessage) {
					_ = dc.Send(m.Data)
				})
			})
			dc, err := offerer.CreateDataChannel("echo", nil)
			if err != nil {
				t.Fatal(err)
			}
			opened := make(chan struct{})
			echoes := make(chan string, 16)
			dc.OnOpen(func() { close(opened) })
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				select {
				case echoes <- string(m.Data):
				default:
				}
			})

			exchange(t, offerer, answerer)
			select {
			case <-opened:
			case <-ctx.Done():
				t.Fatal("data channel did not open through the relay")
			}
			for i := range 5 {
				msg := fmt.Sprintf("hello %d", i)
				if err := dc.SendText(msg); err != nil {
					t.Fatal(err)
				}
				select {
				case got := <-echoes:
					if got != msg {
						t.Fatalf("echo %q, want %q", got, msg)
					}
				case <-ctx.Done():
					t.Fatalf("no echo for %q", msg)
				}
			}
			for name, pc := range map[string]*webrtc.PeerConnection{"offerer": offerer, "answerer": answerer} {
				pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
				if err != nil || pair == nil {
					t.Fatalf("%s: no selected pair: %v", name, err)
				}
				if pair.Local.Typ != webrtc.ICECandidateTypeRelay {
					t.Errorf("%s: selected local candidate is %s, want relay", name, pair.Local.Typ)
				}
			}
			if s.AllocationCount() < 2 {
				t.Errorf("AllocationCount = %d, want at least 2", s.AllocationCount())
			}
		})
	}
}

// exchange performs a non-trickle offer/answer between two peers in process.
func exchange(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}
