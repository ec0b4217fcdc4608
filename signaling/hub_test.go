package signaling

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/strangers-chat/strangers/internal/sessionid"
)

func ptr[T any](v T) *T { return &v }

func TestPairAndRelay(t *testing.T) {
	t.Parallel()
	ice := &fakeICE{}
	obs := newObserver()
	cfg := testConfig()
	cfg.ICE, cfg.Sessions = ice, obs
	e := newEnv(t, cfg)

	a, b := e.dial(), e.dial()
	wa, wb := a.hello(), b.hello()
	for _, w := range []rx{wa, wb} {
		if !sessionid.Valid(w.Session) || w.Resume == "" || w.Resume == w.Session || w.Version != ProtocolVersion || w.State != StateIdle || w.Limits == nil {
			t.Fatalf("bad welcome %+v", w)
		}
	}
	if wa.Session == wb.Session {
		t.Fatal("two sessions share an id")
	}
	if !obs.started[wa.Session] || !obs.started[wb.Session] {
		t.Fatal("observer not told of session starts")
	}

	a.find(ModeVideo)
	if w := a.expect(TypeWaiting); w.Mode != ModeVideo || w.FallbackIn != 0 {
		t.Fatalf("waiting %+v", w)
	}
	b.find(ModeVideo)
	ma, mb := a.expect(TypeMatched), b.expect(TypeMatched)
	if ma.Match == "" || ma.Match != mb.Match || ma.Match == wa.Session {
		t.Fatalf("match ids %q and %q", ma.Match, mb.Match)
	}
	if (ma.Role == RoleOfferer) == (mb.Role == RoleOfferer) || ma.Role == "" || mb.Role == "" {
		t.Fatalf("roles %q and %q: want one offerer, one answerer", ma.Role, mb.Role)
	}
	for _, m := range []struct {
		rx
		session string
	}{{ma, wa.Session}, {mb, wb.Session}} {
		if len(m.ICEServers) != 2 || !strings.HasSuffix(m.ICEServers[1].Username, ":"+m.session) || m.ICEServers[1].Credential == "" {
			t.Fatalf("ICE servers %+v are not this session's (%s)", m.ICEServers, m.session)
		}
		if m.Interests == nil || len(m.Interests) != 0 || m.Mode != ModeVideo {
			t.Fatalf("matched %+v", m.rx)
		}
	}

	offerer, answerer := a, b
	if mb.Role == RoleOfferer {
		offerer, answerer = b, a
	}
	match := ma.Match
	offer := SessionDescription{Type: "offer", SDP: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"}
	offerer.send(Signal{Type: TypeSignal, Match: match, SDP: &offer})
	if got := answerer.expect(TypeSignal); got.Match != match || got.SDP == nil || *got.SDP != offer || got.Candidate != nil {
		t.Fatalf("offer arrived as %+v", got)
	}
	answer := SessionDescription{Type: "answer", SDP: "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n"}
	answerer.send(Signal{Type: TypeSignal, Match: match, SDP: &answer})
	if got := offerer.expect(TypeSignal); got.SDP == nil || *got.SDP != answer {
		t.Fatalf("answer arrived as %+v", got)
	}
	cands := []ICECandidate{
		{Candidate: "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host generation 0", SDPMid: ptr("0"), SDPMLineIndex: ptr[uint16](0), UsernameFragment: ptr("abcd")},
		{Candidate: "candidate:2 1 udp 1686052607 198.51.100.7 40000 typ srflx raddr 192.0.2.1 rport 54321", SDPMid: ptr("0"), SDPMLineIndex: ptr[uint16](0)},
		{Candidate: "", SDPMid: ptr("0")}, // end of candidates
	}
	for _, from := range []*client{offerer, answerer} {
		to := answerer
		if from == answerer {
			to = offerer
		}
		for _, c := range cands {
			from.send(Signal{Type: TypeSignal, Match: match, Candidate: &c})
		}
		for _, c := range cands {
			got := to.expect(TypeSignal)
			if got.Candidate == nil || got.Candidate.Candidate != c.Candidate || *got.Candidate.SDPMid != *c.SDPMid {
				t.Fatalf("candidate arrived as %+v, sent %+v", got.Candidate, c)
			}
		}
	}

	a.send(Chat{Type: TypeChat, Match: match, Text: "hi there 👋"})
	if got := b.expect(TypeChat); got.Text != "hi there 👋" || got.Match != match {
		t.Fatalf("chat arrived as %+v", got)
	}
	b.send(Typing{Type: TypeTyping, Match: match, Typing: true})
	if got := a.expect(TypeTyping); !got.Typing || got.Match != match {
		t.Fatalf("typing arrived as %+v", got)
	}
	b.send(Chat{Type: TypeChat, Match: match, Text: "hello"})
	if got := a.expect(TypeChat); got.Text != "hello" {
		t.Fatalf("chat arrived as %+v", got)
	}
	if !a.quiet() || !b.quiet() {
		t.Fatal("a sender received its own message, or something extra")
	}
	if n := len(ice.calls); n != 2 {
		t.Fatalf("ICE provider called %d times, want once per side", n)
	}
	if got := counter(e.hub.m.matches); got != 1 {
		t.Fatalf("matches_total %v", got)
	}
}

// The server never forwards raw client bytes: a relayed message is the
// decoded value re-encoded, so fields it does not know cannot reach the
// partner (they are refused), and the formatting is the server's.
func TestRelayReencodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	a, b, ma, _ := e.pair()
	a.sendRaw(`{ "type":"chat",   "match":"` + ma.Match + `", "text":"x", "to":"someone-else" }`)
	a.expectError(CodeBadMessage)
	a.sendRaw(`{ "type" : "chat" , "match" : "` + ma.Match + `" , "text" : "\u0041" }`)
	if got := b.expect(TypeChat); got.Text != "A" {
		t.Fatalf("got %+v", got)
	}
}

