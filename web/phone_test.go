package web_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// envShots, when set, is a directory where TestBrowserPhone saves what each
// screen size looks like in each color scheme (for a reviewer to look at).
const envShots = "STRANGERS_WEB_SHOTS"

// screen is a device the page is looked at on.
type screen struct {
	name   string
	w, h   int64
	scale  float64
	mobile bool // a touch screen, with the mobile viewport
}

var (
	phonePortrait  = screen{"phone-390x844", 390, 844, 3, true}
	phoneLandscape = screen{"phone-844x390", 844, 390, 3, true}
	tabletPortrait = screen{"tablet-820x1180", 820, 1180, 2, true}
	laptop         = screen{"desktop-1366x768", 1366, 768, 1, false}
	laptopSmall    = screen{"desktop-1280x720", 1280, 720, 1, false}
)

// use emulates the screen in the user's tab (the page sees a resize, as
// when a phone is turned).
func (u *user) use(s screen) {
	u.tb.Helper()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(s.scale)}
	if s.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
		if s.w > s.h {
			opts = append(opts, chromedp.EmulateLandscape)
		} else {
			opts = append(opts, chromedp.EmulatePortrait)
		}
	}
	u.do("emulating "+s.name, chromedp.EmulateViewport(s.w, s.h, opts...))
	if !s.mobile {
		// EmulateViewport turns touch on or off only when asked.
		u.do("no touch", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, emulation.SetTouchEmulationEnabled, emulation.SetTouchEmulationEnabledParams{Enabled: false})
			return err
		}))
	}
	u.waitFor(fmt.Sprintf(`innerWidth === %d && innerHeight === %d`, s.w, s.h), "the page to see "+s.name)
}

// layout is where the page put what matters, in CSS pixels of the viewport.
type layout struct {
	VW, VH float64
	// The stranger's video element, and the part of it its picture covers
	// (object-fit), both clipped to the viewport.
	Video, Picture rect
	Preview        rect
	Talk           rect // the chat log
	// Whether each button is on the screen, not covered, with nothing
	// scrolled: its centre hits it.
	Reachable map[string]bool
	Scrolled  bool
}

type rect struct{ X, Y, W, H float64 }

func (r rect) area() float64 { return r.W * r.H }

const layoutJS = `(() => {
  const vw = innerWidth, vh = innerHeight;
  const clip = (r) => {
    const x = Math.max(0, r.left), y = Math.max(0, r.top);
    const w = Math.max(0, Math.min(vw, r.right) - x), h = Math.max(0, Math.min(vh, r.bottom) - y);
    return { x, y, w, h };
  };
  const v = document.getElementById('remote-video');
  const r = v.getBoundingClientRect();
  // The picture inside the element: contain letterboxes, cover fills.
  let pic = { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
  if (v.videoWidth && getComputedStyle(v).objectFit === 'contain') {
    const s = Math.min(r.width / v.videoWidth, r.height / v.videoHeight);
    const w = v.videoWidth * s, h = v.videoHeight * s;
    pic = { left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, right: 0, bottom: 0 };
    pic.right = pic.left + w; pic.bottom = pic.top + h;
  }
  const reachable = {};
  for (const id of ['start', 'next', 'stop']) {
    const b = document.getElementById(id);
    const br = b.getBoundingClientRect();
    const x = br.left + br.width / 2, y = br.top + br.height / 2;
    reachable[id] = br.width > 0 && x >= 0 && y >= 0 && x < vw && y < vh && b.contains(document.elementFromPoint(x, y));
  }
  const main = document.querySelector('main');
  return { vw, vh, video: clip(r), picture: clip(pic),
    preview: (() => { const p = document.getElementById('local').getBoundingClientRect(); return { x: p.left, y: p.top, w: p.width, h: p.height }; })(),
    talk: clip(document.getElementById('chat-log').getBoundingClientRect()),
    reachable, scrolled: scrollY !== 0 || scrollX !== 0 || main.scrollTop !== 0 };
})()`

func (u *user) layout() layout {
	u.tb.Helper()
	return eval[layout](u, layoutJS)
}

// inside reports whether the whole rectangle lies on the screen.
func (l layout) inside(r rect) bool {
	return r.W > 0 && r.H > 0 && r.X >= 0 && r.Y >= 0 && r.X+r.W <= l.VW+0.5 && r.Y+r.H <= l.VH+0.5
}

