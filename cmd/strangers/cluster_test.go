package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

// The tests in this file run several real strangers processes ("nodes")
// on loopback, sharing one real redis-server (STRANGERS_REDIS_URL), and
// drive them with signaling clients: what one user on one node and one on
// another see must be what two users of one server see.

// clusterSecret is the TURN secret every node of a test cluster shares.
const clusterSecret = "cluster-test-secret-0123456789"

// Bounds of the cluster tests: generous, for a loaded machine; nothing
// waits for them unless something is wrong.
const (
	clusterWait = 20 * time.Second // one message, one state change
	// nodeDeathBound is how soon the partners of a killed node's sessions
	// are told with the default STRANGERS_RESUME_GRACE (15s), and so with
	// any shorter one: the lease (5s) runs out within the grace, counted
	// from when the node was last seen.
	nodeDeathBound = 15 * time.Second
)

// cluster is a Redis and the nodes sharing it, stopped when the test ends.
type cluster struct {
	t     *testing.T
	redis *testsupport.Redis
	nodes []*node
	base  int // first relay port of the cluster's relay ranges
}

// node is one strangers process of a cluster.
type node struct {
	id   string
	p    *proc
	http string // host:port of the page, /ws and the probes
	turn string // host:port of the relay (UDP and TCP)
}

// relayPortsPerNode is the size of each node's relay port range: small and
// distinct, as on separate boxes each range would be its own.
const relayPortsPerNode = 20

// startCluster starts redis-server (persisting with persist) and n nodes,
// each with extra on top of the cluster's settings.
func startCluster(t *testing.T, n int, persist bool, extra map[string]string) *cluster {
	t.Helper()
	c := &cluster{t: t, redis: testsupport.StartRedis(t, testsupport.RedisOptions{Persist: persist})}
	c.base = 20000 + rand.IntN(20000/relayPortsPerNode/4)*relayPortsPerNode*4
	for i := range n {
		c.nodes = append(c.nodes, c.startNode(i, extra))
	}
	return c
}

