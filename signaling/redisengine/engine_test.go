package redisengine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/strangers-chat/strangers/internal/sessionid"
	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait for something another goroutine or node does.
const wait = 20 * time.Second

// fakeHost records what an engine tells the hub.
type fakeHost struct {
	mu        sync.Mutex
	paired    map[string][]signaling.Pairing
	delivered map[string][]string // session -> data, in order
	left      map[string][]leftCall
	claimed   []string
	pending   map[string][][]byte // what Claimed returns
	handover  map[string][][]byte
	ended     map[string][]bool
	resyncs   int
	onDeliver func(data []byte) // set before the deliveries it is to see
}

type leftCall struct {
	match string
	why   signaling.LeftReason
}

func newHost() *fakeHost {
	return &fakeHost{
		paired:    map[string][]signaling.Pairing{},
		delivered: map[string][]string{},
		left:      map[string][]leftCall{},
		pending:   map[string][][]byte{},
		handover:  map[string][][]byte{},
		ended:     map[string][]bool{},
	}
}

func (h *fakeHost) Paired(id string, p signaling.Pairing) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.paired[id] = append(h.paired[id], p)
}

func (h *fakeHost) Deliver(id, match string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.onDeliver != nil {
		h.onDeliver(data)
		return
	}
	h.delivered[id] = append(h.delivered[id], match+"|"+string(data))
}

func (h *fakeHost) PartnerLeft(id, match string, why signaling.LeftReason) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.left[id] = append(h.left[id], leftCall{match, why})
}

func (h *fakeHost) Claimed(id string) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claimed = append(h.claimed, id)
	p := h.pending[id]
	delete(h.pending, id)
	return p
}

func (h *fakeHost) Handover(id string, pending [][]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.handover[id] = pending
}

func (h *fakeHost) Ended(id string, revoke bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended[id] = append(h.ended[id], revoke)
}

func (h *fakeHost) Resync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resyncs++
}

// read runs f under the host's lock.
func (h *fakeHost) read(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
}

// node is an engine with its fake host.
type node struct {
	*Engine
	host *fakeHost
}

func startNode(t testing.TB, r *testsupport.Redis, name string, tweak func(*Config)) *node {
	t.Helper()
	cfg := Config{URL: r.URL(), Node: name, Timeout: 2 * time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := newHost()
	if err := e.Start(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(false) })
	testsupport.WaitFor(t, wait, name+" ready", e.Ready)
	return &node{e, h}
}

// kill stops n as a crash would: no goodbye, its lease left to run out.
func (n *node) kill() {
	n.closed.Store(true)
	n.stopBg()
	n.closeSubscription()
	n.bgDone.Wait()
	close(n.pubQuit)
	<-n.pubDone
	n.up.Store(false)
	_ = n.rdb.Close()
}

// session registers a new session on n and returns its id and token.
func (n *node) session(t testing.TB) (id, token string) {
	t.Helper()
	id, token = sessionid.New(), sessionid.New()
	if err := n.Register(signaling.SessionRecord{ID: id, Token: token, Node: n.Node(), Ident: signaling.Identity{Client: "c-" + id}, State: signaling.StateIdle}); err != nil {
		t.Fatal(err)
	}
	return id, token
}

func ticket(id string, tags ...string) signaling.Ticket {
	return signaling.Ticket{Session: id, Mode: signaling.ModeVideo, Interests: tags, Anyone: len(tags) == 0,
		Ident: signaling.Identity{Client: "c-" + id}, WaitSince: time.Now()}
}

func mustQueue(t testing.TB, n *node, tk signaling.Ticket) signaling.Pairing {
	t.Helper()
	p, err := n.Queue(tk)
	if err != nil {
		t.Fatalf("Queue(%s) on %s: %v", tk.Session, n.Node(), err)
	}
	return p
}

// pairAcross matches a session of a with one of b and returns them with
// the match id.
func pairAcross(t testing.TB, a, b *node) (sa, sb, match string) {
	t.Helper()
	sa, _ = a.session(t)
	sb, _ = b.session(t)
	tag := "tag-" + sa
	if p := mustQueue(t, a, ticket(sa, tag)); !p.Zero() {
		t.Fatalf("paired at once with %s", p.Partner)
	}
	p := mustQueue(t, b, ticket(sb, tag))
	if p.Partner != sa {
		t.Fatalf("%s paired with %q, want %s", sb, p.Partner, sa)
	}
	testsupport.WaitFor(t, wait, "Paired on "+a.Node(), func() (ok bool) {
		a.host.read(func() { ok = len(a.host.paired[sa]) == 1 })
		return ok
	})
	return sa, sb, p.Match
}

