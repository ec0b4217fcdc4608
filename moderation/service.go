// Package moderation keeps a public instance usable without accounts: it
// decides bans and the shadow pool for the matchmaker (signaling.Moderator),
// records reports with their evidence, and serves the moderators' admin API
// and page. What it must not lose lives in a Store.
package moderation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/signaling"
)

// Defaults of Config.
const (
	DefaultReportThreshold = 3
	DefaultReportWindow    = 24 * time.Hour
	DefaultShadowFor       = 24 * time.Hour
	DefaultRetention       = 14 * 24 * time.Hour
	DefaultSweepEvery      = time.Hour
)

// DefaultLadder is the length of a client's first, second, third and later
// bans when a moderator names none.
var DefaultLadder = []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour}

// Limits of what a moderator writes.
const (
	MaxBanReason = 200
)

// writeQueue bounds the store writes waiting behind the matchmaker.
const writeQueue = 1024

// Config configures a Service. Zero fields take the defaults given.
type Config struct {
	// Store keeps the records. Required.
	Store Store
	// AppealContact tells banned users how to appeal (an address or URL).
	// Empty: they are told nothing about appeals.
	AppealContact string
	// ReportThreshold is how many distinct reporters (counted by their
	// record, see Reporter) within ReportWindow put someone in the shadow
	// pool for ShadowFor. Default 3.
	ReportThreshold int
	// ReportWindow: default 24h. ShadowFor: default 24h.
	ReportWindow, ShadowFor time.Duration
	// Retention is how long reports and their evidence are kept. Default
	// 14 days.
	Retention time.Duration
	// SweepEvery is how often old reports and expired entries are deleted.
	// Default 1h.
	SweepEvery time.Duration
	// Ladder is the ban length by offence when a moderator names none.
	// Default DefaultLadder.
	Ladder []time.Duration
	// Logger receives the logs. Nil: discard.
	Logger *slog.Logger
	// Registerer receives the metrics. Nil: a private registry.
	Registerer prometheus.Registerer
	// Now is the clock (tests). Nil: time.Now.
	Now func() time.Time

	// With a Shared store (several instances):

	// OnBan is called, on the Service's own goroutine, with each ban in
	// force made through another instance once this one learns of it,
	// and the notice for the banned client: the caller enforces it on its
	// live sessions (signaling.Hub.Enforce), as it does after Ban. Nil:
	// new sessions are refused, live ones go on.
	OnBan func(Ban, signaling.BanNotice)
	// ReloadEvery is how often the store is checked for a change whose
	// notice was missed: everything is reloaded if bans or the shadow
	// pool changed since the last reload. Default DefaultReloadEvery.
	ReloadEvery time.Duration
}

// Service is the moderation state. The in-memory indexes (guarded by mu)
// answer the matchmaker at once; the Store has the record. Reports reach
// the store through a queue that the writer goroutine (started by New,
// stopped by Close) drains, so that the matchmaker never waits on disk.
// With a Shared store, a second goroutine (started by New, stopped by
// Close) follows what the other instances write (see follow).
type Service struct {
	// Static after New.
	cfg        Config
	log        *slog.Logger
	writes     chan func(Store) error
	done       chan struct{} // closed when the writer has returned
	stop       chan struct{} // closed by Close
	closeMu    sync.Once
	stopFollow context.CancelFunc // nil without a Shared store
	followDone chan struct{}      // closed when follow has returned

	// Owned by follow.
	failing  bool   // a reload from the shared store failed
	reloaded bool   // version is that of the last full reload
	version  uint64 // Shared.Version at the last full reload

	seq atomic.Uint64 // orders the ids made in one instant

	reportsStored prometheus.Counter
	shadowed      prometheus.Counter

	mu         sync.Mutex
	bans       map[string]Ban       // in force (or until the sweep), by id
	byClient   map[string]string    // ban id by client
	byAddr     map[string]string    // ban id by address hash
	offences   map[string]int       // bans ever made, by client and by address
	pool       map[string]PoolEntry // by client
	poolAddr   map[string]string    // client by address hash
	recent     map[string][]hit     // reports by reported client, within ReportWindow
	reporters  map[string]*Reporter // by client
	openCount  int                  // reports not dismissed nor acted on
	closed     bool
	banWrites  inFlight // of this instance, for reloads from a Shared store
	poolWrites inFlight
}

