package signaling

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// The hub with a shared engine: a scripted engine stands in for the
// cluster, and the test plays the other nodes through the EngineHost the
// hub gave it.

type sent struct {
	to, match string
	data      []byte
}

type endedMatch struct {
	match, side, partner string
	why                  LeftReason
}

// scriptEngine is the memory engine for this node's own sessions, plus
// what a test scripts for the cluster. Its methods run on the hub's owner
// goroutine; the test reads what it recorded under mu.
type scriptEngine struct {
	Engine // the memory engine

	mu        sync.Mutex
	host      EngineHost
	down      bool
	sent      []sent
	ends      []endedMatch
	endedSess []string
	claims    map[string]SessionRecord // by resume token
	withdrawn map[string]Pairing       // Withdraw returns this pairing, once
}

func newScriptEngine() *scriptEngine {
	return &scriptEngine{
		Engine:    NewMemoryEngine(MemoryConfig{}),
		claims:    map[string]SessionRecord{},
		withdrawn: map[string]Pairing{},
	}
}

func (e *scriptEngine) Start(h EngineHost) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.host = h
	return nil
}

func (e *scriptEngine) Node() string { return "node-a" }

func (e *scriptEngine) Ready() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.down
}

func (e *scriptEngine) Queue(t Ticket) (Pairing, error) {
	if !e.Ready() {
		return Pairing{}, ErrEngineUnavailable
	}
	return e.Engine.Queue(t)
}

func (e *scriptEngine) Withdraw(id string) (Pairing, error) {
	e.mu.Lock()
	p, ok := e.withdrawn[id]
	delete(e.withdrawn, id)
	e.mu.Unlock()
	if ok {
		_, _ = e.Engine.Withdraw(id)
		return p, nil
	}
	return e.Engine.Withdraw(id)
}

func (e *scriptEngine) EndMatch(matchID, id, partnerID string, why LeftReason) error {
	e.mu.Lock()
	e.ends = append(e.ends, endedMatch{matchID, id, partnerID, why})
	e.mu.Unlock()
	if err := e.Engine.EndMatch(matchID, id, partnerID, why); err != nil {
		return ErrMatchGone // a remote match the memory engine never saw
	}
	return nil
}

func (e *scriptEngine) End(id string, revoke bool) error {
	e.mu.Lock()
	e.endedSess = append(e.endedSess, id)
	e.mu.Unlock()
	return e.Engine.End(id, revoke)
}

func (e *scriptEngine) Claim(token string) (SessionRecord, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, ok := e.claims[token]
	delete(e.claims, token)
	return rec, ok, nil
}

func (e *scriptEngine) Send(to, match string, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sent = append(e.sent, sent{to, match, append([]byte(nil), data...)})
}

func (e *scriptEngine) hostOf() EngineHost {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.host
}

func (e *scriptEngine) sentTo(to string) []sent {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []sent
	for _, s := range e.sent {
		if s.to == to {
			out = append(out, s)
		}
	}
	return out
}

func (e *scriptEngine) endsOf(match string) []endedMatch {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []endedMatch
	for _, x := range e.ends {
		if x.match == match {
			out = append(out, x)
		}
	}
	return out
}

func newClusterEnv(t *testing.T) (*env, *scriptEngine, *observer) {
	eng := newScriptEngine()
	obs := newObserver()
	cfg := testConfig()
	cfg.Engine = eng
	cfg.Sessions = obs
	return newEnv(t, cfg), eng, obs
}

// remoteMatch has a waits, then pairs it with a session on another node.
func remoteMatch(t *testing.T, a *client, aw rx, eng *scriptEngine, match string) rx {
	t.Helper()
	a.find(ModeVideo)
	a.expect(TypeWaiting)
	eng.hostOf().Paired(aw.Session, Pairing{Match: match, Partner: "remote-x", Remote: true, Role: RoleOfferer, Common: []string{}})
	m := a.expect(TypeMatched)
	if m.Match != match || m.Role != RoleOfferer {
		t.Fatalf("matched %+v, want match %s as offerer", m, match)
	}
	return m
}

