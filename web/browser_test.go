package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// Waits in the page. They bound how long a step may take on a busy machine
// (they only bound a hang: a passing step takes a fraction of them, and a
// failing one still ends).
const (
	stepTimeout    = time.Minute
	connectTimeout = 90 * time.Second
	pollInterval   = 50 * time.Millisecond
)

// instrument runs in every page before its own scripts (CDP, so the page's
// CSP does not apply to it): it keeps every RTCPeerConnection and WebSocket
// the page makes, counts getUserMedia calls, records CSP violations and
// every address line the partner's signals carried, so tests can read
// stats, drop sockets, check the page stays in its lane and see what a
// partner learnt. It changes nothing the page sees.
const instrument = `(() => {
  const t = { pcs: [], sockets: [], welcomes: [], iceServers: [], received: [], iceErrors: [], gum: 0, csp: [], msgs: [] };
  // The page's calls: peer connections with media (not its reachability probe).
  t.calls = () => t.pcs.filter((p) => p.getTransceivers().length > 0);
  const note = (dir, data) => {
    try {
      const m = JSON.parse(data);
      t.msgs.push([performance.now(), dir + m.type + (m.sdp ? ':' + m.sdp.type : '') + (m.candidate ? ':cand' : '')]);
      if (t.msgs.length > 500) t.msgs.shift();
    } catch {}
  };
  Object.defineProperty(window, '__test', { value: t });
  const PC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends PC {
    constructor(...a) {
      super(...a);
      t.pcs.push(this);
      this.addEventListener('icecandidateerror', (e) => {
        if (t.iceErrors.length < 50) t.iceErrors.push(e.url + ' ' + e.errorCode + ' ' + e.errorText);
      });
    }
  };
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    send(data) { note('>', data); super.send(data); }
    constructor(...a) {
      super(...a);
      t.sockets.push(this);
      this.addEventListener('message', (e) => note('<', e.data));
      this.addEventListener('message', (e) => {
        try {
          const m = JSON.parse(e.data);
          if (m.type === 'welcome') t.welcomes.push({ session: m.session, resumed: Boolean(m.resumed) });
          if (m.type === 'matched') t.iceServers = m.iceServers;
          // Everything of the partner's that names an address: candidate
          // lines, trickled or in an SDP, and the SDP's connection lines.
          if (m.type === 'signal' && m.candidate && m.candidate.candidate) t.received.push(m.candidate.candidate);
          if (m.type === 'signal' && m.sdp && m.sdp.sdp) {
            for (const line of m.sdp.sdp.split(/\r?\n/)) {
              if (line.startsWith('a=candidate:')) t.received.push(line.slice(2));
              else if (/^(c=|a=rtcp:)/.test(line)) t.received.push(line);
            }
          }
        } catch {}
      });
    }
  };
  const md = navigator.mediaDevices;
  if (md) {
    const gum = md.getUserMedia.bind(md);
    md.getUserMedia = (c) => { t.gum++; return gum(c); };
  }
  document.addEventListener('securitypolicyviolation', (e) => t.csp.push(e.violatedDirective + ' ' + e.blockedURI));
})();`

// stage is what a test inside the namespace works with: the server and one
// Chromium in which every user gets its own browser context (like a separate
// profile: no shared storage or permissions).
type stage struct {
	tb   testing.TB // the test that owns the stage
	srv  *server
	root context.Context // the browser; users are children of it
	// base is the secure-context origin (loopback); insecureBase is the same
	// server reached over the veth address, which is not a secure context.
	base, insecureBase string

	promptOnce sync.Once
	prompting  context.Context

	probeOnce sync.Once
	wsStatus  int
	probeErr  error
}

// chromium is how the tests start Chromium; with prompt, camera and
// microphone prompts follow the page's permissions instead of granting
// everything. chromedp's defaults, which testsupport starts from, keep
// background tabs from being throttled: several play video at once.
func chromium(prompt bool) testsupport.Chromium {
	return testsupport.Chromium{
		// Nothing leaves the machine: every name fails to resolve except
		// loopback and our test addresses.
		Resolve:         []string{relayIP, peerIP},
		Prompt:          prompt,
		DisableFeatures: []string{"AutofillServerCommunication", "CertificateTransparencyComponentUpdater", "InterestFeedContentSuggestions"},
		Flags: map[string]any{
			"hide-scrollbars": true,
			"mute-audio":      true,
			"window-size":     "1280,800",
			// Three cameras (the third's frames are MJPEG), so a test can
			// switch to another one.
			"use-fake-device-for-media-stream": "device-count=3",
		},
	}
}