func (s *Service) newID(now time.Time) string { return newID(now, s.seq.Add(1)) }

// hit is a report counting towards the shadow pool.
type hit struct {
	report   string // its id
	reporter string // the reporter's address hash, else its client
	at       time.Time
	weight   float64
}

// New loads the state from cfg.Store and starts the writer.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("moderation: no store")
	}
	if cfg.ReportThreshold <= 0 {
		cfg.ReportThreshold = DefaultReportThreshold
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.ReportWindow, DefaultReportWindow}, {&cfg.ShadowFor, DefaultShadowFor}, {&cfg.Retention, DefaultRetention}, {&cfg.SweepEvery, DefaultSweepEvery}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if len(cfg.Ladder) == 0 {
		cfg.Ladder = DefaultLadder
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReloadEvery <= 0 {
		cfg.ReloadEvery = DefaultReloadEvery
	}
	s := &Service{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "moderation"),
		writes:    make(chan func(Store) error, writeQueue),
		done:      make(chan struct{}),
		stop:      make(chan struct{}),
		bans:      map[string]Ban{},
		byClient:  map[string]string{},
		byAddr:    map[string]string{},
		offences:  map[string]int{},
		pool:      map[string]PoolEntry{},
		poolAddr:  map[string]string{},
		recent:    map[string][]hit{},
		reporters: map[string]*Reporter{},
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if err := s.register(cfg.Registerer); err != nil {
		return nil, err
	}
	go s.writer()
	if sh, ok := cfg.Store.(Shared); ok {
		ctx, cancel := context.WithCancel(context.Background())
		s.stopFollow, s.followDone = cancel, make(chan struct{})
		go s.follow(ctx, sh)
	}
	return s, nil
}

func (s *Service) load() error {
	now := s.cfg.Now()
	bans, err := s.cfg.Store.Bans()
	if err != nil {
		return fmt.Errorf("moderation: load bans: %w", err)
	}
	for _, b := range bans {
		if b.Lifted.IsZero() {
			s.countOffence(b, 1)
		}
		if b.InForce(now) {
			s.indexBan(b)
		}
	}
	pool, err := s.cfg.Store.Pool()
	if err != nil {
		return fmt.Errorf("moderation: load the shadow pool: %w", err)
	}
	for _, e := range pool {
		if now.Before(e.Until) {
			s.indexPool(e)
		}
	}
	reporters, err := s.cfg.Store.Reporters()
	if err != nil {
		return fmt.Errorf("moderation: load reporters: %w", err)
	}
	for _, r := range reporters {
		s.reporters[r.Client] = &r
	}
	reports, err := s.cfg.Store.Reports()
	if err != nil {
		return fmt.Errorf("moderation: load reports: %w", err)
	}
	for _, r := range reports {
		if r.Status == StatusOpen {
			s.openCount++
		}
		if now.Sub(r.Time) < s.cfg.ReportWindow && r.Reported.Client != "" {
			s.recent[r.Reported.Client] = append(s.recent[r.Reported.Client], hit{report: r.ID, reporter: reporterKey(r.Reporter), at: r.Time, weight: r.Weight})
		}
	}
	return nil
}

func (s *Service) register(reg prometheus.Registerer) error {
	s.reportsStored = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strangers_moderation_reports_total", Help: "Reports recorded with their evidence.",
	})
	s.shadowed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strangers_shadow_pool_entries_total", Help: "Clients put in the shadow pool by reports.",
	})
	gauge := func(name, help string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(f())
		})
	}
	for _, c := range []prometheus.Collector{
		s.reportsStored, s.shadowed,
		gauge("strangers_bans_in_force", "Bans in force.", func() int { return s.inForce(s.cfg.Now()) }),
		gauge("strangers_shadow_pool_size", "Clients in the shadow pool.", func() int { return s.poolSize(s.cfg.Now()) }),
		gauge("strangers_reports_open", "Reports waiting for a moderator.", func() int { return s.openCount }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("moderation: registering metrics: %w", err)
		}
	}
	return nil
}

