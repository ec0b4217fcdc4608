package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/strangers-chat/strangers/internal/nstest"
	"github.com/strangers-chat/strangers/internal/testsupport"
)

// statusAddr is the address of a veth end in the test's namespace: the
// calls of TestStatusFollowsTheCall connect over it (host candidates).
const statusAddr = "198.51.100.7"

// callLikeThePageJS sets up, in one page, what the lab's status script
// must see through: the page's call made ready while it waits (it is the
// one the call then uses), a reachability probe made after it and closed,
// and the stranger, a peer connection of the same page, which offers.
const callLikeThePageJS = `(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const stranger = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  for (const tr of stream.getTracks()) stranger.addTrack(tr, stream);
  const call = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceCandidatePoolSize: 1 });
  for (const tr of stream.getTracks()) call.addTrack(tr, stream);
  const probe = new RTCPeerConnection();
  probe.createDataChannel('probe');
  await probe.setLocalDescription();
  probe.close();
  stranger.onicecandidate = (e) => { if (e.candidate) call.addIceCandidate(e.candidate).catch(() => {}); };
  call.onicecandidate = (e) => { if (e.candidate) stranger.addIceCandidate(e.candidate).catch(() => {}); };
  await stranger.setLocalDescription();
  await call.setRemoteDescription(stranger.localDescription);
  await call.setLocalDescription();
  await stranger.setRemoteDescription(call.localDescription);
  window.__call = call;
  return true;
})()`

// TestStatusFollowsTheCall checks that the browser role reads the page's
// call, not the newest peer connection: the page makes its next call ready
// before it probes the relay with a connection it then closes, and a
// status read from that probe said "closed, no frame" of calls that
// played.
func TestStatusFollowsTheCall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium; skipped with -short")
	}
	if !nstest.Run(t,
		[]string{"link", "add", "lab0", "type", "veth", "peer", "name", "lab1"},
		[]string{"addr", "add", statusAddr + "/24", "dev", "lab0"},
		[]string{"link", "set", "lab0", "up"},
		[]string{"link", "set", "lab1", "up"},
	) {
		return
	}
	// A secure origin (loopback) for the camera; the page itself is empty.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<!doctype html><title>lab</title>"))
	}))
	defer srv.Close()

	root := testsupport.StartChromium(t, testsupport.Chromium{Path: defaultChromium()})
	ctx, cancel := context.WithTimeout(root, 2*time.Minute)
	defer cancel()
	tab, cancelTab := chromedp.NewContext(ctx)
	defer cancelTab()
	err := chromedp.Do(tab, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: labScript})
		return err
	}), chromedp.Navigate(srv.URL))
	if err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](callLikeThePageJS, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("setting up the calls: %v", err)
	}
	if err := waitJS(tab, `window.__call.connectionState === 'connected'`); err != nil {
		t.Fatalf("waiting for the call to connect: %v", err)
	}
	var st pageStatus
	for {
		st, err = chromedp.Run(tab, chromedp.Evaluate[pageStatus](statusJS, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("reading the status: %v", err)
		}
		if st.State != "connected" {
			t.Fatalf("status says the call is %q; it is connected (the newest peer connection is the closed probe)", st.State)
		}
		if st.Frames >= minFrames && st.Local != "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status: %d frames, local candidate %q; the call plays: %v", st.Frames, st.Local, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
	if st.Local != "host" || st.RemoteAddr != statusAddr {
		t.Errorf("status: local %q, remote %q; want the call's host pair on %s", st.Local, st.RemoteAddr, statusAddr)
	}
}
