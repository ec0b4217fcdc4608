package web_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/emulation"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// axePath is axe-core's browser build, installed by npm ci --prefix
// web/static (a pinned dev dependency). The tests inject it through CDP; the
// product never serves it.
const axePath = "static/node_modules/axe-core/axe.min.js"

var (
	axeOnce   sync.Once
	axeSource string
	axeErr    error
)

// requireAxe returns axe-core's source, or skips (fails with
// STRANGERS_TEST_REQUIRE=all) when it is not installed.
func requireAxe(tb testing.TB) string {
	tb.Helper()
	axeOnce.Do(func() {
		var b []byte
		b, axeErr = os.ReadFile(axePath)
		axeSource = string(b)
	})
	if axeErr != nil {
		testsupport.Missing(tb, "axe-core is not installed (%v): run npm ci --prefix web/static", axeErr)
	}
	return axeSource
}

// axeViolation is one rule axe-core found broken, with where.
type axeViolation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"`
}

func (v axeViolation) String() string {
	return fmt.Sprintf("%s [%s] %s at %s", v.ID, v.Impact, v.Help, strings.Join(v.Targets, ", "))
}

// axeResult is what axeRunJS returns.
type axeResult struct {
	Version    string         `json:"version"`
	Violations []axeViolation `json:"violations"`
	Passes     int            `json:"passes"`
	Incomplete []string       `json:"incomplete"` // rules axe could not decide (e.g. contrast over video)
}

const axeRunJS = `(async () => {
  const r = await axe.run(document, { resultTypes: ['violations'] });
  return { version: axe.version, passes: r.passes.length, incomplete: r.incomplete.map((v) => v.id),
    violations: r.violations.map((v) => ({ id: v.id, impact: v.impact || '', help: v.help,
      targets: v.nodes.map((n) => n.target.join(' ')) })) };
})()`

// axe runs axe-core in the user's page as it is now, in the light and the
// dark color scheme, and fails the test on any serious or critical
// violation; minor and moderate ones are logged.
func (u *user) axe(state string) {
	u.tb.Helper()
	src := requireAxe(u.tb)
	if !eval[bool](u, `typeof window.axe === 'object'`) {
		eval[bool](u, src+"\n;true")
	}
	for _, scheme := range []string{"light", "dark"} {
		u.emulate(&emulation.MediaFeature{Name: "prefers-color-scheme", Value: scheme})
		res := eval[axeResult](u, axeRunJS)
		if res.Passes == 0 {
			u.tb.Fatalf("%s, %s, %s: axe-core found nothing to check (%d rules passed)", u.name, state, scheme, res.Passes)
		}
		got := res.Violations
		for _, v := range got {
			if v.Impact == "serious" || v.Impact == "critical" {
				u.tb.Errorf("%s, %s, %s: %s", u.name, state, scheme, v)
			} else {
				u.tb.Logf("%s, %s, %s (not failing): %s", u.name, state, scheme, v)
			}
		}
		u.tb.Logf("axe-core %s: %s, %s, %s: %d violations, %d rules passed, %d to review by hand (%s)",
			res.Version, u.name, state, scheme, len(got), res.Passes, len(res.Incomplete), strings.Join(res.Incomplete, ", "))
	}
	u.emulate()
}

// TestBrowserAxe runs axe-core in the page in every state a user meets:
// landing, the camera error, waiting, a video call (also on a phone), the
// report dialog, a text chat, and after the stranger left; in light and
// dark.
func TestBrowserAxe(t *testing.T) {
	if !inNamespace() {
		requireAxe(t)
		reexec(t, false)
		return
	}
	requireAxe(t)
	st := newStage(t)

	t.Run("landing and error", func(t *testing.T) {
		u := st.newUser(t, "visitor")
		// First, that it finds what it should: a button without a name.
		eval[bool](u, requireAxe(t)+"\n;true")
		res := eval[axeResult](u, `(() => {
		  const b = document.createElement('button');
		  b.id = 'nameless';
		  document.querySelector('main').append(b);
		  return (`+axeRunJS+`).finally(() => b.remove());
		})()`)
		if !slices.ContainsFunc(res.Violations, func(v axeViolation) bool { return v.ID == "button-name" && v.Impact == "critical" }) {
			t.Fatalf("axe-core did not report a button without a name: %v", res.Violations)
		}
		u.axe("landing")
		u.use(phonePortrait)
		u.axe("landing on a phone")
		// Over plain HTTP the camera may not be used: the error shows.
		e := st.newUser(t, "insecure", from(st.insecureBase), withoutSignaling())
		e.start(startOptions{})
		e.waitText("start-error", "HTTPS")
		e.axe("camera error")
	})

	t.Run("video call and report", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		b.use(phonePortrait)
		a.start(startOptions{})
		a.waitText("stage", "Looking for a stranger")
		a.waitFor(`!document.getElementById('waiting-count').hidden`, "the waiting count")
		a.axe("waiting")
		b.start(startOptions{})
		a.seesStranger()
		b.seesStranger()
		a.typeInto("Message", "hello\n")
		b.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: hello')`, "the message")
		a.axe("video call")
		b.axe("video call on a phone")
		a.press("Report")
		a.waitFor(`document.getElementById('report-dialog').open`, "the report dialog")
		a.axe("report dialog")
		a.press("Cancel")
		b.press("Next")
		a.waitText("stage", "Stranger has disconnected")
		a.axe("stranger left")
	})

	t.Run("text chat", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		b.use(phonePortrait)
		a.start(startOptions{text: true, interests: []string{"chess"}})
		b.start(startOptions{text: true, interests: []string{"chess"}})
		for _, u := range []*user{a, b} {
			u.waitFor(`!document.getElementById('chat-input').disabled`, "the match")
		}
		a.typeInto("Message", "e4\n")
		b.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: e4')`, "the message")
		a.axe("text chat")
		b.axe("text chat on a phone")
	})
}
