package signaling

// forward sends a signal, chat, typing or media message on to the sender's partner,
// as the decode shard re-encoded it, if it names the sender's current match.
// A relayOnly sender's signals go scrubbed (relayonly.go).
func (h *Hub) forward(s *session, matchID string, ev event) {
	switch {
	case s.match == nil:
		h.m.drop(dropNoMatch)
		return
	case s.match.id != matchID:
		h.m.drop(dropStale)
		return
	}
	data := ev.raw
	if sig, ok := ev.msg.(*Signal); ok && s.relayOnly {
		if !ev.hasScrub { // the shard did not know: a resumed connection
			ev.scrubbed, ev.scrubDrop = scrubEncoded(sig)
		}
		if ev.scrubDrop {
			h.m.drop(dropRelayOnly)
			return
		}
		data = ev.scrubbed
	}
	h.deliver(s.match.other(s), data, false)
}
