package web_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// TestBrowserLanguages: the page speaks the browser's language (what it
// sends as Accept-Language), the picker switches it at once, everything
// shown included, and remembers it across a reload; Arabic is laid out
// right to left.
func TestBrowserLanguages(t *testing.T) {
	if !inNamespace() {
		reexec(t, false)
		return
	}
	st := newStage(t)
	cats := readCatalogs(t)
	text := func(lang, key string) string {
		e, ok := cats[lang][key]
		if !ok || e.plural != nil {
			t.Fatalf("%s: no plain text %s in the catalog", lang, key)
		}
		return e.text
	}

	t.Run("follows Accept-Language", func(t *testing.T) {
		u := st.newUser(t, "visitor", withoutSignaling())
		if got := eval[string](u, `document.documentElement.lang`); got != "en" {
			t.Errorf("with Chromium's default (English) the page is in %q", got)
		}
		for _, tt := range []struct{ accept, want string }{
			// Chromium adds the q-values to the header itself.
			{"es-MX,es,en", "es"},
			{"pt-PT,pt", "pt-BR"},
			{"pt-BR", "pt-BR"},
			{"nl-NL,nl,de", "de"}, // the first we have
			{"fr-CA", "fr"},
			{"ru", "ru"},
			{"tr-TR", "tr"},
			{"ar-EG,ar", "ar"},
			{"ja-JP,ja", "en"}, // none we have
			{"en-GB,en,de", "en"},
		} {
			u.acceptLanguage(tt.accept)
			u.reload()
			u.waitFor(fmt.Sprintf(`document.documentElement.lang === %q`, tt.want), "the page in "+tt.want+" for "+tt.accept)
			type seen struct {
				First, Start, Picker, Dir string
			}
			s := eval[seen](u, `({ first: navigator.languages[0], start: document.getElementById('start').textContent,
			  picker: document.getElementById('language').value, dir: document.dir })`)
			if first := strings.Split(tt.accept, ",")[0]; s.First != first {
				t.Errorf("Accept-Language %s: the page sees navigator.languages starting %q", tt.accept, s.First)
			}
			if want := text(tt.want, "button.start"); s.Start != want {
				t.Errorf("Accept-Language %s: Start says %q, want %q", tt.accept, s.Start, want)
			}
			if s.Picker != tt.want {
				t.Errorf("Accept-Language %s: the picker shows %q", tt.accept, s.Picker)
			}
			if wantDir := map[bool]string{true: "rtl", false: "ltr"}[tt.want == "ar"]; s.Dir != wantDir {
				t.Errorf("Accept-Language %s: dir %q, want %q", tt.accept, s.Dir, wantDir)
			}
		}
	})

	t.Run("the picker switches at once and is remembered", func(t *testing.T) {
		st.requireSignaling(t)
		u := st.newUser(t, "visitor")
		u.start(startOptions{text: true})
		u.waitText("stage", text("en", "stage.looking"))
		eval[bool](u, `window.__samePage = true`)

		// Every language, in turn: all that is shown changes at once, the
		// text set from code (stage, waiting count, key hint) too, and no
		// message is missing (a key shown as is).
		for _, lang := range append(requiredLanguages[1:], "en") {
			u.pick(lang)
			u.waitFor(fmt.Sprintf(`document.documentElement.lang === %q`, lang), "the page in "+lang)
			type seen struct {
				Stage, Next, Hint, Label, Online string
				Missing                          []string
				Same                             bool
			}
			s := eval[seen](u, `({ stage: document.getElementById('stage-text').textContent,
			  next: document.getElementById('next').textContent,
			  hint: document.getElementById('key-hint').textContent,
			  label: document.querySelector('label[for=language]').textContent,
			  online: document.getElementById('online-count').textContent,
			  missing: [...document.querySelectorAll('[data-i18n]')].filter((e) => e.textContent === e.dataset.i18n || e.textContent.trim() === '').map((e) => e.dataset.i18n),
			  same: window.__samePage === true })`)
			if !s.Same {
				t.Fatalf("%s: the page was reloaded to switch", lang)
			}
			for _, c := range []struct{ got, key string }{
				{s.Stage, "stage.looking"}, {s.Next, "button.next"}, {s.Hint, "keys.escTwice"}, {s.Label, "language.label"},
			} {
				if want := text(lang, c.key); c.got != want {
					t.Errorf("%s: %s shows %q, want %q", lang, c.key, c.got, want)
				}
			}
			if !strings.ContainsAny(s.Online, "0123456789") {
				t.Errorf("%s: online count %q", lang, s.Online)
			}
			if len(s.Missing) > 0 {
				t.Errorf("%s: messages shown as their keys or empty: %q", lang, s.Missing)
			}
		}
		// Back in English the controls have the names tests and screen
		// readers know.
		u.do("finding Stop by its English name", chromedp.WaitVisible("Stop", byRole("button", "Stop")))
		u.press("Stop")

		// The choice beats the browser's languages, after a reload too.
		u.acceptLanguage("de-DE,de")
		u.pick("fr")
		u.waitFor(`document.documentElement.lang === 'fr'`, "French")
		u.reload()
		u.waitFor(`document.getElementById('language').value === 'fr'`, "the picker on French after a reload")
		if got := eval[string](u, `document.documentElement.lang + ' ' + document.getElementById('start').textContent`); got != "fr "+text("fr", "button.start") {
			t.Errorf("after a reload (Accept-Language German) the page shows %q, want French", got)
		}
	})

	t.Run("right to left", func(t *testing.T) {
		st.requireSignaling(t)
		u := st.newUser(t, "visitor")
		type layout struct {
			Dir, Direction                                  string
			Width, Brand, Picker, Radio, Label, Media, Talk float64
		}
		// Centres of boxes: the brand, the picker, a radio button and its
		// label's text on the start page; the video column and the chat
		// column in a chat.
		measure := func() layout {
			return eval[layout](u, `(() => {
			  const mid = (e) => { const r = e.getBoundingClientRect(); return r.width ? r.left + r.width / 2 : -1; };
			  const radio = document.querySelector('input[name=mode][value=text]');
			  return { dir: document.dir, direction: getComputedStyle(document.body).direction, width: innerWidth,
			    brand: mid(document.querySelector('.brand')), picker: mid(document.getElementById('language')),
			    radio: mid(radio), label: mid(radio.nextElementSibling),
			    media: mid(document.getElementById('media')), talk: mid(document.querySelector('.talk')) };
			})()`)
		}
		ltr := measure()
		if ltr.Dir != "ltr" || ltr.Brand > ltr.Width/2 || ltr.Picker < ltr.Width/2 || ltr.Radio > ltr.Label {
			t.Errorf("English is not laid out left to right: %+v", ltr)
		}
		u.pick("ar")
		u.waitFor(`document.documentElement.lang === 'ar'`, "Arabic")
		rtl := measure()
		if rtl.Dir != "rtl" || rtl.Direction != "rtl" {
			t.Errorf("Arabic: dir %q, direction %q; want rtl", rtl.Dir, rtl.Direction)
		}
		if rtl.Brand < rtl.Width/2 {
			t.Errorf("Arabic: the brand is on the left (centre at %.0f of %.0f px)", rtl.Brand, rtl.Width)
		}
		if rtl.Picker > rtl.Width/2 {
			t.Errorf("Arabic: the language picker is on the right (centre at %.0f of %.0f px)", rtl.Picker, rtl.Width)
		}
		if rtl.Radio < rtl.Label {
			t.Errorf("Arabic: a radio button is left of its label (%.0f, label %.0f)", rtl.Radio, rtl.Label)
		}

		// A video chat, waiting: the video on the right, the chat on the
		// left (the other way round in English).
		u.do("pressing Start", chromedp.Click("start", byRole("button", text("ar", "button.start"))))
		u.waitText("stage", text("ar", "stage.looking"))
		rtl = measure()
		if rtl.Media < rtl.Width/2 || rtl.Talk > rtl.Width/2 {
			t.Errorf("Arabic: the video column is centred at %.0f and the chat at %.0f of %.0f px; want the video on the right", rtl.Media, rtl.Talk, rtl.Width)
		}
		if os.Getenv(envScreenshots) == "all" {
			u.screenshot(u.ctx, "arabic")
		}
		u.pick("en")
		u.waitFor(`document.documentElement.lang === 'en'`, "English")
		if ltr = measure(); ltr.Dir != "ltr" || ltr.Media > ltr.Width/2 || ltr.Talk < ltr.Width/2 {
			t.Errorf("English: dir %q, the video column centred at %.0f and the chat at %.0f of %.0f px; want the video on the left", ltr.Dir, ltr.Media, ltr.Talk, ltr.Width)
		}
		u.press("Stop")
	})
}

