package moderation

import (
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/strangers-chat/strangers/signaling"
)

// Moderator actions. Each is written to the store before it takes effect
// and is recorded in the audit log with the moderator's token id.

// Errors of moderator actions (the admin API answers 400 or 404).
var (
	ErrNoTarget   = errors.New("moderation: a ban needs a client or an address")
	ErrBadRequest = errors.New("moderation: bad request")
)

// BanRequest asks for a ban. A zero Duration takes the ladder's next step
// for the client (see Config.Ladder).
type BanRequest struct {
	Client   string        `json:"client,omitempty"`
	Addr     string        `json:"addr,omitempty"`
	Reason   string        `json:"reason"`
	Duration time.Duration `json:"-"`
	Report   string        `json:"report,omitempty"`
}

// Ban records a ban and returns it with the notice the banned client is
// to be given; the caller enforces it on live sessions
// (signaling.Hub.Enforce).
func (s *Service) Ban(req BanRequest, token string) (Ban, signaling.BanNotice, error) {
	if req.Client == "" && req.Addr == "" {
		return Ban{}, signaling.BanNotice{}, ErrNoTarget
	}
	if req.Reason == "" || utf8.RuneCountInString(req.Reason) > MaxBanReason {
		return Ban{}, signaling.BanNotice{}, fmt.Errorf("%w: the reason must be 1 to %d characters", ErrBadRequest, MaxBanReason)
	}
	if req.Duration < 0 {
		return Ban{}, signaling.BanNotice{}, fmt.Errorf("%w: negative duration", ErrBadRequest)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	d := req.Duration
	if d == 0 {
		n := max(s.offences["c:"+req.Client], s.offences["a:"+req.Addr])
		d = s.cfg.Ladder[min(n, len(s.cfg.Ladder)-1)]
	}
	s.banWrites.begin()
	s.mu.Unlock()
	b := Ban{ID: s.newID(now), Client: req.Client, Addr: req.Addr, Reason: req.Reason, Created: now, Until: now.Add(d), By: token, Report: req.Report}
	if err := s.cfg.Store.PutBan(b); err != nil {
		s.mu.Lock()
		s.banWrites.end()
		s.mu.Unlock()
		return Ban{}, signaling.BanNotice{}, fmt.Errorf("moderation: store ban: %w", err)
	}
	s.mu.Lock()
	s.countOffence(b, 1)
	s.indexBan(b)
	s.banWrites.end()
	s.mu.Unlock()
	s.audit(token, "ban", b.ID, fmt.Sprintf("%s until %s: %s", target(b.identity()), b.Until.UTC().Format(time.RFC3339), b.Reason))
	s.log.Info("ban", "ban", b.ID, "until", b.Until, "token", token)
	return b, s.notice(b), nil
}

func target(id signaling.Identity) string {
	switch {
	case id.Client != "" && id.Addr != "":
		return "client " + id.Client + " and address " + id.Addr
	case id.Client != "":
		return "client " + id.Client
	default:
		return "address " + id.Addr
	}
}

// Lift ends a ban now.
func (s *Service) Lift(id, token string) (Ban, error) {
	bans, err := s.cfg.Store.Bans()
	if err != nil {
		return Ban{}, err
	}
	i := slices.IndexFunc(bans, func(b Ban) bool { return b.ID == id })
	if i < 0 {
		return Ban{}, ErrNotFound
	}
	b := bans[i]
	if !b.Lifted.IsZero() {
		return b, nil
	}
	b.Lifted = s.cfg.Now()
	s.mu.Lock()
	s.banWrites.begin()
	s.mu.Unlock()
	if err := s.cfg.Store.PutBan(b); err != nil {
		s.mu.Lock()
		s.banWrites.end()
		s.mu.Unlock()
		return Ban{}, fmt.Errorf("moderation: store ban: %w", err)
	}
	s.mu.Lock()
	s.countOffence(b, -1)
	if _, ok := s.bans[id]; ok {
		s.unindexBan(b)
		delete(s.bans, id)
	}
	s.banWrites.end()
	s.mu.Unlock()
	s.audit(token, "lift", id, "")
	return b, nil
}

// Bans lists every ban, newest first.
func (s *Service) Bans() ([]Ban, error) {
	bans, err := s.cfg.Store.Bans()
	slices.Reverse(bans)
	return bans, err
}

// Reports lists the reports, newest first.
func (s *Service) Reports() ([]Report, error) {
	reports, err := s.cfg.Store.Reports()
	slices.Reverse(reports)
	return reports, err
}

// Report returns a report and its frame.
func (s *Service) Report(id string) (Report, []byte, error) { return s.cfg.Store.Report(id) }

// Dismiss closes a report without action; its reporter's reports count
// less from now on.
func (s *Service) Dismiss(id, token string) (Report, error) {
	r, err := s.close(id, token, StatusDismissed, "")
	if err != nil {
		return Report{}, err
	}
	s.mu.Lock()
	rep := s.reporters[r.Reporter.Client]
	if rep == nil {
		rep = &Reporter{Client: r.Reporter.Client}
		s.reporters[rep.Client] = rep
	}
	rep.Dismissed++
	saved := *rep
	s.mu.Unlock()
	if saved.Client != "" {
		if err := s.cfg.Store.PutReporter(saved); err != nil {
			return Report{}, fmt.Errorf("moderation: store reporter: %w", err)
		}
	}
	s.audit(token, "dismiss", id, "")
	return r, nil
}

// Scope says what a ban made from a report names.
type Scope uint8

const (
	ScopeBoth    Scope = iota // the client key and the address
	ScopeClient               // the client key only (others behind the same address go on)
	ScopeAddress              // the address only
)

// Act bans the reported client (its key and/or address, as scope says)
// from a report; a zero duration takes the ladder's next step.
func (s *Service) Act(id, reason string, d time.Duration, scope Scope, token string) (Report, Ban, signaling.BanNotice, error) {
	r, _, err := s.cfg.Store.Report(id)
	if err != nil {
		return Report{}, Ban{}, signaling.BanNotice{}, err
	}
	req := BanRequest{Client: r.Reported.Client, Addr: r.Reported.Addr, Reason: reason, Duration: d, Report: id}
	switch scope {
	case ScopeClient:
		req.Addr = ""
	case ScopeAddress:
		req.Client = ""
	}
	b, notice, err := s.Ban(req, token)
	if err != nil {
		return Report{}, Ban{}, signaling.BanNotice{}, err
	}
	r, err = s.close(id, token, StatusActioned, b.ID)
	if err != nil {
		return Report{}, Ban{}, signaling.BanNotice{}, err
	}
	s.audit(token, "act", id, "ban "+b.ID)
	return r, b, notice, nil
}

func (s *Service) close(id, token, status, ban string) (Report, error) {
	r, _, err := s.cfg.Store.Report(id)
	if err != nil {
		return Report{}, err
	}
	wasOpen := r.Status == StatusOpen
	r.Status, r.Closed, r.ClosedBy, r.Ban = status, s.cfg.Now(), token, ban
	if err := s.cfg.Store.PutReport(r, nil); err != nil {
		return Report{}, fmt.Errorf("moderation: store report: %w", err)
	}
	if wasOpen {
		s.mu.Lock()
		s.openCount--
		s.mu.Unlock()
	}
	return r, nil
}

// Pool lists the clients in the shadow pool.
func (s *Service) Pool() []PoolEntry {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PoolEntry, 0, len(s.pool))
	for _, e := range s.pool {
		if now.Before(e.Until) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b PoolEntry) int { return b.Since.Compare(a.Since) })
	return out
}

