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
		video, text := h.pool.waiting(ModeVideo), h.pool.waiting(ModeText)
		st := Stats{Type: TypeStats, Online: len(h.sessions), Waiting: video + text, WaitingVideo: video, WaitingText: text}
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
