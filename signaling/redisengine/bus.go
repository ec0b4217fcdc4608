package redisengine

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strangers-chat/strangers/signaling"
)

// Messages between nodes travel on one pub/sub channel per node
// ("strangers:node:<id>"). One publisher goroutine per node publishes them
// in the order they were queued, on one connection of its own (pubConn),
// so everything one node sends another arrives in order. Redis forwards what
// it receives in order too, so a message one node publishes after it
// received another's follows that one everywhere.

// Kinds of envelope, and their fields (f) and items.
const (
	kindPaired   byte = 'p' // f: to, match, partner, role, partner ident client, addr; items: common
	kindDeliver  byte = 'd' // f: to, match; items: data
	kindLeft     byte = 'l' // f: to, match, why, the session that left
	kindClaim    byte = 'c' // f: session, new node, partner, partner's node
	kindHandover byte = 'h' // f: session; items: pending
	kindMoved    byte = 'm' // f: session, node
	kindEnded    byte = 'e' // f: session, revoke (1/0)
	kindFlush    byte = 'f' // f: session (to this node itself: a handover that did not come)
	kindDrained  byte = 'r' // f: session (its node drained: keep what is sent to it until it resumes)
)

// envelope is one message between nodes. Encoded: kind, send time (unix
// ns, 8 bytes), the sender node, the count of f and each, the count of
// items and each; counts and lengths as uvarints.
type envelope struct {
	kind  byte
	sent  time.Time
	from  string
	f     []string
	items [][]byte
}

// Bounds of a decoded envelope: anything larger is not ours.
const (
	maxFields = 16
	maxItems  = 1 << 16
)

var errBadEnvelope = errors.New("redisengine: malformed message")

func (m *envelope) encode() []byte {
	n := 1 + 8 + binary.MaxVarintLen64*(3+len(m.f)+len(m.items)) + len(m.from)
	for _, s := range m.f {
		n += len(s)
	}
	for _, it := range m.items {
		n += len(it)
	}
	b := make([]byte, 0, n)
	b = append(b, m.kind)
	b = binary.BigEndian.AppendUint64(b, uint64(m.sent.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(m.from)))
	b = append(b, m.from...)
	b = binary.AppendUvarint(b, uint64(len(m.f)))
	for _, s := range m.f {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.items)))
	for _, it := range m.items {
		b = binary.AppendUvarint(b, uint64(len(it)))
		b = append(b, it...)
	}
	return b
}

func decodeEnvelope(b []byte) (*envelope, error) {
	if len(b) < 9 {
		return nil, errBadEnvelope
	}
	m := &envelope{kind: b[0], sent: time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9])))}
	b = b[9:]
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		s := b[k : k+int(n)]
		b = b[k+int(n):]
		return s, true
	}
	count := func(limit uint64) (int, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > limit || n > uint64(len(b)) {
			return 0, false
		}
		b = b[k:]
		return int(n), true
	}
	from, ok := next()
	if !ok {
		return nil, errBadEnvelope
	}
	m.from = string(from)
	nf, ok := count(maxFields)
	if !ok {
		return nil, errBadEnvelope
	}
	m.f = make([]string, nf)
	for i := range nf {
		s, ok := next()
		if !ok {
			return nil, errBadEnvelope
		}
		m.f[i] = string(s)
	}
	ni, ok := count(maxItems)
	if !ok {
		return nil, errBadEnvelope
	}
	m.items = make([][]byte, ni)
	for i := range ni {
		s, ok := next()
		if !ok {
			return nil, errBadEnvelope
		}
		m.items[i] = append([]byte(nil), s...)
	}
	if len(b) != 0 {
		return nil, errBadEnvelope
	}
	return m, nil
}

// outbound is an envelope on its way to a node's channel.
type outbound struct {
	channel string
	data    []byte
}

// publish queues m for node; a full queue drops it (counted).
func (e *Engine) publish(node string, m *envelope) {
	if node == "" {
		e.m.dropped.Inc()
		return
	}
	m.from = e.cfg.Node
	m.sent = time.Now()
	select {
	case e.out <- &outbound{channel: keyPrefix + "node:" + node, data: m.encode()}:
	default:
		e.m.dropped.Inc()
	}
}