// shot saves the user's screen under $STRANGERS_WEB_SHOTS, if set.
func (u *user) shot(label string) {
	u.tb.Helper()
	dir := os.Getenv(envShots)
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		u.tb.Errorf("%s: screenshot: %v", u.name, err)
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		u.tb.Fatal(err)
	}
	path := filepath.Join(dir, unsafeName.ReplaceAllString(label, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		u.tb.Fatal(err)
	}
}

// shotSchemes saves the screen in the light and the dark color scheme.
func (u *user) shotSchemes(label string) {
	u.tb.Helper()
	if os.Getenv(envShots) == "" {
		return
	}
	for _, scheme := range []string{"light", "dark"} {
		u.emulate(&emulation.MediaFeature{Name: "prefers-color-scheme", Value: scheme})
		u.shot(label + "-" + scheme)
	}
	u.emulate()
}

// touchDrag drags a finger from (x0, y0) to (x1, y1) in a few moves.
func (u *user) touchDrag(x0, y0, x1, y1 float64) {
	u.tb.Helper()
	const steps = 8
	u.do("touch down", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, input.DispatchTouchEvent, input.DispatchTouchEventParams{
			Type: input.DispatchTouchEventTypeTouchStart, TouchPoints: []*input.TouchPoint{{X: x0, Y: y0}}})
		return err
	}))
	for i := 1; i <= steps; i++ {
		x := x0 + (x1-x0)*float64(i)/steps
		y := y0 + (y1-y0)*float64(i)/steps
		u.do("touch move", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, input.DispatchTouchEvent, input.DispatchTouchEventParams{
				Type: input.DispatchTouchEventTypeTouchMove, TouchPoints: []*input.TouchPoint{{X: x, Y: y}}})
			return err
		}))
	}
	u.do("touch up", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, input.DispatchTouchEvent, input.DispatchTouchEventParams{
			Type: input.DispatchTouchEventTypeTouchEnd, TouchPoints: []*input.TouchPoint{}})
		return err
	}))
}

