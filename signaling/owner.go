package signaling

import (
	"container/heap"
	"time"
)

// The hub's owner goroutine (run, below) alone owns sessions, matches, the
// waiting pool and the deadlines; everything in this file, session.go,
// match.go, forward.go, report.go and stats.go runs on it. The decode shards
// post events to it (decode.go); it answers by queueing messages on
// connections (conn.send never blocks), so it never waits on a client.

type evKind uint8

const (
	evHello   evKind = iota // a connection's hello (msg is *Hello)
	evMsg                   // any later client message
	evGone                  // the connection's read loop ended
	evInspect               // tests: report the state on reply
	evCall                  // run call on the owner goroutine (Enforce, Counts)
)

type event struct {
	kind  evKind
	c     *conn
	msg   any
	clean bool            // evGone: the client closed with 1000
	reply chan<- snapshot // evInspect
	call  func()          // evCall

	// Signal, chat, typing and media come encoded by the decode shard, ready to
	// forward; a signal also as a relayOnly sender may send it, if the
	// shard took the sender for one (scrubbed, or scrubDrop: not at all).
	raw       []byte
	scrubbed  []byte
	scrubDrop bool
	hasScrub  bool
}

// deadline is a scheduled check on a session; it is void if the session's
// gen (a grace deadline: its detaches) moved on since.
type deadline struct {
	at   time.Time
	s    *session
	gen  uint64
	kind uint8
}

const (
	dlFallback uint8 = iota // interest wait over: settle (match.go's queue)
	dlGrace                 // resume grace over: end the session
)

type deadlineHeap []deadline

func (d deadlineHeap) Len() int           { return len(d) }
func (d deadlineHeap) Less(i, j int) bool { return d[i].at.Before(d[j].at) }
func (d deadlineHeap) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *deadlineHeap) Push(x any)        { *d = append(*d, x.(deadline)) }
func (d *deadlineHeap) Pop() any {
	old := *d
	x := old[len(old)-1]
	old[len(old)-1] = deadline{}
	*d = old[:len(old)-1]
	return x
}

// run is the owner goroutine.
func (h *Hub) run() {
	defer close(h.ownerDone)
	stats := time.NewTicker(h.cfg.StatsInterval / statsChunks)
	defer stats.Stop()
	defer h.timer.Stop()
	for {
		select {
		case ev := <-h.events:
			h.handle(ev)
		case <-h.timer.C:
			h.timerAt = time.Time{}
			h.expire(time.Now())
		case <-stats.C:
			h.statsTick()
		case <-h.quit:
			h.endAll()
			return
		}
		h.m.waitingVideo.Set(float64(h.waitingVideo))
		h.m.waitingText.Set(float64(h.waitingText))
		h.armTimer()
	}
}

func (h *Hub) schedule(s *session, at time.Time, kind uint8) {
	gen := s.gen
	if kind == dlGrace {
		gen = s.detaches
	}
	heap.Push(&h.deadlines, deadline{at: at, s: s, gen: gen, kind: kind})
}

// armTimer points the owner's single timer at the earliest deadline.
func (h *Hub) armTimer() {
	if len(h.deadlines) == 0 {
		return // a stale firing is harmless: expire finds nothing due
	}
	next := h.deadlines[0].at
	if !h.timerAt.IsZero() && !next.Before(h.timerAt) {
		return
	}
	h.timer.Reset(max(0, time.Until(next)))
	h.timerAt = next
}

// expire acts on every deadline that is due.
func (h *Hub) expire(now time.Time) {
	for len(h.deadlines) > 0 && !h.deadlines[0].at.After(now) {
		d := heap.Pop(&h.deadlines).(deadline)
		s := d.s
		switch d.kind {
		case dlFallback:
			if d.gen == s.gen && s.state == StateWaiting && s.inPool && !s.settled {
				h.settle(s, now)
			}
		case dlGrace:
			// Not voided by a match made meanwhile: only a resume does.
			if d.gen == s.detaches && s.conn == nil && h.byID[s.id] == s {
				h.endSession(s, false)
			}
		}
	}
}

func (h *Hub) handle(ev event) {
	switch ev.kind {
	case evHello:
		h.hello(ev.c, ev.msg.(*Hello))
		return
	case evGone:
		h.gone(ev.c, ev.clean)
		return
	case evInspect:
		ev.reply <- h.snapshot()
		return
	case evCall:
		ev.call()
		return
	}
	s := ev.c.sess
	if s == nil {
		return // the connection was replaced by a resume
	}
	now := time.Now()
	switch m := ev.msg.(type) {
	case *Find:
		h.find(s, m, now)
	case *Next:
		h.next(s, now)
	case *Stop:
		h.stop(s)
	case *Signal:
		h.forward(s, m.Match, ev)
	case *Chat:
		if s.match != nil && s.match.id == m.Match {
			h.keepChat(s, m.Text, now)
		}
		h.forward(s, m.Match, ev)
	case *Typing:
		h.forward(s, m.Match, ev)
	case *Media:
		h.forward(s, m.Match, ev)
	case *Report:
		h.report(s, m)
	case *ICERequest:
		h.iceRequest(s, now)
	}
}

// deliver queues an encoded message for s: on its connection, or, while it
// is detached, in its bounded resume queue (unless always: the one
// partner_left that ends a match always fits).
func (h *Hub) deliver(s *session, data []byte, always bool) {
	if s.remote {
		if s.match != nil {
			h.engine.Send(s.id, s.match.id, data)
		}
		return
	}
	if s.conn != nil {
		if !s.conn.send(data) {
			h.m.drop(dropClosed)
		}
		return
	}
	if !always && len(s.pending) >= h.cfg.SendQueue {
		h.m.drop(dropResumeQueue)
		return
	}
	s.pending = append(s.pending, data)
}

// snapshot is the owner's state as tests see it.
type snapshot struct {
	sessions, attached, waiting, matched, pending int
	settled                                       int // waiting sessions in the pool past their fallback
	broken                                        int // matched sessions whose match does not name them, or whose partner is not matched back
}

func (h *Hub) snapshot() snapshot {
	var n snapshot
	n.sessions = len(h.sessions)
	for _, s := range h.sessions {
		if s.conn != nil {
			n.attached++
		}
		n.pending += len(s.pending)
		if s.inPool && s.settled {
			n.settled++
		}
		if s.match != nil {
			n.matched++
			p := s.match.other(s)
			if (s.match.a != s && s.match.b != s) || p.match != s.match || (!p.remote && h.sessions[p.token] != p) {
				n.broken++
			}
		}
	}
	n.waiting = h.waitingVideo + h.waitingText
	return n
}

// inspect asks the owner goroutine for a snapshot (tests).
func (h *Hub) inspect() snapshot {
	reply := make(chan snapshot, 1)
	if !h.post(event{kind: evInspect, reply: reply}) {
		return snapshot{}
	}
	return <-reply
}