// publisher publishes the queue in order, writing what has piled up at
// once on its own connection (pubConn). Owned by Start/Close: after
// pubQuit it flushes the queue (bounded) and stops.
func (e *Engine) publisher() {
	defer close(e.pubDone)
	via := e.publishVia
	if via == nil {
		via = e.publishOn
	}
	var pc *pubConn
	defer func() {
		if pc != nil {
			pc.close()
		}
	}()
	batch := make([]*outbound, 0, publishBatch)
	var flushBy time.Time // set once pubQuit is closed
	for {
		select {
		case o := <-e.out:
			batch = append(batch[:0], o)
		case <-e.pubQuit:
			if flushBy.IsZero() {
				flushBy = time.Now().Add(closeWait)
			}
			select {
			case o := <-e.out:
				batch = append(batch[:0], o)
			default:
				return
			}
		}
	fill:
		for len(batch) < publishBatch {
			select {
			case o := <-e.out:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		if !flushBy.IsZero() && time.Now().After(flushBy) {
			e.m.dropped.Add(float64(len(batch)))
			continue
		}
		pc = via(pc, batch)
		clear(batch)
	}
}

// publishOn writes batch on pc, or on a new connection if pc is nil,
// failed, or dates from before Redis last went down; it returns the
// connection to use next (nil after a failure). While Redis is down the
// batch is dropped, as is a batch that cannot be written.
//
// A connection Redis (or something between) closed is replaced without
// taking Redis for down: an idle one may be closed at any time. A dial
// that fails, a write that times out, and a write on a new connection
// that fails mark Redis down.
func (e *Engine) publishOn(pc *pubConn, batch []*outbound) *pubConn {
	if pc != nil && (pc.broken() || pc.gen != e.pubGen.Load()) {
		if pc.broken() && pc.unanswered() > 0 {
			e.m.errors.Inc() // what it had in flight may be lost
			e.log.Warn("redis closed the publisher's connection with publishes in flight", "err", pc.err)
		}
		pc.close()
		pc = nil
	}
	if !e.up.Load() {
		e.m.dropped.Add(float64(len(batch)))
		return pc
	}
	// A connection open for a while may have been closed just now, before
	// its reader saw it: one more try, on a new one, before Redis is taken
	// for down. Not after a timeout: part of the batch may have gone out,
	// and a second try would publish that part twice.
	fresh := pc == nil
	for {
		if pc == nil {
			ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
			var err error
			pc, err = e.dialPub(ctx)
			cancel()
			if err != nil {
				e.m.errors.Inc()
				e.setDown("publish", err)
				e.m.dropped.Add(float64(len(batch)))
				return nil
			}
		}
		err := pc.publish(batch, e.cfg.Timeout)
		if err == nil {
			return pc
		}
		pc.close()
		pc = nil
		if fresh || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, errNoReplies) {
			e.m.errors.Inc()
			e.setDown("publish", err)
			e.m.dropped.Add(float64(len(batch)))
			return nil
		}
		fresh = true
	}
}

// subscriber listens on this node's channel while the engine is up and
// hands what arrives to the host. Owned by Start/Close.
func (e *Engine) subscriber() {
	defer e.bgDone.Done()
	for e.bg.Err() == nil {
		if !e.up.Load() {
			select {
			case <-e.bg.Done():
				return
			case <-time.After(pingEvery / 5):
			}
			continue
		}
		e.listen()
	}
}

// listen subscribes and receives until the subscription fails or is
// closed (by setDown or Close).
func (e *Engine) listen() {
	ps := e.rdb.Subscribe(e.bg)
	e.psMu.Lock()
	if e.bg.Err() != nil || !e.up.Load() {
		e.psMu.Unlock()
		_ = ps.Close()
		return
	}
	e.ps = ps
	e.psMu.Unlock()
	defer func() {
		e.subscribed.Store(false)
		e.closeSubscription()
	}()
	ctx, cancel := context.WithTimeout(e.bg, e.cfg.Timeout)
	err := ps.Subscribe(ctx, e.channel)
	if err == nil {
		_, err = ps.ReceiveTimeout(ctx, e.cfg.Timeout) // the confirmation
	}
	cancel()
	if err != nil {
		if e.bg.Err() == nil {
			e.m.errors.Inc()
			e.setDown("subscribe", err)
		}
		return
	}
	e.subscribed.Store(true)
	for {
		// No read deadline: messages may be large, and a deadline in the
		// middle of one would leave the connection out of step. A dead
		// Redis shows in the keeper's renewals, which close ps.
		v, err := ps.Receive(e.bg)
		if err != nil {
			e.psMu.Lock()
			ours := e.ps == ps // not closed by setDown or Close
			e.psMu.Unlock()
			if ours && e.bg.Err() == nil {
				e.m.errors.Inc()
				e.setDown("receive", err)
			}
			return
		}
		msg, ok := v.(*redis.Message)
		if !ok {
			continue // a subscription confirmation or a pong
		}
		env, err := decodeEnvelope([]byte(msg.Payload))
		if err != nil {
			e.log.Warn("dropped a malformed message on the node channel", "err", err, "bytes", len(msg.Payload))
			continue
		}
		e.m.lag.Observe(max(0, time.Since(env.sent).Seconds()))
		e.receive(env)
	}
}

// closeSubscription closes the subscriber's subscription, if any, which
// ends its wait for a message.
func (e *Engine) closeSubscription() {
	e.psMu.Lock()
	ps := e.ps
	e.ps = nil
	e.psMu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// fieldsOf is how many fields each kind of envelope has at least (zero:
// no such kind).
var fieldsOf = [256]uint8{kindPaired: 6, kindDeliver: 2, kindLeft: 4, kindClaim: 4, kindHandover: 1, kindMoved: 2, kindEnded: 2, kindFlush: 1, kindDrained: 1}

// receive acts on one message from another node (or this one).
func (e *Engine) receive(m *envelope) {
	if n := fieldsOf[m.kind]; n == 0 || len(m.f) < int(n) {
		e.log.Warn("dropped an unknown message on the node channel", "kind", string(m.kind))
		return
	}
	switch m.kind {
	case kindPaired:
		to, partner := m.f[0], m.f[2]
		e.routes.learn(partner, m.from)
		common := make([]string, 0, len(m.items))
		for _, it := range m.items {
			common = append(common, string(it))
		}
		e.host.Paired(to, signaling.Pairing{
			Match:        m.f[1],
			Partner:      partner,
			Remote:       m.from != e.cfg.Node,
			Role:         signaling.Role(m.f[3]),
			Common:       common,
			PartnerIdent: signaling.Identity{Client: m.f[4], Addr: m.f[5]},
		})
	case kindDeliver:
		if len(m.items) != 1 {
			return
		}
		to := m.f[0]
		if held, full := e.routes.keep(to, m); held {
			if full {
				e.m.dropped.Inc()
			}
			return // it follows the handover
		}
		if node, ok := e.routes.movedTo(to); ok {
			// Claimed by another node since: it follows the handover there.
			e.publish(node, &envelope{kind: kindDeliver, f: m.f, items: m.items})
			return
		}
		e.host.Deliver(to, m.f[1], m.items[0])
	case kindLeft:
		e.routes.forget(m.f[3])
		e.host.PartnerLeft(m.f[0], m.f[1], signaling.LeftReason(m.f[2]))
	case kindClaim:
		id, node, pnode := m.f[0], m.f[1], m.f[3]
		_ = pnode // the claiming node tells the partner's node
		pending := e.host.Claimed(id)
		e.routes.claimed(id, node, time.Now().Add(e.cfg.ResumeGrace))
		e.publish(node, &envelope{kind: kindHandover, f: []string{id}, items: pending})
	case kindHandover:
		e.host.Handover(m.f[0], m.items)
		e.release(m.f[0])
	case kindFlush:
		e.release(m.f[0])
	case kindMoved:
		e.moved(m.f[0], m.f[1])
	case kindDrained:
		e.routes.park(m.f[0], m.from, time.Now().Add(e.cfg.ResumeGrace))
	case kindEnded:
		e.routes.forget(m.f[0])
		e.host.Ended(m.f[0], m.f[1] == "1")
	}
}

// routes is the route cache: which node holds a session, learned from
// pairings, claims and moved notices; and the messages for sessions this
// node claimed that wait for the old node's handover. Safe from any
// goroutine.
type routes struct {
	mu    sync.Mutex
	to    map[string]string  // session -> node
	moved map[string]movedTo // sessions claimed away from this node
	holds map[string]*hold   // sessions claimed here, until their handover
	// parked: sessions whose node drained, and what this node sent them
	// since, until one claims them (moved) or the resume grace is over.
	parked map[string]*hold
}

// park starts keeping what this node sends to id: its node, from,
// drained. Unless id is known to live elsewhere already (its claim's
// notice came first).
func (r *routes) park(id, from string, until time.Time) {
	r.mu.Lock()
	if n, ok := r.to[id]; ok && n != from {
		r.mu.Unlock()
		return
	}
	if len(r.parked) >= maxRoutes {
		clear(r.parked)
	}
	if r.parked[id] == nil {
		r.parked[id] = &hold{until: until}
	}
	r.mu.Unlock()
}

// sendOrPark publishes m for id to the node that holds it, or keeps it
// while id is parked; false: no route known.
func (e *Engine) sendOrPark(id string, m *envelope) bool {
	e.routes.mu.Lock()
	if p := e.routes.parked[id]; p != nil {
		if len(p.msgs) >= maxHeld {
			e.m.dropped.Inc()
		} else {
			p.msgs = append(p.msgs, m)
		}
		e.routes.mu.Unlock()
		return true
	}
	node, ok := e.routes.to[id]
	e.routes.mu.Unlock()
	// Published outside the lock: a claim's notice (moved) points the
	// route at the new node and sends what was parked in one hold of it,
	// so a send that finds that route comes after.
	if ok {
		e.publish(node, m)
	}
	return ok
}

// moved: session id was claimed by node. What this node kept for it
// meanwhile goes there first, in order, before anything sent after (to
// this node itself too: the subscriber then delivers it, after the
// claim's welcome).
func (e *Engine) moved(id, node string) {
	e.routes.mu.Lock()
	defer e.routes.mu.Unlock()
	if len(e.routes.to) >= maxRoutes {
		clear(e.routes.to)
	}
	e.routes.to[id] = node
	p := e.routes.parked[id]
	delete(e.routes.parked, id)
	if p == nil {
		return
	}
	for _, m := range p.msgs {
		e.publish(node, m)
	}
}

// hold keeps the messages for a claimed session until its handover comes,
// or until until (then the keeper has the subscriber release them).
type hold struct {
	until time.Time
	msgs  []*envelope
}

// maxHeld bounds the messages kept for one session until its handover.
const maxHeld = 4096

// holdWait is how long messages for a claimed session wait for the old
// node's handover.
func (e *Engine) holdWait() time.Duration { return max(time.Second, 4*e.cfg.Timeout) }

func (r *routes) hold(id string, until time.Time) {
	r.mu.Lock()
	if len(r.holds) >= maxRoutes {
		clear(r.holds)
	}
	r.holds[id] = &hold{until: until}
	r.mu.Unlock()
}

// keep holds m if its session waits for a handover; full: it had to be
// dropped instead.
func (r *routes) keep(id string, m *envelope) (held, full bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.holds[id]
	if h == nil {
		return false, false
	}
	if len(h.msgs) >= maxHeld {
		return true, true
	}
	h.msgs = append(h.msgs, m)
	return true, false
}

// release delivers what was held for id, after its handover. Called by the
// subscriber, so it stays in order with everything else delivered.
func (e *Engine) release(id string) {
	e.routes.mu.Lock()
	h := e.routes.holds[id]
	delete(e.routes.holds, id)
	e.routes.mu.Unlock()
	if h == nil {
		return
	}
	for _, m := range h.msgs {
		e.host.Deliver(m.f[0], m.f[1], m.items[0])
	}
}

// expiredHolds returns the sessions whose handover is overdue, and again
// every wait after that while they are not released (a flush notice can be
// lost in an outage too).
func (r *routes) expiredHolds(now time.Time, wait time.Duration) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, h := range r.holds {
		if now.After(h.until) {
			h.until = now.Add(wait)
			out = append(out, id)
		}
	}
	return out
}

// movedTo is where a session this node handed over went, until when
// messages that still arrive here for it are sent on.
type movedTo struct {
	node  string
	until time.Time
}

// maxRoutes bounds the cache: past it, it starts again empty (a miss costs
// one round trip).
const maxRoutes = 1 << 20

func (r *routes) learn(id, node string) {
	if id == "" || node == "" {
		return
	}
	r.mu.Lock()
	if len(r.to) >= maxRoutes {
		clear(r.to)
	}
	r.to[id] = node
	r.mu.Unlock()
}

func (r *routes) lookup(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.to[id]
	return n, ok
}

func (r *routes) forget(id string) {
	r.mu.Lock()
	delete(r.to, id)
	delete(r.moved, id)
	delete(r.holds, id)
	delete(r.parked, id)
	r.mu.Unlock()
}

func (r *routes) claimed(id, node string, until time.Time) {
	r.mu.Lock()
	if len(r.moved) >= maxRoutes {
		clear(r.moved)
	}
	r.moved[id] = movedTo{node, until}
	if len(r.to) >= maxRoutes {
		clear(r.to)
	}
	r.to[id] = node
	r.mu.Unlock()
}

func (r *routes) movedTo(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.moved[id]
	return m.node, ok
}

// prune forgets hand-overs older than the resume grace, and what was
// kept for a drained session nobody resumed within it.
func (r *routes) prune(now time.Time) {
	r.mu.Lock()
	for id, m := range r.moved {
		if now.After(m.until) {
			delete(r.moved, id)
		}
	}
	for id, p := range r.parked {
		if now.After(p.until) {
			delete(r.parked, id)
		}
	}
	r.mu.Unlock()
}

// unclaim forgets that id was handed over from here: this node holds it
// again.
func (r *routes) unclaim(id string) {
	r.mu.Lock()
	delete(r.moved, id)
	r.mu.Unlock()
}
