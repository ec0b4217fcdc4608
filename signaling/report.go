package signaling

import "time"

func (h *Hub) report(s *session, m *Report) {
	var reported string
	var ended *match
	var other *session
	after := true // the match had ended before the report
	switch {
	case s.match != nil && s.match.id == m.Match:
		after = false
		ended = s.match
		other = ended.other(s)
		reported = other.id
		h.log.Info("partner reported", "match", m.Match, "reporter", s.id, "reported", other.id)
		h.endMatch(s, LeftReported)
	case s.lastMatch != "" && s.lastMatch == m.Match:
		reported = s.lastPartner
		if s.lastEnded != nil {
			ended = s.lastEnded
			other = ended.other(s)
		}
		h.log.Info("past partner reported", "match", m.Match, "reporter", s.id)
	default:
		h.m.drop(dropStale)
		s.conn.sendError(CodeNotInMatch, "report names a match you are not in")
		return
	}
	h.call("block", Op{Kind: OpBlock, Session: s.id, Other: reported}, nil)
	h.m.reports.Inc()
	if h.cfg.Moderator == nil || other == nil {
		return
	}
	h.cfg.Moderator.Reported(ReportEvent{
		Time:     time.Now(),
		Match:    m.Match,
		Reporter: s.ident,
		Reported: other.ident,
		Ended:    after,
		Reason:   m.Reason,
		Note:     m.Note,
		Chat:     ended.evidence(s),
		Frame:    m.Frame,
	})
	// One report per match: a second one adds nothing.
	s.lastEnded = nil
}