// TestBrowserPhone looks at the page on a phone (390×844, upright and
// sideways, touch, device pixel ratio 3), a tablet held upright and two
// laptop screens, in a video call matched by the real server: the
// stranger's video is big, our preview stays on the screen wherever it is
// dragged, and Start, Next and Stop can be reached without scrolling. It
// also checks the cues that draw the user back to a hidden tab, and the
// fullscreen and picture-in-picture buttons.
func TestBrowserPhone(t *testing.T) {
	if !inNamespace() {
		reexec(t, false)
		return
	}
	st := newStage(t)

	t.Run("landing: Start on the screen", func(t *testing.T) {
		u := st.newUser(t, "visitor", withoutSignaling())
		for _, s := range []screen{phonePortrait, phoneLandscape, tabletPortrait, laptop, laptopSmall} {
			u.use(s)
			l := u.layout()
			if !l.Reachable["start"] || l.Scrolled {
				t.Errorf("%s: Start is not on the screen without scrolling (scrolled %v)", s.name, l.Scrolled)
			}
			u.shotSchemes("landing-" + s.name)
		}
	})

	t.Run("video call", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.use(phonePortrait)
		a.start(startOptions{})
		a.waitText("stage", "Looking for a stranger")
		a.shotSchemes("waiting-" + phonePortrait.name)
		b.start(startOptions{})
		a.seesStranger()
		b.seesStranger()

		check := func(s screen) layout {
			t.Helper()
			a.use(s)
			// The layout settles after the resize (the preview is kept
			// inside on the next frame).
			a.waitFor(`new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`, "two frames")
			l := a.layout()
			for _, id := range []string{"next", "stop"} {
				if !l.Reachable[id] || l.Scrolled {
					t.Errorf("%s: %s is not on the screen without scrolling (scrolled %v)", s.name, id, l.Scrolled)
				}
			}
			if !l.inside(l.Preview) {
				t.Errorf("%s: our preview %+v is not wholly on the %v×%v screen", s.name, l.Preview, l.VW, l.VH)
			}
			return l
		}

		step(t, "phone upright: the stranger fills the screen", func(t *testing.T) {
			l := check(phonePortrait)
			if share := l.Picture.area() / (l.VW * l.VH); share < 0.5 {
				t.Errorf("the stranger's picture %+v covers %.0f%% of the screen, want at least half", l.Picture, 100*share)
			}
			if l.Video.W < l.VW-1 {
				t.Errorf("the stranger's video is %.0f px wide on a %.0f px screen", l.Video.W, l.VW)
			}
			if l.Preview.area() > 0.1*l.VW*l.VH || l.Preview.W < 60 {
				t.Errorf("our preview %+v: want a small corner picture", l.Preview)
			}
			a.shotSchemes("call-" + phonePortrait.name)
		})

		step(t, "the preview is dragged and stays on the screen", func(t *testing.T) {
			l := a.layout()
			cx, cy := l.Preview.X+l.Preview.W/2, l.Preview.Y+l.Preview.H/2
			// Towards the left edge and far below the screen.
			a.touchDrag(cx, cy, 10, l.VH+400)
			m := a.layout()
			if !m.inside(m.Preview) {
				t.Errorf("after a drag off the screen our preview is at %+v on a %v×%v screen", m.Preview, m.VW, m.VH)
			}
			if m.Preview.X > l.Preview.X-100 {
				t.Errorf("the preview did not follow the finger: from %+v to %+v", l.Preview, m.Preview)
			}
			// It stays over the stranger's video, off the buttons.
			for _, id := range []string{"next", "stop"} {
				if !m.Reachable[id] {
					t.Errorf("after the drag, %s is covered", id)
				}
			}
			a.shot("call-" + phonePortrait.name + "-preview-dragged")
			mirrored := `getComputedStyle(document.getElementById('local-video')).transform !== 'none'`
			if !eval[bool](a, mirrored) {
				t.Error("our preview is not mirrored at first")
			}
			a.press("Mirror")
			a.waitFor("!("+mirrored+")", "the preview unmirrored")
			a.press("Mirror")
			a.waitFor(mirrored, "the preview mirrored again")
		})

		step(t, "phone sideways: the stranger takes the height", func(t *testing.T) {
			l := check(phoneLandscape)
			if l.Picture.H < 0.75*l.VH {
				t.Errorf("the stranger's picture %+v is %.0f of %.0f px high, want most of the height", l.Picture, l.Picture.H, l.VH)
			}
			if l.Talk.W == 0 || l.Talk.X < l.Video.X+l.Video.W-1 {
				t.Errorf("the chat %+v is not beside the video %+v", l.Talk, l.Video)
			}
			a.shotSchemes("call-" + phoneLandscape.name)
		})

		step(t, "tablet upright: the phone layout", func(t *testing.T) {
			l := check(tabletPortrait)
			if l.Video.W < l.VW-1 || l.Picture.area() < 0.5*l.VW*l.VH {
				t.Errorf("the stranger's video %+v (picture %+v) on the %v×%v tablet: want the full width and half the screen", l.Video, l.Picture, l.VW, l.VH)
			}
			a.shotSchemes("call-" + tabletPortrait.name)
		})

		for _, s := range []screen{laptop, laptopSmall} {
			step(t, s.name+": two columns", func(t *testing.T) {
				l := check(s)
				if l.Talk.X < l.Video.X+l.Video.W || l.Video.W < 0.5*l.VW {
					t.Errorf("video %+v, chat %+v: want the video on the left, at least half the width, the chat beside it", l.Video, l.Talk)
				}
				a.shotSchemes("call-" + s.name)
			})
		}

		step(t, "fullscreen and picture in picture", func(t *testing.T) {
			a.use(phonePortrait)
			a.press("Fullscreen")
			a.waitFor(`document.fullscreenElement === document.getElementById('chat')`, "the call view in fullscreen")
			a.waitFor(`document.getElementById('fullscreen').getAttribute('aria-pressed') === 'true'`, "the button pressed")
			a.press("Fullscreen")
			a.waitFor(`document.fullscreenElement === null`, "fullscreen to end")
			a.waitFor(`!document.getElementById('pip').disabled`, "picture in picture to be available")
			a.press("Picture in picture")
			a.waitFor(`document.pictureInPictureElement === document.getElementById('remote-video')`, "the stranger in picture in picture")
			a.press("Picture in picture")
			a.waitFor(`document.pictureInPictureElement === null`, "picture in picture to end")
		})
	})

	t.Run("title and sound while the tab is hidden", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.start(startOptions{text: true})
		a.waitText("stage", "Looking for a stranger")
		// The page is told its tab went to the background (headless tabs
		// are never hidden): document.hidden and visibilityState say so,
		// and visibilitychange fires. Cues played and oscillators started
		// are counted.
		eval[bool](a, `(() => {
		  let hidden = false;
		  Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
		  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
		  window.__setHidden = (h) => { hidden = h; document.dispatchEvent(new Event('visibilitychange')); };
		  window.__cues = [];
		  addEventListener('strangers:cue', (e) => window.__cues.push(e.detail));
		  window.__oscillators = 0;
		  const start = OscillatorNode.prototype.start;
		  OscillatorNode.prototype.start = function (...a) { window.__oscillators++; return start.apply(this, a); };
		  window.__setHidden(true);
		  return true;
		})()`)
		b.start(startOptions{text: true})
		a.waitFor(`document.title === 'Stranger found'`, "the title to say a stranger was found")
		a.waitFor(`window.__cues.join() === 'match'`, "the match sound")
		b.waitFor(`!document.getElementById('chat-input').disabled`, "bob's match")
		b.typeInto("Message", "one\n")
		b.typeInto("Message", "two\n")
		a.waitFor(`document.title === '(2) Stranger found'`, "the title to count two unread messages")
		a.waitFor(`window.__cues.join() === 'match,message,message'`, "a sound for each message")
		if n := eval[int](a, `window.__oscillators`); n < 3 {
			t.Errorf("%d oscillators started for three cues", n)
		}
		if state := eval[string](a, `new AudioContext().state`); state == "" {
			t.Error("no AudioContext")
		}
		eval[bool](a, `window.__setHidden(false), true`)
		a.waitFor(`document.title === 'Strangers'`, "the title back when the tab is seen")

		// Muted, the title still counts but nothing plays; the choice is
		// remembered.
		a.press("Sound alerts")
		a.waitFor(`document.getElementById('sound').getAttribute('aria-pressed') === 'false' && localStorage.getItem('strangers.sound') === 'off'`, "sound off, remembered")
		eval[bool](a, `window.__setHidden(true), true`)
		b.typeInto("Message", "three\n")
		a.waitFor(`document.title === '(1) Strangers'`, "the unread count")
		if cues := eval[string](a, `window.__cues.join()`); cues != "match,message,message" {
			t.Errorf("cues %q after muting, want no new one", cues)
		}
		// While the tab is seen, nothing changes.
		eval[bool](a, `window.__setHidden(false), true`)
		a.press("Sound alerts")
		b.typeInto("Message", "four\n")
		a.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: four')`, "the message")
		if got := eval[string](a, `document.title + ' ' + window.__cues.join()`); got != "Strangers match,message,message" {
			t.Errorf("with the tab visible: title and cues %q, want no change", got)
		}
		a.do("reloading", chromedp.Reload())
		a.waitFor(`document.getElementById('sound')?.getAttribute('aria-pressed') === 'true'`, "sound on after a reload")
	})

	t.Run("installable", func(t *testing.T) {
		u := st.newUser(t, "visitor", withoutSignaling())
		type reg struct {
			Scope   string
			Active  bool
			Icons   int
			Display string
		}
		r := eval[reg](u, `(async () => {
		  const reg = await navigator.serviceWorker.ready;
		  const m = await (await fetch(document.querySelector('link[rel=manifest]').href)).json();
		  return { scope: reg.scope, active: reg.active !== null, icons: m.icons.length, display: m.display };
		})()`)
		if r.Scope != st.base+"/" || !r.Active {
			t.Errorf("service worker: scope %q, active %v; want %q, active", r.Scope, r.Active, st.base+"/")
		}
		if r.Icons < 3 || r.Display != "standalone" {
			t.Errorf("manifest: %d icons, display %q", r.Icons, r.Display)
		}
		// Once it controls the page, the page still loads from the network
		// (a new deploy shows at once) and /ws is never its business.
		u.do("reloading", chromedp.Reload())
		u.waitFor(`navigator.serviceWorker.controller !== null`, "the worker to control the page")
		u.waitFor(`/^\d/.test(document.getElementById('online-count').textContent)`, "the WebSocket under the worker")
		if !strings.HasPrefix(eval[string](u, `document.title`), "Strangers") {
			t.Error("the page did not load under its service worker")
		}
	})
}
