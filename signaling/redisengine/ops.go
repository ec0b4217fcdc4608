package redisengine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/strangers-chat/strangers/internal/sessionid"
	"github.com/strangers-chat/strangers/signaling"
)

// The signaling.Engine calls, each one round trip (a script) bounded by
// Config.Timeout. They are called from the hub's owner goroutine. Those a
// batch takes (Register, End, Queue, Withdraw, EndMatch, Block) are Do of
// one op (batch.go): each is made of its call (the arguments of its part
// of the batch script) and what is done with its result.

var _ signaling.Engine = (*Engine)(nil)

func ttlSeconds() int64 { return int64(recordTTL.Seconds()) }

// tokenHash is what Redis keeps of a resume token.
func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// checkTag refuses what would break the records' newline-separated lists.
func checkTags(tags []string) error {
	if len(tags) > signaling.MaxInterests {
		return fmt.Errorf("redisengine: %d interests, more than %d", len(tags), signaling.MaxInterests)
	}
	for _, t := range tags {
		if t == "" || strings.ContainsRune(t, '\n') {
			return fmt.Errorf("redisengine: interest %q is empty or has a newline", t)
		}
	}
	return nil
}

// Register records a new session of this node, or again one it had (after
// an outage): an existing record is reconciled with rec, which knows best
// whether the session is still in a match. A match Redis has that rec does
// not ends (the partner's node is told); a match rec has that Redis does
// not is over: PartnerLeft comes for it.
func (e *Engine) Register(rec signaling.SessionRecord) error {
	return e.do(signaling.Op{Kind: signaling.OpRegister, Record: rec}).Err
}

func (e *Engine) registerCall(rec signaling.SessionRecord) (call, error) {
	if rec.ID == "" || rec.Token == "" {
		return call{}, errors.New("redisengine: Register: session id and token are required")
	}
	if err := checkTags(rec.Interests); err != nil {
		return call{}, err
	}
	var ws int64
	if !rec.WaitSince.IsZero() {
		ws = rec.WaitSince.UnixMilli()
	}
	args := []any{rec.ID, e.cfg.Node, tokenHash(rec.Token),
		rec.Ident.Client, rec.Ident.Addr, rec.ClientKey, flag(rec.HasFind), string(rec.Mode),
		strings.Join(rec.Interests, "\n"), flag(rec.RelayOnly), flag(rec.InterestsOnly), string(rec.State),
		rec.Match, rec.Partner, rec.PartnerIdent.Client, rec.PartnerIdent.Addr, ws, ttlSeconds(),
		e.cfg.RecentPartners}
	return call{name: "register", args: args, finish: func(v any) signaling.OpResult {
		res := strs(v)
		if len(res) == 0 {
			return signaling.OpResult{}
		}
		switch res[0] {
		case "moved":
			e.movedAway(rec.ID, res)
		case "gone":
			e.publish(e.cfg.Node, &envelope{kind: kindLeft, f: []string{rec.ID, rec.Match, string(signaling.LeftDisconnected), rec.Partner}})
		case "ended":
			if len(res) == 4 && res[1] != "" && res[3] != "" {
				e.publish(res[3], &envelope{kind: kindLeft, f: []string{res[1], res[2], string(signaling.LeftDisconnected), rec.ID}})
			}
		}
		return signaling.OpResult{}
	}}, nil
}

