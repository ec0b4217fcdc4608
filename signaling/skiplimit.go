package signaling

import (
	"time"
)

// Skip limits, on the owner goroutine: a client (one client key, across its
// connections) that sends more than NextRate finds and nexts in a minute is
// not queued for NextCooldown, and told so with a cooldown message (the
// page counts down). A human looking at each stranger for even a few
// seconds stays far below the default; a script cycling through everyone
// does not.

// skipWindow is the span NextRate counts over.
const skipWindow = time.Minute

// skipLog is one client's recent finds and nexts. Owned by the owner
// goroutine.
type skipLog struct {
	times []time.Time // within the last skipWindow, oldest first
	until time.Time   // cooling down until then
}

// skipLogFor returns the log of a client key, shared by all its sessions.
func (h *Hub) skipLogFor(client string) *skipLog {
	if h.cfg.NextRate < 0 {
		return nil
	}
	l := h.skipLogs[client]
	if l == nil {
		l = &skipLog{}
		h.skipLogs[client] = l
	}
	return l
}

// overSkipLimit counts a find or next of s and reports whether s is over the
// limit: then s is idle, has been told how long to wait, and is not to be
// queued.
func (h *Hub) overSkipLimit(s *session, now time.Time) bool {
	l := s.skips
	if l == nil {
		return false
	}
	if now.Before(l.until) {
		h.coolDown(s, l.until.Sub(now))
		return true
	}
	cut := now.Add(-skipWindow)
	i := 0
	for i < len(l.times) && !l.times[i].After(cut) {
		i++
	}
	l.times = append(l.times[:0], l.times[i:]...)
	if len(l.times) >= h.cfg.NextRate {
		l.until = now.Add(h.cfg.NextCooldown)
		l.times = l.times[:0]
		h.m.cooldowns.Inc()
		h.coolDown(s, h.cfg.NextCooldown)
		return true
	}
	l.times = append(l.times, now)
	return false
}

func (h *Hub) coolDown(s *session, left time.Duration) {
	if s.state == StateWaiting { // find withdrew it from the pool first
		s.state = StateIdle
		s.gen++
	}
	h.deliver(s, encode(&Cooldown{Type: TypeCooldown, RetryIn: max(1, left.Milliseconds())}), false)
}

// sweepSkipLogs forgets the logs that no longer hold anything back (from
// statsTick, once per StatsInterval).
func (h *Hub) sweepSkipLogs(now time.Time) {
	cut := now.Add(-skipWindow)
	for k, l := range h.skipLogs {
		if !now.Before(l.until) && (len(l.times) == 0 || !l.times[len(l.times)-1].After(cut)) {
			delete(h.skipLogs, k)
		}
	}
}
