package web_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// clusterNode is one strangers instance of TestBrowserCluster: its own
// HTTP port, TURN port and relay range, inside the harness's relay range
// (relayPortMin-relayPortMax), all on relayIP.
type clusterNode struct {
	id                 string
	httpPort           string
	turnPort           string
	relayMin, relayMax int
	st                 *stage // its server, and Chromium shared by both nodes
}

// ownsRelayPort reports whether port is one of the node's relay ports.
func (n *clusterNode) ownsRelayPort(port int) bool { return port >= n.relayMin && port <= n.relayMax }

// env is what the node gets on top of startServer's defaults (later
// entries win in exec.Cmd.Env).
func (n *clusterNode) env(redisURL, secret string) []string {
	return []string{
		"STRANGERS_REDIS_URL=" + redisURL,
		"STRANGERS_NODE_ID=" + n.id,
		"STRANGERS_TURN_SECRET=" + secret,
		"STRANGERS_HTTP_ADDR=0.0.0.0:" + n.httpPort,
		"STRANGERS_TURN_ADDR=" + relayIP + ":" + n.turnPort,
		fmt.Sprintf("STRANGERS_RELAY_PORT_MIN=%d", n.relayMin),
		fmt.Sprintf("STRANGERS_RELAY_PORT_MAX=%d", n.relayMax),
	}
}

// candidate is one ICE candidate as getStats has it.
type candidate struct {
	Type          string `json:"type"`
	Address       string `json:"address"`
	Port          int    `json:"port"`
	URL           string `json:"url"`
	RelayProtocol string `json:"relayProtocol"`
}

func (c candidate) String() string {
	s := fmt.Sprintf("%s %s:%d", c.Type, c.Address, c.Port)
	if c.URL != "" {
		s += " from " + c.URL
	}
	return s
}

// candidatesJS returns the newest call's selected pair (null before there
// is one) and every local candidate it gathered.
const candidatesJS = `(async () => {
  const pc = window.__test.calls().at(-1);
  const out = { local: null, remote: null, gathered: [] };
  if (!pc || pc.connectionState === 'closed') return out;
  const r = await pc.getStats();
  const cand = (c) => ({ type: c.candidateType || '', address: c.address || '', port: c.port || 0, url: c.url || '', relayProtocol: c.relayProtocol || '' });
  let pair = null;
  r.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = r.get(s.selectedCandidatePairId);
    if (s.type === 'local-candidate') out.gathered.push(cand(s));
  });
  if (pair) {
    const l = r.get(pair.localCandidateId), rc = r.get(pair.remoteCandidateId);
    if (l) out.local = cand(l);
    if (rc) out.remote = cand(rc);
  }
  return out;
})()`

type candidates struct {
	Local    *candidate  `json:"local"`
	Remote   *candidate  `json:"remote"`
	Gathered []candidate `json:"gathered"`
}

// iceURLsJS returns the ICE server URLs of the page's matched message and
// those of every peer connection it made (the call, the one made ready
// while waiting, the reachability probe).
const iceURLsJS = `(() => {
  const flat = (servers) => (Array.isArray(servers) ? servers : []).flatMap((s) => [s.urls].flat());
  const configured = window.__test.pcs.flatMap((pc) => {
    try { return flat(pc.getConfiguration().iceServers); } catch { return []; }
  });
  return { matched: flat(window.__test.iceServers), configured };
})()`

type iceURLs struct {
	Matched    []string `json:"matched"`
	Configured []string `json:"configured"`
}

// iceURL is stun:, turn: or turns: host:port, with an optional transport.
var iceURL = regexp.MustCompile(`^(?:stun|turns?):([^:?]+):(\d+)(?:\?transport=(?:udp|tcp))?$`)

// requireClusterBuild skips (or fails) when the server binary cannot join
// a cluster yet: its -h does not know STRANGERS_REDIS_URL.
func requireClusterBuild(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, os.Getenv(envServerBin), "-h").CombinedOutput()
	if err != nil {
		tb.Fatalf("strangers -h: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "STRANGERS_REDIS_URL") {
		testsupport.Missing(tb, "this build of cmd/strangers has no STRANGERS_REDIS_URL (several nodes through Redis)")
	}
}

