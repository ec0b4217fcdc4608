package web_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// behaviourEnv is the server's configuration in TestBrowserBehaviour: a
// resume grace long enough for a drop a test makes last a few seconds on
// a busy machine.
var behaviourEnv = []string{"STRANGERS_RESUME_GRACE=60s"}

// remoteCameraOffShown is true while the camera-off notice covers the
// stranger's video.
const remoteCameraOffShown = `(() => {
  const n = document.getElementById('remote-camera-off'), v = document.getElementById('remote-video');
  if (n.hidden || getComputedStyle(n).display === 'none') return false;
  const a = n.getBoundingClientRect(), b = v.getBoundingClientRect();
  return a.width >= b.width - 1 && a.height >= b.height - 1;
})()`

// seesRole waits until an element with this role and accessible name is
// in the accessibility tree (so shown, and named for screen readers).
func (u *user) seesRole(role, name string) {
	u.tb.Helper()
	u.do(fmt.Sprintf("waiting for the %s %q", role, name), chromedp.WaitReady(name, byRole(role, name)))
}

// unsentJS lists the page's own chat lines with whether each is marked
// as not sent (visibly, in its text, which screen readers read too).
const unsentJS = `[...document.querySelectorAll('[role=log] .msg.you')].map((p) => ({
  text: p.textContent, unsent: p.classList.contains('unsent') && p.textContent.endsWith('(not sent)') }))`

type ownLine struct {
	Text   string
	Unsent bool
}

func (u *user) ownLines() []ownLine {
	u.tb.Helper()
	return eval[[]ownLine](u, unsentJS)
}

func hasLine(lines []ownLine, prefix string, unsent bool) bool {
	return slices.ContainsFunc(lines, func(l ownLine) bool { return strings.HasPrefix(l.Text, prefix) && l.Unsent == unsent })
}

