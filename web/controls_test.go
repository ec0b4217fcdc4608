package web_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// senderJS describes what the newest call sends: for each kind, the track
// on its sender.
const senderJS = `(() => {
  const pc = window.__test.calls().at(-1);
  const out = {};
  for (const s of pc.getSenders()) {
    if (s.track) out[s.track.kind] = { id: s.track.id, enabled: s.track.enabled, state: s.track.readyState, device: s.track.getSettings().deviceId || '' };
  }
  return out;
})()`

type sentTrack struct {
	ID      string `json:"id"`
	Enabled bool   `json:"enabled"`
	State   string `json:"state"`
	Device  string `json:"device"`
}

func (u *user) sending() map[string]sentTrack {
	u.tb.Helper()
	return eval[map[string]sentTrack](u, senderJS)
}

// audioJS is what the stranger's audio brought so far: packets received
// and the energy of what they decoded to (silence adds none).
const audioJS = `(async () => {
  const pc = window.__test.calls().at(-1);
  const out = { packets: 0, energy: 0 };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') { out.packets = s.packetsReceived || 0; out.energy = s.totalAudioEnergy || 0; }
  });
  return out;
})()`

type audioIn struct {
	Packets int     `json:"packets"`
	Energy  float64 `json:"energy"`
}

func (u *user) audio() audioIn {
	u.tb.Helper()
	return eval[audioIn](u, audioJS)
}

// waitAudio polls the inbound audio until ok accepts it.
func (u *user) waitAudio(what string, ok func(audioIn) bool) audioIn {
	u.tb.Helper()
	var last audioIn
	eventually(u.tb, u.name+": "+what, func() bool {
		last = u.audio()
		return ok(last)
	})
	return last
}

// waitSilence waits, for at most d, until a stretch of more than a
// second of inbound audio (60 packets of 20 ms) added no audible energy,
// and returns the audio state at its end.
func (u *user) waitSilence(what string, d time.Duration) audioIn {
	u.tb.Helper()
	deadline := time.Now().Add(d)
	from := u.audio()
	for {
		end := u.waitAudio("a second of packets", func(n audioIn) bool { return n.Packets > from.Packets+60 })
		if end.Energy-from.Energy <= audibleEnergy {
			return end
		}
		if time.Now().After(deadline) {
			u.tb.Fatalf("%s: waited %v for %s; the last second of packets still had audio energy %g → %g over %d packets", u.name, d, what, from.Energy, end.Energy, end.Packets-from.Packets)
		}
		from = end
	}
}

// brightJS is the brightest pixel channel of the stranger's current video
// frame (0 for a black frame; Chromium's fake camera draws a coloured
// picture).
const brightJS = `(() => {
  const v = document.getElementById('remote-video');
  if (!v.videoWidth) return -1;
  const c = document.createElement('canvas');
  c.width = 64; c.height = 48;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(v, 0, 0, c.width, c.height);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let max = 0;
  for (let i = 0; i < d.length; i += 4) max = Math.max(max, d[i], d[i + 1], d[i + 2]);
  return max;
})()`

// audibleEnergy is more totalAudioEnergy than silence adds in a second
// (what is left of a beep in the pipeline and the codec's noise add up to
// 1e-5; each beep of the fake microphone adds about 0.1).
const audibleEnergy = 1e-3

// A frame whose brightest channel stays under this is black (video coding
// leaves a little noise).
const blackBelow = 24