// newStage starts the server (with extraEnv, "NAME=value" each) and
// Chromium inside the namespace.
func newStage(tb testing.TB, extraEnv ...string) *stage {
	tb.Helper()
	if !inNamespace() {
		tb.Fatal("newStage outside a test namespace")
	}
	// Browsers take their UDP ports from this range, the relay from
	// relayPortMin-relayPortMax (sysctls under /proc/sys/net belong to the
	// namespace of the process).
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(ephemeralPort), 0o644); err != nil {
		tb.Fatalf("setting the namespace's ephemeral ports: %v", err)
	}
	srv := startServer(tb, extraEnv...)
	st := &stage{
		tb:           tb,
		srv:          srv,
		root:         startChromium(tb, true),
		base:         "http://127.0.0.1:" + httpPort,
		insecureBase: "http://" + relayIP + ":" + httpPort,
	}
	return st
}

// startChromium starts a browser that lives until the test ends. fakeUI
// accepts every camera and microphone prompt.
func startChromium(tb testing.TB, fakeUI bool) context.Context {
	tb.Helper()
	return testsupport.StartChromium(tb, chromium(!fakeUI))
}

// promptingBrowser is a second Chromium without the fake prompt, where
// permissions can be refused (the fake prompt grants whatever is asked).
func (st *stage) promptingBrowser(tb testing.TB) context.Context {
	// The browser belongs to the whole stage, not to the subtest asking.
	st.promptOnce.Do(func() { st.prompting = startChromium(st.tb, false) })
	return st.prompting
}

// requireSignaling skips when the binary does not serve /ws yet (the page
// can be tested only against a server that speaks the protocol).
func (st *stage) requireSignaling(tb testing.TB) {
	tb.Helper()
	st.probeOnce.Do(func() { st.wsStatus, st.probeErr = st.probeWS() })
	if st.probeErr != nil {
		tb.Fatalf("probing /ws: %v", st.probeErr)
	}
	if st.wsStatus == 404 {
		testsupport.Missing(tb, "this build of cmd/strangers does not serve /ws yet")
	}
}

