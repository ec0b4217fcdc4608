package web_test

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestBrowser drives the page in headless Chromium against the real server,
// both inside a network namespace of their own. The subtests share one
// server and one browser and run in order; each closes its users, so no
// session of one is left for the next to meet.
func TestBrowser(t *testing.T) {
	if !inNamespace() {
		reexec(t, false)
		return
	}
	st := newStage(t)

	t.Run("insecure context explains HTTPS", func(t *testing.T) {
		// The veth address is not loopback, so over plain HTTP it is not
		// a secure context and the page may not ask for a camera.
		u := st.newUser(t, "visitor", from(st.insecureBase), withoutSignaling())
		u.start(startOptions{})
		u.waitText("start-error", "HTTPS")
		if n := eval[int](u, `window.__test.gum`); n != 0 {
			t.Errorf("getUserMedia called %d times in an insecure context", n)
		}
	})

	t.Run("camera permission denied", func(t *testing.T) {
		u := st.newUser(t, "visitor", denyMedia(), withoutSignaling())
		u.start(startOptions{})
		u.waitText("start-error", "denied")
		if role := eval[string](u, `document.getElementById('start-error').getAttribute('role')`); role != "alert" {
			t.Errorf("the message's role is %q, want alert (announced at once)", role)
		}
		if eval[bool](u, `document.getElementById('landing').hidden`) {
			t.Error("the landing page was left although the camera was refused")
		}
	})

	t.Run("video call", func(t *testing.T) {
		st.requireSignaling(t)
		// alice uses http://localhost, which Chromium reaches over ::1: her
		// connections can be told apart from bob's (127.0.0.1).
		a := st.newUser(t, "alice", from("http://localhost:"+httpPort))
		b := st.newUser(t, "bob")
		a.start(startOptions{})
		a.waitText("stage", "Looking for a stranger")
		if !eval[bool](a, `(() => { const v = document.querySelector('video[aria-label="Your video"]');
			return v.muted && v.srcObject !== null && getComputedStyle(v).transform !== 'none'; })()`) {
			t.Error("the local preview is not shown muted and mirrored")
		}
		b.start(startOptions{})

		step(t, "both see and hear the other", func(t *testing.T) {
			for _, u := range []*user{a, b} {
				u.seesStranger()
				// Chromium may start on whichever pair answered first
				// (on a busy machine even a relayed one) and moves to
				// a better one as it comes: the call settles direct.
				m := u.waitMedia("a direct path", connectTimeout, func(m media) bool {
					return m.State == "connected" && m.Local != "" && m.Local != "relay" && m.Remote != "relay"
				})
				if text := u.waitIndicator(); !strings.HasPrefix(text, "Direct (") {
					t.Errorf("%s: the indicator says %q on a direct path (%s/%s over %s)", u.name, text, m.Local, m.Remote, m.Protocol)
				}
				if !strings.HasPrefix(m.RemoteAddr, "198.51.100.") {
					t.Errorf("%s: remote candidate %q is not a test address", u.name, m.RemoteAddr)
				}
			}
		})

		step(t, "chat and typing both ways", func(t *testing.T) {
			for _, pair := range [][2]*user{{a, b}, {b, a}} {
				from, to := pair[0], pair[1]
				// The indicator lasts until the sender has been idle for
				// a few seconds, which typing may take on a busy machine.
				to.watchText("typing")
				from.typeInto("Message", "hi from "+from.name)
				to.waitShown("typing", "Stranger is typing")
				from.key("\r")
				to.waitFor(`[...document.querySelectorAll('[role=log] .msg.stranger')].some(p => p.textContent === 'Stranger: hi from `+from.name+`')`, "the message")
				to.waitText("typing", "^$")
				from.waitFor(`[...document.querySelectorAll('[role=log] .msg.you')].some(p => p.textContent === 'You: hi from `+from.name+`')`, "our own line")
			}
		})

		step(t, "a signaling drop does not stop the call", func(t *testing.T) {
			before := a.media()
			ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
			defer cancel()
			// Reset alice's connections only.
			if err := killConnections(ctx, "[::1]"); err != nil {
				t.Fatal(err)
			}
			a.waitFor(`window.__test.sockets.length >= 2 && window.__test.sockets.at(-1).readyState === WebSocket.OPEN`, "a new WebSocket")
			a.waitText("server-status", "^$")
			type welcome struct {
				Session string
				Resumed bool
			}
			// Each later welcome (one, unless a busy machine made a
			// reconnect attempt time out) gives the same session back.
			w := eval[[]welcome](a, `window.__test.welcomes`)
			if len(w) < 2 || slices.ContainsFunc(w[1:], func(x welcome) bool { return !x.Resumed || x.Session != w[0].Session }) {
				t.Errorf("welcomes %+v: want later ones resuming the first session", w)
			}
			for _, u := range []*user{a, b} {
				m := u.waitMedia("frames after the drop", stepTimeout, func(m media) bool { return m.Frames > before.Frames+10 || u != a && m.Frames > 0 })
				if m.PCs != 1 || m.State != "connected" {
					t.Errorf("%s: after the drop: %d peer connections, state %q; want the same one, connected", u.name, m.PCs, m.State)
				}
			}
			// The match survived on the server: chat still gets through.
			a.typeInto("Message", "still here\n")
			b.waitFor(`[...document.querySelectorAll('[role=log] .msg.stranger')].some(p => p.textContent === 'Stranger: still here')`, "chat after the drop")
		})

		step(t, "next with a third user", func(t *testing.T) {
			c := st.newUser(t, "carol", phone())
			c.start(startOptions{})
			c.waitText("stage", "Looking for a stranger")
			b.press("Next")
			a.waitText("stage", "Stranger has disconnected")
			a.waitFor(`document.getElementById('remote-video').srcObject === null`, "the old call to end")
			for _, u := range []*user{b, c} {
				m := u.seesStranger()
				if u == b && m.PCs != 2 {
					t.Errorf("bob has %d peer connections, want 2 (a new one for carol)", m.PCs)
				}
			}
			b.typeInto("Message", "hello carol\n")
			c.waitFor(`[...document.querySelectorAll('[role=log] .msg.stranger')].some(p => p.textContent === 'Stranger: hello carol')`, "bob's message")
			// Nothing of the first match reaches carol, nothing of the new one alice.
			if log := c.text("chat-log"); strings.Contains(log, "hi from") || strings.Contains(log, "still here") {
				t.Errorf("carol sees the earlier chat: %q", log)
			}
			if log := a.text("chat-log"); strings.Contains(log, "hello carol") {
				t.Errorf("alice sees bob's new chat: %q", log)
			}
			if got := eval[int](a, `window.__test.calls().filter(p => p.connectionState !== 'closed').length`); got != 0 {
				t.Errorf("alice still has %d open peer connections", got)
			}
			for _, u := range []*user{a, b, c} {
				if !eval[bool](u, `document.getElementById('network').hidden`) {
					t.Errorf("%s: a network warning on a network where the relay works: %q", u.name, u.text("network"))
				}
			}
		})
	})

	t.Run("controls", func(t *testing.T) { controls(t, st) })

	t.Run("hide my IP relays both sides through our TURN", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.start(startOptions{hideIP: true})
		b.start(startOptions{hideIP: true})
		// What "Hide my IP" promises: both ends of the selected pair are
		// relay candidates of our relay, whichever transport (UDP, TCP or
		// TLS) Chromium chose to reach it, and nothing of a partner's
		// other than our relay's address ever reaches the other side.
		for _, u := range []*user{a, b} {
			u.seesStranger()
			// A connectivity check may reach a side before the candidate
			// it comes from (a peer-reflexive candidate, at our relay's
			// address); the signalled candidate then takes its place.
			m := u.waitMedia("a relay/relay pair through our relay", stepTimeout, func(m media) bool {
				return m.State == "connected" && m.Local == "relay" && m.Remote == "relay"
			})
			if m.LocalAddr != relayIP || m.RemoteAddr != relayIP {
				t.Errorf("%s: relay addresses %s and %s, want our relay %s", u.name, m.LocalAddr, m.RemoteAddr, relayIP)
			}
			if m.RelayProto != "udp" && m.RelayProto != "tcp" && m.RelayProto != "tls" {
				t.Errorf("%s: reaches the relay over %q, want udp, tcp or tls", u.name, m.RelayProto)
			}
			text := u.waitIndicator()
			if !strings.HasPrefix(text, "Relayed (TURN over ") {
				t.Errorf("%s: the indicator says %q, want relayed", u.name, text)
			}
			t.Logf("%s: relay/relay, to the relay over %s; indicator %q", u.name, m.RelayProto, text)
		}
		for _, u := range []*user{a, b} {
			// Every line of the partner's signals naming an address.
			received := eval[[]string](u, `window.__test.received`)
			if !slices.ContainsFunc(received, func(l string) bool { return strings.HasPrefix(l, "candidate:") }) {
				t.Errorf("%s received no candidate from the partner: %q", u.name, received)
			}
			if leaks := relayOnlyLeaks(received); len(leaks) > 0 {
				t.Errorf("%s received from its relay-only partner what is not our relay's: %q", u.name, leaks)
			}
			// Every remote candidate the browser knows, however it learnt
			// it (signalled, or peer-reflexive from a check), is at our
			// relay's address (a peer-reflexive one may not show its
			// address in the statistics).
			if got := eval[[]string](u, `(async () => {
				const r = await window.__test.calls().at(-1).getStats(); const out = [];
				r.forEach(s => { if (s.type === 'remote-candidate' && (s.address || s.candidateType !== 'prflx')) out.push(s.candidateType + ' ' + s.address); });
				return out; })()`); slices.ContainsFunc(got, func(c string) bool { return !strings.HasSuffix(c, " "+relayIP) }) {
				t.Errorf("%s learnt remote candidates other than our relay's: %q", u.name, got)
			}
		}
	})

	t.Run("UDP blocked mid-call: ICE restarts over TURN/TCP", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.start(startOptions{})
		b.start(startOptions{})
		for _, u := range []*user{a, b} {
			u.seesStranger()
		}
		ufrag := `window.__test.calls().at(-1).localDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1]`
		before := eval[string](a, ufrag)
		blockUDP(t, true)
		for _, u := range []*user{a, b} {
			m := u.waitMedia("the call back over TURN/TCP", 2*connectTimeout, func(m media) bool {
				return m.State == "connected" && m.Local == "relay" && m.RelayProto == "tcp"
			})
			u.waitMedia("frames over TCP", stepTimeout, func(n media) bool { return n.Frames > m.Frames+10 })
			u.waitText("connection", `^Relayed \(TURN over TCP\)`)
			if m.PCs != 1 {
				t.Errorf("%s: %d peer connections; the same call should have recovered", u.name, m.PCs)
			}
		}
		// The promise is the call coming back over TURN/TCP. Whether it took
		// an ICE restart, or ICE moved to a TCP relay pair it already had
		// (gathered while warming), is the browser's choice.
		if after := eval[string](a, ufrag); after == before {
			t.Log("recovered without an ICE restart: ICE moved to a TCP relay pair it already had")
		} else {
			t.Log("recovered with an ICE restart")
		}
	})

	t.Run("no way through: the page says why", func(t *testing.T) {
		st.requireSignaling(t)
		blockUDP(t, false)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.start(startOptions{})
		b.start(startOptions{})
		for _, u := range []*user{a, b} {
			u.waitForWithin(`document.getElementById('connection').dataset.state === 'failed'`, "the failure to be reported", 2*connectTimeout)
			u.waitText("connection", "blocks UDP")
			u.waitText("stage", "Press Next")
			// The reachability probe warned before the call even started.
			u.waitText("network", "relay server cannot be reached")
		}
	})

	t.Run("text only with interests", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob", phone())
		a.start(startOptions{text: true, interests: []string{"Chess", "go"}})
		a.waitText("stage", "anyone in")
		b.start(startOptions{text: true, interests: []string{"chess"}})
		for _, u := range []*user{a, b} {
			u.waitText("common", "You both like chess")
			u.waitFor(`!document.getElementById('chat-input').disabled`, "the message box")
		}
		b.watchText("typing")
		a.typeInto("Message", "e4")
		b.waitShown("typing", "Stranger is typing")
		a.key("\r")
		b.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: e4')`, "the message")
		b.typeInto("Message", "e5\n")
		a.waitFor(`document.querySelector('[role=log]').textContent.includes('Stranger: e5')`, "the reply")
		for _, u := range []*user{a, b} {
			if n := eval[int](u, `window.__test.gum + window.__test.pcs.length`); n != 0 {
				t.Errorf("%s: text only asked for a camera or made a peer connection (%d)", u.name, n)
			}
		}
		// Esc twice skips (the first only warns).
		a.key("\x1b")
		a.waitText("key-hint", "again")
		a.key("\x1b")
		b.waitText("stage", "Stranger has disconnected")
	})

	t.Run("report ends the chat and keeps the two apart", func(t *testing.T) {
		st.requireSignaling(t)
		a := st.newUser(t, "alice")
		b := st.newUser(t, "bob")
		a.start(startOptions{text: true})
		b.start(startOptions{text: true})
		a.waitFor(`!document.getElementById('chat-input').disabled`, "the match")
		a.press("Report")
		a.press("Send report")
		a.waitText("stage", "Thanks for the report")
		b.waitText("stage", "Stranger has disconnected")
		b.press("Next")
		a.press("Next")
		c := st.newUser(t, "carol")
		c.start(startOptions{text: true})
		d := st.newUser(t, "dave")
		d.start(startOptions{text: true})
		// Four people, two of whom may not meet: alice and bob each get one
		// of carol and dave.
		for _, u := range []*user{a, b, c, d} {
			u.waitFor(`!document.getElementById('chat-input').disabled`, "a new match")
		}
		a.typeInto("Message", "alice here\n")
		has := `document.querySelector('[role=log]').textContent.includes('Stranger: alice here')`
		eventually(t, "carol or dave to get alice's message (was she paired with bob again?)", func() bool {
			return eval[bool](c, has) || eval[bool](d, has)
		})
		if eval[bool](b, has) {
			t.Error("bob got alice's message after she reported him")
		}
	})
}

// step runs one stage of a scenario as a subtest; a failed stage stops the
// scenario, since the next ones build on it.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}
