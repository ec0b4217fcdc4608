package web_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// waitingInterestWait is the server's interest wait in these tests: also
// how long two recent partners wait before they may meet again.
const waitingInterestWait = "3s"

// TestBrowserWaiting covers the waiting screen and the page's accessibility:
// two people alone meet again after a Next (and see how many wait
// meanwhile), never after a report; Next is unavailable while waiting; the
// focus stays on a control when the stranger leaves; contrast; the
// connection chip's live region. Its server pushes stats every 100ms, so
// the waiting count shows within a wait.
func TestBrowserWaiting(t *testing.T) {
	if !inNamespace() {
		reexec(t, false)
		return
	}
	st := newStageWith(t, "STRANGERS_INTEREST_WAIT="+waitingInterestWait, "STRANGERS_STATS_INTERVAL=100ms")

	t.Run("contrast of Start and Next, and the Hide my IP box", func(t *testing.T) {
		for _, scheme := range []string{"light", "dark"} {
			u := st.newUser(t, "visitor-"+scheme, withoutSignaling())
			u.emulate(&emulation.MediaFeature{Name: "prefers-color-scheme", Value: scheme})
			if got := eval[bool](u, `matchMedia('(prefers-color-scheme: dark)').matches`); got != (scheme == "dark") {
				t.Fatalf("%s: the page does not see the emulated color scheme", scheme)
			}
			for _, id := range []string{"start", "next"} {
				if r := eval[float64](u, contrastJS(id)); r < 4.5 {
					t.Errorf("%s: #%s text contrast %.2f:1, want at least 4.5:1", scheme, id, r)
				}
			}
			u.close()
		}
		for _, small := range []bool{false, true} {
			var opts []userOption
			if small {
				opts = append(opts, phone())
			}
			u := st.newUser(t, "visitor", append(opts, withoutSignaling())...)
			type box struct {
				W, H      float64
				NameLines int
			}
			b := eval[box](u, `(() => {
			  const r = document.getElementById('hide-ip').getBoundingClientRect();
			  return { w: r.width, h: r.height, nameLines: document.getElementById('hide-ip-name').getClientRects().length };
			})()`)
			if b.W < 16 || b.H < 16 || b.NameLines != 1 {
				t.Errorf("phone=%v: Hide my IP box %.1f×%.1f px, its name on %d lines; want at least 16 px and one line", small, b.W, b.H, b.NameLines)
			}
			u.close()
		}
	})

	t.Run("two people alone meet again after next, never after a report", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		for _, u := range []*user{a, b} {
			u.recordWaiting()
		}
		a.start(startOptions{text: true})
		a.waitText("stage", "Looking for a stranger")
		a.waitFor(`document.getElementById('next').getAttribute('aria-disabled') === 'true'`, "Next to be unavailable while waiting")
		a.waitFor(`getComputedStyle(document.querySelector('#waiting .looking span')).animationName === 'looking'`, "the waiting animation")
		a.waitText("waiting-elapsed", `waited \d+:\d\d`)
		if tip := a.text("waiting-tip"); !strings.HasPrefix(tip, "Tip: ") {
			t.Errorf("waiting tip %q", tip)
		}
		// Pressing the unavailable Next sends nothing.
		sent := eval[int](a, `window.__test.msgs.filter(([, m]) => m === '>next').length`)
		a.press("Next")
		b.start(startOptions{text: true})
		for _, u := range []*user{a, b} {
			u.waitFor(`!document.getElementById('chat-input').disabled`, "the match")
			u.waitFor(`document.getElementById('waiting').hidden && !document.getElementById('next').hasAttribute('aria-disabled')`, "Next to be available in the chat")
		}
		if n := eval[int](a, `window.__test.msgs.filter(([, m]) => m === '>next').length`); n != sent {
			t.Errorf("pressing Next while waiting sent %d next messages", n-sent)
		}

		// bob skips; alice was typing: her focus goes to Next, not the body.
		a.typeInto("Message", "hi")
		b.press("Next")
		a.waitText("stage", "Stranger has disconnected")
		a.waitFor(`document.activeElement === document.getElementById('next')`, "the focus on Next after the stranger left")
		b.waitFor(`document.getElementById('next').getAttribute('aria-disabled') === 'true'`, "bob's Next to be unavailable while he waits")
		// alice presses Next from the keyboard. Nobody else is there: after
		// their wait the two meet again, and meanwhile both saw that two
		// wait for a text chat.
		a.key("\r")
		a.waitText("stage", "Looking for a stranger")
		for _, u := range []*user{a, b} {
			u.waitFor(`!document.getElementById('chat-input').disabled`, "meeting the same stranger again")
			if seen := eval[[]string](u, `window.__seenWaiting`); !slicesMatch(seen, `^2 waiting for text chat`) {
				t.Errorf("%s: waiting counts shown %q, want one saying 2 wait for text chat", u.name, seen)
			}
		}
		a.typeInto("Message", " again\n") // after the "hi" she had typed
		b.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: hi again')`, "alice's message")

		// After a report, they stay apart however long they wait.
		b.press("Report")
		b.press("Send report")
		a.waitText("stage", "Stranger has disconnected")
		a.waitFor(`document.activeElement === document.getElementById('next')`, "the focus on Next after the stranger left")
		a.press("Next")
		b.press("Next")
		for _, u := range []*user{a, b} {
			// Three interest waits on the page's clock (the rematch above
			// took one).
			u.waitFor(`/waited 0:(09|[1-5]\d)/.test(document.getElementById('waiting-elapsed').textContent)`, "a long wait")
			if eval[bool](u, `!document.getElementById('chat-input').disabled || document.getElementById('waiting').hidden`) {
				t.Fatalf("%s: paired again with the stranger reported\n%s", u.name, u.describe())
			}
		}
		c := st.newUser(t, "carol")
		c.start(startOptions{text: true})
		c.waitFor(`!document.getElementById('chat-input').disabled`, "carol's match")
	})

	t.Run("reduced motion and the connection chip", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.emulate(&emulation.MediaFeature{Name: "prefers-reduced-motion", Value: "reduce"})
		a.start(startOptions{})
		a.waitText("stage", "Looking for a stranger")
		if got := eval[string](a, `getComputedStyle(document.querySelector('#waiting .looking span')).animationName`); got != "none" {
			t.Errorf("with reduced motion the waiting dots still move (animation %q)", got)
		}
		b.start(startOptions{})
		for _, u := range []*user{a, b} {
			u.seesStranger()
			u.waitText("connection", `^Direct \(UDP\)`)
		}
		// Only the path is a live region; the round-trip time beside it is
		// rewritten often and is not. Count rewrites of the live region from
		// now on.
		type live struct {
			Live []string
			Path string
		}
		l := eval[live](a, `(() => {
		  const c = document.getElementById('connection');
		  window.__pathChanges = 0;
		  new MutationObserver(() => window.__pathChanges++).observe(document.getElementById('connection-path'), { childList: true, characterData: true, subtree: true });
		  return { live: [...c.querySelectorAll('[aria-live]'), ...(c.hasAttribute('aria-live') ? [c] : [])].map((e) => e.id),
		    path: document.getElementById('connection-path').textContent };
		})()`)
		if strings.Join(l.Live, ",") != "connection-path" || strings.Contains(l.Path, "ms") {
			t.Errorf("connection live regions %q with text %q: want only the path, without the round-trip time", l.Live, l.Path)
		}
		a.waitText("connection-rtt", `\d+ ms`)
		// The page measures every second: over a few seconds of the call
		// (the page's clock) the live region is never rewritten.
		a.waitFor(`(window.__t0 ??= performance.now()) < performance.now() - 3000`, "three seconds of the call")
		if n := eval[int](a, `window.__pathChanges`); n != 0 {
			t.Errorf("the connection path live region was rewritten %d times while the path stayed %q", n, l.Path)
		}
	})
}

