package web_test

import (
	"strings"
	"testing"
)

// warmReadyJS is true once the page has made its next call ready while
// waiting: one peer connection with the camera attached, not closed, no
// description set.
const warmReadyJS = `(() => {
  const pcs = window.__test.calls();
  return pcs.length === 1 && pcs[0].signalingState === 'stable' && !pcs[0].localDescription &&
    pcs[0].getSenders().some((s) => s.track && s.track.kind === 'video');
})()`

// localCandidatesJS lists the newest call's local candidates, as getStats
// has them: type and address.
const localCandidatesJS = `(async () => {
  const r = await window.__test.calls().at(-1).getStats(); const out = [];
  r.forEach((s) => { if (s.type === 'local-candidate') out.push(s.candidateType + ' ' + (s.address || '')); });
  return out;
})()`

// TestBrowserWarm checks the call made ready while waiting: left unused, it
// is closed; for a relay-only user it gathers relay candidates and nothing
// else, and it is the connection the call then uses.
func TestBrowserWarm(t *testing.T) {
	if !inNamespace() {
		reexec(t, false)
		return
	}
	st := newStage(t)
	st.requireSignaling(t)

	t.Run("stop while waiting closes the warm connection", func(t *testing.T) {
		u := st.newUser(t, "alice")
		u.start(startOptions{})
		u.waitText("stage", "Looking for a stranger")
		u.waitFor(warmReadyJS, "a warm peer connection while waiting")
		u.press("Stop")
		// Every peer connection the page made (the warm one, and the
		// reachability probe once it is done) is closed, and the camera
		// is off.
		u.waitFor(`window.__test.pcs.every((p) => p.signalingState === 'closed')`, "every peer connection closed")
		u.waitFor(`document.getElementById('local-video').srcObject === null`, "the camera released")
		// Starting again warms a new connection with the new camera; the old
		// one stays closed.
		u.start(startOptions{})
		u.waitText("stage", "Looking for a stranger")
		u.waitFor(`window.__test.calls().filter((p) => p.signalingState !== 'closed').length === 1`, "a new warm peer connection")
		u.press("Stop")
		u.waitFor(`window.__test.pcs.every((p) => p.signalingState === 'closed')`, "every peer connection closed again")
	})

	t.Run("a relay-only user's warm connection gathers relay candidates only", func(t *testing.T) {
		a := st.newUser(t, "alice")
		a.start(startOptions{hideIP: true})
		a.waitText("stage", "Looking for a stranger")
		a.waitFor(warmReadyJS, "a warm peer connection while waiting")
		if got := eval[string](a, `window.__test.calls()[0].getConfiguration().iceTransportPolicy`); got != "relay" {
			t.Errorf("the warm connection's ICE transport policy is %q, want relay", got)
		}
		b := st.newUser(t, "bob")
		b.start(startOptions{hideIP: true})
		a.seesStranger()
		b.seesStranger()
		// The call alice waited with is the one she talks on: her pooled
		// candidates are its candidates.
		if n := eval[int](a, `window.__test.calls().length`); n != 1 {
			t.Errorf("alice made %d peer connections with media, want 1 (the warm one)", n)
		}
		for _, u := range []*user{a, b} {
			got := eval[[]string](u, localCandidatesJS)
			if len(got) == 0 {
				t.Errorf("%s: no local candidates in the statistics", u.name)
			}
			for _, c := range got {
				if c != "relay "+relayIP {
					t.Errorf("%s: local candidate %q, want only relay candidates at %s", u.name, c, relayIP)
				}
			}
			received := eval[[]string](u, `window.__test.received`)
			if leaks := relayOnlyLeaks(received); len(leaks) > 0 {
				t.Errorf("%s received from its relay-only partner what is not our relay's: %s", u.name, strings.Join(leaks, "; "))
			}
		}
	})
}
