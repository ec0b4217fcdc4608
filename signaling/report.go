package signaling

func (h *Hub) report(s *session, m *Report) {
	var reported uint64
	switch {
	case s.match != nil && s.match.id == m.Match:
		p := s.match.other(s)
		reported = p.serial
		h.log.Info("partner reported", "match", m.Match, "reporter", s.id, "reported", p.id)
		h.endMatch(s, LeftReported)
	case s.lastMatch != "" && s.lastMatch == m.Match:
		reported = s.lastPartner
		h.log.Info("past partner reported", "match", m.Match, "reporter", s.id)
	default:
		h.m.drop(dropStale)
		s.conn.sendError(CodeNotInMatch, "report names a match you are not in")
		return
	}
	s.block(reported)
	h.m.reports.Inc()
}
