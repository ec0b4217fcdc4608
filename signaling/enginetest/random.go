package enginetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/strangers-chat/strangers/signaling"
)

// The randomized test: many sessions, random finds, withdrawals, ends of
// matches, reports and ends of sessions, driven one call at a time and
// checked against a model after every call.

const (
	randomSessions = 40   // sessions alive at any time
	randomOps      = 3000 // calls in all
	randomSmall    = 8    // a pool this small is drawn from in full
	countsEvery    = 50   // calls between checks of Counts
)

var randomTags = []string{"art", "books", "chess", "dogs"}

// mSess is a session as the model sees it.
type mSess struct {
	s      sess
	shadow bool // waits in the shadow pool, every time
	state  signaling.State
	tk     signaling.Ticket // while waiting
	match  string           // while matched
	mate   string           // the partner, while matched
	// view is its side of the match, as Queue or Withdraw return it
	// again (Earlier), while matched.
	view signaling.Pairing

	recent []string // the last RecentPartners partners, a ring
	next   int      // next slot of recent to overwrite
}

func (m *mSess) remember(id string, keep int) {
	if len(m.recent) < keep {
		m.recent = append(m.recent, id)
		return
	}
	m.recent[m.next] = id
	m.next = (m.next + 1) % keep
}

type model struct {
	f       *fixture
	rng     *rand.Rand
	live    map[string]*mSess
	ids     []string          // of live, for drawing
	blocked map[[2]string]int // reporter, reported → 1
	ended   []sess            // sessions ended, for the check of Ended
	revoked map[string]bool   // how they ended

	// What each node's host must have been told, checked at the end.
	paired      map[[2]string]signaling.Pairing // match, session → the view
	partnerLeft map[[2]string]signaling.LeftReason

	pairings, waits, recentAgain int // what the calls did, for the log
	seed                         uint64
}

// newModel is a model of f with randomSessions sessions, seeded at
// random (the seed is logged, to replay a failure).
func newModel(t *testing.T, f *fixture) *model {
	seed := rand.Uint64()
	t.Logf("%s: seed %d", f.name, seed)
	m := &model{
		f:           f,
		seed:        seed,
		rng:         rand.New(rand.NewPCG(seed, seed>>1)),
		live:        map[string]*mSess{},
		blocked:     map[[2]string]int{},
		revoked:     map[string]bool{},
		paired:      map[[2]string]signaling.Pairing{},
		partnerLeft: map[[2]string]signaling.LeftReason{},
	}
	for range randomSessions {
		m.add()
	}
	return m
}

func testRandom(t *testing.T, f *fixture) {
	m := newModel(t, f)
	for i := range randomOps {
		m.step()
		if t.Failed() {
			t.Fatalf("%s: stopped after call %d (seed %d)", f.name, i, m.seed)
		}
		if i%countsEvery == 0 {
			m.checkCounts()
		}
	}
	m.finish()
	t.Logf("%s: %d calls: %d pairings (%d of settled recent partners), %d waits, %d sessions ended, %d reports",
		f.name, randomOps, m.pairings, m.recentAgain, m.waits, len(m.ended), len(m.blocked))
}

// finish has every session leave the pool and its match, and checks what
// is left and what the hosts were told.
func (m *model) finish() {
	f := m.f
	for _, id := range slices.Clone(m.ids) {
		x := m.live[id]
		switch x.state {
		case signaling.StateWaiting:
			f.withdraw(x.s)
			x.state = signaling.StateIdle
		case signaling.StateMatched:
			m.endMatch(x, signaling.LeftStop)
		}
	}
	m.checkCounts()
	m.checkHosts()
}

func (m *model) add() {
	n := m.rng.IntN(len(m.f.engines))
	s := m.f.sessionOn(n)
	m.live[s.id] = &mSess{s: s, shadow: m.rng.IntN(100) < 15, state: signaling.StateIdle}
	m.ids = append(m.ids, s.id)
}

func (m *model) remove(id string) {
	delete(m.live, id)
	i := slices.Index(m.ids, id)
	m.ids = slices.Delete(m.ids, i, i+1)
}