// navigate loads url in the tab of ctx. Chromium aborts a load with
// net::ERR_NETWORK_CHANGED when it notices an address of the namespace
// settle (IPv6 duplicate address detection ends a moment after the test
// set the addresses up); that load is tried again, a few times.
func navigate(ctx context.Context, url string) error {
	var err error
	for range 5 {
		if err = chromedp.Do(ctx, chromedp.Navigate(url)); err == nil || !strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

func (st *stage) probeWS() (int, error) {
	ctx, cancel := context.WithTimeout(st.root, stepTimeout)
	defer cancel()
	tctx, tcancel := chromedp.NewContext(ctx)
	defer tcancel()
	if err := navigate(tctx, st.base+"/healthz"); err != nil {
		return 0, err
	}
	return chromedp.Run(tctx, chromedp.Evaluate[int](`fetch('/ws').then(r => r.status)`, chromedp.EvalAwaitPromise))
}

// user is one visitor: a tab in a browser context of its own.
type user struct {
	tb   testing.TB
	name string
	ctx  context.Context
	st   *stage

	// close checks the page's complaints (and takes a screenshot if the
	// test failed), leaves the page and closes the tab; it runs at the end
	// of the test unless called before.
	close func()

	logFrom int // where the server's log stood when the user came

	mu       sync.Mutex
	problems []string // page exceptions and console errors
}

type userOption func(*userOptions)

type userOptions struct {
	base       string
	denyCamera bool
	waitOnline bool
	viewportW  int64
	viewportH  int64
	rulesGate  bool
}

// withRulesGate leaves the rules unaccepted, so the first Start shows them
// (other users have accepted them before, as a returning visitor has).
func withRulesGate() userOption { return func(o *userOptions) { o.rulesGate = true } }

// acceptedRules marks the rules accepted in a new page's storage.
const acceptedRules = `try { localStorage.setItem('strangers.rulesAccepted', '1'); } catch {}`

// from loads the page from another origin than the secure loopback one.
func from(base string) userOption { return func(o *userOptions) { o.base = base } }

// withoutSignaling does not wait for the WebSocket (for pages that never
// get that far).
func withoutSignaling() userOption { return func(o *userOptions) { o.waitOnline = false } }

// denyMedia makes the browser context refuse camera and microphone.
func denyMedia() userOption { return func(o *userOptions) { o.denyCamera = true } }

// phone sizes the window like a phone.
func phone() userOption {
	return func(o *userOptions) { o.viewportW, o.viewportH = 390, 844 }
}

// newUser opens the page in a new browser context. When the test fails the
// user's screen is saved as a screenshot; page errors are logged, and CSP
// violations or uncaught exceptions fail the test.
func (st *stage) newUser(tb testing.TB, name string, opts ...userOption) *user {
	tb.Helper()
	o := userOptions{base: st.base, waitOnline: true}
	for _, f := range opts {
		f(&o)
	}
	root := st.root
	if o.denyCamera {
		root = st.promptingBrowser(tb)
	}
	ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
	u := &user{tb: tb, name: name, ctx: ctx, st: st}
	if st.srv != nil {
		u.logFrom = st.srv.LogLen()
	}
	var wg sync.WaitGroup
	u.close = sync.OnceFunc(func() {
		u.finish()
		// Leaving the page closes its WebSocket normally (the server
		// forgets the session at once); then the tab and context go.
		lctx, lcancel := context.WithTimeout(ctx, stepTimeout)
		chromedp.Do(lctx, chromedp.Navigate("about:blank"))
		lcancel()
		cancel()
		wg.Wait()
	})
	tb.Cleanup(u.close)

	// The first run opens the tab and binds it to the context it is given.
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("%s: opening a tab: %v", name, err)
	}
	setup, scancel := context.WithTimeout(ctx, stepTimeout)
	defer scancel()
	if err := chromedp.Do(setup, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		src := instrument
		if !o.rulesGate {
			src += acceptedRules
		}
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
		return err
	})); err != nil {
		tb.Fatalf("%s: setting up the tab: %v", name, err)
	}
	if o.viewportW > 0 {
		if err := chromedp.Do(setup, chromedp.EmulateViewport(o.viewportW, o.viewportH, chromedp.EmulateMobile, chromedp.EmulateTouch)); err != nil {
			tb.Fatalf("%s: phone viewport: %v", name, err)
		}
	}
	if o.denyCamera {
		id := chromedp.FromContext(ctx).BrowserContextID
		for _, perm := range []string{"camera", "microphone"} {
			if _, err := chromedp.CallBrowser(setup, browser.SetPermission, browser.SetPermissionParams{
				Permission:       &browser.PermissionDescriptor{Name: perm},
				Setting:          browser.PermissionSettingDenied,
				Origin:           o.base,
				BrowserContextID: id,
			}); err != nil {
				tb.Fatalf("%s: denying %s: %v", name, perm, err)
			}
		}
	}

	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	console := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	// The browser's own complaints about loading (a module that failed to
	// load leaves the page without its script, and says so only here).
	entries := chromedp.Events(ctx, cdplog.EntryAdded)
	wg.Go(func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if e := ev.Entry; e != nil && e.Source == cdplog.EntrySourceNetwork {
				u.note(fmt.Sprintf("browser: %s %s", e.Text, e.URL))
			}
		}
	})
	wg.Go(func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			u.problem("exception: " + exceptionText(ev.ExceptionDetails))
		}
	})
	wg.Go(func() {
		for ev, err := range console {
			if err != nil {
				return
			}
			var parts []string
			for _, a := range ev.Args {
				if a.Value != nil {
					var s string
					if json.Unmarshal(a.Value, &s) == nil {
						parts = append(parts, s)
						continue
					}
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			u.note(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " ")))
		}
	})

	if err := navigate(setup, o.base+"/"); err != nil {
		tb.Fatalf("%s: loading the page: %v", name, err)
	}
	// Start is enabled once the page's script runs; a click before that
	// would do nothing. (Other pages, the moderators' say, have no Start.)
	u.waitFor(`!document.getElementById('start')?.disabled`, "the page's script (Start enabled)")
	if o.waitOnline {
		u.waitFor(`/^\d/.test(document.getElementById('online-count').textContent)`, "the online count (the WebSocket is up)")
	}
	return u
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return d.Text
}