// TestBrowserCluster makes Chromium calls between two users on two
// strangers instances ("nodes") sharing one Redis and one TURN secret, in
// one namespace: alice loads node 1's page, bob node 2's, and the shared
// pool pairs them. Once with ICE left to choose the path, once with "Hide
// my IP" on both sides, where each side must be relayed by its own node.
// Each page must have been handed only its own node's ICE servers, and
// Next on one side must reach the other across the nodes.
func TestBrowserCluster(t *testing.T) {
	if !inNamespace() {
		testsupport.Require(t, "redis-server", "redis-server")
		reexec(t, false)
		return
	}
	requireClusterBuild(t)
	// Browsers take their UDP ports from this range, the relays from
	// theirs (as newStage does).
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(ephemeralPort), 0o644); err != nil {
		t.Fatalf("setting the namespace's ephemeral ports: %v", err)
	}
	// Redis with a password, as a deployment should have it; it stops
	// after the nodes (cleanups run last in, first out).
	redis := testsupport.StartRedis(t, testsupport.RedisOptions{Password: randomHex(16)})
	secret := randomHex(16)
	mid := (relayPortMin + relayPortMax) / 2
	nodes := []*clusterNode{
		{id: "node-1", httpPort: httpPort, turnPort: turnPort, relayMin: relayPortMin, relayMax: mid},
		{id: "node-2", httpPort: "8081", turnPort: "3479", relayMin: mid + 1, relayMax: relayPortMax},
	}
	var srvs []*server
	for _, n := range nodes {
		srvs = append(srvs, startServer(t, n.env(redis.URL(), secret)...))
	}
	root := startChromium(t, true)
	for i, n := range nodes {
		n.st = &stage{
			tb:           t,
			srv:          srvs[i],
			root:         root,
			base:         "http://127.0.0.1:" + n.httpPort,
			insecureBase: "http://" + relayIP + ":" + n.httpPort,
		}
		n.st.requireSignaling(t)
		// As a load balancer would, send users only to a node that says
		// it can pair.
		eventually(t, n.id+" to be ready", func() bool { return n.st.ready(t) })
	}

	t.Run("direct", func(t *testing.T) { clusterCall(t, nodes, false) })
	t.Run("hide my IP on both sides", func(t *testing.T) { clusterCall(t, nodes, true) })
	t.Run("Redis down and back", func(t *testing.T) { clusterOutage(t, nodes, redis) })
}

// clusterOutage stops Redis (its data goes with it): a user who presses
// Start is told matching is paused, and is matched by itself once Redis
// is back, with no reload and no press.
func clusterOutage(t *testing.T, nodes []*clusterNode, redis *testsupport.Redis) {
	for _, n := range nodes {
		eventually(t, n.id+" to have no sessions left", func() bool { return n.st.metric(t, "strangers_sessions") == 0 })
	}
	redis.Stop()
	eventually(t, nodes[0].id+" to say it is not ready", func() bool { return !nodes[0].st.ready(t) })
	a := nodes[0].st.newUser(t, "alice")
	a.start(startOptions{})
	a.waitText("stage", "Matching is paused for a moment")
	redis.Start()
	for _, n := range nodes {
		eventually(t, n.id+" to be ready again", func() bool { return n.st.ready(t) })
	}
	b := nodes[1].st.newUser(t, "bob")
	b.start(startOptions{})
	a.seesStranger()
	b.seesStranger()
	t.Log("alice, who pressed Start while Redis was down, met bob on the other node once it was back")
}