// Claim moves the session of token to this node. Its previous node, if
// alive, is told (it hands over what it held, and tells the partner's
// node); if it is dead, the partner's node is told here.
func (e *Engine) Claim(token string) (signaling.SessionRecord, bool, error) {
	if token == "" {
		return signaling.SessionRecord{}, false, nil
	}
	var res []any
	err := e.roundTrip("claim", func(ctx context.Context) error {
		var err error
		res, err = claimScript.Run(ctx, e.rdb, nil, keyPrefix, tokenHash(token), e.cfg.Node, ttlSeconds()).Slice()
		return err
	})
	if err != nil || len(res) != 5 {
		return signaling.SessionRecord{}, false, err
	}
	head := strs(res[:4])
	id, old, oldAlive, pnode := head[0], head[1], head[2] == "1", head[3]
	fields := strs(res[4])
	rec := recordOf(id, fields)
	rec.Token = token
	rec.Node = e.cfg.Node
	e.routes.unclaim(id)
	if rec.Partner != "" && pnode != "" {
		e.routes.learn(rec.Partner, pnode)
	}
	if pnode == e.cfg.Node {
		e.moved(id, e.cfg.Node) // what this node kept for it, if its node drained
	}
	if old != e.cfg.Node && oldAlive {
		// What the old node held comes in its handover; what the partner
		// sends here meanwhile waits for it (bounded).
		e.routes.hold(id, time.Now().Add(e.holdWait()))
		e.publish(old, &envelope{kind: kindClaim, f: []string{id, e.cfg.Node, rec.Partner, pnode}})
	}
	// The partner's node is told here, whether the old node lives or not
	// (a node killed moments ago still has a lease, but tells nobody).
	if pnode != "" && pnode != e.cfg.Node && !(pnode == old && oldAlive) {
		e.publish(pnode, &envelope{kind: kindMoved, f: []string{id, e.cfg.Node}})
	}
	return rec, true, nil
}

// movedAway handles a session this node still has that another node
// claimed meanwhile (its claim notice was lost, or is on its way): this
// node hands it over as if the notice had come ({'moved', node, partner,
// partner's node}).
func (e *Engine) movedAway(id string, res []string) {
	if len(res) != 4 || res[1] == "" {
		return
	}
	e.publish(e.cfg.Node, &envelope{kind: kindClaim, f: []string{id, res[1], res[2], res[3]}})
}

// recordOf reads a record from HGETALL's flat list.
func recordOf(id string, kv []string) signaling.SessionRecord {
	h := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	rec := signaling.SessionRecord{
		ID:            id,
		Node:          h["node"],
		Ident:         signaling.Identity{Client: h["ic"], Addr: h["ia"]},
		ClientKey:     h["ck"],
		HasFind:       h["hf"] == "1",
		Mode:          signaling.Mode(h["mode"]),
		Interests:     splitTags(h["tags"]),
		RelayOnly:     h["ro"] == "1",
		InterestsOnly: h["io"] == "1",
		State:         signaling.State(h["st"]),
	}
	if rec.State == "" {
		rec.State = signaling.StateIdle
	}
	if rec.State == signaling.StateMatched {
		rec.Match, rec.Partner = h["m"], h["p"]
		rec.PartnerIdent = signaling.Identity{Client: h["pic"], Addr: h["pia"]}
	}
	if ms, err := strconv.ParseInt(h["ws"], 10, 64); err == nil && ms > 0 {
		rec.WaitSince = time.UnixMilli(ms)
	}
	return rec
}

func splitTags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// End ends a session everywhere: its keys go, a partner still in a match
// with it is told, and every other live node hears Ended. A session
// claimed by another node meanwhile is left to that node.
func (e *Engine) End(sessionID string, revoke bool) error {
	return e.do(signaling.Op{Kind: signaling.OpEnd, Session: sessionID, Revoke: revoke}).Err
}

func (e *Engine) endCall(sessionID string, revoke bool) call {
	args := []any{sessionID, e.cfg.RecentPartners, ttlSeconds(), e.cfg.Node}
	return call{name: "end", args: args, finish: func(v any) signaling.OpResult {
		res, _ := v.([]any)
		if len(res) != 2 {
			return signaling.OpResult{} // claimed by another node, which ends it when it does
		}
		e.routes.forget(sessionID)
		r := strs(res[0])
		if len(r) == 4 && r[1] != "" && r[3] != "" && r[3] != e.cfg.Node {
			e.publish(r[3], &envelope{kind: kindLeft, f: []string{r[1], r[2], string(signaling.LeftDisconnected), sessionID}})
		}
		for _, n := range strs(res[1]) {
			if n != e.cfg.Node {
				e.publish(n, &envelope{kind: kindEnded, f: []string{sessionID, flag(revoke)}})
			}
		}
		return signaling.OpResult{}
	}}
}

// Queue pairs t's session with a compatible waiting one, or puts it in the
// pool: one script, so the pairing is atomic across nodes.
func (e *Engine) Queue(t signaling.Ticket) (signaling.Pairing, error) {
	r := e.do(signaling.Op{Kind: signaling.OpQueue, Ticket: t})
	return r.Pairing, r.Err
}

