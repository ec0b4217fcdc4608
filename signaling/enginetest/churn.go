package enginetest

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/signaling"
)

// The concurrent churn: every node's sessions find, withdraw, end matches
// and report at random at once, each node driven by its own goroutine as
// by its hub's owner goroutine, which also handles what the node's host is
// told, as a hub does (a pairing for a session that is in another match
// already, or idle, is refused: ended at once).
//
// What is checked holds whatever the interleaving. Every call is stamped
// with a logical clock before and after it, so a match is surely alive
// from its creating Queue's return to the start of the EndMatch that
// ended it: no session may be in two matches surely alive at once, and no
// match may be made by a call that started after one of its two reported
// the other. Both sides of a match agree on it (each names the other, one
// offers), a partner on another node is told, and in the end nothing is
// left waiting.

const (
	churnSessions = 30  // per node
	churnOps      = 500 // calls per node
)

// churnMatch is what the drivers saw of one match.
type churnMatch struct {
	a, b      string // the caller of the Queue that made it, its partner
	remote    bool
	createdLo int64 // the creating Queue's start
	createdHi int64 // its return (0: not logged yet)
	endedLo   int64 // the start of the EndMatch that ended it (0: none yet)
	views     []churnView
}

// churnView is one side's view of a match.
type churnView struct {
	session, partner string
	role             signaling.Role
}

// churnLog is what the drivers saw, shared.
type churnLog struct {
	clock atomic.Int64

	mu        sync.Mutex             // guards what follows
	matches   map[string]*churnMatch // by id
	blockedAt map[[2]string]int64    // reporter, reported → when Block returned
	errs      []string
}

func (l *churnLog) match(id string) *churnMatch {
	m := l.matches[id]
	if m == nil {
		m = &churnMatch{}
		l.matches[id] = m
	}
	return m
}

type churnSess struct {
	s     sess
	state signaling.State // as its hub sees it
	match string
	mate  string
	seen  map[string]bool // matches it was offered
}

// churnNode drives one node. Owned by its goroutine, then by the test's.
type churnNode struct {
	t      *testing.T
	f      *fixture
	n      int
	rng    *rand.Rand
	log    *churnLog
	sess   []*churnSess
	byID   map[string]*churnSess
	cursor int // host events handled
}

