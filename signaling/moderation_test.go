package signaling

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeModerator bans and shadows by client id, and records reports.
type fakeModerator struct {
	mu       sync.Mutex
	bans     map[Identity]BanNotice // by Identity{Client} or Identity{Addr}
	shadowed map[string]bool
	reports  []ReportEvent
}

func newFakeModerator() *fakeModerator {
	return &fakeModerator{bans: map[Identity]BanNotice{}, shadowed: map[string]bool{}}
}

func (f *fakeModerator) Banned(id Identity, now time.Time) (BanNotice, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range []Identity{{Client: id.Client}, {Addr: id.Addr}} {
		if b, ok := f.bans[k]; ok && now.Before(b.Until) {
			return b, true
		}
	}
	return BanNotice{}, false
}

func (f *fakeModerator) Shadowed(id Identity, _ time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shadowed[id.Client]
}

func (f *fakeModerator) Reported(r ReportEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, r)
}

func (f *fakeModerator) ban(id Identity, n BanNotice) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bans[id] = n
}

func (f *fakeModerator) lastReport() (ReportEvent, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reports) == 0 {
		return ReportEvent{}, 0
	}
	return f.reports[len(f.reports)-1], len(f.reports)
}

// revoker is an observer that also revokes.
type revoker struct {
	*observer
	mu      sync.Mutex
	revoked map[string]bool
}

func (r *revoker) SessionRevoked(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[id] = true
}

func (r *revoker) wasRevoked(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revoked[id]
}

// A ban ends the session at once (the partner sees the stranger leave, the
// relay revokes the session), the banned page is told why, until when and
// whom to ask, and the client cannot come back: not with its key, not from
// its address with a fresh one.
func TestBanEndsSessionAndKeepsClientOut(t *testing.T) {
	t.Parallel()
	mod := newFakeModerator()
	rev := &revoker{observer: newObserver(), revoked: map[string]bool{}}
	cfg := testConfig()
	cfg.Moderator = mod
	cfg.Sessions = rev
	e := newEnv(t, cfg)

	a, b := e.dial(), e.dial()
	wa := a.hello()
	b.hello()
	a.find(ModeVideo)
	a.expect(TypeWaiting)
	b.find(ModeVideo)
	m := a.expect(TypeMatched)
	b.expect(TypeMatched)

	idA, _ := e.hub.keys.verify(wa.ClientKey)
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	notice := BanNotice{Reason: "nudity", Until: until, Appeal: "appeals@example.com"}
	mod.ban(Identity{Client: idA}, notice)
	if n := e.hub.Enforce(Identity{Client: idA}, notice); n != 1 {
		t.Fatalf("Enforce ended %d sessions, want 1", n)
	}
	got := a.expect(TypeBanned)
	if got.Until != until.UnixMilli() || got.Appeal != notice.Appeal {
		t.Fatalf("banned %+v", got)
	}
	a.expectClose(CloseBanned)
	if pl := b.expect(TypePartnerLeft); pl.Match != m.Match || pl.Reason != LeftDisconnected {
		t.Fatalf("partner got %+v", pl)
	}
	if !rev.wasRevoked(wa.Session) || !rev.hasEnded(wa.Session) {
		t.Fatal("the banned session was not revoked at the relay")
	}

	// Reconnecting with the same key: refused before anything else.
	c := e.dial()
	c.send(Hello{Type: TypeHello, Version: ProtocolVersion, ClientKey: wa.ClientKey})
	c.expect(TypeBanned)
	c.expectClose(CloseBanned)

	// A ban by address (a fresh key does not help) also catches a
	// session that is waiting.
	d := e.dial()
	d.hello()
	d.find(ModeVideo)
	d.expect(TypeWaiting)
	addr := e.hub.AddrHash(parseHostAddr("127.0.0.1"))
	mod.ban(Identity{Addr: addr}, notice)
	if n := e.hub.Enforce(Identity{Addr: addr}, notice); n != 2 { // b and d
		t.Fatalf("Enforce by address ended %d sessions, want 2", n)
	}
	d.expect(TypeBanned)
	d.expectClose(CloseBanned)
	f := e.dial()
	f.send(Hello{Type: TypeHello, Version: ProtocolVersion})
	f.expect(TypeBanned)
	f.expectClose(CloseBanned)
	eventually(t, func() bool { return e.hub.inspect().sessions == 0 })
	if n := counter(e.hub.m.bansEnforced); n != 5 {
		t.Errorf("strangers_bans_enforced_total = %v, want 5", n)
	}
}

