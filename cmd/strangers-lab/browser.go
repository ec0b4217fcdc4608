package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// The browser role: headless Chromium with the real page, in a client
// namespace. The role process drives the browser over the DevTools
// protocol, so both live in the same namespace. It presses Start, waits
// until the stranger's video plays, prints one peerResult line on stdout,
// and keeps the call up until its stdin is closed (the partner may still
// be measuring).

const (
	// browserTimeout bounds one browser side of one run. It bounds a
	// hang: starting Chromium and a call take seconds, on a busy machine
	// tens of seconds.
	browserTimeout = 3 * time.Minute
	// pollEvery is how often the page's state is polled.
	pollEvery = 50 * time.Millisecond
	// minFrames is how many frames of the stranger's video must be decoded.
	minFrames = 10
)

// ErrBrowser is returned when Chromium cannot be started or driven.
var ErrBrowser = errors.New("strangers-lab: browser")

// browserOptions are what the browser role needs from the matrix.
type browserOptions struct {
	chromium string // the browser binary
	caFile   string // the lab CA, PEM
}

// labScript runs in the page before its own scripts (over DevTools, so the
// page's CSP does not apply). It records when matched arrives, when the
// peer connection first connects, and every candidate the server forwards
// from the partner; it changes nothing the page sees.
const labScript = `(() => {
  const t = { matchedAt: 0, connectedAt: 0, received: [], pcs: [] };
  Object.defineProperty(window, '__lab', { value: t });
  const PC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends PC {
    constructor(...a) {
      super(...a);
      t.pcs.push(this);
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState === 'connected' && !t.connectedAt) t.connectedAt = performance.now();
      });
    }
  };
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...a) {
      super(...a);
      this.addEventListener('message', (e) => {
        let m;
        try { m = JSON.parse(e.data); } catch { return; }
        if (m.type === 'matched' && !t.matchedAt) t.matchedAt = performance.now();
        if (m.type !== 'signal') return;
        if (m.candidate && m.candidate.candidate) t.received.push(m.candidate.candidate);
        if (m.sdp && m.sdp.sdp) {
          for (const line of m.sdp.sdp.split(/\r?\n/)) if (line.startsWith('a=candidate:')) t.received.push(line.slice(2));
          t.received.push('sdp ' + m.sdp.sdp.split(/\r?\n/).filter((l) => /^(c=|a=rtcp:)/.test(l)).join(' '));
        }
      });
    }
  };
})();`

// statusJS reports the call as the page's call sees it: the newest peer
// connection with a remote description, the one that talks to the stranger.
// The newest peer connection may be another: the page makes its next call
// ready while it waits (it is used, later, for the call) and probes whether
// the relay can be reached with a connection of its own, which it closes.
const statusJS = `(async () => {
  const t = window.__lab, pc = t.pcs.findLast((p) => p.remoteDescription) ?? null;
  const out = { state: pc ? pc.connectionState : '', frames: 0, local: '', remote: '', remoteAddr: '', relayProtocol: '',
    connectedMs: t.connectedAt && t.matchedAt ? t.connectedAt - t.matchedAt : 0, received: t.received };
  if (pc && pc.connectionState !== 'closed') {
    const r = await pc.getStats();
    let pair = null;
    r.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.frames = s.framesDecoded || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = r.get(s.selectedCandidatePairId);
    });
    if (pair) {
      const l = r.get(pair.localCandidateId), rc = r.get(pair.remoteCandidateId);
      out.local = l.candidateType; out.remote = rc.candidateType; out.remoteAddr = rc.address || ''; out.relayProtocol = l.relayProtocol || '';
    }
  }
  return out;
})()`

// pageStatus is what statusJS returns.
type pageStatus struct {
	State         string   `json:"state"`
	Frames        int      `json:"frames"`
	Local         string   `json:"local"`
	Remote        string   `json:"remote"`
	RemoteAddr    string   `json:"remoteAddr"`
	RelayProtocol string   `json:"relayProtocol"`
	ConnectedMs   float64  `json:"connectedMs"`
	Received      []string `json:"received"`
}