func (m *model) step() {
	x := m.live[m.ids[m.rng.IntN(len(m.ids))]]
	r := m.rng.IntN(100)
	if x.state == signaling.StateMatched {
		switch {
		case r < 75:
			m.endMatch(x, signaling.LeftNext)
		case r < 90:
			// A report: the match ends, and the two never meet again.
			mate := m.live[x.mate]
			m.endMatch(x, signaling.LeftReported)
			m.block(x, mate.s)
		default:
			// Both sides end it (the other first): the second is told it
			// is gone.
			match, mate := x.match, m.live[x.mate]
			m.endMatch(mate, signaling.LeftStop)
			err := m.f.engine(x.s).EndMatch(match, x.s.id, mate.s.id, signaling.LeftNext)
			if !errors.Is(err, signaling.ErrMatchGone) {
				m.f.t.Errorf("%s: EndMatch(%s) after the other side ended it: %v, want ErrMatchGone", m.f.name, match, err)
			}
		}
		return
	}
	switch {
	case r < 55:
		m.queue(x, m.ticket(x))
	case r < 67 && x.state == signaling.StateWaiting:
		// Its fallback: it waits on, settled, perhaps open to anyone.
		tk := x.tk
		tk.Settled = true
		tk.Anyone = tk.Anyone || m.rng.IntN(2) == 0
		m.queue(x, tk)
	case r < 80:
		m.f.withdraw(x.s)
		x.state = signaling.StateIdle
	case r < 92:
		revoke := m.rng.IntN(4) == 0
		m.f.end(x.s, revoke)
		m.ended = append(m.ended, x.s)
		m.revoked[x.s.id] = revoke
		m.remove(x.s.id)
		m.add()
	default:
		o := m.live[m.ids[m.rng.IntN(len(m.ids))]]
		if o != x {
			m.block(x, o.s)
		}
	}
}

func (m *model) ticket(x *mSess) signaling.Ticket {
	tk := x.s.ticket()
	tk.Shadow = x.shadow
	if m.rng.IntN(10) < 3 {
		tk.Mode = signaling.ModeText
	}
	for _, i := range m.rng.Perm(len(randomTags))[:m.rng.IntN(3)] {
		tk.Interests = append(tk.Interests, randomTags[i])
	}
	tk.Settled = m.rng.IntN(10) < 3
	tk.Anyone = len(tk.Interests) == 0 || (tk.Settled && m.rng.IntN(3) > 0)
	return tk
}

func (m *model) block(x *mSess, o sess) {
	m.f.block(x.s, o)
	m.blocked[[2]string{x.s.id, o.id}] = 1
}

// compatible says why x (queued with tk) and y (waiting) may not meet, or
// "" if they may; recentOK allows recent partners.
func (m *model) incompatible(x *mSess, tk signaling.Ticket, y *mSess, recentOK bool) string {
	switch {
	case x == y:
		return "itself"
	case y.state != signaling.StateWaiting:
		return fmt.Sprintf("not waiting but %s", y.state)
	case tk.Mode != y.tk.Mode:
		return "another mode"
	case tk.Shadow != y.tk.Shadow:
		return "the other pool (shadow or not)"
	case len(common(tk.Interests, y.tk.Interests)) == 0 && !(tk.Anyone && y.tk.Anyone):
		return fmt.Sprintf("no shared interest (%v, %v) and not both open to anyone (%v, %v)", tk.Interests, y.tk.Interests, tk.Anyone, y.tk.Anyone)
	case m.blocked[[2]string{x.s.id, y.s.id}]+m.blocked[[2]string{y.s.id, x.s.id}] > 0:
		return "a reported partner"
	}
	recent := slices.Contains(x.recent, y.s.id) || slices.Contains(y.recent, x.s.id)
	if recent && !(recentOK && tk.Settled && y.tk.Settled) {
		return "a recent partner, not both settled"
	}
	return ""
}