// problem records what fails the test when it ends; note, what is only
// logged then.
func (u *user) problem(s string) { u.note("!" + s) }

func (u *user) note(s string) {
	u.mu.Lock()
	u.problems = append(u.problems, s)
	u.mu.Unlock()
}

// finish runs when the test ends: a screenshot if it failed, and the page's
// own complaints checked.
func (u *user) finish() {
	tb := u.tb
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	if tb.Failed() {
		u.screenshot(ctx, "failed")
		u.dump(ctx)
	} else if os.Getenv(envScreenshots) == "all" {
		u.screenshot(ctx, "end")
	}
	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__test ? window.__test.csp : []`))
	if err == nil && len(violations) > 0 {
		tb.Errorf("%s: Content-Security-Policy violations: %q", u.name, violations)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.problems {
		if strings.HasPrefix(p, "!") {
			tb.Errorf("%s: uncaught in the page: %s", u.name, p[1:])
		} else {
			tb.Logf("%s: %s", u.name, p)
		}
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// dumpJS describes where the page stands: the messages it sent and got
// (the last 60), the partner's address lines, and each peer connection's
// states, candidates and ICE errors.
const dumpJS = `(async () => {
  const t = window.__test;
  const out = { at: Math.round(performance.now()), document: document.readyState,
    scriptRan: !document.getElementById('start')?.disabled,
    resources: performance.getEntriesByType('resource').map((r) => r.name.replace(location.origin, '') + ' ' + Math.round(r.startTime) + '+' + Math.round(r.duration)),
    sockets: t.sockets.map((s) => s.readyState), welcomes: t.welcomes, received: t.received, iceErrors: t.iceErrors,
    msgs: t.msgs.slice(-60).map(([at, m]) => Math.round(at) + ' ' + m), pcs: [] };
  for (const pc of t.pcs) {
    const p = { conn: pc.connectionState, ice: pc.iceConnectionState, gathering: pc.iceGatheringState,
      signaling: pc.signalingState, transceivers: pc.getTransceivers().length, policy: pc.getConfiguration().iceTransportPolicy,
      ufrags: [pc.localDescription, pc.remoteDescription].map((d) => (d && /a=ice-ufrag:(\S+)/.exec(d.sdp)?.[1]) || ''),
      local: [], remote: [], pairs: [] };
    if (pc.connectionState !== 'closed') {
      try {
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'local-candidate') p.local.push(s.candidateType + ' ' + s.protocol + ' ' + (s.relayProtocol || '') + ' ' + s.address + ':' + s.port);
          if (s.type === 'remote-candidate') p.remote.push(s.candidateType + ' ' + s.address + ':' + s.port);
          if (s.type === 'candidate-pair') p.pairs.push(s.state + (s.nominated ? ' nominated' : '') + ' req ' + s.requestsSent + ' resp ' + s.responsesReceived);
        });
      } catch {}
    }
    out.pcs.push(p);
  }
  return JSON.stringify(out, null, 1);
})()`

// dump logs where the page stands and what the server logged since the
// user came (the relay's per-datagram lines left out), for a failed test.
func (u *user) dump(ctx context.Context) {
	if state, err := chromedp.Run(ctx, chromedp.Evaluate[string](dumpJS, chromedp.EvalAwaitPromise)); err != nil {
		u.tb.Logf("%s: reading the page's state: %v", u.name, err)
	} else {
		u.tb.Logf("%s: the page's state: %s", u.name, state)
	}
	if u.st.srv != nil {
		u.tb.Logf("%s: the server's log since %s came:\n%s", u.name, u.name, headTail(withoutDatagrams(u.st.srv.LogsSince(u.logFrom)), 120, 60))
	}
}

// screenshot saves what the user sees under the artifact directory.
func (u *user) screenshot(ctx context.Context, label string) {
	dir := os.Getenv(envArtifacts)
	if dir == "" {
		dir = u.tb.ArtifactDir()
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		u.tb.Logf("%s: no screenshot: %v", u.name, err)
		return
	}
	name := unsafeName.ReplaceAllString(u.tb.Name()+"-"+u.name+"-"+label, "_") + ".png"
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		u.tb.Logf("%s: saving the screenshot: %v", u.name, err)
		return
	}
	u.tb.Logf("%s: screenshot %s", u.name, path)
}

// do runs actions with the step timeout and fails the test on error.
func (u *user) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	u.tb.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		u.tb.Fatalf("%s: %s: %v", u.name, what, err)
	}
}

// eval evaluates an expression (awaiting a promise) and decodes its value.
func eval[T any](u *user, expr string) T {
	u.tb.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		u.tb.Fatalf("%s: evaluating %.80q: %v", u.name, expr, err)
	}
	return v
}

// waitFor polls a page expression until it is truthy.
func (u *user) waitFor(expr, what string) {
	u.tb.Helper()
	u.waitForWithin(expr, what, stepTimeout)
}

func (u *user) waitForWithin(expr, what string, d time.Duration) {
	u.tb.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, d)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(pollInterval), chromedp.WithPollingTimeout(d)))
	if err != nil {
		u.tb.Fatalf("%s: waiting for %s: %v\n%s", u.name, what, err, u.describe())
	}
}

// describe is a short account of the page's state for failure messages.
func (u *user) describe() string {
	ctx, cancel := context.WithTimeout(u.ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[
	  "url=" + location.href,
	  "stage=" + JSON.stringify(document.getElementById('stage')?.textContent),
	  'connection=' + JSON.stringify(document.getElementById('connection')?.textContent),
	  'server=' + JSON.stringify(document.getElementById('server-status')?.textContent),
	  'error=' + JSON.stringify(document.getElementById('start-error')?.textContent),
	  'log=' + JSON.stringify(document.getElementById('chat-log')?.innerText),
	].join('\n')`))
	if err != nil {
		return "(page state unavailable: " + err.Error() + ")"
	}
	return s
}