// A banned client whose ban the hub was not told of (made on another node,
// say) cannot find either.
func TestBannedClientCannotFind(t *testing.T) {
	t.Parallel()
	mod := newFakeModerator()
	cfg := testConfig()
	cfg.Moderator = mod
	e := newEnv(t, cfg)
	a := e.dial()
	w := a.hello()
	id, _ := e.hub.keys.verify(w.ClientKey)
	mod.ban(Identity{Client: id}, BanNotice{Reason: "spam", Until: time.Now().Add(time.Hour)})
	a.find(ModeVideo)
	if got := a.expect(TypeBanned); got.Until == 0 {
		t.Fatalf("%+v", got)
	}
	a.expectClose(CloseBanned)
}

// Sessions in the shadow pool meet only each other, and are told nothing.
func TestShadowPoolMeetsOnlyItself(t *testing.T) {
	t.Parallel()
	mod := newFakeModerator()
	cfg := testConfig()
	cfg.Moderator = mod
	e := newEnv(t, cfg)

	s1, n1, s2 := e.dial(), e.dial(), e.dial()
	k1 := s1.hello().ClientKey
	n1.hello()
	k2 := s2.hello().ClientKey
	for _, k := range []string{k1, k2} {
		id, _ := e.hub.keys.verify(k)
		mod.shadowed[id] = true
	}
	s1.find(ModeVideo)
	if w := s1.expect(TypeWaiting); w.Mode != ModeVideo {
		t.Fatalf("%+v", w)
	}
	n1.find(ModeVideo)
	n1.expect(TypeWaiting) // not paired with the shadowed one
	if c := e.hub.Counts(); c.WaitingVideo != 2 || c.Shadowed != 1 {
		t.Fatalf("counts %+v", c)
	}
	s2.find(ModeVideo)
	m1, m2 := s1.expect(TypeMatched), s2.expect(TypeMatched)
	if m1.Match != m2.Match {
		t.Fatal("the two shadowed sessions were not paired")
	}
	n2 := e.dial()
	n2.hello()
	n2.find(ModeVideo)
	if a, b := n1.expect(TypeMatched), n2.expect(TypeMatched); a.Match != b.Match {
		t.Fatal("the two others were not paired")
	}
}

// More than NextRate finds and nexts a minute: a cooldown with the time
// left, then, once it is over, the next find goes through.
func TestSkipLimitCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.NextRate = 3
		cfg.NextCooldown = 10 * time.Second
		e := newPipeEnv(t, cfg)
		a := e.dial()
		a.hello()
		for range 3 {
			a.find(ModeVideo)
			a.expect(TypeWaiting)
		}
		a.find(ModeVideo)
		if c := a.expect(TypeCooldown); c.RetryIn != 10000 {
			t.Fatalf("cooldown %+v, want retryIn 10000", c)
		}
		if e.hub.inspect().waiting != 0 {
			t.Fatal("a session cooling down waits in the pool")
		}
		time.Sleep(4 * time.Second)
		a.send(Next{Type: TypeNext})
		if c := a.expect(TypeCooldown); c.RetryIn != 6000 {
			t.Fatalf("cooldown %+v, want retryIn 6000", c)
		}
		b := e.dial()
		time.Sleep(6 * time.Second)
		a.find(ModeVideo)
		a.expect(TypeWaiting)
		b.hello()
		b.find(ModeVideo)
		b.expect(TypeMatched)
		a.expect(TypeMatched)
		if n := counter(e.hub.m.cooldowns); n != 1 {
			t.Errorf("strangers_cooldowns_total = %v, want 1", n)
		}
	})
}