func TestPairsAcrossNodes(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)

	sa, _ := a.session(t)
	sb, _ := b.session(t)
	if p := mustQueue(t, a, ticket(sa, "go", "chess", "jazz")); !p.Zero() {
		t.Fatalf("alone, yet paired: %+v", p)
	}
	c, err := b.Counts()
	if err != nil || c.WaitingVideo != 1 || c.Online != 2 || c.Nodes != 2 {
		t.Fatalf("Counts = %+v, %v; want 1 waiting of 2 online on 2 nodes", c, err)
	}
	p := mustQueue(t, b, ticket(sb, "jazz", "go"))
	if p.Partner != sa || !p.Remote || p.Earlier || p.Match == "" {
		t.Fatalf("pairing on b = %+v", p)
	}
	if fmt.Sprint(p.Common) != "[jazz go]" || p.PartnerIdent.Client != "c-"+sa {
		t.Errorf("pairing on b: common %v (want b's order [jazz go]), partner ident %+v", p.Common, p.PartnerIdent)
	}
	var q signaling.Pairing
	testsupport.WaitFor(t, wait, "Paired on a", func() (ok bool) {
		a.host.read(func() {
			if ps := a.host.paired[sa]; len(ps) == 1 {
				q, ok = ps[0], true
			}
		})
		return ok
	})
	if q.Match != p.Match || q.Partner != sb || !q.Remote || q.Role == p.Role || q.PartnerIdent.Client != "c-"+sb {
		t.Errorf("a told %+v; b got %+v", q, p)
	}
	if fmt.Sprint(q.Common) != "[go jazz]" {
		t.Errorf("a's common interests %v, want a's order [go jazz]", q.Common)
	}
	if c, err := a.Counts(); err != nil || c.WaitingVideo != 0 {
		t.Errorf("after the pairing Counts = %+v, %v", c, err)
	}
	// Either side may end the match once; the other side's call finds it gone.
	if err := b.EndMatch(p.Match, sb, sa, signaling.LeftNext); err != nil {
		t.Fatal(err)
	}
	if err := a.EndMatch(p.Match, sa, sb, signaling.LeftNext); !errors.Is(err, signaling.ErrMatchGone) {
		t.Errorf("second EndMatch: %v, want ErrMatchGone", err)
	}
	testsupport.WaitFor(t, wait, "PartnerLeft on a", func() (ok bool) {
		a.host.read(func() { ok = len(a.host.left[sa]) == 1 && a.host.left[sa][0] == leftCall{p.Match, signaling.LeftNext} })
		return ok
	})
	// Recent partners: not paired again while either has not settled.
	mustQueue(t, a, ticket(sa))
	if p := mustQueue(t, b, ticket(sb)); !p.Zero() {
		t.Fatalf("recent partners paired again before settling: %+v", p)
	}
	// Both settled and nobody else: they may meet again.
	st := ticket(sa)
	st.Settled = true
	mustQueue(t, a, st)
	st = ticket(sb)
	st.Settled = true
	if p := mustQueue(t, b, st); p.Partner != sa {
		t.Fatalf("settled recent partners not paired again: %+v", p)
	}
}

func TestNeverReportedModesAndShadowApart(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)
	sa, _ := a.session(t)
	sb, _ := b.session(t)
	if err := b.Block(sb, sa); err != nil {
		t.Fatal(err)
	}
	tk := ticket(sa)
	tk.Settled = true
	mustQueue(t, a, tk)
	tk = ticket(sb)
	tk.Settled = true
	if p := mustQueue(t, b, tk); !p.Zero() {
		t.Fatalf("paired with the session it reported: %+v", p)
	}
	// Other modes and the shadow pool are apart.
	sc, _ := a.session(t)
	tk = ticket(sc)
	tk.Mode = signaling.ModeText
	if p := mustQueue(t, a, tk); !p.Zero() {
		t.Fatalf("text paired with video: %+v", p)
	}
	sd, _ := b.session(t)
	tk = ticket(sd)
	tk.Shadow = true
	if p := mustQueue(t, b, tk); !p.Zero() {
		t.Fatalf("shadowed paired with the main pool: %+v", p)
	}
	// Interests only, no common tag: nobody.
	se, _ := b.session(t)
	if p := mustQueue(t, b, ticket(se, "opera")); !p.Zero() {
		t.Fatalf("paired without a common interest: %+v", p)
	}
	c, err := a.Counts()
	if err != nil || c.WaitingVideo != 4 || c.WaitingText != 1 || c.Shadowed != 1 {
		t.Fatalf("Counts = %+v, %v", c, err)
	}
	// Withdraw takes one out; queueing it again replaces its entry.
	if p, err := a.Withdraw(sa); err != nil || !p.Zero() {
		t.Fatalf("Withdraw = %+v, %v", p, err)
	}
	mustQueue(t, a, ticket(sa, "x"))
	mustQueue(t, a, ticket(sa, "y"))
	if c, _ := a.Counts(); c.WaitingVideo != 4 {
		t.Errorf("after withdraw and two queues, %d waiting, want 4", c.WaitingVideo)
	}
}

func TestEarlierPairingOnWithdrawAndQueue(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)
	sa, sb, match := pairAcross(t, a, b)
	// a has not acted on Paired yet: its Withdraw and Queue see the match.
	for _, f := range []func() (signaling.Pairing, error){
		func() (signaling.Pairing, error) { return a.Withdraw(sa) },
		func() (signaling.Pairing, error) { return a.Queue(ticket(sa)) },
	} {
		p, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if !p.Earlier || p.Match != match || p.Partner != sb || !p.Remote || len(p.Common) != 1 || p.PartnerIdent.Client != "c-"+sb {
			t.Errorf("earlier pairing = %+v", p)
		}
	}
}