// Unshadow takes a client out of the shadow pool.
func (s *Service) Unshadow(client, token string) error {
	s.mu.Lock()
	_, ok := s.pool[client]
	if ok {
		s.unindexPool(client)
		s.poolWrites.begin()
	}
	s.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	err := s.cfg.Store.DeletePool(client)
	s.mu.Lock()
	s.poolWrites.end()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("moderation: store: %w", err)
	}
	s.audit(token, "unshadow", client, "")
	return nil
}

// Audit lists moderator actions, newest first.
func (s *Service) Audit() ([]AuditEntry, error) {
	entries, err := s.cfg.Store.Audit()
	slices.Reverse(entries)
	return entries, err
}

func (s *Service) audit(token, action, target, detail string) {
	now := s.cfg.Now()
	if err := s.cfg.Store.AppendAudit(AuditEntry{ID: s.newID(now), Time: now, Token: token, Action: action, Target: target, Detail: detail}); err != nil {
		s.log.Error("audit log write failed", "action", action, "err", err)
	}
}

// Stats are the moderation figures.
type Stats struct {
	ReportsOpen int `json:"reportsOpen"`
	BansInForce int `json:"bansInForce"`
	ShadowPool  int `json:"shadowPool"`
}

// Stats returns the moderation figures.
func (s *Service) Stats() Stats {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{ReportsOpen: s.openCount, BansInForce: s.inForce(now), ShadowPool: s.poolSize(now)}
}

// flush waits until the writes queued so far are in the store (tests).
func (s *Service) flush() {
	done := make(chan struct{})
	s.mu.Lock()
	s.enqueue(func(Store) error { close(done); return nil })
	s.mu.Unlock()
	select {
	case <-done:
	case <-s.done:
	}
}