// clusterCall makes one call between alice on nodes[0] and bob on
// nodes[1], checks it, and ends it with Next (bob's when relayed, alice's
// otherwise, so that both directions are crossed).
func clusterCall(t *testing.T, nodes []*clusterNode, hideIP bool) {
	// Nobody of an earlier call is left to be met.
	for _, n := range nodes {
		eventually(t, n.id+" to have no sessions left", func() bool { return n.st.metric(t, "strangers_sessions") == 0 })
	}
	a := nodes[0].st.newUser(t, "alice")
	b := nodes[1].st.newUser(t, "bob")
	users := []*user{a, b}
	a.start(startOptions{hideIP: hideIP})
	a.waitText("stage", "Looking for a stranger")
	b.start(startOptions{hideIP: hideIP})

	// The two are the only users: a call means the nodes paired them.
	for i, u := range users {
		own, partner := nodes[i], nodes[1-i]
		m := u.seesStranger()
		if hideIP {
			m = u.waitMedia("a relay/relay pair", stepTimeout, func(m media) bool {
				return m.State == "connected" && m.Local == "relay" && m.Remote == "relay"
			})
		}
		text := u.waitIndicator()
		t.Logf("%s on %s: %s/%s, to the relay over %q; indicator %q", u.name, own.id, m.Local, m.Remote, m.RelayProto, text)
		if hideIP && !strings.HasPrefix(text, "Relayed (TURN over ") {
			t.Errorf("%s: the indicator says %q, want relayed", u.name, text)
		}

		var c candidates
		eventually(t, u.name+": the selected pair in the statistics", func() bool {
			c = eval[candidates](u, candidatesJS)
			return c.Local != nil && c.Remote != nil && (!hideIP || c.Remote.Type == "relay")
		})
		if c.Local.Type == "relay" {
			// Whenever a side is relayed, it is by its own node.
			if c.Local.Address != relayIP || !own.ownsRelayPort(c.Local.Port) {
				t.Errorf("%s: selected local candidate %v is not a relay port of %s (%s:%d-%d)", u.name, c.Local, own.id, relayIP, own.relayMin, own.relayMax)
			}
			// Chromium names the server a candidate came from.
			if p := iceURL.FindStringSubmatch(c.Local.URL); c.Local.URL != "" && (p == nil || p[1] != relayIP || p[2] != own.turnPort) {
				t.Errorf("%s: selected local candidate %v comes from another TURN server than %s's (port %s)", u.name, c.Local, own.id, own.turnPort)
			}
		}
		if hideIP {
			if c.Local.Type != "relay" {
				t.Errorf("%s: selected local candidate %v, want a relay candidate", u.name, c.Local)
			}
			// The partner is relayed by its own node.
			if c.Remote.Address != relayIP || !partner.ownsRelayPort(c.Remote.Port) {
				t.Errorf("%s: selected remote candidate %v is not a relay port of the partner's %s (%s:%d-%d)", u.name, c.Remote, partner.id, relayIP, partner.relayMin, partner.relayMax)
			}
			// Relay only: everything gathered is a relay port of our node.
			for _, g := range c.Gathered {
				if g.Type != "relay" || g.Address != relayIP || !own.ownsRelayPort(g.Port) {
					t.Errorf("%s: gathered %v, want only relay candidates of %s", u.name, g, own.id)
				}
			}
			received := eval[[]string](u, `window.__test.received`)
			if leaks := relayOnlyLeaks(received); len(leaks) > 0 {
				t.Errorf("%s received from its relay-only partner what is not a relay's: %q", u.name, leaks)
			}
		}

		// Each node hands its clients only its own ICE servers, at most 4
		// URLs.
		urls := eval[iceURLs](u, iceURLsJS)
		t.Logf("%s: selected %v to %v; matched carried %q", u.name, c.Local, c.Remote, urls.Matched)
		if len(urls.Matched) == 0 || len(urls.Matched) > 4 {
			t.Errorf("%s: matched carried %d ICE URLs %q, want 1 to 4", u.name, len(urls.Matched), urls.Matched)
		}
		for _, s := range slices.Concat(urls.Matched, urls.Configured) {
			p := iceURL.FindStringSubmatch(s)
			if p == nil || p[1] != relayIP || p[2] != own.turnPort {
				t.Errorf("%s: ICE URL %q is not %s's (%s:%s)", u.name, s, own.id, relayIP, own.turnPort)
			}
		}
	}

	// Chat crosses the nodes both ways.
	for _, pair := range [][2]*user{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		from.typeInto("Message", "hi from "+from.name+"\n")
		to.waitFor(`[...document.querySelectorAll('[role=log] .msg.stranger')].some(p => p.textContent === 'Stranger: hi from `+from.name+`')`, "the message from the other node")
	}

	// Next on one side: the other, on the other node, sees the stranger
	// leave and its call end.
	leaver, left := a, b
	if hideIP {
		leaver, left = b, a
	}
	leaver.press("Next")
	left.waitText("stage", "Stranger has disconnected")
	left.waitFor(`document.getElementById('remote-video').srcObject === null`, "the call to end")
	if got := eval[int](left, `window.__test.calls().filter(p => p.connectionState !== 'closed').length`); got != 0 {
		t.Errorf("%s still has %d open peer connections after the partner left", left.name, got)
	}
	t.Logf("%s pressed Next; %s saw the stranger leave", leaver.name, left.name)
}

// ready reports whether the server's /readyz answers 200.
func (st *stage) ready(tb testing.TB) bool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.base+"/readyz", nil)
	if err != nil {
		tb.Fatal(err)
	}
	// No connection is kept: nothing outlives the call.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("asking %s/readyz: %v", st.base, err)
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