// candidates returns the waiting sessions x may meet (recentOK: counting
// settled recent partners) and the size of its pool.
func (m *model) candidates(x *mSess, tk signaling.Ticket, recentOK bool) (ok []*mSess, pool int) {
	for _, id := range m.ids {
		y := m.live[id]
		if y == x || y.state != signaling.StateWaiting || y.tk.Mode != tk.Mode || y.tk.Shadow != tk.Shadow {
			continue
		}
		pool++
		if m.incompatible(x, tk, y, recentOK) == "" {
			ok = append(ok, y)
		}
	}
	return ok, pool
}

func (m *model) queue(x *mSess, tk signaling.Ticket) {
	f := m.f
	p, err := f.engine(x.s).Queue(tk)
	if err != nil {
		f.t.Fatalf("%s: Queue(%s): %v", f.name, x.s, err)
	}
	m.queued(x, tk, p)
}

// queued checks what Queue(tk) of x, not in a match, returned, and
// updates the model.
func (m *model) queued(x *mSess, tk signaling.Ticket, p signaling.Pairing) {
	f := m.f
	fresh, pool := m.candidates(x, tk, false)
	if p.Zero() {
		if pool <= randomSmall {
			if all, _ := m.candidates(x, tk, true); len(all) > 0 {
				f.t.Errorf("%s: Queue(%s %s) left it waiting in a pool of %d, where %s (%s) would do",
					f.name, x.s, brief(tk), pool, all[0].s, brief(all[0].tk))
			}
		}
		x.state, x.tk = signaling.StateWaiting, tk
		m.waits++
		return
	}
	y := m.live[p.Partner]
	if y == nil {
		f.t.Fatalf("%s: Queue(%s) paired it with %.8s, which is not a live session", f.name, x.s, p.Partner)
	}
	if why := m.incompatible(x, tk, y, true); why != "" {
		f.t.Fatalf("%s: Queue(%s %s) paired it with %s (%s): %s", f.name, x.s, brief(tk), y.s, brief(y.tk), why)
	}
	m.pairings++
	if m.incompatible(x, tk, y, false) != "" {
		m.recentAgain++
	}
	if m.incompatible(x, tk, y, false) != "" && len(fresh) > 0 && pool <= randomSmall {
		f.t.Errorf("%s: Queue(%s) paired it again with its recent partner %s while %s waited", f.name, x.s, y.s, fresh[0].s)
	}
	if p.Earlier || p.Remote != (x.s.node != y.s.node) || p.PartnerIdent != y.s.ident ||
		(p.Role != signaling.RoleOfferer && p.Role != signaling.RoleAnswerer) {
		f.t.Errorf("%s: Queue(%s) = %+v; want not Earlier, Remote %v, PartnerIdent %+v, a role", f.name, x.s, p, x.s.node != y.s.node, y.s.ident)
	}
	if want := common(tk.Interests, y.tk.Interests); p.Common == nil || !slices.Equal(p.Common, want) {
		f.t.Errorf("%s: Queue(%s): Common %#v, want %#v", f.name, x.s, p.Common, want)
	}
	if p.Remote {
		role := signaling.RoleOfferer
		if p.Role == role {
			role = signaling.RoleAnswerer
		}
		m.paired[[2]string{p.Match, y.s.id}] = signaling.Pairing{
			Match: p.Match, Partner: x.s.id, Remote: true, Role: role,
			Common: common(y.tk.Interests, tk.Interests), PartnerIdent: x.s.ident,
		}
	}
	prole := signaling.RoleOfferer
	if p.Role == prole {
		prole = signaling.RoleAnswerer
	}
	x.state, x.match, x.mate, x.tk = signaling.StateMatched, p.Match, y.s.id, tk
	y.state, y.match, y.mate = signaling.StateMatched, p.Match, x.s.id
	x.view, y.view = p, signaling.Pairing{
		Match: p.Match, Partner: x.s.id, Remote: p.Remote, Role: prole,
		Common: common(y.tk.Interests, tk.Interests), PartnerIdent: x.s.ident,
	}
	x.view.Earlier, y.view.Earlier = true, true
}

func (m *model) endMatch(x *mSess, why signaling.LeftReason) {
	y := m.live[x.mate]
	if err := m.f.engine(x.s).EndMatch(x.match, x.s.id, y.s.id, why); err != nil {
		m.f.t.Fatalf("%s: EndMatch(%s) by %s: %v", m.f.name, x.match, x.s, err)
	}
	m.matchEnded(x, why)
}