// nodeEnv is node i's environment: its own loopback ports and relay range,
// the cluster's Redis and secret.
func (c *cluster) nodeEnv(i int, extra map[string]string) map[string]string {
	lo := c.base + i*relayPortsPerNode
	env := map[string]string{
		"STRANGERS_REDIS_URL":         c.redis.URL(),
		"STRANGERS_NODE_ID":           fmt.Sprintf("node%d", i+1),
		"STRANGERS_TURN_SECRET":       clusterSecret,
		"STRANGERS_STATE_DIR":         c.t.TempDir(),
		"STRANGERS_RELAY_BIND_IP":     "127.0.0.1",
		"STRANGERS_RELAY_PORT_MIN":    strconv.Itoa(lo),
		"STRANGERS_RELAY_PORT_MAX":    strconv.Itoa(lo + relayPortsPerNode - 1),
		"STRANGERS_RELAY_ALLOW_PEERS": "127.0.0.0/8",
		"STRANGERS_TURN_TOTAL_QUOTA":  strconv.Itoa(relayPortsPerNode),
		"STRANGERS_STATS_INTERVAL":    "200ms",
		"STRANGERS_NEXT_RATE":         "0",
		"STRANGERS_LOG_LEVEL":         "info",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func (c *cluster) startNode(i int, extra map[string]string) *node {
	c.t.Helper()
	p := startBinary(c.t, c.nodeEnv(i, extra))
	nd := &node{id: fmt.Sprintf("node%d", i+1), p: p, http: p.http}
	for _, line := range strings.Split(p.output(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" {
			nd.turn, _ = m["turn_udp"].(string)
		}
	}
	if nd.turn == "" {
		c.t.Fatalf("%s: no relay address in its log: %s", nd.id, p.output())
	}
	testsupport.WaitFor(c.t, clusterWait, nd.id+" ready", func() bool { return nd.ready() })
	return nd
}

// kill ends the node with SIGKILL, as a crash would, and waits for it.
func (nd *node) kill(t *testing.T) {
	t.Helper()
	if err := nd.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-nd.p.exited:
	case <-time.After(clusterWait):
		t.Fatalf("%s did not die of SIGKILL", nd.id)
	}
}

// ready reports whether the node's /readyz answers 200.
func (nd *node) ready() bool { return probe("http://"+nd.http+"/readyz") == http.StatusOK }

// probe returns the status of a GET, 0 if there was no answer.
func probe(u string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// scrape reads a node's /metrics into a map from sample (name and labels
// as printed) to value; nil if it cannot.
func scrape(httpAddr string) map[string]float64 {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body strings.Builder
	if _, err := io.Copy(&body, resp.Body); err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body.String(), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// member is a user of a cluster: a signaling client on one node, with the
// welcome it got and its TCP connection, which the test may drop without
// a close frame (a network failure, as the server sees it).
type member struct {
	*wsPeer
	welcome *signaling.Welcome
	node    *node
	raw     net.Conn
}

// join opens /ws on nd, says hello (resuming token, if set) and waits for
// welcome.
func join(t *testing.T, nd *node, token string) *member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	m := &member{node: nd}
	var mu sync.Mutex
	opts := wsclient.Options{
		Origin: "http://" + nd.http,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			mu.Lock()
			m.raw = c
			mu.Unlock()
			return c, err
		},
	}
	c, err := wsclient.Dial(ctx, "ws://"+nd.http+"/ws", opts)
	if err != nil {
		t.Fatalf("dial %s: %v", nd.id, err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	w, err := c.Hello(ctx, token)
	if err != nil {
		t.Fatalf("hello on %s: %v", nd.id, err)
	}
	m.wsPeer = &wsPeer{Conn: c, t: t, session: w.Session}
	m.welcome = w
	return m
}

// drop closes the member's TCP connection without a WebSocket close: the
// server keeps the session for the resume grace.
func (m *member) drop() { m.raw.Close() }

// matched waits for the member's matched and checks its ICE servers: at
// most 4 URLs, all of the member's own node.
func (m *member) matched() *signaling.Matched {
	m.t.Helper()
	mt := expect[signaling.Matched](m.wsPeer, clusterWait)
	checkICE(m.t, m.node, mt.ICEServers)
	return mt
}

// checkICE checks ICE servers handed to a client of nd: at most 4 URLs in
// all, each naming nd's relay.
func checkICE(t *testing.T, nd *node, servers []signaling.ICEServer) {
	t.Helper()
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.URLs...)
	}
	if len(urls) == 0 || len(urls) > 4 {
		t.Errorf("%s handed %d ICE URLs %v, want 1 to 4", nd.id, len(urls), urls)
	}
	for _, u := range urls {
		_, rest, _ := strings.Cut(u, ":")
		hostPort, _, _ := strings.Cut(rest, "?")
		if hostPort != nd.turn {
			t.Errorf("%s handed ICE URL %s, not of its own relay %s", nd.id, u, nd.turn)
		}
	}
}

// pair has a (on one node) and b (on another) find in mode and waits
// until they are matched with each other; it returns the match id.
func pair(t *testing.T, a, b *member, mode signaling.Mode) string {
	t.Helper()
	a.send(signaling.Find{Mode: mode})
	b.send(signaling.Find{Mode: mode})
	ma, mb := a.matched(), b.matched()
	if ma.Match != mb.Match {
		t.Fatalf("a matched in %s, b in %s: want one match", ma.Match, mb.Match)
	}
	if ma.Role == mb.Role {
		t.Fatalf("both sides are %s: exactly one must offer", ma.Role)
	}
	return ma.Match
}

// observer is an idle session that keeps the last stats it was pushed:
// the figures of the whole cluster.
type observer struct {
	last atomic.Pointer[signaling.Stats]
}

// observe joins nd with a session that only watches stats; its reading
// goroutine ends when the connection is closed at the test's end.
func observe(t *testing.T, nd *node) *observer {
	t.Helper()
	m := join(t, nd, "")
	o := &observer{}
	o.last.Store(&signaling.Stats{Online: m.welcome.Online, Waiting: -1})
	go func() {
		for msg := range m.Messages() {
			if s, ok := msg.(*signaling.Stats); ok {
				o.last.Store(s)
			}
		}
	}()
	return o
}

// waitStats waits until the cluster's stats satisfy cond.
func (o *observer) waitStats(t *testing.T, what string, cond func(s *signaling.Stats) bool) {
	t.Helper()
	if !testsupport.Eventually(clusterWait, func() bool { return cond(o.last.Load()) }) {
		t.Fatalf("waited %v for stats with %s; last %+v", clusterWait, what, *o.last.Load())
	}
}

// exchange checks that what from sends in match reaches to in order:
// an offer, candidates, chat and typing.
func exchange(t *testing.T, from, to *member, match string, n int) {
	t.Helper()
	from.send(signaling.Signal{Match: match, SDP: &signaling.SessionDescription{Type: "offer", SDP: "v=0\r\n"}})
	mid := "0"
	for i := range n {
		from.send(signaling.Signal{Match: match, Candidate: &signaling.ICECandidate{
			Candidate: fmt.Sprintf("candidate:%d 1 udp 2122260223 127.0.0.1 %d typ host", i, 10000+i), SDPMid: &mid,
		}})
	}
	from.send(signaling.Chat{Match: match, Text: "hello from " + from.node.id})
	from.send(signaling.Typing{Match: match, Typing: true})

	if s := expect[signaling.Signal](to.wsPeer, clusterWait); s.Match != match || s.SDP == nil || s.SDP.Type != "offer" {
		t.Fatalf("first signal %+v, want the offer of %s", s, match)
	}
	for i := range n {
		s := expect[signaling.Signal](to.wsPeer, clusterWait)
		if s.Candidate == nil || !strings.HasPrefix(s.Candidate.Candidate, fmt.Sprintf("candidate:%d ", i)) {
			t.Fatalf("candidate %d: got %+v (out of order or lost)", i, s.Candidate)
		}
	}
	if c := expect[signaling.Chat](to.wsPeer, clusterWait); c.Text != "hello from "+from.node.id || c.Match != match {
		t.Fatalf("chat %+v", c)
	}
	if ty := expect[signaling.Typing](to.wsPeer, clusterWait); !ty.Typing || ty.Match != match {
		t.Fatalf("typing %+v", ty)
	}
}

// Users on different nodes meet and talk as on one server: pairing by
// mode and interests, signals, chat and typing in order both ways, Next,
// and nothing of a match reaching the next one.
func TestClusterPairsAcrossNodes(t *testing.T) {
	c := startCluster(t, 2, false, nil)
	n1, n2 := c.nodes[0], c.nodes[1]
	obs := observe(t, n2)

	t.Run("video", func(t *testing.T) {
		a, b := join(t, n1, ""), join(t, n2, "")
		match := pair(t, a, b, signaling.ModeVideo)
		exchange(t, a, b, match, 10)
		exchange(t, b, a, match, 10)
		a.Close()
		if pl := expect[signaling.PartnerLeft](b.wsPeer, clusterWait); pl.Match != match || pl.Reason != signaling.LeftDisconnected {
			t.Fatalf("partner_left %+v, want %s disconnected", pl, match)
		}
	})

	t.Run("interests", func(t *testing.T) {
		obs.waitStats(t, "nobody waiting", func(s *signaling.Stats) bool { return s.Waiting == 0 })
		other := join(t, n2, "")
		other.send(signaling.Find{Mode: signaling.ModeVideo, Interests: []string{"zither"}, InterestsOnly: true})
		obs.waitStats(t, "one waiting", func(s *signaling.Stats) bool { return s.Waiting == 1 })
		a := join(t, n1, "")
		a.send(signaling.Find{Mode: signaling.ModeVideo, Interests: []string{"yodel", "xylophone"}})
		obs.waitStats(t, "two waiting", func(s *signaling.Stats) bool { return s.Waiting == 2 })
		b := join(t, n2, "")
		b.send(signaling.Find{Mode: signaling.ModeVideo, Interests: []string{"Yodel"}})
		ma, mb := a.matched(), b.matched()
		if ma.Match != mb.Match {
			t.Fatalf("a in %s, b in %s", ma.Match, mb.Match)
		}
		if !slices.Equal(ma.Interests, []string{"yodel"}) || !slices.Equal(mb.Interests, []string{"yodel"}) {
			t.Errorf("common interests %v and %v, want [yodel]", ma.Interests, mb.Interests)
		}
		obs.waitStats(t, "the one with another interest still waiting", func(s *signaling.Stats) bool { return s.Waiting == 1 })
		other.send(signaling.Stop{})
		obs.waitStats(t, "nobody waiting", func(s *signaling.Stats) bool { return s.Waiting == 0 })
	})

	t.Run("text", func(t *testing.T) {
		video := join(t, n2, "")
		video.send(signaling.Find{Mode: signaling.ModeVideo})
		obs.waitStats(t, "one waiting for video", func(s *signaling.Stats) bool { return s.WaitingVideo == 1 })
		a, b := join(t, n1, ""), join(t, n2, "")
		a.send(signaling.Find{Mode: signaling.ModeText})
		obs.waitStats(t, "one waiting for text", func(s *signaling.Stats) bool { return s.WaitingText == 1 })
		b.send(signaling.Find{Mode: signaling.ModeText})
		ma, mb := a.matched(), b.matched()
		if ma.Match != mb.Match || ma.Mode != signaling.ModeText || mb.Mode != signaling.ModeText {
			t.Fatalf("a %+v, b %+v: want one text match", ma, mb)
		}
		exchange(t, b, a, ma.Match, 2)
		obs.waitStats(t, "the video user still waiting alone", func(s *signaling.Stats) bool {
			return s.WaitingVideo == 1 && s.WaitingText == 0
		})
		video.send(signaling.Stop{})
	})

	t.Run("relayOnly", func(t *testing.T) {
		obs.waitStats(t, "nobody waiting", func(s *signaling.Stats) bool { return s.Waiting == 0 })
		a, b := join(t, n1, ""), join(t, n2, "")
		a.send(signaling.Find{Mode: signaling.ModeVideo, RelayOnly: true})
		b.send(signaling.Find{Mode: signaling.ModeVideo})
		ma, mb := a.matched(), b.matched()
		if ma.Match != mb.Match || !ma.RelayOnly || mb.RelayOnly {
			t.Fatalf("a %+v, b %+v: want one match, relayOnly echoed to a only", ma, mb)
		}
		// "Hide my IP" on node1 is enforced on what reaches node2.
		const secret = "192.0.2.10"
		mid := "0"
		a.send(signaling.Signal{Match: ma.Match, Candidate: &signaling.ICECandidate{
			Candidate: "candidate:1 1 udp 2122260223 " + secret + " 50000 typ host", SDPMid: &mid,
		}})
		a.send(signaling.Signal{Match: ma.Match, Candidate: &signaling.ICECandidate{
			Candidate: "candidate:2 1 udp 41885439 127.0.0.1 20001 typ relay raddr " + secret + " rport 50000", SDPMid: &mid,
		}})
		a.send(signaling.Signal{Match: ma.Match, SDP: &signaling.SessionDescription{Type: "offer", SDP: "v=0\r\n" +
			"o=- 1 2 IN IP4 " + secret + "\r\ns=-\r\nt=0 0\r\nm=audio 50000 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 " + secret + "\r\n" +
			"a=candidate:1 1 udp 2122260223 " + secret + " 50000 typ host\r\n"}})
		got := expect[signaling.Signal](b.wsPeer, clusterWait)
		if got.Candidate == nil || !strings.Contains(got.Candidate.Candidate, "typ relay") || strings.Contains(got.Candidate.Candidate, secret) {
			t.Fatalf("b's first signal %+v: want the relay candidate only, without a's address", got.Candidate)
		}
		got = expect[signaling.Signal](b.wsPeer, clusterWait)
		if got.SDP == nil || strings.Contains(got.SDP.SDP, secret) {
			t.Fatalf("b's second signal %+v: want the offer without a's address", got)
		}
	})

	t.Run("report", func(t *testing.T) {
		// a reports b; e skips f. After the interest wait two who just
		// skipped each other meet again when nobody else waits (e and f,
		// in video), two who reported never (a and b, in text).
		obs.waitStats(t, "nobody waiting", func(s *signaling.Stats) bool { return s.Waiting == 0 })
		a, b := join(t, n1, ""), join(t, n2, "")
		reported := pair(t, a, b, signaling.ModeText)
		e, f := join(t, n1, ""), join(t, n2, "")
		skipped := pair(t, e, f, signaling.ModeVideo)
		a.send(signaling.Report{Match: reported, Reason: "test"})
		if pl := expect[signaling.PartnerLeft](b.wsPeer, clusterWait); pl.Reason != signaling.LeftReported {
			t.Fatalf("b: %+v, want partner_left reported", pl)
		}
		e.send(signaling.Next{})
		expect[signaling.PartnerLeft](f.wsPeer, clusterWait)
		a.send(signaling.Find{Mode: signaling.ModeText})
		b.send(signaling.Find{Mode: signaling.ModeText})
		f.send(signaling.Find{Mode: signaling.ModeVideo})
		again := e.matched()
		if f.matched().Match != again.Match || again.Match == skipped {
			t.Fatalf("e and f did not meet again after the interest wait")
		}
		obs.waitStats(t, "e and f no longer waiting", func(s *signaling.Stats) bool { return s.WaitingVideo == 0 })
		if s := obs.last.Load(); s.WaitingText != 2 {
			t.Fatalf("after the interest wait %d wait for text, want a and b, who reported, still apart", s.WaitingText)
		}
		a.send(signaling.Stop{})
		b.send(signaling.Stop{})
	})

	t.Run("next", func(t *testing.T) {
		obs.waitStats(t, "nobody waiting", func(s *signaling.Stats) bool { return s.Waiting == 0 })
		a, b := join(t, n1, ""), join(t, n2, "")
		first := pair(t, a, b, signaling.ModeVideo)
		exchange(t, a, b, first, 3)
		a.send(signaling.Next{})
		if pl := expect[signaling.PartnerLeft](b.wsPeer, clusterWait); pl.Match != first || pl.Reason != signaling.LeftNext {
			t.Fatalf("partner_left %+v, want %s next", pl, first)
		}
		obs.waitStats(t, "a waiting again", func(s *signaling.Stats) bool { return s.Waiting == 1 })
		// Late messages of the first match, from both sides: dropped.
		b.send(signaling.Chat{Match: first, Text: "stale from b"})
		b.send(signaling.Signal{Match: first, Candidate: &signaling.ICECandidate{Candidate: "candidate:99 1 udp 1 127.0.0.1 9 typ host"}})

		cc := join(t, n2, "")
		cc.send(signaling.Find{Mode: signaling.ModeVideo})
		ma, mc := a.matched(), cc.matched()
		if ma.Match != mc.Match || ma.Match == first {
			t.Fatalf("a in %s, c in %s, first match %s: want a new match of a and c", ma.Match, mc.Match, first)
		}
		second := ma.Match
		a.send(signaling.Signal{Match: first, Candidate: &signaling.ICECandidate{Candidate: "candidate:98 1 udp 1 127.0.0.1 9 typ host"}})
		a.send(signaling.Chat{Match: first, Text: "stale from a"})
		b.send(signaling.Chat{Match: first, Text: "stale from b, later"})
		a.send(signaling.Chat{Match: second, Text: "fresh from a"})
		if ch := expect[signaling.Chat](cc.wsPeer, clusterWait); ch.Text != "fresh from a" || ch.Match != second {
			t.Fatalf("c's first message: %+v, want a's fresh chat in %s", ch, second)
		}
		cc.send(signaling.Chat{Match: second, Text: "fresh from c"})
		if ch := expect[signaling.Chat](a.wsPeer, clusterWait); ch.Text != "fresh from c" || ch.Match != second {
			t.Fatalf("a's first message after matched: %+v, want c's fresh chat in %s", ch, second)
		}
	})
}

// A node killed mid-call: its sessions' partners on other nodes are told
// within the bound, its waiting users leave the pool, and the next users
// meet each other, not a ghost.
func TestClusterNodeKilledMidCall(t *testing.T) {
	// A grace as short as the lease: the node's death is what is tested.
	c := startCluster(t, 3, false, map[string]string{"STRANGERS_RESUME_GRACE": "5s"})
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	obs := observe(t, n3)

	a, b := join(t, n1, ""), join(t, n2, "")
	match := pair(t, a, b, signaling.ModeVideo)
	exchange(t, a, b, match, 2)
	ghost := join(t, n1, "")
	ghost.send(signaling.Find{Mode: signaling.ModeVideo})
	obs.waitStats(t, "the user on node1 waiting", func(s *signaling.Stats) bool { return s.Waiting == 1 })

	killed := time.Now()
	n1.kill(t)
	pl := expect[signaling.PartnerLeft](b.wsPeer, nodeDeathBound+clusterWait)
	took := time.Since(killed)
	t.Logf("partner_left %v after the kill", took.Round(time.Millisecond))
	if pl.Match != match || pl.Reason != signaling.LeftDisconnected {
		t.Errorf("partner_left %+v, want %s disconnected", pl, match)
	}
	if took > nodeDeathBound {
		t.Errorf("partner_left came %v after the kill; the bound is %v", took, nodeDeathBound)
	}
	obs.waitStats(t, "the dead node's waiting user gone from the pool", func(s *signaling.Stats) bool { return s.Waiting == 0 })

	// The survivors meet each other; b, idle after partner_left, too.
	cc, d := join(t, n2, ""), join(t, n3, "")
	second := pair(t, cc, d, signaling.ModeVideo)
	exchange(t, cc, d, second, 1)
	e := join(t, n3, "")
	third := pair(t, b, e, signaling.ModeText)
	exchange(t, e, b, third, 1)
	for _, nd := range []*node{n2, n3} {
		if !nd.ready() {
			t.Errorf("%s not ready after node1 died", nd.id)
		}
	}
}

// Redis stops mid-run, and comes back with its data or without: the nodes
// stay up, say they are not ready, refuse finds with "unavailable"; when
// Redis is back they pair again, and nobody ends up in two matches.
func TestClusterRedisRestart(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepData=%v", keep), func(t *testing.T) {
			c := startCluster(t, 2, keep, nil)
			n1, n2 := c.nodes[0], c.nodes[1]
			obs := observe(t, n2)
			a, b := join(t, n1, ""), join(t, n2, "")
			match := pair(t, a, b, signaling.ModeVideo)
			w := join(t, n1, "")
			w.send(signaling.Find{Mode: signaling.ModeText})
			obs.waitStats(t, "w waiting", func(s *signaling.Stats) bool { return s.WaitingText == 1 })

			c.redis.Stop()
			for _, nd := range c.nodes {
				testsupport.WaitFor(t, clusterWait, nd.id+"'s /readyz to say not ready", func() bool {
					return probe("http://"+nd.http+"/readyz") == http.StatusServiceUnavailable
				})
				if code := probe("http://" + nd.http + "/healthz"); code != http.StatusOK {
					t.Errorf("%s /healthz = %d with Redis down, want 200: the node stays up", nd.id, code)
				}
			}
			late := join(t, n1, "")
			late.send(signaling.Find{Mode: signaling.ModeText})
			if e := expect[signaling.Error](late.wsPeer, clusterWait); e.Code != signaling.CodeUnavailable {
				t.Fatalf("find with Redis down: error %+v, want code %s", e, signaling.CodeUnavailable)
			}

			c.redis.Start()
			for _, nd := range c.nodes {
				testsupport.WaitFor(t, clusterWait, nd.id+" ready again", nd.ready)
			}
			x, y := join(t, n2, ""), join(t, n1, "")
			x.send(signaling.Find{Mode: signaling.ModeText})
			y.send(signaling.Find{Mode: signaling.ModeText})
			late.send(signaling.Find{Mode: signaling.ModeText})
			// w, x, y and late: four text users, two matches, each user
			// in exactly one.
			users := []*member{w, x, y, late}
			in := map[string][]string{} // match id -> sessions
			for _, u := range users {
				m := u.matched()
				in[m.Match] = append(in[m.Match], u.session)
			}
			if len(in) != 2 {
				t.Fatalf("four users in %d matches %v, want 2 of two each", len(in), in)
			}
			for id, ss := range in {
				if len(ss) != 2 || ss[0] == ss[1] {
					t.Errorf("match %s has %v, want two sessions", id, ss)
				}
			}
			obs.waitStats(t, "nobody waiting", func(s *signaling.Stats) bool { return s.Waiting == 0 })
			for _, u := range append(users, a, b) {
				for len(u.Messages()) > 0 {
					if m, ok := (<-u.Messages()).(*signaling.Matched); ok {
						t.Errorf("%s matched again, in %s", u.session, m.Match)
					}
				}
			}
			if keep {
				// The call survived with its match.
				exchange(t, a, b, match, 1)
			}
		})
	}
}