func testChurn(t *testing.T, f *fixture) {
	seed := rand.Uint64()
	t.Logf("%s: seed %d", f.name, seed)
	log := &churnLog{matches: map[string]*churnMatch{}, blockedAt: map[[2]string]int64{}}
	var nodes []*churnNode
	owner := map[string]*churnNode{}
	for n := range f.engines {
		c := &churnNode{t: t, f: f, n: n, rng: rand.New(rand.NewPCG(seed, uint64(n))), log: log, byID: map[string]*churnSess{}}
		for range churnSessions {
			s := &churnSess{s: f.sessionOn(n), state: signaling.StateIdle, seen: map[string]bool{}}
			c.sess = append(c.sess, s)
			c.byID[s.s.id] = s
			owner[s.s.id] = c
		}
		nodes = append(nodes, c)
	}
	var wg sync.WaitGroup
	// Ready is safe from any goroutine: asked all along.
	stop := make(chan struct{})
	var readyWG sync.WaitGroup
	readyWG.Go(func() {
		for {
			for _, e := range f.engines {
				e.Ready()
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	for _, c := range nodes {
		wg.Go(func() {
			for range churnOps {
				if !c.step() {
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readyWG.Wait()
	if t.Failed() {
		return
	}

	// Everyone leaves: out of the pool (whatever its hub believes), and
	// every match ended.
	for _, c := range nodes {
		for _, s := range c.sess {
			p, err := f.engines[c.n].Withdraw(s.s.id)
			if err != nil {
				t.Fatalf("%s: Withdraw(%s): %v", f.name, s.s, err)
			}
			if !p.Zero() {
				c.end(p.Match, s.s.id, p.Partner)
			}
		}
	}
	for id, m := range log.matches {
		if m.endedLo == 0 {
			owner[m.a].end(id, m.a, m.b)
		}
	}
	f.counts("nobody waiting", func(x signaling.EngineCounts) bool { return x.WaitingVideo == 0 && x.WaitingText == 0 })

	log.mu.Lock()
	defer log.mu.Unlock()
	for _, e := range log.errs {
		t.Error(e)
	}
	bySession := map[string][]string{}
	made := 0
	for id, m := range log.matches {
		if m.createdHi == 0 {
			t.Errorf("%s: match %s (%.8s, %.8s) was ended but never made", f.name, id, m.a, m.b)
			continue
		}
		made++
		bySession[m.a] = append(bySession[m.a], id)
		bySession[m.b] = append(bySession[m.b], id)
		if len(m.views) == 2 {
			x, y := m.views[0], m.views[1]
			if x.partner != y.session || y.partner != x.session || x.role == y.role {
				t.Errorf("%s: match %s: sides %+v and %+v do not agree", f.name, id, x, y)
			}
		}
		if m.remote {
			f.hosts[owner[m.b].n].WaitKind(t, Patience, Paired, m.b, id)
		}
	}
	for s, ids := range bySession {
		for i, x := range ids {
			for _, y := range ids[i+1:] {
				mx, my := log.matches[x], log.matches[y]
				if mx.createdHi < endOf(my) && my.createdHi < endOf(mx) {
					t.Errorf("%s: %.8s was in matches %s and %s at once", f.name, s, x, y)
				}
			}
		}
	}
	t.Logf("%s: %d nodes × %d calls: %d matches, %d reports", f.name, len(nodes), churnOps, made, len(log.blockedAt))
}

func endOf(m *churnMatch) int64 {
	if m.endedLo == 0 {
		return math.MaxInt64
	}
	return m.endedLo
}

func (c *churnNode) errorf(format string, args ...any) {
	c.t.Errorf("%s: node%d: "+format, append([]any{c.f.name, c.n}, args...)...)
}

// step handles what the host was told, then makes one call; false when
// the test failed.
func (c *churnNode) step() bool {
	c.handleEvents()
	s := c.sess[c.rng.IntN(len(c.sess))]
	e := c.f.engines[c.n]
	r := c.rng.IntN(100)
	switch {
	case s.state == signaling.StateMatched:
		if r < 20 {
			if err := e.Block(s.s.id, s.mate); err != nil {
				c.errorf("Block(%s): %v", s.s, err)
				return false
			}
			at := c.log.clock.Add(1)
			c.log.mu.Lock()
			c.log.blockedAt[[2]string{s.s.id, s.mate}] = at
			c.log.mu.Unlock()
		}
		c.endSide(s)
		return !c.t.Failed()
	case s.state == signaling.StateWaiting && r < 40:
		p, err := e.Withdraw(s.s.id)
		if err != nil {
			c.errorf("Withdraw(%s): %v", s.s, err)
			return false
		}
		if p.Zero() {
			s.state = signaling.StateIdle
			return true
		}
		if !p.Earlier {
			c.errorf("Withdraw(%s) returned a pairing not marked Earlier: %+v", s.s, p)
		}
		c.learn(s, p)
		return !c.t.Failed()
	}
	tk := s.s.ticket()
	if c.rng.IntN(5) == 0 {
		tk.Mode = signaling.ModeText
	}
	if c.rng.IntN(2) == 0 {
		tk.Interests = []string{randomTags[c.rng.IntN(len(randomTags))]}
		tk.Anyone = c.rng.IntN(2) == 0
	}
	tk.Settled = c.rng.IntN(5) == 0
	lo := c.log.clock.Add(1)
	p, err := e.Queue(tk)
	hi := c.log.clock.Add(1)
	if err != nil {
		c.errorf("Queue(%s): %v", s.s, err)
		return false
	}
	s.state = signaling.StateWaiting
	if p.Zero() {
		return true
	}
	if !p.Earlier {
		c.created(p, s.s.id, lo, hi)
	}
	c.learn(s, p)
	return !c.t.Failed()
}

// created logs the match p that the Queue of id, from lo to hi, made.
func (c *churnNode) created(p signaling.Pairing, id string, lo, hi int64) {
	l := c.log
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.match(p.Match)
	if m.createdHi != 0 {
		l.errs = append(l.errs, "match "+p.Match+" was made twice")
		return
	}
	m.a, m.b, m.remote, m.createdLo, m.createdHi = id, p.Partner, p.Remote, lo, hi
	for _, k := range [][2]string{{id, p.Partner}, {p.Partner, id}} {
		if at, ok := l.blockedAt[k]; ok && at < lo {
			c.errorf("Queue(%.8s) paired it with %.8s after one reported the other", id, p.Partner)
		}
	}
}

// end ends match id from side a (partner b), logging it if it ended it.
func (c *churnNode) end(id, a, b string) {
	lo := c.log.clock.Add(1)
	err := c.f.engines[c.n].EndMatch(id, a, b, signaling.LeftNext)
	if err != nil && !errors.Is(err, signaling.ErrMatchGone) {
		c.errorf("EndMatch(%s) by %.8s: %v", id, a, err)
		return
	}
	if err == nil {
		c.log.mu.Lock()
		m := c.log.match(id)
		if m.endedLo != 0 {
			c.log.errs = append(c.log.errs, "match "+id+" was ended twice")
		}
		m.endedLo = lo
		c.log.mu.Unlock()
	}
}

// endSide ends s's match from its side, as its hub would on next.
func (c *churnNode) endSide(s *churnSess) {
	match, mate := s.match, s.mate
	c.end(match, s.s.id, mate)
	// Nil or ErrMatchGone (the partner ended it first; its PartnerLeft
	// is on the way), the hub is done with it.
	if m := c.byID[mate]; m != nil && m.match == match {
		c.leave(m) // a partner on this node: its hub ends its side
	}
	c.leave(s)
}

func (c *churnNode) leave(s *churnSess) {
	s.state, s.match, s.mate = signaling.StateIdle, "", ""
}

func (c *churnNode) handleEvents() {
	h := c.f.hosts[c.n]
	evs := h.Events(c.cursor)
	c.cursor += len(evs)
	for _, e := range evs {
		s := c.byID[e.Session]
		if s == nil {
			continue
		}
		switch e.Kind {
		case Paired:
			c.learn(s, e.Pairing)
		case PartnerLeft:
			if s.match == e.Match {
				c.leave(s)
			}
		}
	}
}

// learn puts s in match p, as a hub does: once per match, and only if it
// is waiting (else the match is refused: ended at once).
func (c *churnNode) learn(s *churnSess, p signaling.Pairing) {
	if s.seen[p.Match] {
		return // told again (Paired after an Earlier answer)
	}
	s.seen[p.Match] = true
	var mate *churnSess
	if !p.Remote {
		if mate = c.byID[p.Partner]; mate == nil {
			c.errorf("%s paired with %.8s, not Remote yet not of this node", s.s, p.Partner)
			return
		}
	}
	if s.state != signaling.StateWaiting || (mate != nil && (mate.state == signaling.StateMatched || mate.seen[p.Match])) {
		c.end(p.Match, s.s.id, p.Partner)
		return
	}
	c.log.mu.Lock()
	c.log.match(p.Match).views = append(c.log.match(p.Match).views, churnView{s.s.id, p.Partner, p.Role})
	c.log.mu.Unlock()
	s.state, s.match, s.mate = signaling.StateMatched, p.Match, p.Partner
	if mate == nil {
		return
	}
	role := signaling.RoleOfferer
	if p.Role == role {
		role = signaling.RoleAnswerer
	}
	mate.seen[p.Match] = true
	c.log.mu.Lock()
	c.log.match(p.Match).views = append(c.log.match(p.Match).views, churnView{mate.s.id, s.s.id, role})
	c.log.mu.Unlock()
	mate.state, mate.match, mate.mate = signaling.StateMatched, p.Match, s.s.id
}