// The skip limit follows the client key across connections.
func TestSkipLimitFollowsClientKey(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.NextRate = 2
	cfg.NextCooldown = time.Hour
	e := newEnv(t, cfg)
	a := e.dial()
	key := a.hello().ClientKey
	a.find(ModeVideo)
	a.expect(TypeWaiting)
	a.find(ModeVideo)
	a.expect(TypeWaiting)
	b := e.dial()
	b.send(Hello{Type: TypeHello, Version: ProtocolVersion, ClientKey: key})
	b.expect(TypeWelcome)
	b.find(ModeVideo)
	b.expect(TypeCooldown)
	c := e.dial()
	c.hello() // another browser
	c.find(ModeVideo)
	c.expect(TypeMatched)
}

// tinyJPEG is the smallest shape isJPEG accepts, padded to n bytes.
func tinyJPEG(n int) []byte {
	b := bytes.Repeat([]byte{0}, n)
	b[0], b[1], b[2] = 0xFF, 0xD8, 0xFF
	b[n-2], b[n-1] = 0xFF, 0xD9
	return b
}

// A report after Next carries the match's last chat lines of both sides,
// the note and the still frame; a frame over the limit is refused.
func TestReportEvidence(t *testing.T) {
	t.Parallel()
	mod := newFakeModerator()
	cfg := testConfig()
	cfg.Moderator = mod
	cfg.MaxMessageSize = 128 << 10
	e := newEnv(t, cfg)
	a, b, ma, _ := e.pair()
	for i := range MaxEvidenceLines + 5 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		from.send(Chat{Type: TypeChat, Match: ma.Match, Text: "line " + strings.Repeat("x", i)})
		to.expect(TypeChat)
	}
	a.send(Next{Type: TypeNext})
	a.expect(TypeWaiting)
	b.expect(TypePartnerLeft)

	a.send(Report{Type: TypeReport, Match: ma.Match, Note: "rude", Frame: tinyJPEG(MaxFrameBytes + 1)})
	a.expectError(CodeTooLarge)
	a.send(Report{Type: TypeReport, Match: ma.Match, Frame: []byte("not a jpeg at all")})
	a.expectError(CodeBadMessage)
	a.send(Report{Type: TypeReport, Match: ma.Match, Note: "rude", Frame: tinyJPEG(MaxFrameBytes)})
	a.barrier()
	r, n := mod.lastReport()
	if n != 1 {
		t.Fatalf("%d reports recorded, want 1", n)
	}
	if !r.Ended || r.Match != ma.Match || r.Note != "rude" || len(r.Frame) != MaxFrameBytes {
		t.Fatalf("report %+v", r)
	}
	if r.Reporter.Client == "" || r.Reported.Client == "" || r.Reporter == r.Reported {
		t.Fatalf("identities %+v / %+v", r.Reporter, r.Reported)
	}
	if len(r.Chat) != MaxEvidenceLines {
		t.Fatalf("%d chat lines kept, want %d", len(r.Chat), MaxEvidenceLines)
	}
	last := r.Chat[len(r.Chat)-1]
	if last.From != "reporter" || last.Text != "line "+strings.Repeat("x", MaxEvidenceLines+4) {
		t.Fatalf("last line %+v", last)
	}
	if r.Chat[len(r.Chat)-2].From != "reported" {
		t.Fatalf("second last line %+v", r.Chat[len(r.Chat)-2])
	}
	// A second report of the same match adds nothing.
	a.send(Report{Type: TypeReport, Match: ma.Match})
	a.barrier()
	if _, n := mod.lastReport(); n != 1 {
		t.Fatalf("%d reports recorded, want 1", n)
	}

	// During a call: not ended, and the partner is told.
	a.send(Stop{Type: TypeStop})
	a.barrier()
	c, d, mc, _ := e.pair()
	c.send(Report{Type: TypeReport, Match: mc.Match})
	d.expect(TypePartnerLeft)
	c.barrier()
	if r, n := mod.lastReport(); n != 2 || r.Ended || r.Match != mc.Match {
		t.Fatalf("report during the call: %+v (%d reports)", r, n)
	}
}