func TestNextWithThreeClients(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.InterestWait = time.Hour // a and b, who just parted, stay apart throughout
	e := newEnv(t, cfg)
	a, b, ma, _ := e.pair()
	m1 := ma.Match
	c := e.dial()
	c.hello()
	c.find(ModeVideo)
	c.expect(TypeWaiting)

	// a leaves b for the next stranger: b is told, a meets c at once.
	a.send(Next{Type: TypeNext})
	if pl := b.expect(TypePartnerLeft); pl.Match != m1 || pl.Reason != LeftNext {
		t.Fatalf("b got %+v", pl)
	}
	ma2, mc := a.expect(TypeMatched), c.expect(TypeMatched)
	if ma2.Match != mc.Match || ma2.Match == m1 {
		t.Fatalf("a and c: %q %q (old %q)", ma2.Match, mc.Match, m1)
	}
	m2 := ma2.Match

	// Stale messages naming the old match reach nobody: not c (a's new
	// partner), not b (the old one).
	old := ICECandidate{Candidate: "candidate:9 1 udp 1 192.0.2.9 9 typ host"}
	a.send(Signal{Type: TypeSignal, Match: m1, Candidate: &old})
	a.send(Chat{Type: TypeChat, Match: m1, Text: "stale"})
	b.send(Chat{Type: TypeChat, Match: m1, Text: "stale from b"})
	b.send(Signal{Type: TypeSignal, Match: m2, Candidate: &old}) // not b's match at all
	a.send(Chat{Type: TypeChat, Match: m2, Text: "fresh"})
	if got := c.expect(TypeChat); got.Text != "fresh" || got.Match != m2 {
		t.Fatalf("c got %+v before the fresh chat", got)
	}
	c.send(Chat{Type: TypeChat, Match: m2, Text: "back"})
	if got := a.expect(TypeChat); got.Text != "back" {
		t.Fatalf("a got %+v", got)
	}
	b.barrier()
	if !b.quiet() {
		t.Fatal("b received something from a match it left")
	}

	// b queues again; a leaves c: a and b just parted, so they are not
	// paired again while they remember each other.
	b.send(Next{Type: TypeNext})
	b.expect(TypeWaiting)
	a.send(Next{Type: TypeNext})
	c.expect(TypePartnerLeft)
	a.expect(TypeWaiting)
	a.barrier()
	snap := e.hub.inspect()
	if snap.waiting != 2 || snap.matched != 0 {
		t.Fatalf("after next: %+v, want a and b both waiting, unpaired", snap)
	}
	// c parted from a just now, but not from b: c meets b.
	c.send(Next{Type: TypeNext})
	mc3, mb3 := c.expect(TypeMatched), b.expect(TypeMatched)
	if mc3.Match != mb3.Match {
		t.Fatal("c and b not in the same match")
	}
	if !a.quiet() {
		t.Fatal("a got a message")
	}
	stale := counter(e.hub.m.dropped.WithLabelValues(dropStale)) - 2 // the barriers
	noMatch := counter(e.hub.m.dropped.WithLabelValues(dropNoMatch))
	if stale != 2 || noMatch != 2 {
		t.Fatalf("drops: %v stale, %v without a match; want 2 and 2", stale, noMatch)
	}
}