// runBrowser starts a browser role in each side's client namespace and
// collects their results; both keep their call up until both reported.
func (r *runner) runBrowser(ctx context.Context, c cell) runResult {
	if r.browser.chromium == "" {
		return runResult{err: fmt.Errorf("%w: no Chromium", ErrBrowser)}
	}
	tag := "lab" + randHex(6)
	ctx, cancel := context.WithTimeout(ctx, browserTimeout+procGrace)
	defer cancel()
	type proc struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		stderr bytes.Buffer
		res    peerResult
		err    error
		got    chan struct{} // closed when the result line is in (or never will be)
		eof    chan struct{} // closed when stdout is read to the end
	}
	var procs [2]*proc
	for i, s := range []side{c.a, c.b} {
		st, err := r.lab.site(s.site)
		if err != nil {
			return runResult{err: err}
		}
		p := &proc{got: make(chan struct{}), eof: make(chan struct{})}
		procs[i] = p
		args := []string{"netns", "exec", st.client, r.exe, "browser",
			"-chromium", r.browser.chromium, "-ca", r.browser.caFile, "-tag", tag}
		if s.hide {
			args = append(args, "-hide")
		}
		p.cmd = exec.CommandContext(ctx, "ip", args...)
		p.cmd.Env = r.env
		p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
		p.cmd.WaitDelay = procGrace
		p.cmd.Stderr = &p.stderr
		stdout, err := p.cmd.StdoutPipe()
		if err == nil {
			p.stdin, err = p.cmd.StdinPipe()
		}
		if err == nil {
			err = p.cmd.Start()
		}
		if err != nil {
			p.err = fmt.Errorf("%w: starting the browser role in %s: %w", ErrRun, st.client, err)
			close(p.got)
			close(p.eof)
			continue
		}
		go func() {
			defer close(p.eof)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			if sc.Scan() {
				if err := json.Unmarshal(sc.Bytes(), &p.res); err != nil {
					p.err = fmt.Errorf("%w: browser in %s printed %.200q: %w", ErrRun, st.client, sc.Bytes(), err)
				}
			} else {
				p.err = fmt.Errorf("%w: browser in %s printed no result", ErrRun, st.client)
			}
			close(p.got)
			_, _ = io.Copy(io.Discard, stdout)
		}()
	}
	for _, p := range procs {
		<-p.got
	}
	// Both have reported: let them hang up.
	var errs []error
	for i, p := range procs {
		if p.cmd.Process == nil {
			errs = append(errs, p.err)
			continue
		}
		p.stdin.Close()
		<-p.eof
		werr := p.cmd.Wait()
		if r.log != nil && p.stderr.Len() > 0 {
			fmt.Fprintf(r.log, "[browser %d]\n%s", i, p.stderr.Bytes())
		}
		switch {
		case p.err != nil:
			errs = append(errs, fmt.Errorf("%w (exit: %v); stderr:\n%s", p.err, werr, tail(p.stderr.String(), 20)))
		case werr != nil:
			errs = append(errs, fmt.Errorf("%w: browser in %s: %w; stderr:\n%s", ErrRun, c.String(), werr, tail(p.stderr.String(), 40)))
		}
	}
	return runResult{a: procs[0].res, b: procs[1].res, err: errors.Join(errs...)}
}

// browserConfig is one browser side's part in a run.
type browserConfig struct {
	Chromium string        // the browser binary
	CA       string        // the lab CA to trust, PEM
	URL      string        // the page
	Tag      string        // the interest shared with the partner
	Hide     bool          // tick "Hide my IP"
	Timeout  time.Duration // bound on the whole run
}

// runBrowserRole plays one browser side: it prints the result, then keeps
// the call up until stdin is closed.
func runBrowserRole(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var cfg browserConfig
	fs := flag.NewFlagSet("browser", flag.ContinueOnError)
	fs.StringVar(&cfg.Chromium, "chromium", defaultChromium(), "Chromium binary")
	fs.StringVar(&cfg.CA, "ca", "", "CA certificate to trust (PEM)")
	fs.StringVar(&cfg.URL, "url", "https://"+serverAddr+"/", "the page")
	fs.StringVar(&cfg.Tag, "tag", "", "interest shared with the partner")
	fs.BoolVar(&cfg.Hide, "hide", false, "tick Hide my IP")
	fs.DurationVar(&cfg.Timeout, "timeout", browserTimeout, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	home, err := os.MkdirTemp("", "strangers-lab-chromium-")
	if err != nil {
		return fmt.Errorf("%w: home: %w", ErrBrowser, err)
	}
	defer os.RemoveAll(home)
	start := time.Now()
	res, stop, err := playBrowser(ctx, cfg, home, stderr)
	if stop != nil {
		defer func() {
			t := time.Now()
			stop()
			fmt.Fprintf(stderr, "browser: closed in %v\n", time.Since(t).Round(time.Millisecond))
		}()
	}
	fmt.Fprintf(stderr, "browser: call up after %v (err %v)\n", time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		res.Error = err.Error()
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return err
	}
	// Hold the call until the parent says both sides are done.
	released := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(released)
	}()
	select {
	case <-released:
	case <-ctx.Done():
	}
	return nil
}

