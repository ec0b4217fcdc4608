package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

// churnClients is how many clients TestClusterChurn keeps connected; 0:
// 5,000, or 1,000 under the race detector (which caps a process at 8,128
// goroutines, and slows the clients down more than the nodes).
var churnClients = flag.Int("churn-clients", 0, "clients of TestClusterChurn (0: 5000, 1000 under -race)")

// Bounds of the churn: how long the clients act, how many actions each
// takes at most, and the pause between two actions of one client.
const (
	churnDuration = 15 * time.Second
	churnMaxOps   = 12
	churnMinGap   = 300 * time.Millisecond
	churnMaxGap   = 3 * time.Second
	churnSettle   = 30 * time.Second // for the cluster to agree with the clients at the end
)

// Client states as a churner sees them.
const (
	stIdle int32 = iota
	stWaiting
	stMatched
	stGone
)

// churnLog is what the clients saw, for the checks at the end. Guarded by
// mu; seq orders events across clients.
type churnLog struct {
	mu         sync.Mutex
	seq        int64
	members    map[string][]string             // match id -> sessions that got matched for it
	roles      map[string][]signaling.Role     // match id -> their roles
	firstSeen  map[string]int64                // match id -> seq of its first matched
	leftWhy    map[string]signaling.LeftReason // match id -> the partner_left a side got
	reports    []churnReport
	chats      []churnChat
	violations []string
	dropped    []string // connections that failed under load (the first 20)
	drops      int
	errors     map[signaling.ErrorCode]int
	matches    int
}

type churnReport struct {
	reporter, match string
	seq             int64
}

type churnChat struct {
	to, from, match string
}

func (l *churnLog) violation(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.violations) < 20 {
		l.violations = append(l.violations, fmt.Sprintf(format, args...))
	}
}

// drop records a connection that failed: on a loaded machine a node may
// be too slow for a client's deadlines, or a client for a node's. That is
// no broken rule, but many of them would be.
func (l *churnLog) drop(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drops++
	if len(l.dropped) < 20 {
		l.dropped = append(l.dropped, fmt.Sprintf(format, args...))
	}
}

// churner is one client of the churn: one session at a time (a new one
// after each disconnect). Its goroutine owns every field but state and
// cur, which the test reads at the end (atomics).
type churner struct {
	rng     *rand.Rand
	nodes   []*node
	log     *churnLog
	conn    *wsclient.Conn
	session string
	state   atomic.Int32
	cur     atomic.Pointer[string] // the current match as this client sees it; "" for none
	left    string                 // the match it left last, whose late messages may still come
	found   bool                   // it sent a find in this session (next needs one)
	last    string                 // the last match it was told of
	// stopped: it sent stop while waiting; a matched still on its way was
	// made before, and that stop ended it. Such a client finds no more
	// (it could not tell that matched from a new one): it disconnects.
	stopped bool
}

func (c *churner) setCur(m string) { c.cur.Store(&m) }
func (c *churner) current() string { return *c.cur.Load() }

// connect opens a new session on a random node.
func (c *churner) connect(ctx context.Context) error {
	nd := c.nodes[c.rng.IntN(len(c.nodes))]
	cctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	conn, err := wsclient.Dial(cctx, "ws://"+nd.http+"/ws", wsclient.Options{
		Origin: "http://" + nd.http, ReadBufferSize: 1024, WriteBufferSize: 1024,
		// The churn checks who meets whom, not how fast: on a loaded
		// machine a node may not read for longer than the default 5 s.
		WriteWait: clusterWait,
	})
	if err != nil {
		return err
	}
	conn.Start()
	w, err := conn.Hello(cctx, "")
	if err != nil {
		conn.Close()
		return err
	}
	c.conn, c.session, c.left, c.last, c.found, c.stopped = conn, w.Session, "", "", false, false
	c.setCur("")
	c.state.Store(stIdle)
	return nil
}

func (c *churner) send(msg any) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	if err := c.conn.Send(ctx, msg); err != nil {
		c.log.violation("%s: send %T: %v", c.session, msg, err)
	}
}

// leave forgets the current match (the client ended it or was told).
func (c *churner) leave() {
	if m := c.current(); m != "" {
		c.left = m
	}
	c.setCur("")
}

