package moderation

import (
	"context"
	"slices"
	"time"
)

// DefaultReloadEvery is Config.ReloadEvery's default.
const DefaultReloadEvery = 10 * time.Second

// retryReload is how soon a reload that met a write of this instance in
// flight is tried again.
const retryReload = 100 * time.Millisecond

// Shared is a Store that several instances use at once (RedisStore). The
// Service of each follows what the others write, so that a ban, a lift,
// a shadow pool entry or a reporter's record made through one instance
// holds on all of them within moments.
type Shared interface {
	Store
	// Changes delivers the changes written by every instance (this one
	// too), in the order written, and Change{All: true} when some may
	// have been missed. The channel is closed when ctx ends.
	Changes(ctx context.Context) <-chan Change
	// OpenReports counts the open reports of all instances.
	OpenReports() (int, error)
	// Version changes with every write of bans or the shadow pool.
	Version() (uint64, error)
}

// Change says what a write to a Shared store changed.
type Change struct {
	Ban      *Ban       `json:"ban,omitempty"`      // a ban made or lifted
	Pool     *PoolEntry `json:"pool,omitempty"`     // a client put in the shadow pool
	Unpooled string     `json:"unpooled,omitempty"` // a client taken out of it
	Reporter *Reporter  `json:"reporter,omitempty"` // a reporter's record
	Report   *Report    `json:"report,omitempty"`   // a report made or closed (without its chat lines)
	Reports  bool       `json:"reports,omitempty"`  // reports made, closed or deleted
	All      bool       `json:"all,omitempty"`      // anything may have changed
}

// follow applies the changes of a Shared store until ctx ends, and every
// ReloadEvery reloads everything if bans or the pool changed since the
// last full reload, in case a change notice was missed. It
// runs on the goroutine New starts for a Shared store; Close stops it.
func (s *Service) follow(ctx context.Context, sh Shared) {
	defer close(s.followDone)
	changes := sh.Changes(ctx)
	tick := time.NewTicker(s.cfg.ReloadEvery)
	defer tick.Stop()
	retry := time.NewTimer(retryReload)
	retry.Stop()
	defer retry.Stop()
	again := func(ok bool) {
		if !ok {
			retry.Reset(retryReload)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				changes = nil // the store is closing; ctx ends next
				continue
			}
			switch {
			case c.All:
				again(s.reloadAll(sh))
			case c.Ban != nil:
				again(s.reloadBans())
			case c.Pool != nil || c.Unpooled != "":
				again(s.reloadPool())
			case c.Reporter != nil:
				s.mergeReporters([]Reporter{*c.Reporter})
			case c.Report != nil:
				s.remoteHit(*c.Report)
				s.reloadOpen(sh)
			case c.Reports:
				s.reloadOpen(sh)
			}
		case <-tick.C:
			again(s.reloadIfChanged(sh))
		case <-retry.C:
			again(s.reloadAll(sh))
		}
	}
}

// reloadIfChanged reloads everything if the store's version is not the
// one of the last full reload, else only the count of open reports.
func (s *Service) reloadIfChanged(sh Shared) bool {
	v, err := sh.Version()
	if err != nil {
		s.reloadFailed("the version", err)
		return true
	}
	if s.reloaded && v == s.version {
		s.reloadOpen(sh)
		return true
	}
	return s.reloadAll(sh)
}

// reloadAll reloads bans, the shadow pool, reporters and the count of
// open reports; false when it must be tried again.
func (s *Service) reloadAll(sh Shared) bool {
	failing := s.failing
	s.failing = false
	v, err := sh.Version() // before the records: a write after it makes the next tick reload
	if err != nil {
		s.reloadFailed("the version", err)
	}
	ok := true
	defer func() {
		if ok && !s.failing {
			s.reloaded, s.version = true, v
		}
	}()
	defer func() {
		if failing && !s.failing {
			s.log.Info("the shared store answers again: moderation records reloaded")
		}
	}()
	ok = s.reloadBans()
	ok = s.reloadPool() && ok
	if reporters, err := s.cfg.Store.Reporters(); err != nil {
		s.reloadFailed("reporters", err)
	} else {
		s.mergeReporters(reporters)
	}
	s.reloadOpen(sh)
	return ok
}

// reloadFailed logs a failed reload, once until a full reload succeeds
// (the store may be away for a while).
func (s *Service) reloadFailed(what string, err error) {
	if !s.failing {
		s.log.Warn("reloading moderation records from the shared store failed; retrying every "+s.cfg.ReloadEvery.String(), "what", what, "err", err)
	}
	s.failing = true
}