// byRole finds elements the way a screen reader does: by computed role and
// accessible name, through the accessibility tree. Hidden elements are not in
// it, so only what the user can reach matches.
func byRole(role, name string) chromedp.QueryOption {
	return chromedp.ByFunc(func(ctx context.Context, t *chromedp.Target, n *chromedp.Node) ([]cdp.NodeID, error) {
		res, err := cdp.Call(ctx, t, accessibility.QueryAXTree, accessibility.QueryAXTreeParams{NodeID: n.NodeID, Role: role, AccessibleName: name})
		if err != nil {
			return nil, err
		}
		var backend []cdp.BackendNodeID
		for _, ax := range res.Nodes {
			if !ax.Ignored && ax.BackendDOMNodeID != 0 {
				backend = append(backend, ax.BackendDOMNodeID)
			}
		}
		if len(backend) == 0 {
			return nil, nil
		}
		pushed, err := cdp.Call(ctx, t, dom.PushNodesByBackendIDsToFrontend, dom.PushNodesByBackendIDsToFrontendParams{BackendNodeIDs: backend})
		if err != nil {
			return nil, err
		}
		return pushed.NodeIDs, nil
	})
}

// press clicks the button with this accessible name, as a user would (a real
// mouse event, so it counts as a user gesture).
func (u *user) press(name string) {
	u.tb.Helper()
	u.do("pressing "+name, chromedp.Click(name, byRole("button", name)))
}

// typeInto types into the text box with this accessible name.
func (u *user) typeInto(name, text string) {
	u.tb.Helper()
	u.do("typing into "+name, chromedp.SendKeys(name, text, byRole("textbox", name)))
}

// key sends key presses to whatever has the focus.
func (u *user) key(keys string) {
	u.tb.Helper()
	u.do("pressing keys", chromedp.KeyEvent(keys))
}

type startOptions struct {
	text      bool
	hideIP    bool
	autoNext  bool
	interests []string
}