// newStageWith is newStage with extra server settings.
func newStageWith(tb testing.TB, env ...string) *stage {
	tb.Helper()
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(ephemeralPort), 0o644); err != nil {
		tb.Fatalf("setting the namespace's ephemeral ports: %v", err)
	}
	return &stage{
		tb:           tb,
		srv:          startServer(tb, env...),
		root:         startChromium(tb, true),
		base:         "http://127.0.0.1:" + httpPort,
		insecureBase: "http://" + relayIP + ":" + httpPort,
	}
}

// emulate sets CSS media features for the user's page.
func (u *user) emulate(features ...*emulation.MediaFeature) {
	u.tb.Helper()
	u.do("emulating media features", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: features})
		return err
	}))
}

// recordWaiting keeps, in window.__seenWaiting, every waiting count the
// page shows while its waiting screen is up.
func (u *user) recordWaiting() {
	u.tb.Helper()
	eval[bool](u, `(() => {
	  window.__seenWaiting = [];
	  const note = () => {
	    const w = document.getElementById('waiting'), c = document.getElementById('waiting-count');
	    const t = c.textContent;
	    if (!w.hidden && !c.hidden && window.__seenWaiting.at(-1) !== t) window.__seenWaiting.push(t);
	  };
	  new MutationObserver(note).observe(document.getElementById('stage'), { childList: true, characterData: true, subtree: true, attributes: true });
	  return true;
	})()`)
}

// contrastJS computes the WCAG contrast ratio of an element's text against
// its own background (which must be opaque, as a button's is).
func contrastJS(id string) string {
	return `(() => {
	  const s = getComputedStyle(document.getElementById(` + "'" + id + "'" + `));
	  const rgb = (c) => c.match(/[\d.]+/g).slice(0, 3).map(Number);
	  const lum = (c) => {
	    const [r, g, b] = rgb(c).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
	    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
	  };
	  const a = lum(s.color), b = lum(s.backgroundColor);
	  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
	})()`
}

// slicesMatch reports whether any of ss matches the regular expression re.
func slicesMatch(ss []string, re string) bool {
	r := regexp.MustCompile(re)
	for _, s := range ss {
		if r.MatchString(s) {
			return true
		}
	}
	return false
}