func TestClusterRemotePartner(t *testing.T) {
	e, eng, _ := newClusterEnv(t)
	a := e.dial()
	aw := a.hello()
	remoteMatch(t, a, aw, eng, "m1")

	// What a sends goes through the engine to the partner's node, fenced.
	a.send(Chat{Type: TypeChat, Match: "m1", Text: "hi"})
	a.send(Chat{Type: TypeChat, Match: "stale", Text: "lost"})
	a.barrier()
	got := eng.sentTo("remote-x")
	if len(got) != 1 || got[0].match != "m1" || !json.Valid(got[0].data) {
		t.Fatalf("sent to the remote partner: %+v", got)
	}

	// What the partner sends arrives, unless it names another match.
	h := eng.hostOf()
	h.Deliver(aw.Session, "old", encode(&Chat{Type: TypeChat, Match: "old", Text: "stale"}))
	h.Deliver(aw.Session, "m1", encode(&Chat{Type: TypeChat, Match: "m1", Text: "hello"}))
	if m := a.expect(TypeChat); m.Text != "hello" {
		t.Fatalf("chat %+v", m)
	}

	// A second pairing for a session in a match is refused: that match
	// ends at once, and a stays in its own.
	h.Paired(aw.Session, Pairing{Match: "m2", Partner: "remote-y", Remote: true, Role: RoleAnswerer, Common: []string{}})
	eventually(t, func() bool { return len(eng.endsOf("m2")) == 1 })
	if x := eng.endsOf("m2")[0]; x.side != aw.Session || x.partner != "remote-y" {
		t.Fatalf("refused match ended as %+v", x)
	}
	if !a.quiet() {
		t.Fatal("a heard of a pairing it refused")
	}

	// The partner leaves: a is told, once; a late signal from it is dropped.
	h.PartnerLeft(aw.Session, "m1", LeftNext)
	if m := a.expect(TypePartnerLeft); m.Match != "m1" || m.Reason != LeftNext {
		t.Fatalf("partner_left %+v", m)
	}
	h.PartnerLeft(aw.Session, "m1", LeftNext)
	h.Deliver(aw.Session, "m1", encode(&Chat{Type: TypeChat, Match: "m1", Text: "late"}))
	a.barrier()
	if len(eng.endsOf("m1")) != 0 {
		t.Fatal("the hub ended a match the partner's node had ended")
	}
}

func TestClusterNextTellsTheRemotePartner(t *testing.T) {
	e, eng, _ := newClusterEnv(t)
	a := e.dial()
	aw := a.hello()
	remoteMatch(t, a, aw, eng, "m1")
	a.send(Next{Type: TypeNext})
	a.expect(TypeWaiting)
	ends := eng.endsOf("m1")
	if len(ends) != 1 || ends[0].why != LeftNext || ends[0].partner != "remote-x" {
		t.Fatalf("ends %+v", ends)
	}
}

func TestClusterWithdrawFindsAnEarlierPairing(t *testing.T) {
	e, eng, _ := newClusterEnv(t)
	a := e.dial()
	aw := a.hello()
	a.find(ModeVideo)
	a.expect(TypeWaiting)
	// Another node paired a just as it stops: the pairing stands, so a is
	// matched and the stop ends that match, telling the partner.
	eng.mu.Lock()
	eng.withdrawn[aw.Session] = Pairing{Match: "m9", Partner: "remote-z", Remote: true, Role: RoleAnswerer, Common: []string{}, Earlier: true}
	eng.mu.Unlock()
	a.send(Stop{Type: TypeStop})
	if *batchAll {
		// Taken later, the pairing finds a stopped: it is refused, and
		// ends without a ever being told of it.
		eventually(t, func() bool { return len(eng.endsOf("m9")) == 1 })
	} else {
		if m := a.expect(TypeMatched); m.Match != "m9" {
			t.Fatalf("matched %+v", m)
		}
		a.barrier()
		if ends := eng.endsOf("m9"); len(ends) != 1 || ends[0].why != LeftStop {
			t.Fatalf("ends %+v", ends)
		}
	}
	// The pairing node's notice of the same match comes late: a has left
	// that match, and is not told of it twice.
	eng.hostOf().Paired(aw.Session, Pairing{Match: "m9", Partner: "remote-z", Remote: true, Role: RoleAnswerer, Common: []string{}})
	a.barrier()
	if !a.quiet() {
		t.Fatal("a heard again of a match it had left")
	}
	if n := len(eng.endsOf("m9")); n != 1 {
		t.Fatalf("the match was ended %d times", n)
	}
}

func TestClusterUnavailable(t *testing.T) {
	e, eng, _ := newClusterEnv(t)
	a := e.dial()
	a.hello()
	eng.mu.Lock()
	eng.down = true
	eng.mu.Unlock()
	if e.hub.Ready() {
		t.Fatal("ready while the engine is down")
	}
	a.find(ModeVideo)
	a.expectError(CodeUnavailable)
	eng.mu.Lock()
	eng.down = false
	eng.mu.Unlock()
	a.find(ModeVideo)
	a.expect(TypeWaiting)
}