// Close stops the writer once it has written what was queued, and closes
// the store.
func (s *Service) Close() error {
	s.closeMu.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		<-s.done
		if s.stopFollow != nil {
			s.stopFollow()
			<-s.followDone
		}
	})
	return s.cfg.Store.Close()
}

// writer writes what Reported queued, and sweeps old records now and then.
func (s *Service) writer() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.SweepEvery)
	defer tick.Stop()
	s.Sweep()
	for {
		select {
		case w := <-s.writes:
			s.write(w)
		case <-tick.C:
			s.Sweep()
		case <-s.stop:
			for {
				select {
				case w := <-s.writes:
					s.write(w)
				default:
					return
				}
			}
		}
	}
}

func (s *Service) write(w func(Store) error) {
	if err := w(s.cfg.Store); err != nil {
		s.log.Error("store write failed", "err", err)
	}
}

// enqueue queues a store write; false when the queue is full or closed.
// s.mu must be held.
func (s *Service) enqueue(w func(Store) error) bool {
	if s.closed {
		return false
	}
	select {
	case s.writes <- w:
		return true
	default:
		s.log.Warn("store write queue full: a moderation record is lost")
		return false
	}
}

// Sweep deletes reports older than the retention and forgets expired bans,
// pool entries and report counts.
func (s *Service) Sweep() {
	now := s.cfg.Now()
	n, open, err := s.cfg.Store.DeleteReportsBefore(now.Add(-s.cfg.Retention))
	if err != nil {
		s.log.Error("deleting old reports", "err", err)
	} else if n > 0 {
		s.log.Info("old reports deleted", "reports", n)
	}
	var expired []string
	s.mu.Lock()
	for id, b := range s.bans {
		if !b.InForce(now) {
			s.unindexBan(b)
			delete(s.bans, id)
		}
	}
	for c, e := range s.pool {
		if !now.Before(e.Until) {
			s.unindexPool(c)
			expired = append(expired, c)
		}
	}
	for c, hits := range s.recent {
		if hits = s.prune(hits, now); len(hits) == 0 {
			delete(s.recent, c)
		} else {
			s.recent[c] = hits
		}
	}
	s.openCount -= open
	s.mu.Unlock()
	for _, c := range expired {
		if err := s.cfg.Store.DeletePool(c); err != nil {
			s.log.Error("deleting a shadow pool entry", "err", err)
		}
	}
}

// Index maintenance; s.mu must be held.

func (s *Service) indexBan(b Ban) {
	s.bans[b.ID] = b
	if b.Client != "" {
		s.byClient[b.Client] = b.ID
	}
	if b.Addr != "" {
		s.byAddr[b.Addr] = b.ID
	}
}

func (s *Service) unindexBan(b Ban) {
	if s.byClient[b.Client] == b.ID {
		delete(s.byClient, b.Client)
	}
	if s.byAddr[b.Addr] == b.ID {
		delete(s.byAddr, b.Addr)
	}
}

// countOffence adds n to the offences of b's client and address: bans
// count towards the ladder unless lifted (a lifted ban was a mistake).
func (s *Service) countOffence(b Ban, n int) {
	if b.Client != "" {
		s.offences["c:"+b.Client] += n
	}
	if b.Addr != "" {
		s.offences["a:"+b.Addr] += n
	}
}

func (s *Service) indexPool(e PoolEntry) {
	s.pool[e.Client] = e
	if e.Addr != "" {
		s.poolAddr[e.Addr] = e.Client
	}
}

func (s *Service) unindexPool(client string) {
	e := s.pool[client]
	delete(s.pool, client)
	if e.Addr != "" && s.poolAddr[e.Addr] == client {
		delete(s.poolAddr, e.Addr)
	}
}

func (s *Service) inForce(now time.Time) int {
	n := 0
	for _, b := range s.bans {
		if b.InForce(now) {
			n++
		}
	}
	return n
}

func (s *Service) poolSize(now time.Time) int {
	n := 0
	for _, e := range s.pool {
		if now.Before(e.Until) {
			n++
		}
	}
	return n
}

func (s *Service) prune(hits []hit, now time.Time) []hit {
	cut := now.Add(-s.cfg.ReportWindow)
	i := 0
	for i < len(hits) && !hits[i].at.After(cut) {
		i++
	}
	return hits[i:]
}