// TestBrowserBehaviour covers what the stranger learns of our camera and
// microphone, the camera preview and device pickers before Start with the
// text-only way on when the camera cannot be used, and chat lines typed
// while the server cannot be reached: sent when the session comes back,
// marked as not sent when a restart lost it, after which the page looks
// for someone new by itself.
func TestBrowserBehaviour(t *testing.T) {
	if !inNamespace() {
		reexec(t, false)
		return
	}
	st := newStageWith(t, behaviourEnv...)

	t.Run("the stranger sees camera off and mic muted from the start", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.start(startOptions{})
		a.waitText("stage", "Looking for a stranger")
		// Both off while she waits: bob must know from the start.
		a.press("Camera off")
		a.press("Mute mic")
		for id, want := range map[string]string{"camera-off": "Camera on", "mute": "Unmute mic"} {
			if got := a.text(id); got != want {
				t.Errorf("#%s says %q, want %q", id, got, want)
			}
		}
		b.start(startOptions{})
		b.seesStranger()
		b.waitFor(remoteCameraOffShown, "the camera-off notice over alice's video")
		if got := b.text("remote-camera-off"); got != "Stranger turned their camera off" {
			t.Errorf("the notice says %q", got)
		}
		b.seesRole("image", "Stranger's microphone is muted")
		if s := a.sending(); s["video"].Enabled || s["audio"].Enabled {
			t.Errorf("alice sends %+v with camera and microphone off; want both disabled", s)
		}
		// And bob's own controls are untouched: his stranger is off, not him.
		if got := b.text("camera-off"); got != "Camera off" {
			t.Errorf("bob's camera button says %q", got)
		}
		a.press("Camera on")
		b.waitFor(`document.getElementById('remote-camera-off').hidden`, "the notice to go when alice's camera is back")
		b.waitFor(fmt.Sprintf(`(%s) >= %d`, brightJS, blackBelow), "alice's picture")
		a.press("Unmute mic")
		b.waitFor(`document.getElementById('remote-muted').hidden`, "the muted sign to go")
		// A new stranger starts from scratch: nothing of alice's state
		// shows over carol's video.
		a.press("Camera off")
		b.waitFor(remoteCameraOffShown, "the notice again")
		c := st.newUser(t, "carol")
		c.start(startOptions{})
		c.waitText("stage", "Looking for a stranger")
		b.press("Next")
		for _, u := range []*user{b, c} {
			u.seesStranger()
		}
		if !eval[bool](b, `document.getElementById('remote-camera-off').hidden && document.getElementById('remote-muted').hidden`) {
			t.Error("bob still sees alice's camera-off or muted state over carol's video")
		}
	})

	t.Run("camera preview and device pickers before Start", func(t *testing.T) {
		st.requireSignaling(t)
		u := st.newUser(t, "alice")
		if n := eval[int](u, `window.__test.gum`); n != 0 {
			t.Fatalf("the page asked for the camera %d times before being asked to", n)
		}
		u.press("Turn on camera")
		u.waitFor(`(() => { const v = document.getElementById('preview-video'); return v.srcObject !== null && v.videoWidth > 0 && !v.paused; })()`, "the preview to play")
		u.seesRole("combobox", "Camera")
		u.seesRole("combobox", "Microphone")
		type picker struct {
			Devices, Options int
			Selected, InUse  string
		}
		pickers := eval[map[string]picker](u, `(async () => {
		  const all = await navigator.mediaDevices.enumerateDevices();
		  const s = document.getElementById('preview-video').srcObject;
		  const one = (id, kind, track) => { const sel = document.getElementById(id);
		    return { devices: all.filter((d) => d.kind === kind).length, options: sel.options.length, selected: sel.value, inUse: track ? track.getSettings().deviceId : '' }; };
		  return { camera: one('preview-camera', 'videoinput', s.getVideoTracks()[0]), mic: one('preview-mic', 'audioinput', s.getAudioTracks()[0]) };
		})()`)
		for kind, p := range pickers {
			if p.Devices == 0 || p.Options != p.Devices || p.Selected != p.InUse {
				t.Errorf("%s picker: %d options for %d devices, %q selected while %q is in use", kind, p.Options, p.Devices, p.Selected, p.InUse)
			}
		}
		// Another camera (the third fake one: the second makes depth
		// frames), chosen in the picker, replaces the preview's.
		before := eval[string](u, `document.getElementById('preview-video').srcObject.getVideoTracks()[0].id`)
		choice := eval[string](u, `(async () => { const cams = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
		  const sel = document.getElementById('preview-camera');
		  return (cams.find((d) => d.deviceId !== sel.value && d.deviceId !== 'default' && d.label !== 'fake_device_1') || cams[0]).deviceId; })()`)
		eval[bool](u, fmt.Sprintf(`(() => { const s = document.getElementById('preview-camera'); s.value = %q;
			s.dispatchEvent(new Event('input', { bubbles: true })); s.dispatchEvent(new Event('change', { bubbles: true })); return true; })()`, choice))
		u.waitFor(fmt.Sprintf(`(() => { const t = document.getElementById('preview-video').srcObject.getVideoTracks()[0];
			return t && t.id !== %q && t.readyState === 'live' && t.getSettings().deviceId === %q; })()`, before, choice), "the preview to show the chosen camera")
		u.waitFor(`document.getElementById('preview-video').videoWidth > 0`, "the new camera's picture")
		asked := eval[int](u, `window.__test.gum`)

		// Start uses the camera as it is, and Next keeps it: the page
		// never asks again.
		u.start(startOptions{})
		u.waitText("stage", "Looking for a stranger")
		if !eval[bool](u, `document.getElementById('local-video').srcObject === document.getElementById('preview-video').srcObject || document.getElementById('preview-video').srcObject === null`) {
			t.Error("the call's preview is not the stream the start page opened")
		}
		if got := eval[string](u, `document.getElementById('local-video').srcObject.getVideoTracks()[0].getSettings().deviceId`); got != choice {
			t.Errorf("the call uses camera %q, want the one chosen before Start %q", got, choice)
		}
		v := st.newUser(t, "bob")
		v.start(startOptions{})
		u.seesStranger()
		w := st.newUser(t, "carol")
		w.start(startOptions{})
		w.waitText("stage", "Looking for a stranger")
		u.press("Next")
		u.seesStranger()
		if n := eval[int](u, `window.__test.gum`); n != asked {
			t.Errorf("the page asked for the camera %d more times after Start and Next", n-asked)
		}
		if got := u.sending()["video"].Device; got != choice {
			t.Errorf("after Next the call sends camera %q, want %q", got, choice)
		}
	})

	t.Run("camera denied: the reason stays, text only is one tap away", func(t *testing.T) {
		st.requireSignaling(t)
		u := st.newUser(t, "visitor", denyMedia())
		u.press("Turn on camera")
		u.waitText("start-error", "denied")
		u.seesRole("button", "Continue with text only")
		u.start(startOptions{})
		u.waitText("start-error", "denied")
		shown := `!document.getElementById('landing').hidden && !document.getElementById('start-error').hidden && !document.getElementById('text-fallback').hidden`
		if !eval[bool](u, shown) {
			t.Fatalf("after a refused Start the landing page, the reason and the text-only button are not all shown\n%s", u.describe())
		}
		// Beside Start: the same row.
		if !eval[bool](u, `(() => { const a = document.getElementById('start').getBoundingClientRect(), b = document.getElementById('text-fallback').getBoundingClientRect();
			return Math.abs((a.top + a.bottom) / 2 - (b.top + b.bottom) / 2) < a.height || b.top - a.bottom < 16; })()`) {
			t.Error("the text-only button is not next to Start")
		}
		u.press("Continue with text only")
		u.waitFor(`!document.getElementById('chat').hidden && document.getElementById('chat').dataset.mode === 'text'`, "the chat in text mode")
		u.waitText("stage", "Looking for a stranger")
		if !eval[bool](u, `window.__test.msgs.some(([, m]) => m === '>find')`) {
			t.Error("no find was sent")
		}
		v := st.newUser(t, "bob")
		v.start(startOptions{text: true})
		for _, x := range []*user{u, v} {
			x.waitFor(`!document.getElementById('chat-input').disabled`, "the text chat")
		}
	})

	t.Run("a line typed while the server cannot be reached goes once the session is back", func(t *testing.T) {
		st.requireSignaling(t)
		if _, err := exec.LookPath("nft"); err != nil {
			testsupport.Missing(t, "this test needs the nft command (Debian package nftables)")
		}
		// alice over the veth address (text only needs no secure
		// context), bob over loopback: alice's connections alone can be
		// refused. (localhost would not do: refused over ::1, Chromium
		// tries 127.0.0.1.)
		a := st.newUser(t, "alice", from(st.insecureBase))
		b := st.newUser(t, "bob")
		a.start(startOptions{text: true})
		b.start(startOptions{text: true})
		for _, u := range []*user{a, b} {
			u.waitFor(`!document.getElementById('chat-input').disabled`, "the match")
		}
		a.typeInto("Message", "before\n")
		b.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: before')`, "the first line")

		unblock := refuseServer(t, relayIP)
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		defer cancel()
		// The block may have reset alice's connection already (when her
		// page last sent something); else this ends it.
		if err := killConnections(ctx, relayIP); err != nil {
			t.Logf("%v (already reset by the block)", err)
		}
		a.waitText("server-status", "reconnecting")
		a.typeInto("Message", "while away\n")
		if lines := a.ownLines(); !hasLine(lines, "You: while away", true) || !hasLine(lines, "You: before", false) {
			t.Fatalf("alice's lines %+v: want the one typed while away marked as not sent, and only that one", lines)
		}
		unblock()
		a.waitText("server-status", "^$")
		a.waitFor(`[...document.querySelectorAll('[role=log] .msg.you')].every((p) => !p.classList.contains('unsent'))`, "the line to lose its mark once sent")
		b.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: while away')`, "the line typed while away")
		if w := eval[[]bool](a, `window.__test.welcomes.map((w) => w.resumed)`); len(w) < 2 || !w[len(w)-1] {
			t.Errorf("welcomes resumed=%v: want the session resumed", w)
		}
	})

	t.Run("a server restart mid-call", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.start(startOptions{})
		b.start(startOptions{})
		for _, u := range []*user{a, b} {
			u.seesStranger()
		}
		a.typeInto("Message", "hello\n")
		b.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: hello')`, "the first line")
		for _, u := range []*user{a, b} {
			u.watchText("server-status")
			u.watchText("stage")
			// The log as it was at each change: the next chat, which may
			// begin at once, clears it.
			u.watchText("chat-log")
		}

		// Stopped as SIGTERM stops it, then started again on the same
		// address, as a restart does.
		st.srv.stop(t)
		for _, u := range []*user{a, b} {
			u.waitShown("server-status", "^The server is restarting")
		}
		if got := a.text("server-status"); !strings.HasPrefix(got, "The server is restarting") {
			t.Errorf("while the server is down alice reads %q", got)
		}
		a.typeInto("Message", "anyone there\n")
		if lines := a.ownLines(); !hasLine(lines, "You: anyone there", true) || !hasLine(lines, "You: hello", false) {
			t.Fatalf("alice's lines %+v: want the one typed during the restart marked as not sent, and only that one", lines)
		}
		st.srv = startServer(t, behaviourEnv...)

		for _, u := range []*user{a, b} {
			u.waitFor(`window.__test.welcomes.length >= 2 && window.__test.welcomes.at(-1).session !== window.__test.welcomes[0].session`, "a new session")
			u.waitText("server-status", "^$")
			u.waitShown("chat-log", "The server restarted")
			if strings.Contains(u.text("chat-log"), "lost for too long") {
				t.Errorf("%s: the page says the connection was lost for too long", u.name)
			}
			// Back to waiting by itself: a find after the new welcome,
			// the waiting screen, and (the two being alone) a new call.
			u.waitFor(`(() => { const m = window.__test.msgs.map(([, m]) => m); return m.lastIndexOf('>find') > m.lastIndexOf('<welcome'); })()`, "a find after the restart")
			u.waitShown("stage", "Looking for a stranger")
		}
		for _, u := range []*user{a, b} {
			if m := u.seesStranger(); m.PCs != 2 {
				t.Errorf("%s: %d calls, want a new one after the restart", u.name, m.PCs)
			}
		}
		// When the page said the server had restarted (with a new
		// session, so the line can never go), the line was still marked.
		a.waitShown("chat-log", `You: anyone there \(not sent\)[^]*The server restarted`)
		if strings.Contains(b.text("chat-log"), "anyone there") {
			t.Error("bob got the line typed while the server was down")
		}
		// The new chat works.
		a.typeInto("Message", "back\n")
		b.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: back')`, "a line in the new chat")
	})
}

// refuseServer makes new and existing TCP connections to the server's port
// at the IPv4 address addr fail (reset) until the returned function or the
// test's end lifts it.
func refuseServer(tb testing.TB, addr string) func() {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	rules := `table inet strangers_refuse {
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr ` + addr + ` tcp dport ` + httpPort + ` reject with tcp reset
  }
}
`
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("nft: %v: %s", err, out)
	}
	lifted := false
	lift := func() {
		if lifted {
			return
		}
		lifted = true
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "nft", "delete", "table", "inet", "strangers_refuse").CombinedOutput(); err != nil {
			tb.Errorf("nft delete: %v: %s", err, out)
		}
	}
	tb.Cleanup(lift)
	return lift
}