// A WebSocket that drops on one node and resumes on another gets its
// session and match back, with what its partner sent meanwhile.
func TestClusterResumeOnAnotherNode(t *testing.T) {
	c := startCluster(t, 3, false, nil)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	for _, to := range []*node{n2, n3} {
		t.Run("to "+to.id, func(t *testing.T) {
			a, b := join(t, n1, ""), join(t, n2, "")
			match := pair(t, a, b, signaling.ModeVideo)
			a.drop()
			testsupport.WaitFor(t, clusterWait, "node1 to see the drop", func() bool {
				return scrape(n1.http)["strangers_connections"] == 0
			})
			b.send(signaling.Chat{Match: match, Text: "are you there?"})
			b.send(signaling.Signal{Match: match, SDP: &signaling.SessionDescription{Type: "offer", SDP: "v=0\r\n"}})
			b.send(signaling.Chat{Match: match, Text: "still there?"})

			back := join(t, to, a.welcome.Resume)
			w := back.welcome
			if !w.Resumed || w.Session != a.session || w.State != signaling.StateMatched || w.Match != match {
				t.Fatalf("welcome on %s: %+v, want session %s resumed in match %s", to.id, w, a.session, match)
			}
			if ch := expect[signaling.Chat](back.wsPeer, clusterWait); ch.Text != "are you there?" {
				t.Fatalf("first message after the resume: %+v", ch)
			}
			if s := expect[signaling.Signal](back.wsPeer, clusterWait); s.SDP == nil || s.Match != match {
				t.Fatalf("second message after the resume: %+v", s)
			}
			if ch := expect[signaling.Chat](back.wsPeer, clusterWait); ch.Text != "still there?" {
				t.Fatalf("third message after the resume: %+v", ch)
			}
			exchange(t, back, b, match, 2)
			exchange(t, b, back, match, 2)
			back.Close()
			if pl := expect[signaling.PartnerLeft](b.wsPeer, clusterWait); pl.Match != match {
				t.Fatalf("after a left for good: %+v", pl)
			}
		})
	}
}

