package signaling

import (
	"errors"
	"fmt"
	"time"
)

// Engine holds what the matchmaker shares beyond one hub: the waiting
// pool and the pairing, who met or reported whom, the session records a
// resume on another node needs, and delivery to a partner that lives on
// another node. The memory engine (NewMemoryEngine, the default) keeps all
// of it in process; package redisengine keeps it in Redis, shared by
// several instances ("nodes").
//
// The hub keeps its own sessions and their connections; the engine is the
// arbiter of the pool and of which match a session is in. A session id is
// the key everywhere. Every method except Start, Close, Node and Ready is
// called from the hub's owner goroutine, one call at a time, and may block
// for one round trip to the engine's backend, bounded by the engine's own
// timeout. While the engine knows its backend is down it returns
// ErrEngineUnavailable at once, without trying.
//
// The rules every engine follows are in package enginetest, which runs the
// same suite against each.
type Engine interface {
	// Start begins the engine's background work (for Redis: the node's
	// lease and reaper and its pub/sub subscription) and hands it host, to
	// which it reports what other nodes did to this node's sessions. Called
	// once, by New, before any other method.
	Start(host EngineHost) error
	// Close stops the background work and waits for it. With drain, this
	// node's sessions stay in the shared records so that their clients can
	// resume them on another node within the resume grace (after which
	// another node's reaper ends them); without, they end now. Called once,
	// by Shutdown, after the owner goroutine has stopped.
	Close(drain bool) error
	// Node names this instance (STRANGERS_NODE_ID); "" for memory.
	Node() string
	// Ready reports whether the engine can pair now (for /readyz). Safe
	// from any goroutine.
	Ready() bool

	// Register records a new session of this node.
	Register(rec SessionRecord) error
	// Claim takes over the session whose resume token this is, wherever it
	// lives, for a hello{resume} that this hub does not know. ok is false
	// when no live session has that token (memory: always). The node that
	// had it is told (EngineHost.Claimed) and hands over what it held for
	// the session (EngineHost.Handover, here); the partner's node is told
	// where the session went.
	Claim(token string) (rec SessionRecord, ok bool, err error)
	// End ends a session for good, everywhere: it leaves the pool and the
	// records, and every other node is told (EngineHost.Ended) so that its
	// relay stops honouring the session's credentials; revoke asks them to
	// cut its allocations at once (a ban) rather than after the relay's
	// grace. A match the session was in must have been ended first
	// (EndMatch).
	End(sessionID string, revoke bool) error

	// Queue pairs t's session at once with a compatible waiting session,
	// or puts it in the pool (a zero Pairing). Compatible: the same mode
	// and pool (shadow or not); a shared interest, or both accept anyone;
	// neither is the other, has reported the other, or met the other among
	// its last RecentPartners partners, except that two sessions that have
	// both settled (Ticket.Settled) may meet a recent partner again when
	// nobody else will do. A reported partner never. Drawing is random and
	// bounded (never a scan of the pool). The session may already be in the
	// pool (then t replaces its entry). If another node paired the session
	// meanwhile, that pairing is returned instead, with Pairing.Earlier set.
	// Pairing.Partner lives on this node or another (Pairing.Remote); the
	// partner's node, if another, is told (EngineHost.Paired).
	Queue(t Ticket) (Pairing, error)
	// Withdraw takes a session out of the pool; a no-op if it is not in
	// it. If another node paired it meanwhile, that pairing is returned
	// (Earlier set) and the session is in that match now.
	Withdraw(sessionID string) (Pairing, error)
	// EndMatch ends a match from one side: both sessions leave it and
	// remember each other as recent partners. A partner on another node is
	// told (EngineHost.PartnerLeft) with the reason. ErrMatchGone: it had
	// already ended (the other side ended it first, on another node).
	EndMatch(matchID, sessionID, partnerID string, why LeftReason) error
	// Block records that reporter reported reported: the two are never
	// paired again.
	Block(reporterID, reportedID string) error
	// Send delivers data, one encoded message of match matchID, to a
	// session on another node, in order with everything else sent to it.
	// It does not wait for delivery: a message that cannot be sent is
	// dropped and counted.
	Send(toID, matchID string, data []byte)
	// Counts returns the figures of the whole cluster: sessions online and
	// waiting by mode. The hub asks once per StatsInterval, and when an
	// operator asks. A Batcher's Counts is called off the owner goroutine
	// (it costs a round trip), maybe while Do runs.
	Counts() (EngineCounts, error)
}

// EngineHost is how an engine tells the hub what other nodes did to this
// node's sessions. The engine calls it from its own goroutines; each call
// queues the work for the hub's owner goroutine and returns.
type EngineHost interface {
	// Paired: another node paired this node's waiting session sessionID.
	Paired(sessionID string, p Pairing)
	// Deliver: the session's partner on another node sent data, one encoded
	// message of match matchID (signal, chat, typing or media).
	Deliver(sessionID, matchID string, data []byte)
	// PartnerLeft: the session's partner on another node ended match
	// matchID, or its node died.
	PartnerLeft(sessionID, matchID string, why LeftReason)
	// Claimed: sessionID resumed on another node. The hub closes its
	// connection here (if any), forgets the session without ending it,
	// and returns what it held for it (queued and kept messages), which
	// the engine hands to the new node.
	Claimed(sessionID string) (pending [][]byte)
	// Handover: what the previous node held for sessionID, which this node
	// claimed; delivered after the resume's welcome, before anything newer.
	Handover(sessionID string, pending [][]byte)
	// Ended: a session ended on another node (revoke: banned).
	Ended(sessionID string, revoke bool)
	// Resync: the backend came back after an outage, maybe without its
	// data. The hub calls Queue again for each of its waiting sessions.
	Resync()
}

