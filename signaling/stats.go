package signaling

import "time"

// statsChunks is how many pieces a stats push is cut into, sent one per
// StatsInterval/statsChunks: writing to every connection at once would be a
// burst of work that delays everything queued behind it.
const statsChunks = 32

// statsTick runs statsChunks times per StatsInterval. Once per interval it
// takes the figures and, if they changed, encodes them once and lists the
// attached sessions' connections (pushStats); every tick sends to the
// next share of that list. A shared engine is asked for the figures
// without waiting (askCounts): its answer is a round trip away, and the
// owner goroutine relays every session's messages meanwhile.
func (h *Hub) statsTick() {
	h.statsTicks++
	if h.statsTicks%statsChunks == 0 {
		h.sweepSkipLogs(time.Now())
		if h.batch == nil { // the memory engine: the answer is at hand
			h.pushStats(h.tookCounts(h.engine.Counts()))
		} else {
			h.askCounts()
		}
	}
	end := min(h.statsNext+h.statsChunk, len(h.statsTo))
	for _, c := range h.statsTo[h.statsNext:end] {
		c.send(h.statsData) // false if it closed meanwhile: nothing lost
	}
	clear(h.statsTo[h.statsNext:end])
	h.statsNext = end
}

// pushStats starts pushing n to every attached session, unless it is what
// they were last sent.
func (h *Hub) pushStats(n EngineCounts) {
	st := Stats{Type: TypeStats, Online: n.Online, Waiting: n.WaitingVideo + n.WaitingText, WaitingVideo: n.WaitingVideo, WaitingText: n.WaitingText}
	if st == h.lastStats {
		return
	}
	h.lastStats = st
	h.statsData = encode(st)
	clear(h.statsTo)
	h.statsTo, h.statsNext = h.statsTo[:0], 0
	for _, s := range h.sessions {
		if s.conn != nil {
			h.statsTo = append(h.statsTo, s.conn)
		}
	}
	h.statsChunk = (len(h.statsTo) + statsChunks - 1) / statsChunks
}

// askCounts asks the shared engine for the cluster's figures on a
// goroutine of its own (one at a time, owned by the hub: Shutdown waits
// for it), which hands the answer back to the owner to push.
func (h *Hub) askCounts() {
	if h.countsAsked {
		return // the last one has not answered yet
	}
	h.countsAsked = true
	h.bgWG.Add(1)
	go func() {
		defer h.bgWG.Done()
		n, err := h.engine.Counts()
		h.post(event{kind: evCall, call: func() {
			h.countsAsked = false
			h.pushStats(h.tookCounts(n, err))
		}})
	}()
}

// tookCounts keeps the engine's answer, or the last one if it could not
// answer; this node's own figures are the floor. On the owner goroutine.
func (h *Hub) tookCounts(n EngineCounts, err error) EngineCounts {
	if err != nil {
		h.engineError("counts", err)
		n = h.lastCounts
	}
	n.Online = max(n.Online, len(h.sessions))
	n.WaitingVideo = max(n.WaitingVideo, h.waitingVideo)
	n.WaitingText = max(n.WaitingText, h.waitingText)
	n.Shadowed = max(n.Shadowed, h.waitingShadow)
	h.lastCounts = n
	return n
}