// playBrowser starts Chromium trusting the lab CA, opens the page and
// plays a call up to the stranger's video. stop closes the browser.
func playBrowser(ctx context.Context, cfg browserConfig, home string, logw io.Writer) (peerResult, func(), error) {
	res := peerResult{Role: "browser", Received: []string{}, Addrs: []string{}}
	if err := trustCA(ctx, home, cfg.CA); err != nil {
		return res, nil, err
	}
	opts, err := testsupport.Chromium{
		Path:        cfg.Chromium,
		UserDataDir: filepath.Join(home, "profile"),
		Home:        home,
		// Names resolve nowhere; addresses load only from the lab server.
		Resolve: []string{serverAddr},
	}.Options()
	if err != nil {
		return res, nil, fmt.Errorf("%w: %w", ErrBrowser, err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	stop := func() {
		cancelTab()
		cancelAlloc()
	}
	if err := chromedp.Do(tab); err != nil {
		return res, stop, fmt.Errorf("%w: starting Chromium: %w", ErrBrowser, err)
	}
	steps := []struct {
		what string
		act  chromedp.Action[chromedp.Void]
	}{
		{"instrumenting the page", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: labScript})
			return err
		})},
		{"loading the page", chromedp.Navigate(cfg.URL)},
	}
	for _, s := range steps {
		if err := chromedp.Do(tab, s.act); err != nil {
			return res, stop, fmt.Errorf("%w: %s: %w", ErrBrowser, s.what, err)
		}
	}
	if err := waitJS(tab, `/^\d/.test(document.getElementById('online-count').textContent)`); err != nil {
		return res, stop, fmt.Errorf("%w: waiting for the WebSocket (online count): %w", ErrBrowser, err)
	}
	// The tag ends with a comma, which makes it a tag: Enter could submit
	// the form (press Start) if it came before the typed text.
	if cfg.Tag != "" {
		if err := chromedp.Do(tab, chromedp.SendKeys("#interest-input", cfg.Tag+",")); err != nil {
			return res, stop, fmt.Errorf("%w: typing the interest: %w", ErrBrowser, err)
		}
		if err := waitJS(tab, fmt.Sprintf(`document.getElementById('interest-list').textContent.includes(%q)`, cfg.Tag)); err != nil {
			return res, stop, fmt.Errorf("%w: waiting for the interest tag: %w", ErrBrowser, err)
		}
	}
	if cfg.Hide {
		if err := chromedp.Do(tab, chromedp.Click("#hide-ip")); err != nil {
			return res, stop, fmt.Errorf("%w: ticking Hide my IP: %w", ErrBrowser, err)
		}
		if err := waitJS(tab, `document.getElementById('hide-ip').checked`); err != nil {
			return res, stop, fmt.Errorf("%w: waiting for Hide my IP to be ticked: %w", ErrBrowser, err)
		}
	}
	// The lab's users have read the instance's rules before: the 18+ gate
	// shows once per browser, and each of these browsers is new.
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](`(localStorage.setItem('strangers.rulesAccepted', '1'), true)`)); err != nil {
		return res, stop, fmt.Errorf("%w: accepting the rules: %w", ErrBrowser, err)
	}
	if err := chromedp.Do(tab, chromedp.Click("#start")); err != nil {
		return res, stop, fmt.Errorf("%w: pressing Start: %w", ErrBrowser, err)
	}
	// Wait for video until a little before ctx ends: the tab dies with ctx,
	// and a timeout should still describe what the page showed.
	waitCtx := ctx
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) > 2*describeGrace {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithDeadline(ctx, dl.Add(-describeGrace))
		defer cancel()
	}
	var st pageStatus
	for {
		var err error
		st, err = chromedp.Run(tab, chromedp.Evaluate[pageStatus](statusJS, chromedp.EvalAwaitPromise))
		if err != nil {
			return res, stop, fmt.Errorf("%w: reading the call's state: %w", ErrBrowser, err)
		}
		if st.State == "failed" {
			return res, stop, fmt.Errorf("%w: the peer connection failed", ErrCall)
		}
		if st.State == "connected" && st.Frames >= minFrames && st.Local != "" {
			break
		}
		select {
		case <-waitCtx.Done():
			desc, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('stage').textContent + ' | ' + document.getElementById('connection').textContent`))
			return res, stop, fmt.Errorf("%w: no video from the stranger (state %q, %d frames, page: %q): %w", ErrCall, st.State, st.Frames, desc, waitCtx.Err())
		case <-time.After(pollEvery):
		}
	}
	res.Connected = true
	res.ConnectedMs = st.ConnectedMs
	res.Local, res.Remote, res.RemoteAddr, res.RelayProto = st.Local, st.Remote, st.RemoteAddr, st.RelayProtocol
	res.Frames = st.Frames
	for _, line := range st.Received {
		if c, ok := strings.CutPrefix(line, "sdp "); ok {
			noteAddrs(&res, c)
			continue
		}
		res.Received = append(res.Received, line)
		noteAddrs(&res, line)
	}
	return res, stop, nil
}

// noteAddrs adds the addresses named in text to res.Addrs.
func noteAddrs(res *peerResult, text string) {
	for _, a := range addrsIn(text) {
		if !slices.Contains(res.Addrs, a) {
			res.Addrs = append(res.Addrs, a)
		}
	}
}

// describeGrace is the time kept, before a browser role's deadline, to
// read what the page shows when the call did not come up.
const describeGrace = 3 * time.Second

// waitJS polls expr in the page until it is truthy or ctx ends.
func waitJS(ctx context.Context, expr string) error {
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(pollEvery)))
	return err
}

// trustCA makes Chromium, whose HOME is home, trust the lab CA.
func trustCA(ctx context.Context, home, ca string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	if err := testsupport.TrustCA(ctx, home, ca); err != nil {
		return fmt.Errorf("%w: trusting the lab CA: %w", ErrBrowser, err)
	}
	return nil
}