// Writes of this instance in flight, by kind: a reload that read the
// store before such a write landed must not undo it in memory. begin
// and end bracket each write, with s.mu held.
type inFlight struct {
	busy int    // writes started and not ended
	gen  uint64 // bumped by begin and end
}

func (f *inFlight) begin() { f.busy++; f.gen++ }
func (f *inFlight) end()   { f.busy--; f.gen++ }

// snapshot returns the generation to compare after reading the store,
// and false while a write is in flight.
func (f *inFlight) snapshot() (uint64, bool) { return f.gen, f.busy == 0 }

// reloadBans replaces the bans in memory with the store's, and hands
// OnBan each ban in force it did not know (made by another instance).
// False when a ban of this instance was being written meanwhile.
func (s *Service) reloadBans() bool {
	s.mu.Lock()
	gen, ok := s.banWrites.snapshot()
	s.mu.Unlock()
	if !ok {
		return false
	}
	bans, err := s.cfg.Store.Bans()
	if err != nil {
		s.reloadFailed("bans", err)
		return true // the next tick tries again
	}
	now := s.cfg.Now()
	var fresh []Ban
	s.mu.Lock()
	if s.banWrites.gen != gen {
		s.mu.Unlock()
		return false
	}
	known := s.bans
	s.bans, s.byClient, s.byAddr, s.offences = map[string]Ban{}, map[string]string{}, map[string]string{}, map[string]int{}
	for _, b := range bans {
		if b.Lifted.IsZero() {
			s.countOffence(b, 1)
		}
		if b.InForce(now) {
			if _, had := known[b.ID]; !had {
				fresh = append(fresh, b)
			}
			s.indexBan(b)
		}
	}
	s.mu.Unlock()
	for _, b := range fresh {
		s.log.Info("ban made on another instance", "ban", b.ID, "until", b.Until, "token", b.By)
		if s.cfg.OnBan != nil {
			s.cfg.OnBan(b, s.notice(b))
		}
	}
	return true
}

// reloadPool replaces the shadow pool in memory with the store's; false
// when an entry of this instance was being written meanwhile.
func (s *Service) reloadPool() bool {
	s.mu.Lock()
	gen, ok := s.poolWrites.snapshot()
	s.mu.Unlock()
	if !ok {
		return false
	}
	pool, err := s.cfg.Store.Pool()
	if err != nil {
		s.reloadFailed("the shadow pool", err)
		return true
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.poolWrites.gen != gen {
		return false
	}
	s.pool, s.poolAddr = map[string]PoolEntry{}, map[string]string{}
	for _, e := range pool {
		if now.Before(e.Until) {
			s.indexPool(e)
		}
	}
	return true
}

// mergeReporters takes in reporters' records from the store. Their counts
// only grow, and instances count at once: each keeps the larger.
func (s *Service) mergeReporters(reporters []Reporter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range reporters {
		if r.Client == "" {
			continue
		}
		have := s.reporters[r.Client]
		if have == nil {
			s.reporters[r.Client] = &r
			continue
		}
		have.Reports = max(have.Reports, r.Reports)
		have.Dismissed = max(have.Dismissed, r.Dismissed)
	}
}

// remoteHit counts a report made through another instance towards the
// shadow pool here too, so that reporters on several instances add up:
// the instance that gets the report reaching the threshold puts the
// client in the pool, for all. A report already counted (this
// instance's own, or one closed since) is not counted again.
func (s *Service) remoteHit(r Report) {
	now := s.cfg.Now()
	target := r.Reported.Client
	if target == "" || now.Sub(r.Time) >= s.cfg.ReportWindow {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	hits := s.prune(s.recent[target], now)
	if slices.ContainsFunc(hits, func(h hit) bool { return h.report == r.ID }) {
		return
	}
	i, _ := slices.BinarySearchFunc(hits, r.Time, func(h hit, t time.Time) int { return h.at.Compare(t) })
	s.recent[target] = slices.Insert(hits, i, hit{report: r.ID, reporter: reporterKey(r.Reporter), at: r.Time, weight: r.Weight})
}

// reloadOpen takes the count of open reports of every instance.
func (s *Service) reloadOpen(sh Shared) {
	n, err := sh.OpenReports()
	if err != nil {
		s.reloadFailed("the count of open reports", err)
		return
	}
	s.mu.Lock()
	s.openCount = n
	s.mu.Unlock()
}