// SessionRecord is what the engine keeps of a session for a resume on
// another node.
type SessionRecord struct {
	ID        string
	Token     string // the resume token; an engine that stores it keeps only a hash
	Node      string // where it lives now
	Ident     Identity
	ClientKey string

	// The last find, reused by next.
	HasFind       bool
	Mode          Mode
	Interests     []string
	RelayOnly     bool
	InterestsOnly bool

	State   State  // idle, waiting or matched
	Match   string // when matched
	Partner string // the partner's session id, when matched
	// PartnerIdent is who the partner is, for a report after a resume.
	PartnerIdent Identity
	// Waiting since, for the interest wait on another node.
	WaitSince time.Time
}

// Ticket is a session as the pool sees it while it waits.
type Ticket struct {
	Session   string
	Mode      Mode
	Shadow    bool     // waits in the shadow pool: meets only the shadowed
	Interests []string // at most MaxInterests
	// Anyone: it may be paired without a shared interest (it has none, or
	// it has settled and did not ask for interests only).
	Anyone bool
	// Settled: it waited out its fallback, so it may meet a settled recent
	// partner when nobody else will do.
	Settled   bool
	RelayOnly bool
	// Ident is who the session is; the partner's node is told, for a
	// report.
	Ident     Identity
	WaitSince time.Time
}

// Pairing is a match an engine made.
type Pairing struct {
	Match   string
	Partner string // the partner's session id
	// Remote: the partner lives on another node (never, with memory).
	Remote bool
	// Role is this side's: exactly one side of a match offers.
	Role         Role
	Common       []string // shared interests, in this side's order; never nil
	PartnerIdent Identity
	// Earlier: another node made this pairing before the call that
	// returned it.
	Earlier bool
}

// Zero reports whether p is no pairing.
func (p Pairing) Zero() bool { return p.Match == "" }

// EngineCounts are the figures of the whole cluster.
type EngineCounts struct {
	Online       int
	WaitingVideo int
	WaitingText  int
	Shadowed     int
	Nodes        int // nodes alive; 1 for memory
}

var (
	// ErrEngineUnavailable: the engine's backend is down; a find gets an
	// error with CodeUnavailable.
	ErrEngineUnavailable = errors.New("signaling: matchmaking backend unavailable")
	// ErrMatchGone: EndMatch named a match that had already ended.
	ErrMatchGone = errors.New("signaling: match already ended")
)

// Batcher is an Engine that can make several calls in one round trip to
// its backend. Given one, the hub no longer waits for the engine on its
// owner goroutine: it hands every call that changes the shared state
// (Register, End, Queue, Withdraw, EndMatch, Block) to a goroutine of its
// own, in the order it makes them; that goroutine passes whatever has
// gathered meanwhile to Do, and the owner acts on each result when it
// comes back (Counts too is asked off the owner goroutine). So a node's
// throughput is bounded by what the backend can do, not by one round trip
// per call. The memory engine is not a Batcher: its calls cost no round
// trip, and the hub calls it directly.
type Batcher interface {
	Engine
	// Do makes ops in order, with the same effects as calling each one's
	// method one after another, and returns one result per op, in the same
	// order. Each op is atomic; the batch need not be. Called from one
	// goroutine at a time, never the owner goroutine, so the engine's
	// EngineHost calls may come while it runs.
	Do(ops []Op) []OpResult
}

// OpKind names the Engine method an Op stands for.
type OpKind uint8

// The calls a Batcher takes in a batch.
const (
	OpRegister OpKind = iota + 1
	OpEnd
	OpQueue
	OpWithdraw
	OpEndMatch
	OpBlock
)

// Op is one Engine call in a batch; the fields its method takes are set,
// the others are zero.
type Op struct {
	Kind   OpKind
	Record SessionRecord // OpRegister
	Ticket Ticket        // OpQueue
	// Session: OpEnd, OpWithdraw, OpEndMatch (the side that ends it) and
	// OpBlock (the reporter).
	Session string
	Match   string     // OpEndMatch
	Other   string     // OpEndMatch: the partner; OpBlock: the reported
	Why     LeftReason // OpEndMatch
	Revoke  bool       // OpEnd
}

// OpResult is what one Op's method returned.
type OpResult struct {
	Pairing Pairing // OpQueue, OpWithdraw
	Err     error
}

// DoEach makes ops one after another through e's methods: Do for an
// engine that has no faster way.
func DoEach(e Engine, ops []Op) []OpResult {
	out := make([]OpResult, len(ops))
	for i, op := range ops {
		out[i] = DoOne(e, op)
	}
	return out
}

// DoOne makes one op through e's method.
func DoOne(e Engine, op Op) OpResult {
	var r OpResult
	switch op.Kind {
	case OpRegister:
		r.Err = e.Register(op.Record)
	case OpEnd:
		r.Err = e.End(op.Session, op.Revoke)
	case OpQueue:
		r.Pairing, r.Err = e.Queue(op.Ticket)
	case OpWithdraw:
		r.Pairing, r.Err = e.Withdraw(op.Session)
	case OpEndMatch:
		r.Err = e.EndMatch(op.Match, op.Session, op.Other, op.Why)
	case OpBlock:
		r.Err = e.Block(op.Session, op.Other)
	default:
		r.Err = fmt.Errorf("signaling: unknown engine op %d", op.Kind)
	}
	return r
}