func TestModesNeverCross(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	v, tx := e.dial(), e.dial()
	v.hello()
	tx.hello()
	v.find(ModeVideo)
	v.expect(TypeWaiting)
	tx.find(ModeText)
	tx.expect(TypeWaiting)
	if s := e.hub.inspect(); s.waiting != 2 || s.matched != 0 {
		t.Fatalf("video and text crossed: %+v", s)
	}
	tx2 := e.dial()
	tx2.hello()
	tx2.find(ModeText)
	if m := tx2.expect(TypeMatched); m.Mode != ModeText {
		t.Fatalf("%+v", m)
	}
	tx.expect(TypeMatched)
	v2 := e.dial()
	v2.hello()
	v2.find(ModeVideo)
	if m := v.expect(TypeMatched); m.Mode != ModeVideo {
		t.Fatalf("%+v", m)
	}
	v2.expect(TypeMatched)
}

func TestStopAndStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	a := e.dial()
	a.hello()
	a.send(Next{Type: TypeNext})
	a.expectError(CodeBadState) // next before any find
	a.send(Chat{Type: TypeChat, Match: "nope", Text: "x"})
	a.find(ModeText)
	a.expect(TypeWaiting)
	a.send(Stop{Type: TypeStop})
	a.barrier()
	if s := e.hub.inspect(); s.waiting != 0 {
		t.Fatalf("stop left the session queued: %+v", s)
	}
	a.send(Next{Type: TypeNext}) // next after stop queues with the last find
	if w := a.expect(TypeWaiting); w.Mode != ModeText {
		t.Fatalf("%+v", w)
	}
	b := e.dial()
	b.hello()
	b.find(ModeText)
	ma := a.expect(TypeMatched)
	b.expect(TypeMatched)
	b.find(ModeText)
	b.expectError(CodeBadState) // find while matched
	b.send(Stop{Type: TypeStop})
	if pl := a.expect(TypePartnerLeft); pl.Reason != LeftStop || pl.Match != ma.Match {
		t.Fatalf("%+v", pl)
	}
	a.send(Hello{Type: TypeHello, Version: ProtocolVersion})
	a.expectError(CodeBadState)
	if got := counter(e.hub.m.dropped.WithLabelValues(dropNoMatch)); got != 1 {
		t.Fatalf("not_in_match drops %v", got)
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	a, b, ma, _ := e.pair()
	a.send(Report{Type: TypeReport, Match: ma.Match, Reason: "rude"})
	if pl := b.expect(TypePartnerLeft); pl.Reason != LeftReported || pl.Match != ma.Match {
		t.Fatalf("%+v", pl)
	}
	if got := counter(e.hub.m.reports); got != 1 {
		t.Fatalf("reports_total %v", got)
	}
	// Even after each has had more partners than RecentPartners, a and b
	// are never paired again.
	for range e.hub.cfg.RecentPartners + 2 {
		a.send(Next{Type: TypeNext})
		a.expect(TypeWaiting)
		b.send(Next{Type: TypeNext})
		b.expect(TypeWaiting)
		if s := e.hub.inspect(); s.matched != 0 {
			t.Fatal("a reported partner was paired again")
		}
		x := e.dial()
		x.hello()
		x.find(ModeVideo)
		x.expect(TypeMatched)
		y := e.dial()
		y.hello()
		y.find(ModeVideo)
		y.expect(TypeMatched)
		a.recv() // matched with x or y
		b.recv()
		a.send(Stop{Type: TypeStop})
		b.send(Stop{Type: TypeStop})
		x.recv() // partner_left
		y.recv()
	}
	// A report of the match that just ended still counts.
	c, d, mc, _ := e.pair()
	d.send(Next{Type: TypeNext})
	c.expect(TypePartnerLeft)
	d.expect(TypeWaiting)
	c.send(Report{Type: TypeReport, Match: mc.Match})
	c.send(Report{Type: TypeReport, Match: "no-such-match"})
	c.expectError(CodeNotInMatch)
	if got := counter(e.hub.m.reports); got != 2 {
		t.Fatalf("reports_total %v", got)
	}
}