// SIGTERM drains a node: its clients are told to reconnect, do so on
// another node with their resume tokens, and keep their matches.
func TestClusterDrain(t *testing.T) {
	c := startCluster(t, 2, false, nil)
	n1, n2 := c.nodes[0], c.nodes[1]
	a, b := join(t, n1, ""), join(t, n2, "")
	m1 := pair(t, a, b, signaling.ModeVideo)
	x, y := join(t, n1, ""), join(t, n1, "")
	m2 := pair(t, x, y, signaling.ModeText)

	if err := n1.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var retry time.Duration
	for _, u := range []*member{a, x, y} {
		r := expect[signaling.Restarting](u.wsPeer, clusterWait)
		if r.RetryIn <= 0 {
			t.Errorf("restarting %+v, want a positive retryIn", r)
		}
		retry = max(retry, time.Duration(r.RetryIn)*time.Millisecond)
	}
	// Reconnect as told: after retryIn (a page adds jitter; the load
	// balancer sends it to a node still up).
	<-time.After(retry)
	var back []*member
	for _, u := range []*member{a, x, y} {
		nu := join(t, n2, u.welcome.Resume)
		if w := nu.welcome; !w.Resumed || w.Session != u.session || w.State != signaling.StateMatched {
			t.Fatalf("resume on node2: %+v, want session %s matched", w, u.session)
		}
		back = append(back, nu)
	}
	if back[0].welcome.Match != m1 || back[1].welcome.Match != m2 || back[2].welcome.Match != m2 {
		t.Fatalf("resumed in %s, %s, %s; want %s, %s, %s", back[0].welcome.Match, back[1].welcome.Match, back[2].welcome.Match, m1, m2, m2)
	}
	exchange(t, back[0], b, m1, 2)
	exchange(t, b, back[0], m1, 2)
	exchange(t, back[1], back[2], m2, 2)
	select {
	case err := <-n1.p.exited:
		if err != nil {
			t.Errorf("node1 after SIGTERM: %v", err)
		}
	case <-time.After(clusterWait):
		t.Error("node1 did not exit after SIGTERM")
	}
}