// start fills the landing form and presses Start.
func (u *user) start(o startOptions) {
	u.tb.Helper()
	if o.text {
		u.do("choosing text only", chromedp.Click("Text only", byRole("radio", "Text only")))
	}
	if o.hideIP {
		u.do("ticking Hide my IP", chromedp.Click("#hide-ip", byID("hide-ip")))
	}
	if o.autoNext {
		u.do("ticking auto next", chromedp.Click("#auto-next", byID("auto-next")))
	}
	for _, tag := range o.interests {
		// A comma ends a tag as Enter does. (chromedp sends Enter's char
		// event separately from its keydown, so the page's preventDefault
		// on keydown would not stop the form's implicit submission as it
		// does for a real key press.)
		u.do("adding an interest", chromedp.SendKeys("#interest-input", tag+",", byID("interest-input")))
	}
	u.press("Start")
}

// byID selects by element id (for controls whose accessible name is long).
func byID(id string) chromedp.QueryOption {
	return chromedp.ByFunc(func(ctx context.Context, t *chromedp.Target, n *chromedp.Node) ([]cdp.NodeID, error) {
		res, err := cdp.Call(ctx, t, dom.QuerySelector, dom.QuerySelectorParams{NodeID: n.NodeID, Selector: "#" + id})
		if err != nil || res.NodeID == 0 {
			return nil, err
		}
		return []cdp.NodeID{res.NodeID}, nil
	})
}

// media is what the page's newest peer connection and the remote video show.
type media struct {
	PCs         int    `json:"pcs"`
	State       string `json:"state"`
	Width       int    `json:"width"`
	Frames      int    `json:"frames"`
	AudioLive   bool   `json:"audioLive"`
	AudioIn     int    `json:"audioIn"`
	Local       string `json:"local"`
	Remote      string `json:"remote"`
	LocalAddr   string `json:"localAddr"`
	RemoteAddr  string `json:"remoteAddr"`
	Protocol    string `json:"protocol"`
	RelayProto  string `json:"relayProtocol"`
	Indicator   string `json:"indicator"`
	IndicatorOK string `json:"indicatorState"`
}

const mediaJS = `(async () => {
  const pcs = window.__test.calls();
  const pc = pcs[pcs.length - 1];
  const v = document.getElementById('remote-video');
  const c = document.getElementById('connection');
  const out = { pcs: pcs.length, state: pc ? pc.connectionState : '', width: v.videoWidth, frames: 0,
    audioLive: false, audioIn: 0, local: '', remote: '', localAddr: '', remoteAddr: '', protocol: '', relayProtocol: '',
    indicator: c.textContent, indicatorState: c.dataset.state };
  if (v.srcObject) out.audioLive = v.srcObject.getAudioTracks().some((t) => t.readyState === 'live');
  if (pc && pc.connectionState !== 'closed') {
    const r = await pc.getStats();
    let pair = null;
    r.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.frames = s.framesDecoded || 0;
      if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioIn = s.packetsReceived || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = r.get(s.selectedCandidatePairId);
    });
    if (pair) {
      const l = r.get(pair.localCandidateId), rc = r.get(pair.remoteCandidateId);
      out.local = l.candidateType; out.remote = rc.candidateType;
      out.localAddr = l.address || ''; out.remoteAddr = rc.address || '';
      out.protocol = l.protocol || ''; out.relayProtocol = l.relayProtocol || '';
    }
  }
  return out;
})()`

func (u *user) media() media {
	u.tb.Helper()
	return eval[media](u, mediaJS)
}