// handle applies one server message to the client's view and checks it.
func (c *churner) handle(msg any) {
	l := c.log
	switch m := msg.(type) {
	case *signaling.Matched:
		if cur := c.current(); cur != "" {
			l.violation("%s matched in %s while still in %s", c.session, m.Match, cur)
		}
		if m.Match == c.left || m.Match == c.last {
			l.violation("%s got matched for %s twice (state %d, current %q, stopped %v)", c.session, m.Match, c.state.Load(), c.current(), c.stopped)
		}
		c.last = m.Match
		stale := c.stopped
		l.mu.Lock()
		l.seq++
		l.members[m.Match] = append(l.members[m.Match], c.session)
		l.roles[m.Match] = append(l.roles[m.Match], m.Role)
		if _, ok := l.firstSeen[m.Match]; !ok {
			l.firstSeen[m.Match] = l.seq
		}
		l.matches++
		l.mu.Unlock()
		if stale { // its stop ended it
			c.left = m.Match
			return
		}
		c.setCur(m.Match)
		c.left = ""
		c.state.Store(stMatched)
	case *signaling.PartnerLeft:
		l.mu.Lock()
		l.leftWhy[m.Match] = m.Reason
		l.mu.Unlock()
		if m.Match == c.current() {
			c.leave()
			c.state.Store(stIdle)
		}
	case *signaling.Chat:
		if m.Match != c.current() && (m.Match != c.left || c.current() != "") {
			l.violation("%s got chat of match %s while in %q (left %q)", c.session, m.Match, c.current(), c.left)
		}
		l.mu.Lock()
		l.chats = append(l.chats, churnChat{to: c.session, from: strings.TrimPrefix(m.Text, "from "), match: m.Match})
		l.mu.Unlock()
	case *signaling.Error:
		l.mu.Lock()
		l.errors[m.Code]++
		l.mu.Unlock()
	}
}

// act takes one random action fit for the client's state; it returns
// false when the client disconnected.
func (c *churner) act() bool {
	r := c.rng.Float64()
	switch c.state.Load() {
	case stIdle:
		switch {
		case r < 0.05 || c.stopped:
			return false
		case r < 0.75 || !c.found:
			c.find()
		default:
			c.send(signaling.Next{}) // while idle: queues with the last find
			c.state.Store(stWaiting)
		}
	case stWaiting:
		switch {
		case r < 0.05:
			return false
		case r < 0.35:
			c.send(signaling.Stop{})
			c.stopped = true
			c.state.Store(stIdle)
		}
	case stMatched:
		m := c.current()
		switch {
		case r < 0.08:
			return false
		case r < 0.45:
			c.send(signaling.Next{})
			c.leave()
			c.state.Store(stWaiting)
		case r < 0.6:
			c.send(signaling.Stop{})
			c.leave()
			c.state.Store(stIdle)
		case r < 0.7:
			c.log.mu.Lock()
			c.log.reports = append(c.log.reports, churnReport{reporter: c.session, match: m, seq: c.log.seq})
			c.log.mu.Unlock()
			c.send(signaling.Report{Match: m, Reason: "churn"})
			c.leave()
			c.state.Store(stIdle)
		default:
			c.send(signaling.Chat{Match: m, Text: "from " + c.session})
		}
	}
	return true
}

var churnTags = []string{"ants", "bees", "cats"}

func (c *churner) find() {
	f := signaling.Find{Mode: signaling.ModeText}
	if c.rng.IntN(2) == 0 {
		f.Mode = signaling.ModeVideo
	}
	if c.rng.IntN(3) == 0 {
		f.Interests = []string{churnTags[c.rng.IntN(len(churnTags))]}
	}
	c.send(f)
	c.found = true
	c.state.Store(stWaiting)
}

// run drives the client until end or churnMaxOps actions, then puts it in
// its final state: idle, alone in the pool on a tag nobody else has, or as
// it was. It keeps reading until quit closes, so that its view stays
// current while the test compares it with the cluster's.
func (c *churner) run(ctx context.Context, end time.Time, quit <-chan struct{}, acted *atomic.Int64) {
	defer func() {
		if c.conn != nil {
			c.conn.Close()
		}
	}()
	timer := time.NewTimer(c.gap())
	defer timer.Stop()
	ops := 0
	acting := true
	for {
		select {
		case msg, ok := <-c.conn.Messages():
			if !ok {
				c.log.drop("%s: connection ended: %v", c.session, c.conn.Err())
				c.state.Store(stGone)
				if acting {
					acted.Add(1)
				}
				<-quit
				return
			}
			c.handle(msg)
		case <-timer.C:
			if !acting {
				continue
			}
			ops++
			if ops > churnMaxOps || time.Now().After(end) {
				c.finish()
				acting = false
				acted.Add(1)
				continue
			}
			if !c.act() {
				c.conn.Close()
				c.state.Store(stGone)
				c.conn = nil
				if err := c.connect(ctx); err != nil {
					c.log.drop("reconnect: %v", err)
					acted.Add(1)
					<-quit
					return
				}
			}
			timer.Reset(c.gap())
		case <-quit:
			return
		}
	}
}