func TestClusterClaimedAndEndedElsewhere(t *testing.T) {
	e, eng, obs := newClusterEnv(t)
	a := e.dial()
	aw := a.hello()
	remoteMatch(t, a, aw, eng, "m1")
	h := eng.hostOf()

	// a's connection drops; what its partner sends meanwhile is kept.
	a.ws.Close()
	eventually(t, func() bool { return e.hub.inspect().attached == 0 })
	h.Deliver(aw.Session, "m1", encode(&Chat{Type: TypeChat, Match: "m1", Text: "kept"}))
	eventually(t, func() bool { return e.hub.inspect().pending == 1 })

	// The session resumes on another node: it is forgotten here but not
	// ended, what was kept goes with it, and the relay here keeps
	// honouring it until it ends over there.
	pending := h.Claimed(aw.Session)
	if len(pending) != 1 || !strings.Contains(string(pending[0]), "kept") {
		t.Fatalf("handed over %q", pending)
	}
	if n := e.hub.inspect(); n.sessions != 0 {
		t.Fatalf("%d sessions left after the claim", n.sessions)
	}
	if obs.hasEnded(aw.Session) || len(eng.endsOf("m1")) != 0 {
		t.Fatal("a session that moved was ended")
	}
	h.Ended(aw.Session, false)
	eventually(t, func() bool { return obs.hasEnded(aw.Session) })
}

func TestClusterClaimedClosesTheConnection(t *testing.T) {
	e, eng, _ := newClusterEnv(t)
	a := e.dial()
	aw := a.hello()
	remoteMatch(t, a, aw, eng, "m1")
	eng.hostOf().Claimed(aw.Session)
	a.expectClose(CloseResumed)
}

func TestClusterClaimResumesASessionFromAnotherNode(t *testing.T) {
	e, eng, obs := newClusterEnv(t)
	eng.mu.Lock()
	eng.claims["token-b"] = SessionRecord{
		ID: "sess-b", Token: "token-b", Node: "node-b", HasFind: true, Mode: ModeVideo,
		State: StateMatched, Match: "m5", Partner: "remote-p", WaitSince: time.Now(),
	}
	eng.mu.Unlock()
	b := e.dial()
	b.send(Hello{Type: TypeHello, Version: ProtocolVersion, Resume: "token-b"})
	w := b.expect(TypeWelcome)
	if !w.Resumed || w.Session != "sess-b" || w.Match != "m5" || w.State != StateMatched {
		t.Fatalf("welcome %+v", w)
	}
	eventually(t, func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.started["sess-b"]
	})
	// What the previous node held arrives after the welcome.
	eng.hostOf().Handover("sess-b", [][]byte{encode(&Chat{Type: TypeChat, Match: "m5", Text: "meanwhile"})})
	if m := b.expect(TypeChat); m.Text != "meanwhile" {
		t.Fatalf("handover %+v", m)
	}
	b.send(Chat{Type: TypeChat, Match: "m5", Text: "back"})
	b.barrier()
	if got := eng.sentTo("remote-p"); len(got) != 1 {
		t.Fatalf("sent %+v", got)
	}
	// An unknown token is still a new session.
	c := e.dial()
	c.send(Hello{Type: TypeHello, Version: ProtocolVersion, Resume: "nope"})
	c.expectError(CodeBadResume)
	if w := c.expect(TypeWelcome); w.Resumed {
		t.Fatal("an unknown token resumed something")
	}
}

func TestClusterDrainKeepsSessions(t *testing.T) {
	e, eng, _ := newClusterEnv(t)
	a := e.dial()
	aw := a.hello()
	remoteMatch(t, a, aw, eng, "m1")
	b := e.dial()
	b.hello()
	b.find(ModeText)
	b.expect(TypeWaiting)
	if err := e.hub.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.expect(TypeRestarting)
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if len(eng.endedSess) != 0 || len(eng.ends) != 0 {
		t.Fatalf("a draining hub ended sessions %v and matches %v: they are to resume elsewhere", eng.endedSess, eng.ends)
	}
}

func TestClusterReportKeepsTheRemotePartnersChat(t *testing.T) {
	eng := newScriptEngine()
	mod := newFakeModerator()
	cfg := testConfig()
	cfg.Engine = eng
	cfg.Moderator = mod
	e := newEnv(t, cfg)
	a := e.dial()
	aw := a.hello()
	remoteMatch(t, a, aw, eng, "m1")
	h := eng.hostOf()
	h.Deliver(aw.Session, "m1", encode(&Signal{Type: TypeSignal, Match: "m1", SDP: &SessionDescription{Type: "offer", SDP: "v=0"}}))
	a.expect(TypeSignal)
	h.Deliver(aw.Session, "m1", encode(&Chat{Type: TypeChat, Match: "m1", Text: "from afar"}))
	a.expect(TypeChat)
	a.send(Chat{Type: TypeChat, Match: "m1", Text: "from here"})
	a.send(Report{Type: TypeReport, Match: "m1", Reason: "spam"})
	eventually(t, func() bool { _, n := mod.lastReport(); return n == 1 })
	r, _ := mod.lastReport()
	if len(r.Chat) != 2 || r.Chat[0].From != "reported" || r.Chat[0].Text != "from afar" || r.Chat[1].From != "reporter" {
		t.Fatalf("evidence %+v, want the remote partner's line then the reporter's", r.Chat)
	}
}