// signaling.Moderator, on the hub's owner goroutine: memory only.

// Banned implements signaling.Moderator.
func (s *Service) Banned(id signaling.Identity, now time.Time) (signaling.BanNotice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, bid := range []string{s.byClient[id.Client], s.byAddr[id.Addr]} {
		if b, ok := s.bans[bid]; ok && bid != "" && b.InForce(now) {
			return s.notice(b), true
		}
	}
	return signaling.BanNotice{}, false
}

func (s *Service) notice(b Ban) signaling.BanNotice {
	return signaling.BanNotice{Reason: b.Reason, Until: b.Until, Appeal: s.cfg.AppealContact}
}

// Shadowed implements signaling.Moderator.
func (s *Service) Shadowed(id signaling.Identity, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.pool[id.Client]
	if !ok && id.Addr != "" {
		if c, byAddr := s.poolAddr[id.Addr]; byAddr {
			e, ok = s.pool[c]
		}
	}
	return ok && now.Before(e.Until)
}

// reporterKey is what makes two reporters distinct: their address (two
// keys from one address are one reporter), else their key.
func reporterKey(id signaling.Identity) string {
	if id.Addr != "" {
		return "a:" + id.Addr
	}
	return "c:" + id.Client
}

// weight is what a report from r counts for: 1, less the more of its
// reports moderators dismissed (a half after one, a third after two...).
func weight(r *Reporter) float64 {
	if r == nil {
		return 1
	}
	return 1 / float64(1+r.Dismissed)
}

// Reported implements signaling.Moderator: the report is queued for the
// store, and its reporter counts towards the shadow pool.
func (s *Service) Reported(ev signaling.ReportEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := ev.Time
	rep := s.reporters[ev.Reporter.Client]
	if rep == nil && ev.Reporter.Client != "" {
		rep = &Reporter{Client: ev.Reporter.Client}
		s.reporters[rep.Client] = rep
	}
	r := Report{
		ID:       s.newID(now),
		Time:     now,
		Match:    ev.Match,
		Reporter: ev.Reporter,
		Reported: ev.Reported,
		Ended:    ev.Ended,
		Reason:   ev.Reason,
		Note:     ev.Note,
		Chat:     ev.Chat,
		HasFrame: len(ev.Frame) > 0,
		Weight:   weight(rep),
		Status:   StatusOpen,
	}
	if r.Chat == nil {
		r.Chat = []signaling.ChatLine{}
	}
	s.openCount++
	s.reportsStored.Inc()
	frame := ev.Frame
	var saved Reporter
	if rep != nil {
		rep.Reports++
		saved = *rep
	}
	s.enqueue(func(st Store) error {
		if err := st.PutReport(r, frame); err != nil {
			return err
		}
		if saved.Client != "" {
			return st.PutReporter(saved)
		}
		return nil
	})

	// Towards the shadow pool: distinct reporters' weights within the
	// window, each reporter counted once (its heaviest report).
	target := ev.Reported.Client
	if target == "" {
		return
	}
	hits := append(s.prune(s.recent[target], now), hit{report: r.ID, reporter: reporterKey(ev.Reporter), at: now, weight: r.Weight})
	s.recent[target] = hits
	best := map[string]float64{}
	for _, h := range hits {
		best[h.reporter] = max(best[h.reporter], h.weight)
	}
	total := 0.0
	for _, w := range best {
		total += w
	}
	if total+1e-9 < float64(s.cfg.ReportThreshold) {
		return
	}
	if e, in := s.pool[target]; in && now.Before(e.Until) {
		return
	}
	e := PoolEntry{Client: target, Addr: ev.Reported.Addr, Since: now, Until: now.Add(s.cfg.ShadowFor), Reporters: len(best)}
	s.indexPool(e)
	s.shadowed.Inc()
	s.log.Info("client moved to the shadow pool", "reporters", len(best))
	s.poolWrites.begin()
	if !s.enqueue(func(st Store) error {
		defer func() {
			s.mu.Lock()
			s.poolWrites.end()
			s.mu.Unlock()
		}()
		return st.PutPool(e)
	}) {
		s.poolWrites.end()
	}
}