func (e *Engine) queueCall(t signaling.Ticket) (call, error) {
	if t.Session == "" {
		return call{}, errors.New("redisengine: Queue: no session")
	}
	if err := checkTags(t.Interests); err != nil {
		return call{}, err
	}
	n := len(t.Interests)
	order := make([]string, n)
	copy(order, t.Interests)
	rand.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	role := signaling.RoleOfferer
	if rand.IntN(2) == 1 {
		role = signaling.RoleAnswerer
	}
	match := sessionid.New()
	var ws int64
	if !t.WaitSince.IsZero() {
		ws = t.WaitSince.UnixMilli()
	}
	// What the ticket tells of the find's interestsOnly, for a resume
	// elsewhere: with interests, accepting anyone means no; settled and
	// still not accepting anyone means yes; before settling it cannot tell.
	io := ""
	switch {
	case n > 0 && t.Anyone:
		io = "0"
	case n > 0 && t.Settled:
		io = "1"
	}
	args := make([]any, 0, 16+2*n)
	args = append(args, t.Session, e.cfg.Node, string(t.Mode), flag(t.Shadow), flag(t.Anyone),
		flag(t.Settled), t.Ident.Client, t.Ident.Addr, ws, flag(t.RelayOnly), match, string(role),
		rand.IntN(1<<30), ttlSeconds(), io, n)
	for _, x := range t.Interests {
		args = append(args, x)
	}
	for _, x := range order {
		args = append(args, x)
	}
	return call{name: "queue", args: args, finish: func(v any) signaling.OpResult {
		p, err := e.queued(t, match, role, v)
		return signaling.OpResult{Pairing: p, Err: err}
	}}, nil
}

// queued acts on queueBody's result for t, queued with match and role for
// a pairing.
func (e *Engine) queued(t signaling.Ticket, match string, role signaling.Role, v any) (signaling.Pairing, error) {
	res, _ := v.([]any)
	if len(res) == 0 {
		return signaling.Pairing{}, errors.New("redisengine: queue: empty reply")
	}
	switch kind, _ := res[0].(string); kind {
	case "earlier":
		return e.earlier(res)
	case "moved":
		e.movedAway(t.Session, strs(res))
		return signaling.Pairing{}, nil
	case "paired":
		if len(res) != 7 {
			return signaling.Pairing{}, errors.New("redisengine: queue: malformed reply")
		}
		head := strs(res[:5])
		partner, pnode := head[1], head[2]
		mine, theirs := strs(res[5]), strs(res[6])
		p := signaling.Pairing{
			Match:        match,
			Partner:      partner,
			Remote:       pnode != e.cfg.Node,
			Role:         role,
			Common:       mine,
			PartnerIdent: signaling.Identity{Client: head[3], Addr: head[4]},
		}
		if p.Remote {
			e.routes.learn(partner, pnode)
			prole := signaling.RoleOfferer
			if role == signaling.RoleOfferer {
				prole = signaling.RoleAnswerer
			}
			items := make([][]byte, len(theirs))
			for i, x := range theirs {
				items[i] = []byte(x)
			}
			e.publish(pnode, &envelope{kind: kindPaired,
				f:     []string{partner, match, t.Session, string(prole), t.Ident.Client, t.Ident.Addr},
				items: items})
		}
		return p, nil
	default:
		return signaling.Pairing{}, nil
	}
}

// earlier reads a pairing another node made ({'earlier', match, partner,
// partner node, role, partner ident client, addr, common}).
func (e *Engine) earlier(res []any) (signaling.Pairing, error) {
	if len(res) != 8 {
		return signaling.Pairing{}, errors.New("redisengine: malformed earlier pairing")
	}
	head := strs(res[:7])
	pnode := head[3]
	if pnode != "" {
		e.routes.learn(head[2], pnode)
	}
	return signaling.Pairing{
		Match:        head[1],
		Partner:      head[2],
		Remote:       pnode != e.cfg.Node,
		Role:         signaling.Role(head[4]),
		Common:       strs(res[7]),
		PartnerIdent: signaling.Identity{Client: head[5], Addr: head[6]},
		Earlier:      true,
	}, nil
}