func TestDeliversInOrder(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)
	sa, _, match := pairAcross(t, a, b)
	const n = 1000
	for i := range n {
		b.Send(sa, match, []byte(strconv.Itoa(i)))
	}
	var got []string
	testsupport.WaitFor(t, wait, "1,000 messages", func() (ok bool) {
		a.host.read(func() { got = append([]string(nil), a.host.delivered[sa]...) })
		return len(got) >= n
	})
	for i, d := range got {
		if want := match + "|" + strconv.Itoa(i); d != want {
			t.Fatalf("message %d is %q, want %q", i, d, want)
		}
	}
}

func TestClaimHandsOverAndMoves(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b, c := startNode(t, r, "a", nil), startNode(t, r, "b", nil), startNode(t, r, "c", nil)
	// A session with a client key, paired with b's.
	sa, tokA := sessionid.New(), sessionid.New()
	{
		if err := a.Register(signaling.SessionRecord{ID: sa, Token: tokA, Ident: signaling.Identity{Client: "c-" + sa}, ClientKey: "key", State: signaling.StateIdle}); err != nil {
			t.Fatal(err)
		}
	}
	sb, _ := b.session(t)
	st := ticket(sa, "t")
	st.Settled = true // with interests, settled, not accepting anyone: interests only
	mustQueue(t, a, st)
	p := mustQueue(t, b, ticket(sb, "t"))
	if p.Partner != sa {
		t.Fatalf("pairing %+v", p)
	}
	a.host.read(func() { a.host.pending[sa] = [][]byte{[]byte("one"), []byte("two")} })

	if _, ok, err := c.Claim("no such token"); ok || err != nil {
		t.Fatalf("Claim of an unknown token: %v, %v", ok, err)
	}
	rec, ok, err := c.Claim(tokA)
	if err != nil || !ok {
		t.Fatalf("Claim: %v, %v", ok, err)
	}
	if rec.ID != sa || rec.Node != "c" || rec.State != signaling.StateMatched || rec.Match != p.Match || rec.Partner != sb ||
		rec.ClientKey != "key" || rec.Ident.Client != "c-"+sa || rec.PartnerIdent.Client != "c-"+sb || rec.Token != tokA ||
		fmt.Sprint(rec.Interests) != "[t]" || rec.Mode != signaling.ModeVideo || !rec.InterestsOnly || !rec.HasFind {
		t.Errorf("claimed record %+v", rec)
	}
	testsupport.WaitFor(t, wait, "handover on c", func() (ok bool) {
		c.host.read(func() { _, ok = c.host.handover[sa] })
		return ok
	})
	c.host.read(func() {
		if fmt.Sprintf("%s", c.host.handover[sa]) != "[one two]" {
			t.Errorf("handover %s", c.host.handover[sa])
		}
	})
	a.host.read(func() {
		if fmt.Sprint(a.host.claimed) != "["+sa+"]" {
			t.Errorf("a told Claimed %v", a.host.claimed)
		}
	})
	// b learns where sa went: what it sends now arrives on c.
	testsupport.WaitFor(t, wait, "b's route to c", func() bool {
		b.Send(sa, p.Match, []byte("hi"))
		var n int
		c.host.read(func() { n = len(c.host.delivered[sa]) })
		return n > 0
	})
	a.host.read(func() {
		if len(a.host.delivered[sa]) != 0 {
			t.Errorf("a delivered %v after the claim", a.host.delivered[sa])
		}
	})
	// c's session ends the match; b is told.
	if err := c.EndMatch(p.Match, sa, sb, signaling.LeftStop); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, wait, "PartnerLeft on b", func() (ok bool) {
		b.host.read(func() { ok = len(b.host.left[sb]) == 1 })
		return ok
	})
	// End tells every other node, with revoke.
	if err := c.End(sa, true); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, b} {
		testsupport.WaitFor(t, wait, "Ended on "+n.Node(), func() (ok bool) {
			n.host.read(func() { ok = len(n.host.ended[sa]) == 1 && n.host.ended[sa][0] })
			return ok
		})
	}
	if _, ok, _ := b.Claim(tokA); ok {
		t.Error("an ended session was claimed")
	}
}

func TestClaimFromDeadNodeTellsPartnerNode(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	short := func(c *Config) { c.LeaseTTL = time.Second; c.ResumeGrace = 10 * time.Second }
	a, b, c := startNode(t, r, "a", short), startNode(t, r, "b", short), startNode(t, r, "c", short)
	sa, tok := a.session(t)
	sb, _ := b.session(t)
	mustQueue(t, a, ticket(sa))
	p := mustQueue(t, b, ticket(sb))
	a.kill()
	testsupport.WaitFor(t, wait, "a's lease to run out", func() bool {
		cn, err := b.Counts()
		return err == nil && cn.Nodes == 2
	})
	if _, ok, err := c.Claim(tok); !ok || err != nil {
		t.Fatalf("Claim from a dead node: %v %v", ok, err)
	}
	testsupport.WaitFor(t, wait, "b's route to c", func() bool {
		b.Send(sa, p.Match, []byte("hi"))
		var n int
		c.host.read(func() { n = len(c.host.delivered[sa]) })
		return n > 0
	})
	// Claimed, it is no orphan: it does not end when the grace runs out.
	b.host.read(func() {
		if len(b.host.left[sb]) != 0 {
			t.Errorf("partner told it left: %v", b.host.left[sb])
		}
	})
}