// waitMedia polls the media state until ok accepts it.
func (u *user) waitMedia(what string, d time.Duration, ok func(media) bool) media {
	u.tb.Helper()
	deadline := time.Now().Add(d)
	var m media
	for {
		m = u.media()
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			u.tb.Fatalf("%s: waiting %v for %s; last %+v\n%s", u.name, d, what, m, u.describe())
		}
		select {
		case <-u.ctx.Done():
			u.tb.Fatalf("%s: %v", u.name, u.ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// seesStranger waits until the stranger's video plays: frames decoded and
// still coming, the video element sized, the audio track live.
func (u *user) seesStranger() media {
	u.tb.Helper()
	first := u.waitMedia("the stranger's video", connectTimeout, func(m media) bool {
		return m.State == "connected" && m.Frames > 0 && m.Width > 0 && m.AudioLive
	})
	return u.waitMedia("more decoded frames", stepTimeout, func(m media) bool { return m.Frames > first.Frames+5 })
}

// text returns the text content of the element with this id.
func (u *user) text(id string) string {
	u.tb.Helper()
	return eval[string](u, fmt.Sprintf(`document.getElementById(%q).textContent`, id))
}

// watchText starts recording every text the element with this id shows,
// so that waitShown can tell it showed something, however briefly and
// whenever the test gets to look (on a busy machine that may be after the
// text is gone again).
func (u *user) watchText(id string) {
	u.tb.Helper()
	eval[bool](u, fmt.Sprintf(`(() => {
	  const el = document.getElementById(%q), w = (window.__watch ??= {});
	  w[%[1]q]?.observer.disconnect();
	  const seen = [el.textContent];
	  const observer = new MutationObserver(() => seen.push(el.textContent));
	  observer.observe(el, { childList: true, characterData: true, subtree: true });
	  w[%[1]q] = { seen, observer };
	  return true;
	})()`, id))
}

// waitShown waits until the element watched with watchText has shown a
// text matching re.
func (u *user) waitShown(id, re string) {
	u.tb.Helper()
	u.waitFor(fmt.Sprintf(`window.__watch[%q].seen.some((t) => new RegExp(%q).test(t))`, id, re), fmt.Sprintf("#%s to have shown /%s/", id, re))
}

// waitText polls until the element's text matches re.
func (u *user) waitText(id string, re string) {
	u.tb.Helper()
	u.waitFor(fmt.Sprintf(`new RegExp(%q).test(document.getElementById(%q).textContent)`, re, id), fmt.Sprintf("#%s to match /%s/", id, re))
}

// eventually polls ok until it holds, for at most stepTimeout.
func eventually(tb testing.TB, what string, ok func() bool) {
	tb.Helper()
	testsupport.WaitFor(tb, stepTimeout, what, ok)
}

// indicatorJS is true when the connection indicator names the path the
// selected candidate pair takes, as getStats tells it: relayed or direct,
// and the transport (to the relay, for a local relay candidate).
const indicatorJS = `(async () => {
  const pc = window.__test.calls().at(-1);
  if (!pc || pc.connectionState !== 'connected') return false;
  const r = await pc.getStats();
  let pair = null;
  r.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = r.get(s.selectedCandidatePairId); });
  if (!pair) return false;
  const l = r.get(pair.localCandidateId), rc = r.get(pair.remoteCandidateId);
  if (!l || !rc) return false;
  const proto = String((l.candidateType === 'relay' ? l.relayProtocol : l.protocol) || '').toUpperCase();
  const want = l.candidateType === 'relay' || rc.candidateType === 'relay' ? 'Relayed (TURN over ' + proto + ')' : 'Direct (' + proto + ')';
  return proto !== '' && document.getElementById('connection').textContent.startsWith(want);
})()`

// waitIndicator waits until the connection indicator agrees with the
// selected pair (the page refreshes it from getStats every few seconds,
// and the pair may change meanwhile), and returns the indicator's text.
func (u *user) waitIndicator() string {
	u.tb.Helper()
	eventually(u.tb, u.name+": the connection indicator to name the selected pair's path", func() bool {
		return eval[bool](u, indicatorJS)
	})
	return u.text("connection")
}

// relayOnlyLeaks returns what, among the lines naming an address that a
// page received from its partner (window.__test.received), could reveal
// the partner's own address: a candidate that is not a relay candidate of
// ours, a relay candidate with a related address, or a connection line
// naming an address other than our relay's or none (0.0.0.0, ::).
func relayOnlyLeaks(received []string) []string {
	var out []string
	for _, line := range received {
		f := strings.Fields(line)
		if strings.HasPrefix(line, "candidate:") {
			// candidate:<foundation> <component> <protocol> <priority> <address> <port> typ <type> …
			ok := len(f) >= 8 && f[4] == relayIP && f[6] == "typ" && f[7] == "relay"
			for i := 8; ok && i+1 < len(f); i++ {
				if f[i] == "raddr" && f[i+1] != "0.0.0.0" && f[i+1] != "::" {
					ok = false
				}
			}
			if !ok {
				out = append(out, line)
			}
			continue
		}
		// c=IN IP4 <address> or a=rtcp:<port> IN IP4 <address>
		if len(f) == 0 {
			continue
		}
		if addr := f[len(f)-1]; addr != "0.0.0.0" && addr != "::" && addr != relayIP {
			out = append(out, line)
		}
	}
	return out
}