// controls covers the buttons beside the call — mute, camera off, devices,
// Stop — and what follows a stranger leaving: automatic next, and Esc as
// Next in a video call.
func controls(t *testing.T, st *stage) {
	st.requireSignaling(t)
	a := st.newUser(t, "alice")
	b := st.newUser(t, "bob")
	a.start(startOptions{})
	b.start(startOptions{})
	for _, u := range []*user{a, b} {
		u.seesStranger()
	}

	step(t, "mute mic", func(t *testing.T) {
		// The button says what pressing it does; the stranger sees a
		// muted sign while the microphone is off.
		label := `document.getElementById('mute').textContent`
		if got := eval[string](a, label); got != "Mute mic" {
			t.Fatalf("the microphone button starts as %q, want Mute mic", got)
		}
		b.waitAudio("alice's sound (the fake microphone beeps)", func(n audioIn) bool { return n.Energy > audibleEnergy })
		a.press("Mute mic")
		if got := eval[string](a, label); got != "Unmute mic" {
			t.Errorf("after muting the button says %q, want Unmute mic", got)
		}
		b.seesRole("image", "Stranger's microphone is muted")
		if s := a.sending()["audio"]; s.Enabled || s.State != "live" {
			t.Errorf("muted, the microphone track sent is %+v; want live and disabled", s)
		}
		// What was under way drains first (on a busy machine the
		// receiver's jitter buffer holds more of it); then a second of
		// packets (the fake microphone beeps every second, so a second
		// of sound has a beep in it) carries only silence.
		end := b.waitSilence("a second of silence from alice, muted", connectTimeout)
		a.press("Unmute mic")
		if got := eval[string](a, label); got != "Mute mic" {
			t.Errorf("after unmuting the button says %q, want Mute mic", got)
		}
		b.waitFor(`document.getElementById('remote-muted').hidden`, "the muted sign to go")
		if s := a.sending()["audio"]; !s.Enabled {
			t.Errorf("unmuted, the microphone track sent is %+v; want enabled", s)
		}
		b.waitAudio("alice's sound again", func(n audioIn) bool { return n.Energy > end.Energy+audibleEnergy })
	})

	step(t, "camera off", func(t *testing.T) {
		label := `document.getElementById('camera-off').textContent`
		if got := eval[string](a, label); got != "Camera off" {
			t.Fatalf("the camera button starts as %q, want Camera off", got)
		}
		if n := eval[int](b, brightJS); n < blackBelow {
			t.Fatalf("bob's picture of alice is black (%d) before she turns her camera off", n)
		}
		a.press("Camera off")
		if got := eval[string](a, label); got != "Camera on" {
			t.Errorf("after turning the camera off the button says %q, want Camera on", got)
		}
		b.waitText("remote-camera-off", "^Stranger turned their camera off$")
		b.waitFor(remoteCameraOffShown, "the camera-off notice over alice's video")
		if s := a.sending()["video"]; s.Enabled || s.State != "live" {
			t.Errorf("with the camera off the video track sent is %+v; want live and disabled", s)
		}
		b.waitFor(fmt.Sprintf(`(%s) >= 0 && (%[1]s) < %d`, brightJS, blackBelow), "alice's video to go black")
		a.press("Camera on")
		if got := eval[string](a, label); got != "Camera off" {
			t.Errorf("after turning the camera on the button says %q, want Camera off", got)
		}
		b.waitFor(`document.getElementById('remote-camera-off').hidden`, "the camera-off notice to go")
		b.waitFor(fmt.Sprintf(`(%s) >= %d`, brightJS, blackBelow), "alice's picture again")
		m := b.media()
		b.waitMedia("frames after the camera is back", stepTimeout, func(n media) bool { return n.Frames > m.Frames+10 })
	})

	step(t, "choose devices", func(t *testing.T) {
		a.do("opening Devices", chromedp.Click(chromedp.CSS("details.devices summary")))
		type device struct{ ID, Label string }
		type devices struct{ Cameras, Mics, CameraOptions, MicOptions []device }
		got := eval[devices](a, `(async () => {
		  const all = await navigator.mediaDevices.enumerateDevices();
		  const of = (kind) => all.filter((d) => d.kind === kind).map((d) => ({ id: d.deviceId, label: d.label }));
		  const opts = (id) => [...document.getElementById(id).options].map((o) => ({ id: o.value, label: o.textContent }));
		  return { cameras: of('videoinput'), mics: of('audioinput'), cameraOptions: opts('camera-select'), micOptions: opts('mic-select') };
		})()`)
		if len(got.Cameras) == 0 || len(got.Mics) == 0 {
			t.Fatalf("the fake devices are missing: %+v", got)
		}
		ids := func(ds []device) []string {
			var out []string
			for _, d := range ds {
				out = append(out, d.ID)
			}
			slices.Sort(out)
			return slices.Compact(out)
		}
		if c, o := ids(got.Cameras), ids(got.CameraOptions); !slices.Equal(c, o) {
			t.Errorf("the camera picker offers %q, the browser has %q", o, c)
		}
		if c, o := ids(got.Mics), ids(got.MicOptions); !slices.Equal(c, o) {
			t.Errorf("the microphone picker offers %q, the browser has %q", o, c)
		}
		for _, d := range []struct {
			kind, label, select_ string
			list                 []device
		}{
			{"video", "Camera", "camera-select", got.Cameras},
			{"audio", "Microphone", "mic-select", got.Mics},
		} {
			before := a.sending()[d.kind]
			// Another device if there is one, else the same one again (a
			// new track all the same). Not Chromium's second fake camera:
			// it makes Y16 (depth) frames, which WebRTC does not send; the
			// third makes MJPEG.
			choice := before.Device
			for _, dev := range slices.Backward(d.list) {
				if dev.ID != before.Device && dev.ID != "default" && dev.Label != "fake_device_1" {
					choice = dev.ID
					break
				}
			}
			if choice == "" {
				choice = d.list[0].ID
			}
			// The user's choice: the select takes the value and says so.
			eval[bool](a, fmt.Sprintf(`(() => { const s = document.getElementById(%q); s.value = %q;
				s.dispatchEvent(new Event('input', { bubbles: true })); s.dispatchEvent(new Event('change', { bubbles: true })); return true; })()`, d.select_, choice))
			a.waitFor(fmt.Sprintf(`(() => { const s = window.__test.calls().at(-1).getSenders().find((s) => s.track && s.track.kind === %q);
				return s && s.track.id !== %q && s.track.readyState === 'live'; })()`, d.kind, before.ID), "the "+d.label+" track to be replaced on the sender")
			after := a.sending()[d.kind]
			t.Logf("%s: %s (%s) → %s (%s)", d.label, before.ID, before.Device, after.ID, after.Device)
			if !after.Enabled {
				t.Errorf("the new %s track is disabled", d.label)
			}
			if local := eval[[]string](a, fmt.Sprintf(`document.getElementById('local-video').srcObject.getTracks().filter((t) => t.kind === %q).map((t) => t.id)`, d.kind)); !slices.Equal(local, []string{after.ID}) {
				t.Errorf("the preview shows %s tracks %q, want the new one %s", d.label, local, after.ID)
			}
		}
		// The same call goes on with the new tracks: no new connection,
		// frames and sound keep coming.
		for _, u := range []*user{a, b} {
			m := u.media()
			n := u.waitMedia("frames after the switch", stepTimeout, func(n media) bool { return n.Frames > m.Frames+10 })
			if n.PCs != 1 || n.State != "connected" {
				t.Errorf("%s: after choosing devices: %d peer connections, state %q; want the same one, connected", u.name, n.PCs, n.State)
			}
		}
		e := b.audio()
		b.waitAudio("sound from the new microphone", func(n audioIn) bool { return n.Energy > e.Energy+audibleEnergy })
		b.waitFor(fmt.Sprintf(`(%s) >= %d`, brightJS, blackBelow), "the new camera's picture")
		if log := a.text("chat-log"); strings.Contains(log, "could not be started") {
			t.Errorf("the page could not switch: %q", log)
		}
	})

	// carol finds someone new by herself when her stranger leaves.
	c := st.newUser(t, "carol")

	step(t, "stop ends the call and Start works again", func(t *testing.T) {
		// The camera and microphone alice sends; Stop must release them.
		if n := eval[int](a, `(window.__sent = window.__test.calls().at(-1).getSenders().map((s) => s.track).filter(Boolean)).length`); n != 2 {
			t.Fatalf("alice sends %d tracks, want 2", n)
		}
		a.press("Stop")
		b.waitText("stage", "Stranger has disconnected")
		b.waitFor(`document.getElementById('remote-video').srcObject === null`, "the call to end")
		a.waitFor(`!document.getElementById('landing').hidden && document.getElementById('chat').hidden`, "the landing page")
		if got := eval[int](a, `window.__test.calls().filter(p => p.connectionState !== 'closed').length`); got != 0 {
			t.Errorf("alice still has %d open peer connections after Stop", got)
		}
		if live := eval[int](a, `window.__sent.filter((t) => t.readyState !== 'ended').length`); live != 0 {
			t.Errorf("alice's camera or microphone is still on after Stop (%d live tracks)", live)
		}
		// Start again: the queue has her back, and carol (auto next on) is
		// her new stranger.
		c.start(startOptions{autoNext: true})
		c.waitText("stage", "Looking for a stranger")
		a.start(startOptions{})
		for _, u := range []*user{a, c} {
			u.seesStranger()
		}
		if got := eval[int](b, `window.__test.calls().filter(p => p.connectionState !== 'closed').length`); got != 0 {
			t.Errorf("bob has %d open peer connections; alice's new call is not his", got)
		}
	})

	step(t, "esc twice skips; automatic next meets the waiting stranger", func(t *testing.T) {
		// bob waits for someone new; alice skips carol (Esc twice, in a
		// video call) and may not meet bob again so soon. carol, told
		// alice left, looks again by herself and meets the waiting bob.
		b.press("Next")
		b.waitText("stage", "Looking for a stranger")
		a.key("\x1b")
		a.waitText("key-hint", "again")
		// The call goes on (on a busy machine it may be "disconnected" for
		// a moment, which the page rides out; ended, it would be closed).
		if m := a.media(); m.State == "closed" || m.State == "failed" || eval[bool](c, `window.__test.msgs.some(([, m]) => m === '<partner_left')`) {
			t.Fatalf("the first Esc ended the call (alice's call is %q)", m.State)
		}
		a.key("\x1b")
		c.waitFor(`window.__test.msgs.some(([, m]) => m === '<partner_left')`, "alice's leaving")
		for _, u := range []*user{c, b} {
			u.seesStranger()
		}
		msgs := eval[[]string](c, `window.__test.msgs.map(([, m]) => m)`)
		left := slices.Index(msgs, "<partner_left")
		if left < 0 || !slices.Contains(msgs[left:], ">next") && !slices.Contains(msgs[left:], ">find") {
			t.Errorf("carol did not look again after alice left: %q", msgs)
		}
		c.typeInto("Message", "carol here\n")
		b.waitFor(`[...document.querySelectorAll('[role=log] .msg.stranger')].some(p => p.textContent === 'Stranger: carol here')`, "carol's message")
	})

	step(t, "after esc the next stranger comes", func(t *testing.T) {
		a.waitText("stage", "Looking for a stranger")
		d := st.newUser(t, "dave")
		d.start(startOptions{})
		for _, u := range []*user{a, d} {
			m := u.seesStranger()
			if u == a && m.PCs != 3 {
				t.Errorf("alice has had %d calls, want 3 (bob, carol, dave)", m.PCs)
			}
		}
	})

	step(t, "stop while waiting leaves the queue", func(t *testing.T) {
		for _, u := range []*user{a, b, c} {
			u.close()
		}
		// erin waits and stops; frank comes, then grace. Had erin stayed
		// in the queue frank would meet her, and grace would wait alone.
		e := st.newUser(t, "erin")
		e.start(startOptions{text: true})
		e.waitText("stage", "Looking for a stranger")
		e.press("Stop")
		e.waitFor(`!document.getElementById('landing').hidden && document.activeElement === document.getElementById('start')`, "the landing page, Start focused")
		f := st.newUser(t, "frank")
		f.start(startOptions{text: true})
		f.waitText("stage", "Looking for a stranger")
		g := st.newUser(t, "grace")
		g.start(startOptions{text: true})
		for _, u := range []*user{f, g} {
			u.waitFor(`!document.getElementById('chat-input').disabled`, "a match")
		}
		f.typeInto("Message", "frank here\n")
		g.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: frank here')`, "frank's message")
		if !eval[bool](e, `document.getElementById('chat').hidden && document.getElementById('chat-input').disabled`) {
			t.Error("erin was matched after she stopped")
		}
	})
}
