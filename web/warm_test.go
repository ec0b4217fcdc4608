package web_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/strangers-chat/strangers/internal/testsupport"
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
		// It gathers ahead: our relay gives it an allocation.
		testsupport.WaitFor(t, stepTimeout, "a relay allocation for the warm connection", func() bool {
			return st.metric(t, "strangers_relay_allocations_active") > 0
		})
		u.press("Stop")
		// Every peer connection the page made (the warm one, and the
		// reachability probe once it is done) is closed, and the camera
		// is off.
		u.waitFor(`window.__test.pcs.every((p) => p.signalingState === 'closed')`, "every peer connection closed")
		u.waitFor(`document.getElementById('local-video').srcObject === null`, "the camera released")
		u.waitFor(`[...document.querySelectorAll('video')].every((v) => v.srcObject === null)`, "no video element holding a stream")
		// Nothing of it reached the server: no offer, answer or candidate.
		if n := eval[int](u, `window.__test.msgs.filter(([, m]) => m.startsWith('>signal')).length`); n != 0 {
			t.Errorf("the page sent %d signals without a match", n)
		}
		// Its relay allocations (candidates gathered ahead ask the relay
		// for some) are given back.
		testsupport.WaitFor(t, stepTimeout, "the relay allocations of the warm connection released", func() bool {
			return st.metric(t, "strangers_relay_allocations_active") == 0
		})
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

// metric reads a metric without labels from the server's /metrics.
func (st *stage) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.base+"/metrics", nil)
	if err != nil {
		tb.Fatal(err)
	}
	// No connection is kept: nothing outlives the call.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("reading the metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("reading the metrics: %v", err)
	}
	tb.Fatalf("no metric %s in /metrics", name)
	return 0
}
