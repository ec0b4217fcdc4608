package relay

// SessionRevoked ends a session at once, without the grace SessionEnded
// gives (a moderator banned its user): its credentials stop
// authenticating and the relay sockets of its allocations are closed now,
// so a call relayed through them stops. Unknown sessions are ignored.
func (s *Server) SessionRevoked(sessionID string) {
	s.mu.Lock()
	st, ok := s.sessions[sessionID]
	if !ok || s.closed {
		s.mu.Unlock()
		return
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	st.ended = true
	s.mu.Unlock()
	// expireSession does the rest exactly as when a grace runs out.
	s.expireSession(sessionID, st)
	s.log.Info("session revoked")
}