// matchEnded updates the model after x ended its match.
func (m *model) matchEnded(x *mSess, why signaling.LeftReason) {
	y := m.live[x.mate]
	if x.s.node != y.s.node {
		m.partnerLeft[[2]string{x.match, y.s.id}] = why
	}
	keep := m.f.opts.RecentPartners
	x.remember(y.s.id, keep)
	y.remember(x.s.id, keep)
	for _, s := range []*mSess{x, y} {
		s.state, s.match, s.mate = signaling.StateIdle, "", ""
	}
}

func (m *model) checkCounts() {
	var want signaling.EngineCounts
	want.Online = len(m.live)
	for _, x := range m.live {
		if x.state != signaling.StateWaiting {
			continue
		}
		if x.tk.Mode == signaling.ModeVideo {
			want.WaitingVideo++
		} else {
			want.WaitingText++
		}
		if x.tk.Shadow {
			want.Shadowed++
		}
	}
	m.f.counts(fmt.Sprintf("%+v, as the model has it", want), func(c signaling.EngineCounts) bool {
		return c.Online == want.Online && c.WaitingVideo == want.WaitingVideo && c.WaitingText == want.WaitingText && c.Shadowed == want.Shadowed
	})
}

// checkHosts checks each node was told what it had to be, and nothing
// else: no pairing the model did not make (a session in two matches).
func (m *model) checkHosts() {
	f := m.f
	for key, want := range m.paired {
		id := key[1]
		h := f.hosts[m.nodeOf(id)]
		e := h.WaitKind(f.t, Patience, Paired, id, want.Match)
		got := e.Pairing
		if got.Partner != want.Partner || !got.Remote || got.Role != want.Role || got.Earlier ||
			got.PartnerIdent != want.PartnerIdent || !slices.Equal(got.Common, want.Common) || got.Common == nil {
			f.t.Errorf("%s: %.8s was told %+v; want %+v", f.name, id, got, want)
		}
	}
	for key, why := range m.partnerLeft {
		match, id := key[0], key[1]
		e := f.hosts[m.nodeOf(id)].WaitKind(f.t, Patience, PartnerLeft, id, match)
		if e.Why != why {
			f.t.Errorf("%s: %.8s told its partner left match %s for %q, want %q", f.name, id, match, e.Why, why)
		}
	}
	for i, h := range f.hosts {
		for _, e := range h.Select(Paired, "") {
			if _, ok := m.paired[[2]string{e.Match, e.Session}]; !ok {
				f.t.Errorf("%s: node%d was told of a pairing nobody made: %s", f.name, i, e)
			}
		}
		for _, e := range h.Select(PartnerLeft, "") {
			if _, ok := m.partnerLeft[[2]string{e.Match, e.Session}]; !ok {
				f.t.Errorf("%s: node%d was told of a match's end nobody asked for: %s", f.name, i, e)
			}
		}
	}
	for _, s := range m.ended {
		for i, h := range f.hosts {
			if i != s.node {
				if e := h.WaitKind(f.t, Patience, Ended, s.id, ""); e.Revoke != m.revoked[s.id] {
					f.t.Errorf("%s: node%d told %s ended with revoke %v, want %v", f.name, i, s, e.Revoke, m.revoked[s.id])
				}
			}
		}
	}
}

// nodeOf returns the node of a session, live or ended, of this test.
func (m *model) nodeOf(id string) int {
	if x := m.live[id]; x != nil {
		return x.s.node
	}
	for _, s := range m.ended {
		if s.id == id {
			return s.node
		}
	}
	m.f.t.Fatalf("no session %.8s", id)
	return 0
}

// brief describes a ticket in a failure message.
func brief(tk signaling.Ticket) string {
	s := fmt.Sprintf("%s %v", tk.Mode, tk.Interests)
	if tk.Shadow {
		s += " shadow"
	}
	if tk.Anyone {
		s += " anyone"
	}
	if tk.Settled {
		s += " settled"
	}
	return s
}