func (c *churner) gap() time.Duration {
	return churnMinGap + time.Duration(c.rng.Int64N(int64(churnMaxGap-churnMinGap)))
}

// finish puts the client in its final state.
func (c *churner) finish() {
	switch c.rng.IntN(3) {
	case 0:
		switch c.state.Load() {
		case stMatched:
			c.send(signaling.Stop{})
			c.leave()
			c.state.Store(stIdle)
		case stWaiting:
			c.send(signaling.Stop{})
			c.stopped = true
			c.state.Store(stIdle)
		}
	case 1:
		switch {
		case c.stopped || c.state.Load() == stWaiting:
			return // as it is: see stopped
		case c.state.Load() == stMatched:
			c.send(signaling.Stop{})
			c.leave()
		}
		c.send(signaling.Find{Mode: signaling.ModeText, Interests: []string{"solo" + c.session[:8]}, InterestsOnly: true})
		c.found = true
		c.state.Store(stWaiting)
	}
}

// Thousands of clients find, skip, stop, report, chat and disconnect at
// random over three nodes. Throughout, no client is matched while it is
// in a match, every match has exactly two sides (one offerer), chat comes
// only from the partner of the current match, and nobody meets someone it
// reported or who reported it again; at the end the cluster's figures
// count every client still waiting exactly once.
func TestClusterChurn(t *testing.T) {
	n := *churnClients
	if n == 0 {
		n = 5000
		if raceEnabled {
			n = 1000
		}
	}
	limits := map[string]string{
		"STRANGERS_WS_MAX_PER_IP":    "1000000",
		"STRANGERS_WS_RATE":          "1000",
		"STRANGERS_WS_BURST":         "1000",
		"STRANGERS_INTEREST_WAIT":    "1s",
		"STRANGERS_WS_PING_INTERVAL": "20s",
	}
	c := startCluster(t, 3, false, limits)
	obs := observe(t, c.nodes[0])

	log := &churnLog{members: map[string][]string{}, roles: map[string][]signaling.Role{}, firstSeen: map[string]int64{}, leftWhy: map[string]signaling.LeftReason{}, errors: map[signaling.ErrorCode]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clients := make([]*churner, n)
	t.Cleanup(func() { // after the clients' goroutines, which close their own, have ended
		for _, cl := range clients {
			if cl != nil && cl.conn != nil {
				cl.conn.Close()
			}
		}
	})
	var wg sync.WaitGroup
	var dialErrs atomic.Int64
	sem := make(chan struct{}, 64)
	start := time.Now()
	for i := range clients {
		cl := &churner{rng: rand.New(rand.NewPCG(uint64(i), 15)), nodes: c.nodes, log: log}
		cl.setCur("")
		clients[i] = cl
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := cl.connect(ctx); err != nil {
				if dialErrs.Add(1) == 1 {
					t.Errorf("connect: %v", err)
				}
				cl.state.Store(stGone)
			}
		})
	}
	wg.Wait()
	if dialErrs.Load() > 0 {
		t.Fatalf("%d of %d clients could not connect", dialErrs.Load(), n)
	}
	t.Logf("%d clients connected over %d nodes in %v", n, len(c.nodes), time.Since(start).Round(time.Millisecond))

	end := time.Now().Add(churnDuration)
	quit := make(chan struct{})
	var acted atomic.Int64 // clients done acting
	var done sync.WaitGroup
	for _, cl := range clients {
		done.Go(func() { cl.run(ctx, end, quit, &acted) })
	}
	defer func() {
		close(quit)
		done.Wait()
	}()
	if !testsupport.Eventually(time.Until(end)+churnMaxGap+2*clusterWait, func() bool { return acted.Load() == int64(n) }) {
		t.Fatal("the clients did not finish acting in time")
	}
	t.Logf("churn over after %v: %d matches seen", time.Since(end.Add(-churnDuration)).Round(time.Millisecond), log.matchCount())

	// The cluster settles: every client's view agrees with its partner's,
	// and the cluster counts exactly the clients that wait.
	var want struct{ online, waiting, halfMatched int }
	settled := testsupport.Eventually(churnSettle, func() bool {
		want.online, want.waiting, want.halfMatched = 1, 0, 0 // the observer is online
		current := map[string]string{}
		for _, cl := range clients {
			if cl.state.Load() != stGone {
				current[cl.session] = cl.current()
			}
		}
		log.mu.Lock()
		for _, cl := range clients {
			switch cl.state.Load() {
			case stGone:
				continue
			case stWaiting:
				want.waiting++
			case stMatched:
				m := cl.current()
				agree := false
				for _, s := range log.members[m] {
					if s != cl.session && current[s] == m {
						agree = true
					}
				}
				if !agree {
					want.halfMatched++
				}
			}
			want.online++
		}
		log.mu.Unlock()
		s := obs.last.Load()
		return want.halfMatched == 0 && s.Waiting == want.waiting && s.Online == want.online
	})
	s := obs.last.Load()
	t.Logf("at the end: clients say %d online, %d waiting; the cluster's stats %+v", want.online, want.waiting, *s)
	if !settled {
		t.Errorf("after %v the cluster counts %d online and %d waiting, the clients %d and %d (%d matched alone)",
			churnSettle, s.Online, s.Waiting, want.online, want.waiting, want.halfMatched)
	}
	log.check(t)
	log.mu.Lock()
	drops, dropped := log.drops, log.dropped
	log.mu.Unlock()
	for _, d := range dropped {
		t.Logf("dropped: %s", d)
	}
	if drops > n/20 {
		t.Errorf("%d of %d clients lost their connection: more than a loaded machine explains", drops, n)
	}
}

