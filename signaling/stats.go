package signaling

import "time"

// statsChunks is how many pieces a stats push is cut into, sent one per
// StatsInterval/statsChunks: writing to every connection at once would be a
// burst of work that delays everything queued behind it.
const statsChunks = 32

// statsTick runs statsChunks times per StatsInterval. Once per interval it
// takes the figures and, if they changed, encodes them once and lists the
// attached sessions' connections; every tick sends to the next share of
// that list.
func (h *Hub) statsTick() {
	h.statsTicks++
	if h.statsTicks%statsChunks == 0 {
		h.sweepSkipLogs(time.Now())
		n := h.counts()
		st := Stats{Type: TypeStats, Online: n.Online, Waiting: n.WaitingVideo + n.WaitingText, WaitingVideo: n.WaitingVideo, WaitingText: n.WaitingText}
		if st != h.lastStats {
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
	}
	end := min(h.statsNext+h.statsChunk, len(h.statsTo))
	for _, c := range h.statsTo[h.statsNext:end] {
		c.send(h.statsData) // false if it closed meanwhile: nothing lost
	}
	clear(h.statsTo[h.statsNext:end])
	h.statsNext = end
}

// counts asks the engine for the cluster's figures, keeping the last ones
// if it cannot answer; this node's own are the floor.
func (h *Hub) counts() EngineCounts {
	n, err := h.engine.Counts()
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