// A session's relay allocations on one node stay valid while the session
// lives anywhere in the cluster, and are cut on every node soon after it
// ends.
func TestClusterRevokesRelayAcrossNodes(t *testing.T) {
	c := startCluster(t, 2, false, map[string]string{"STRANGERS_TURN_SESSION_GRACE": "1s"})
	n1, n2 := c.nodes[0], c.nodes[1]
	active := func() float64 { return scrape(n1.http)["strangers_relay_allocations_active"] }

	a, b := join(t, n1, ""), join(t, n2, "")
	a.send(signaling.Find{Mode: signaling.ModeVideo})
	b.send(signaling.Find{Mode: signaling.ModeVideo})
	ma := a.matched()
	b.matched()
	addr, cred := turnUDP(t, &signaling.ICEReply{ICEServers: ma.ICEServers})
	if !allocateUDP(t, addr, cred) {
		t.Fatal("a's credential does not allocate on node1")
	}
	// x: a session on node1 that ends, to show what ending does.
	x := join(t, n1, "")
	x.send(signaling.ICERequest{})
	iceX := expect[signaling.ICEReply](x.wsPeer, clusterWait)
	checkICE(t, n1, iceX.ICEServers)
	_, credX := turnUDP(t, iceX)
	if !allocateUDP(t, addr, credX) {
		t.Fatal("x's credential does not allocate on node1")
	}
	testsupport.WaitFor(t, clusterWait, "two allocations on node1", func() bool { return active() == 2 })

	a.drop()
	back := join(t, n2, a.welcome.Resume)
	if !back.welcome.Resumed {
		t.Fatalf("resume on node2: %+v", back.welcome)
	}
	x.Close()
	testsupport.WaitFor(t, clusterWait, "the ended session's allocation cut", func() bool { return active() == 1 })
	if allocateUDP(t, addr, credX) {
		t.Error("an ended session's credential allocated on node1")
	}
	if !allocateUDP(t, addr, cred) {
		t.Fatal("a's credential no longer allocates on node1 after a resumed on node2")
	}
	testsupport.WaitFor(t, clusterWait, "a's two allocations on node1", func() bool { return active() == 2 })

	back.Close() // a ends for good, on node2
	testsupport.WaitFor(t, clusterWait, "node1 to cut a's allocations", func() bool { return active() == 0 })
	if allocateUDP(t, addr, cred) {
		t.Error("a's credential allocated on node1 after a ended on node2")
	}
}