func (l *churnLog) matchCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.matches
}

// check runs the checks over everything seen.
func (l *churnLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	problems := 0
	problem := func(format string, args ...any) {
		t.Helper()
		if problems++; problems <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, v := range l.violations {
		problem("%s", v)
	}
	pairs := map[[2]string][]string{} // two sessions, sorted -> their matches
	single := 0
	singleWhy := map[signaling.LeftReason]int{} // how those seen by one side ended for it
	for m, ss := range l.members {
		switch {
		case len(ss) > 2:
			problem("match %s has %d sides: %v", m, len(ss), ss)
		case len(ss) == 2:
			if ss[0] == ss[1] {
				problem("match %s pairs %s with itself", m, ss[0])
			}
			if l.roles[m][0] == l.roles[m][1] {
				problem("match %s: both sides are %s", m, l.roles[m][0])
			}
			k := [2]string{min(ss[0], ss[1]), max(ss[0], ss[1])}
			pairs[k] = append(pairs[k], m)
		default:
			// The other side disconnected before it read matched, or its
			// stop or next came first and its node ended the match.
			single++
			singleWhy[l.leftWhy[m]]++
		}
	}
	partner := func(m, s string) string {
		for _, o := range l.members[m] {
			if o != s {
				return o
			}
		}
		return ""
	}
	for _, r := range l.reports {
		p := partner(r.match, r.reporter)
		if p == "" {
			continue
		}
		k := [2]string{min(r.reporter, p), max(r.reporter, p)}
		for _, m := range pairs[k] {
			if m != r.match && l.firstSeen[m] > r.seq {
				problem("%s reported %s in %s, and they met again in %s", r.reporter, p, r.match, m)
			}
		}
	}
	for _, ch := range l.chats {
		if p := partner(ch.match, ch.to); len(l.members[ch.match]) == 2 && p != ch.from {
			problem("%s got chat in %s from %s, not from its partner %s", ch.to, ch.match, ch.from, p)
		}
	}
	var codes []string
	for code, n := range l.errors {
		codes = append(codes, fmt.Sprintf("%s: %d", code, n))
		if code != signaling.CodeBadState {
			t.Errorf("%d errors %s", n, code)
		}
	}
	if problems > 20 {
		t.Errorf("... and %d more problems", problems-20)
	}
	t.Logf("seen by one side only, the partner_left it got: %v", singleWhy)
	t.Logf("%d matches (%d seen by one side only), %d reports, %d chats; errors: %v", len(l.members), single, len(l.reports), len(l.chats), codes)
}