// Withdraw takes a session out of the pool, or returns the pairing another
// node made meanwhile.
func (e *Engine) Withdraw(sessionID string) (signaling.Pairing, error) {
	r := e.do(signaling.Op{Kind: signaling.OpWithdraw, Session: sessionID})
	return r.Pairing, r.Err
}

func (e *Engine) withdrawCall(sessionID string) call {
	return call{name: "withdraw", args: []any{sessionID, e.cfg.Node}, finish: func(v any) signaling.OpResult {
		res, _ := v.([]any)
		if len(res) > 0 && res[0] == "earlier" {
			p, err := e.earlier(res)
			return signaling.OpResult{Pairing: p, Err: err}
		}
		return signaling.OpResult{}
	}}
}

// EndMatch ends a match from one side; a partner on another node is told.
func (e *Engine) EndMatch(matchID, sessionID, partnerID string, why signaling.LeftReason) error {
	return e.do(signaling.Op{Kind: signaling.OpEndMatch, Match: matchID, Session: sessionID, Other: partnerID, Why: why}).Err
}

func (e *Engine) endMatchCall(matchID, sessionID, partnerID string, why signaling.LeftReason) call {
	args := []any{matchID, sessionID, partnerID, e.cfg.RecentPartners, ttlSeconds()}
	return call{name: "end match", args: args, finish: func(v any) signaling.OpResult {
		res := strs(v)
		if len(res) == 0 || res[0] != "ok" {
			return signaling.OpResult{Err: signaling.ErrMatchGone}
		}
		if len(res) == 2 && res[1] != "" && res[1] != e.cfg.Node {
			e.publish(res[1], &envelope{kind: kindLeft, f: []string{partnerID, matchID, string(why), sessionID}})
		}
		return signaling.OpResult{}
	}}
}

// Block records that reporter reported reported.
func (e *Engine) Block(reporterID, reportedID string) error {
	return e.do(signaling.Op{Kind: signaling.OpBlock, Session: reporterID, Other: reportedID}).Err
}

func (e *Engine) blockCall(reporterID, reportedID string) call {
	args := []any{reporterID, reportedID, maxReported, ttlSeconds()}
	return call{name: "block", args: args, finish: func(any) signaling.OpResult { return signaling.OpResult{} }}
}

// Send publishes data for a session on another node, after everything
// this node sent there before. A session whose node is not cached costs
// one lookup; if that fails, or the queue is full, data is dropped
// (strangers_pubsub_dropped_total).
//
// While the session's node has drained and no node has claimed it yet,
// what is sent to it is kept here (bounded) and follows it to the node
// that claims it.
func (e *Engine) Send(toID, matchID string, data []byte) {
	m := &envelope{kind: kindDeliver, f: []string{toID, matchID}, items: [][]byte{data}}
	if e.sendOrPark(toID, m) {
		return
	}
	var node string
	err := e.roundTrip("route", func(ctx context.Context) error {
		var err error
		node, err = e.rdb.HGet(ctx, keyPrefix+"s:"+toID, "node").Result()
		return err
	})
	if err != nil || node == "" {
		e.m.dropped.Inc()
		return
	}
	e.routes.learn(toID, node)
	e.sendOrPark(toID, m)
}

// Counts returns the figures of the whole cluster.
func (e *Engine) Counts() (signaling.EngineCounts, error) {
	var res []int64
	err := e.roundTrip("counts", func(ctx context.Context) error {
		var err error
		res, err = countsScript.Run(ctx, e.rdb, nil, keyPrefix).Int64Slice()
		return err
	})
	if err != nil {
		return signaling.EngineCounts{}, err
	}
	if len(res) != 6 {
		return signaling.EngineCounts{}, errors.New("redisengine: counts: malformed reply")
	}
	e.m.nodes.Set(float64(res[5]))
	return signaling.EngineCounts{
		Online:       int(res[0]),
		WaitingVideo: int(res[1] + res[2]),
		WaitingText:  int(res[3] + res[4]),
		Shadowed:     int(res[2] + res[4]),
		Nodes:        int(res[5]),
	}, nil
}