func TestICERequest(t *testing.T) {
	t.Parallel()
	ice := &fakeICE{}
	cfg := testConfig()
	cfg.ICE = ice
	e := newEnv(t, cfg)
	c := e.dial()
	w := c.hello()
	for range iceRequestBurst {
		c.send(ICERequest{Type: TypeICE})
		got := c.expect(TypeICE)
		if len(got.ICEServers) != 2 || !strings.HasSuffix(got.ICEServers[1].Username, ":"+w.Session) {
			t.Fatalf("ice reply %+v", got)
		}
	}
	c.send(ICERequest{Type: TypeICE})
	c.expectError(CodeRateLimited)
	// Without a provider the answer is an empty list, not null.
	e2 := newEnv(t, testConfig())
	d := e2.dial()
	d.hello()
	d.sendRaw(`{"type":"ice"}`)
	if got := d.expect(TypeICE); got.ICEServers == nil || len(got.ICEServers) != 0 {
		t.Fatalf("%+v", got)
	}
}

// TestICERequestPerAddress: a client that opens session after session and
// asks each for ICE servers (credentials) once is limited by its address
// (IPv6: its /64), not only per session; other addresses are not affected.
func TestICERequestPerAddress(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ICE = &fakeICE{}
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	e := newEnv(t, cfg)
	// ask opens a session from ip, sends one ice request and returns the
	// answer's type and error code.
	ask := func(ip string) (MsgType, ErrorCode) {
		c := dialWith(t, websocket.DefaultDialer, e.url, http.Header{"X-Forwarded-For": {ip}})
		defer c.ws.Close()
		c.hello()
		c.send(ICERequest{Type: TypeICE})
		got := c.recv()
		return got.Type, got.Code
	}
	for _, prefix := range []string{"203.0.113.7", "2001:db8:5:6::"} {
		addr := func(i int) string {
			if strings.Contains(prefix, ":") {
				return prefix + strconv.Itoa(i+1) // another address in the same /64
			}
			return prefix
		}
		for i := range iceAddrBurst {
			if typ, code := ask(addr(i)); typ != TypeICE {
				t.Fatalf("%s: ice %d: %s %s", prefix, i, typ, code)
			}
		}
		before := counter(e.hub.m.dropped.WithLabelValues(dropICEAddress))
		if typ, code := ask(addr(iceAddrBurst)); typ != TypeError || code != CodeRateLimited {
			t.Fatalf("%s: ice beyond the address budget: %s %s, want error %s", prefix, typ, code, CodeRateLimited)
		}
		if got := counter(e.hub.m.dropped.WithLabelValues(dropICEAddress)); got != before+1 {
			t.Errorf("dropped_messages_total{reason=ice_address} %v -> %v, want +1", before, got)
		}
	}
	if typ, code := ask("198.51.100.20"); typ != TypeICE {
		t.Fatalf("another address: %s %s", typ, code)
	}
	if typ, code := ask("2001:db8:5:7::1"); typ != TypeICE {
		t.Fatalf("another /64: %s %s", typ, code)
	}
}