func TestDeadNodesPartnersAreToldOnce(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	short := func(c *Config) { c.LeaseTTL = time.Second; c.ResumeGrace = 600 * time.Millisecond }
	a, b, c, d := startNode(t, r, "a", short), startNode(t, r, "b", short), startNode(t, r, "c", short), startNode(t, r, "d", short)
	sa, sb, match := pairAcross(t, a, b)
	waiting, _ := a.session(t)
	mustQueue(t, a, ticket(waiting, "only-here"))
	killed := time.Now()
	a.kill()
	// Its waiting session leaves the pool as soon as a is found dead.
	testsupport.WaitFor(t, wait, "nobody waiting", func() bool {
		c, err := b.Counts()
		return err == nil && c.WaitingVideo == 0
	})
	testsupport.WaitFor(t, wait, "PartnerLeft on b", func() (ok bool) {
		b.host.read(func() { ok = len(b.host.left[sb]) > 0 })
		return ok
	})
	t.Logf("partner told %v after the kill (lease %v, grace %v)", time.Since(killed).Round(time.Millisecond), time.Second, 600*time.Millisecond)
	for _, n := range []*node{b, c, d} {
		testsupport.WaitFor(t, wait, "Ended on "+n.Node(), func() (ok bool) {
			n.host.read(func() { ok = len(n.host.ended[sa]) > 0 && len(n.host.ended[waiting]) > 0 })
			return ok
		})
	}
	// Every node got its notices from one reaper, once.
	for _, n := range []*node{b, c, d} {
		n.host.read(func() {
			if len(n.host.ended[sa]) != 1 || len(n.host.ended[waiting]) != 1 {
				t.Errorf("%s told Ended %d and %d times", n.Node(), len(n.host.ended[sa]), len(n.host.ended[waiting]))
			}
		})
	}
	b.host.read(func() {
		if l := b.host.left[sb]; len(l) != 1 || l[0] != (leftCall{match, signaling.LeftDisconnected}) {
			t.Errorf("b told %v", l)
		}
	})
	// Nobody is matched with the ghost: its waiting session left the pool.
	x, _ := c.session(t)
	if p := mustQueue(t, c, ticket(x, "only-here")); !p.Zero() {
		t.Errorf("paired with a dead node's session: %+v", p)
	}
	if cn, err := c.Counts(); err != nil || cn.Online != 2 || cn.Nodes != 3 {
		t.Errorf("Counts = %+v, %v (want b's session and the new one, 3 nodes)", cn, err)
	}
}

func TestOneReaperActs(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts) // no engine: no reaper but the script's callers
	defer c.Close()
	ctx := context.Background()
	for i := range 20 {
		if err := c.ZAdd(ctx, keyPrefix+"nodes", redisZ(1, "ghost"+strconv.Itoa(i))).Err(); err != nil {
			t.Fatal(err)
		}
		c.SAdd(ctx, keyPrefix+"nodesess:ghost"+strconv.Itoa(i), "s"+strconv.Itoa(i))
	}
	var mu sync.Mutex
	reaped := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			dead, err := reapScript.Run(ctx, c, nil, keyPrefix, 1000, time.Hour.Milliseconds(), 1000).StringSlice()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			for _, n := range dead {
				reaped[n]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(reaped) != 20 {
		t.Errorf("%d nodes reaped, want 20", len(reaped))
	}
	for n, k := range reaped {
		if k != 1 {
			t.Errorf("%s reaped %d times", n, k)
		}
	}
	if n, _ := c.ZCard(ctx, keyPrefix+"orphans").Result(); n != 20 {
		t.Errorf("%d orphans, want 20", n)
	}
}

func TestOutage(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{Persist: true})
	tweak := func(c *Config) { c.Timeout = time.Second }
	a, b := startNode(t, r, "a", tweak), startNode(t, r, "b", tweak)
	sa, sb, match := pairAcross(t, a, b)
	r.Kill()
	testsupport.WaitFor(t, wait, "a not ready", func() bool {
		_, _ = a.Counts()
		return !a.Ready()
	})
	start := time.Now()
	for range 100 {
		if _, err := a.Queue(ticket(sa)); !errors.Is(err, signaling.ErrEngineUnavailable) {
			t.Fatalf("Queue while down: %v", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("100 calls while down took %v: they should fail at once", d)
	}
	a.Send(sb, match, []byte("lost")) // dropped, counted, not blocking
	r.Start()
	for _, n := range []*node{a, b} {
		testsupport.WaitFor(t, wait, n.Node()+" ready and resynced", func() (ok bool) {
			n.host.read(func() { ok = n.host.resyncs > 0 })
			return ok && n.Ready()
		})
	}
	// The data came back: the match is still there.
	if p, err := a.Withdraw(sa); err != nil || p.Match != match {
		t.Errorf("after the restart Withdraw = %+v, %v", p, err)
	}
	// Messages flow again.
	testsupport.WaitFor(t, wait, "delivery after the outage", func() (ok bool) {
		b.Send(sa, match, []byte("back"))
		a.host.read(func() { ok = len(a.host.delivered[sa]) > 0 })
		return ok
	})
}

func TestRedisWithoutItsDataMakesNoDoubleMatch(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)
	sa, sb, match := pairAcross(t, a, b)
	r.Restart(false)
	for _, n := range []*node{a, b} {
		testsupport.WaitFor(t, wait, n.Node()+" resynced", func() (ok bool) {
			_, _ = n.Counts() // notices the outage if the subscriber did not
			n.host.read(func() { ok = n.host.resyncs > 0 })
			return ok && n.Ready()
		})
	}
	// The hub registers its sessions again, as they are.
	rec := signaling.SessionRecord{ID: sa, Token: "tok-a", State: signaling.StateMatched, Match: match, Partner: sb}
	if err := a.Register(rec); err != nil {
		t.Fatal(err)
	}
	x, _ := b.session(t)
	tk := ticket(x)
	tk.Settled = true
	if p := mustQueue(t, b, tk); !p.Zero() {
		t.Fatalf("paired with a session that is in a match: %+v", p)
	}
	if p, err := a.Queue(ticket(sa)); err != nil || !p.Earlier || p.Match != match {
		t.Errorf("the registered match is not kept: %+v, %v", p, err)
	}
}