// acceptLanguage makes the user's browser ask for these languages (the
// Accept-Language header and navigator.languages) from now on.
func (u *user) acceptLanguage(accept string) {
	u.tb.Helper()
	u.do("setting Accept-Language", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		v, err := chromedp.CallBrowser(ctx, browser.GetVersion, cdp.Empty{})
		if err != nil {
			return err
		}
		_, err = cdp.Call(ctx, t, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{
			UserAgent: v.UserAgent, AcceptLanguage: accept,
		})
		return err
	}))
}

// reload loads the page again and waits for it to be in a language.
func (u *user) reload() {
	u.tb.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	if err := navigate(ctx, u.st.base+"/"); err != nil {
		u.tb.Fatalf("%s: reloading: %v", u.name, err)
	}
	u.waitFor(`document.getElementById('language').options.length > 0`, "the language picker")
}

// pick chooses a language in the picker, found by its name ("Language" in
// English, in the page's language otherwise), as a user would.
func (u *user) pick(lang string) {
	u.tb.Helper()
	name := eval[string](u, `document.querySelector('label[for=language]').textContent`)
	u.do("focusing the language picker", chromedp.Focus(name, byRole("combobox", name)))
	picked := eval[bool](u, fmt.Sprintf(`(() => {
	  const s = document.activeElement;
	  if (s.id !== 'language') return false;
	  s.value = %q;
	  s.dispatchEvent(new Event('input', { bubbles: true }));
	  s.dispatchEvent(new Event('change', { bubbles: true }));
	  return true;
	})()`, lang))
	if !picked {
		u.tb.Fatalf("%s: the focus is not on the language picker", u.name)
	}
}