func TestDrainLeavesSessionsClaimable(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	short := func(c *Config) { c.ResumeGrace = time.Second }
	a, b := startNode(t, r, "a", short), startNode(t, r, "b", short)
	sa, tokA := a.session(t)
	_, tokGone := a.session(t)
	sb, _ := b.session(t)
	mustQueue(t, a, ticket(sa))
	p := mustQueue(t, b, ticket(sb))
	if err := a.Close(true); err != nil {
		t.Fatal(err)
	}
	if a.Ready() {
		t.Error("ready after Close")
	}
	rec, ok, err := b.Claim(tokA)
	if err != nil || !ok || rec.Match != p.Match {
		t.Fatalf("Claim after drain: %+v %v %v", rec, ok, err)
	}
	// The other drained session ends when the grace runs out.
	testsupport.WaitFor(t, wait, "the unclaimed session to end", func() bool {
		c, err := b.Counts()
		return err == nil && c.Online == 2
	})
	if _, ok, err := b.Claim(tokGone); ok || err != nil {
		t.Errorf("Claim after the grace: %v, %v", ok, err)
	}
	b.host.read(func() {
		if len(b.host.left[sb]) != 0 {
			t.Errorf("the claimed session's partner was told it left: %v", b.host.left[sb])
		}
	})
}

func TestCloseWithoutDrainEndsSessions(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)
	sa, sb, match := pairAcross(t, a, b)
	if err := a.Close(false); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, wait, "PartnerLeft and Ended on b", func() (ok bool) {
		b.host.read(func() { ok = len(b.host.left[sb]) == 1 && len(b.host.ended[sa]) == 1 })
		return ok
	})
	b.host.read(func() {
		if b.host.left[sb][0].match != match {
			t.Errorf("left %v", b.host.left[sb])
		}
	})
	if c, err := b.Counts(); err != nil || c.Online != 1 || c.Nodes != 1 {
		t.Errorf("Counts = %+v, %v", c, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Node: "a"},
		{URL: "redis://127.0.0.1:1/0"},
		{URL: "http://x", Node: "a"},
		{URL: "redis://:secret@127.0.0.1:1/0", Node: "a", Timeout: -1},
		{URL: "redis://127.0.0.1:1/0", Node: "a b"},
	} {
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", c, err)
		}
	}
	for _, u := range []string{"redis://:topsecret@127.0.0.1:notaport/0", "redis://:topsecret@127.0.0.1:1/x", "rediss://u:topsecret@[::1/0"} {
		_, err := New(Config{URL: u, Node: "a"})
		if err == nil || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("New with a bad URL: %v (must fail without the password)", err)
		}
	}
	// Down from the start: not ready, calls fail at once, Close returns.
	e, err := New(Config{URL: "redis://127.0.0.1:1/0", Node: "a", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(newHost()); err != nil {
		t.Fatal(err)
	}
	if e.Ready() {
		t.Error("ready without Redis")
	}
	if _, err := e.Queue(ticket("x")); !errors.Is(err, signaling.ErrEngineUnavailable) {
		t.Errorf("Queue without Redis: %v", err)
	}
	if err := e.Close(false); err != nil {
		t.Error(err)
	}
}

func TestEnvelopeRoundTripAndGarbage(t *testing.T) {
	t.Parallel()
	m := &envelope{kind: kindHandover, sent: time.Unix(0, 12345), from: "n", f: []string{"s", ""}, items: [][]byte{[]byte("a"), {}}}
	got, err := decodeEnvelope(m.encode())
	if err != nil || got.kind != m.kind || !got.sent.Equal(m.sent) || got.from != "n" || fmt.Sprint(got.f) != fmt.Sprint(m.f) || fmt.Sprintf("%q", got.items) != fmt.Sprintf("%q", m.items) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	b := m.encode()
	for i := range len(b) {
		if _, err := decodeEnvelope(b[:i]); err == nil {
			t.Errorf("a truncation to %d bytes decoded", i)
		}
	}
	if _, err := decodeEnvelope(append(b, 0)); err == nil {
		t.Error("trailing bytes decoded")
	}
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

// After an outage the hub registers its sessions again; Redis follows the
// hub on whether each is still in its match.
func TestRegisterAgainReconciles(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b := startNode(t, r, "a", nil), startNode(t, r, "b", nil)

	// a ended the match while it could not say so: b's partner is told.
	sa, sb, match := pairAcross(t, a, b)
	if err := a.Register(signaling.SessionRecord{ID: sa, Token: "t1", State: signaling.StateIdle}); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, wait, "PartnerLeft on b", func() (ok bool) {
		b.host.read(func() { ok = len(b.host.left[sb]) == 1 && b.host.left[sb][0].match == match })
		return ok
	})
	if p, err := b.Withdraw(sb); err != nil || !p.Zero() {
		t.Errorf("b's session still matched: %+v, %v", p, err)
	}

	// a still has a match Redis ended: a hears PartnerLeft.
	sa, sb, match = pairAcross(t, a, b)
	if err := b.EndMatch(match, sb, sa, signaling.LeftNext); err != nil {
		t.Fatal(err)
	}
	if err := a.Register(signaling.SessionRecord{ID: sa, Token: "t2", State: signaling.StateMatched, Match: match, Partner: sb}); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, wait, "PartnerLeft on a", func() (ok bool) {
		a.host.read(func() { ok = len(a.host.left[sa]) >= 1 && a.host.left[sa][len(a.host.left[sa])-1].match == match })
		return ok
	})

	// A session claimed by b is b's: a's late Register, Queue and End leave
	// it, and a hands it over as if it had heard of the claim.
	sc, tok := a.session(t)
	a.host.read(func() { a.host.pending[sc] = [][]byte{[]byte("kept")} })
	// The claim, with its notice to a lost.
	res, err := claimScript.Run(context.Background(), b.rdb, nil, keyPrefix, tokenHash(tok), "b", ttlSeconds()).Slice()
	if err != nil || len(res) != 5 {
		t.Fatal(res, err)
	}
	if err := a.Register(signaling.SessionRecord{ID: sc, Token: tok, State: signaling.StateIdle}); err != nil {
		t.Errorf("Register of a claimed session: %v", err)
	}
	testsupport.WaitFor(t, wait, "a hands it over", func() (ok bool) {
		b.host.read(func() { ok = fmt.Sprintf("%s", b.host.handover[sc]) == "[kept]" })
		return ok
	})
	if p, err := a.Queue(ticket(sc)); err != nil || !p.Zero() {
		t.Errorf("Queue of a claimed session: %+v, %v", p, err)
	}
	if err := a.End(sc, false); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := a.Claim(tok); !ok || err != nil || rec.ID != sc {
		t.Errorf("the claimed session ended by its old node: %v %v", ok, err)
	}
}

func TestTLSAndPassword(t *testing.T) {
	t.Parallel()
	ca, err := testsupport.NewCA("redis test CA")
	if err != nil {
		t.Fatal(err)
	}
	r := testsupport.StartRedis(t, testsupport.RedisOptions{TLS: ca, Password: "pw"})
	withCA := func(c *Config) { c.TLS = &tls.Config{RootCAs: ca.Pool} }
	a, b := startNode(t, r, "a", withCA), startNode(t, r, "b", withCA)
	sa, _, match := pairAcross(t, a, b)
	b.Send(sa, match, []byte("over TLS"))
	testsupport.WaitFor(t, wait, "delivery over TLS", func() (ok bool) {
		a.host.read(func() { ok = len(a.host.delivered[sa]) == 1 })
		return ok
	})
	// Without the CA the server is not trusted; without TLS config on a
	// redis:// URL, TLS is refused at New.
	e, err := New(Config{URL: r.URL(), Node: "c", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(newHost()); err != nil {
		t.Fatal(err)
	}
	if e.Ready() {
		t.Error("ready with an untrusted server certificate")
	}
	if err := e.Close(false); err != nil {
		t.Error(err)
	}
	if _, err := New(Config{URL: "redis://127.0.0.1:1/0", Node: "c", TLS: &tls.Config{}}); !errors.Is(err, ErrConfig) {
		t.Errorf("TLS with redis://: %v", err)
	}
}

// Redis down for longer than a lease: when it returns, every lease has run
// out, but the nodes were not dead. Nobody is reaped.
func TestLongOutageReapsNobody(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{Persist: true})
	const lease = time.Second
	short := func(c *Config) { c.LeaseTTL = lease; c.Timeout = lease / 2 }
	a, b := startNode(t, r, "a", short), startNode(t, r, "b", short)
	sa, sb, match := pairAcross(t, a, b)
	r.Stop()
	for _, n := range []*node{a, b} {
		testsupport.WaitFor(t, wait, n.Node()+" not ready", func() bool { return !n.Ready() })
	}
	time.Sleep(3 * lease) // the outage outlasts every lease: that is the point
	r.Start()
	for _, n := range []*node{a, b} {
		testsupport.WaitFor(t, wait, n.Node()+" resynced", func() (ok bool) {
			n.host.read(func() { ok = n.host.resyncs > 0 })
			return ok && n.Ready()
		})
	}
	// Both have renewed since (Ready), and reapers ran: nobody was taken
	// for dead.
	ctx := context.Background()
	if n, err := a.rdb.ZCard(ctx, keyPrefix+"orphans").Result(); err != nil || n != 0 {
		t.Errorf("%d orphans after the outage (%v)", n, err)
	}
	if c, err := a.Counts(); err != nil || c.Nodes != 2 || c.Online != 2 {
		t.Errorf("Counts = %+v, %v", c, err)
	}
	if p, err := b.Withdraw(sb); err != nil || p.Match != match || p.Partner != sa {
		t.Errorf("match lost in the outage: %+v, %v", p, err)
	}
}

func TestMetricsAndDrops(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	reg := prometheus.NewPedanticRegistry()
	a := startNode(t, r, "a", func(c *Config) { c.Registerer = reg })
	b := startNode(t, r, "b", nil)
	_, sb, match := pairAcross(t, a, b)
	a.Send("no-such-session", match, []byte("x")) // no route: dropped
	a.Send(sb, match, []byte("y"))
	testsupport.WaitFor(t, wait, "delivery", func() (ok bool) {
		b.host.read(func() { ok = len(b.host.delivered[sb]) == 1 })
		return ok
	})
	if c, err := a.Counts(); err != nil || c.Nodes != 2 { // also sets strangers_cluster_nodes
		t.Fatalf("Counts = %+v, %v", c, err)
	}
	if _, err := New(Config{URL: r.URL(), Node: "c", Registerer: reg}); err == nil {
		t.Error("a second engine registered the same metrics")
	}
	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			got[f.GetName()] = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			got[f.GetName()] = m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			got[f.GetName()] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	want := map[string]func(float64) bool{
		"strangers_redis_round_trip_seconds": func(v float64) bool { return v > 0 },
		"strangers_redis_errors_total":       func(v float64) bool { return v == 0 },
		"strangers_redis_up":                 func(v float64) bool { return v == 1 },
		"strangers_pubsub_lag_seconds":       func(v float64) bool { return v >= 1 }, // b's paired
		"strangers_pubsub_dropped_total":     func(v float64) bool { return v == 1 },
		"strangers_cluster_nodes":            func(v float64) bool { return v == 2 },
	}
	for name, ok := range want {
		v, present := got[name]
		if !present || !ok(v) {
			t.Errorf("%s = %v (present %v)", name, v, present)
		}
	}
}

// A hung Redis (it keeps the connections but answers nothing): calls time
// out once, then fail at once until it answers again.
func TestHungRedis(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	const timeout = time.Second
	a := startNode(t, r, "a", func(c *Config) { c.Timeout = timeout })
	sa, _ := a.session(t)
	r.Pause()
	_, err := a.Queue(ticket(sa))
	if !errors.Is(err, signaling.ErrEngineUnavailable) {
		t.Fatalf("Queue on a hung Redis: %v", err)
	}
	if a.Ready() {
		t.Error("ready while Redis hangs")
	}
	start := time.Now()
	if _, err := a.Counts(); !errors.Is(err, signaling.ErrEngineUnavailable) {
		t.Errorf("Counts while down: %v", err)
	}
	if d := time.Since(start); d >= timeout {
		t.Errorf("a call while down took %v, the whole timeout", d)
	}
	r.Resume()
	testsupport.WaitFor(t, wait, "ready and resynced", func() (ok bool) {
		a.host.read(func() { ok = a.host.resyncs > 0 })
		return ok && a.Ready()
	})
	if p, err := a.Queue(ticket(sa)); err != nil || !p.Zero() {
		t.Errorf("Queue after the hang: %+v, %v", p, err)
	}
}

// A message in flight to the node a session was claimed from is sent on to
// the node that claimed it.
func TestClaimedFromNodeForwardsLateMessages(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b, c := startNode(t, r, "a", nil), startNode(t, r, "b", nil), startNode(t, r, "c", nil)
	sa, tok := a.session(t)
	sb, _ := b.session(t)
	mustQueue(t, a, ticket(sa))
	p := mustQueue(t, b, ticket(sb))
	if _, ok, err := c.Claim(tok); !ok || err != nil {
		t.Fatal(ok, err)
	}
	testsupport.WaitFor(t, wait, "a told Claimed", func() (ok bool) {
		a.host.read(func() { ok = len(a.host.claimed) == 1 })
		return ok
	})
	// As if b had sent it before it learnt of the move.
	b.publish("a", &envelope{kind: kindDeliver, f: []string{sa, p.Match}, items: [][]byte{[]byte("late")}})
	testsupport.WaitFor(t, wait, "the late message on c", func() (ok bool) {
		c.host.read(func() { ok = len(c.host.delivered[sa]) == 1 && c.host.delivered[sa][0] == p.Match+"|late" })
		return ok
	})
	a.host.read(func() {
		if len(a.host.delivered[sa]) != 0 {
			t.Errorf("a delivered %v", a.host.delivered[sa])
		}
	})
}

// A node killed moments ago still holds its lease: a session claimed from
// it keeps its match, and its partner's node learns where it went from the
// claiming node (the dead one tells nobody).
func TestClaimFromFreshlyKilledNode(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	long := func(c *Config) { c.LeaseTTL = time.Minute; c.Timeout = 500 * time.Millisecond }
	a, b, c := startNode(t, r, "a", long), startNode(t, r, "b", long), startNode(t, r, "c", long)
	sa, tok := a.session(t)
	sb, _ := b.session(t)
	mustQueue(t, a, ticket(sa))
	p := mustQueue(t, b, ticket(sb))
	a.kill()
	rec, ok, err := c.Claim(tok)
	if !ok || err != nil || rec.Match != p.Match {
		t.Fatalf("Claim: %+v %v %v", rec, ok, err)
	}
	testsupport.WaitFor(t, wait, "b told where sa went", func() bool {
		n, _ := b.routes.lookup(sa)
		return n == "c"
	})
	for i := range 3 {
		b.Send(sa, p.Match, []byte(strconv.Itoa(i)))
	}
	// No handover comes: what waited for it is delivered, in order.
	testsupport.WaitFor(t, wait, "b's messages on c", func() (ok bool) {
		c.host.read(func() { ok = len(c.host.delivered[sa]) >= 3 })
		return ok
	})
	c.host.read(func() {
		if got := fmt.Sprint(c.host.delivered[sa]); got != fmt.Sprintf("[%s|0 %s|1 %s|2]", p.Match, p.Match, p.Match) {
			t.Errorf("delivered %s", got)
		}
	})
}

// A node killed and started again under the same node id within its
// lease is never found dead by a reaper: the new process makes orphans of
// what the old one left, so its waiting sessions leave the pool and its
// sessions' partners are told after the resume grace.
func TestRestartUnderTheSameNodeIDOrphansTheOldSessions(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	lease := func(c *Config) { c.LeaseTTL = time.Minute; c.ResumeGrace = 600 * time.Millisecond }
	a, b := startNode(t, r, "a", lease), startNode(t, r, "b", lease)
	_, sb, match := pairAcross(t, a, b)
	waiting, _ := a.session(t)
	mustQueue(t, a, ticket(waiting, "only-here"))
	a.kill()
	again := startNode(t, r, "a", lease)
	if n, err := b.Counts(); err != nil || n.WaitingVideo != 0 {
		t.Fatalf("Counts = %+v, %v: the old process's session still waits", n, err)
	}
	x, _ := b.session(t)
	if p := mustQueue(t, b, ticket(x, "only-here")); !p.Zero() {
		t.Fatalf("paired with a session of the dead process: %+v", p)
	}
	testsupport.WaitFor(t, wait, "PartnerLeft on b", func() (ok bool) {
		b.host.read(func() { ok = len(b.host.left[sb]) > 0 })
		return ok
	})
	b.host.read(func() {
		if l := b.host.left[sb]; len(l) != 1 || l[0] != (leftCall{match, signaling.LeftDisconnected}) {
			t.Errorf("b told %v", l)
		}
	})
	if n, err := again.Counts(); err != nil || n.Online != 2 || n.Nodes != 2 {
		t.Errorf("Counts = %+v, %v (want b's two sessions, 2 nodes)", n, err)
	}
}

// What a partner sends to a drained session before its client resumes it
// is kept on the partner's node and follows the session to the node that
// claims it, in order and before anything sent after: onto a third node,
// and onto the partner's node itself.
func TestDrainKeepsWhatThePartnerSentUntilTheResume(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{})
	a, b, c := startNode(t, r, "a", nil), startNode(t, r, "b", nil), startNode(t, r, "c", nil)
	type pair struct{ sa, tok, sb, match string }
	var pairs [2]pair
	for i := range pairs {
		sa, tok := a.session(t)
		sb, _ := b.session(t)
		tag := "tag-" + sa
		mustQueue(t, a, ticket(sa, tag))
		p := mustQueue(t, b, ticket(sb, tag))
		if p.Partner != sa {
			t.Fatalf("%s paired with %q", sb, p.Partner)
		}
		pairs[i] = pair{sa, tok, sb, p.Match}
	}
	if err := a.Close(true); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, wait, "b keeping what it sends to a's sessions", func() bool {
		b.routes.mu.Lock()
		defer b.routes.mu.Unlock()
		return b.routes.parked[pairs[0].sa] != nil && b.routes.parked[pairs[1].sa] != nil
	})
	for _, p := range pairs {
		b.Send(p.sa, p.match, []byte("one"))
		b.Send(p.sa, p.match, []byte("two"))
	}
	for i, n := range []*node{c, b} {
		p := pairs[i]
		if rec, ok, err := n.Claim(p.tok); err != nil || !ok || rec.Match != p.match {
			t.Fatalf("Claim on %s: %+v %v %v", n.Node(), rec, ok, err)
		}
		if n != b {
			b.Send(p.sa, p.match, []byte("three")) // once b knows where it went, but maybe before
		}
		want := []string{p.match + "|one", p.match + "|two"}
		if n != b {
			want = append(want, p.match+"|three")
		}
		testsupport.WaitFor(t, wait, "what b sent, on "+n.Node(), func() (ok bool) {
			n.host.read(func() { ok = len(n.host.delivered[p.sa]) >= len(want) })
			return ok
		})
		n.host.read(func() {
			if got := n.host.delivered[p.sa]; !slices.Equal(got, want) {
				t.Errorf("%s delivered %q, want %q", n.Node(), got, want)
			}
		})
	}
}
