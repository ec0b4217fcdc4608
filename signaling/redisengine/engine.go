// Package redisengine is the signaling.Engine that several strangers
// instances ("nodes") share through one Redis: the waiting pool and the
// pairing (Lua scripts, so a pairing is atomic across nodes), who met or
// reported whom, the session records a resume on another node needs, node
// leases and a reaper that ends a dead node's sessions, and delivery to a
// partner on another node over one pub/sub channel per node. It is a
// signaling.Batcher: Do makes many of the hub's calls in one run of one
// script, one round trip (batch.go).
//
// It needs one Redis 6.2 or later (standalone or a replicated primary, not
// Redis Cluster: the scripts touch keys of many sessions). Every node's
// clock may differ: leases and deadlines use Redis's clock. Keys live under
// "strangers:" (see scripts.go); an ended session's keys are deleted, and
// every session key has a TTL of a day, renewed as it is used, as a
// backstop.
//
// Messages between nodes are fire and forget: what is published while a
// node is not subscribed (Redis down, or the node restarting its
// subscription) is lost, and the hub resyncs when Redis is back.
package redisengine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/strangers-chat/strangers/internal/sessionid"
	"github.com/strangers-chat/strangers/signaling"
)

// Defaults of Config.
const (
	DefaultResumeGrace    = 15 * time.Second
	DefaultRecentPartners = 3
	DefaultLeaseTTL       = 5 * time.Second
	DefaultTimeout        = 500 * time.Millisecond
	DefaultSendQueue      = 65536
)

const (
	keyPrefix = "strangers:"
	// recordTTL is the backstop lifetime of a session's keys, renewed on
	// each write: ended sessions' keys are deleted at once, so only the
	// keys of a session lost in a way nobody noticed wait for it.
	recordTTL = 24 * time.Hour
	// maxReported bounds the sessions one session's reports are kept for.
	maxReported = 64
	// pingEvery is how often a down engine tries its backend again.
	pingEvery = 250 * time.Millisecond
	// orphansEvery is how often due orphans are ended, at most.
	orphansEvery = 200 * time.Millisecond
	// reapSlack is taken off a dead node's sessions' grace for the time
	// it takes to notice they are due and tell their partners, so that
	// partners hear of it within ResumeGrace of the node's last renewal.
	reapSlack = orphansEvery + 50*time.Millisecond
	// comeBack is how long a node may take to notice that Redis is back
	// after an outage (the client redials a failed server once a second,
	// the keeper tries every pingEvery): the leases that ran out in an
	// outage are extended by that much more than a lease.
	comeBack = 2 * time.Second
	// orphansBatch bounds the orphans one script ends.
	orphansBatch = 256
	// publishBatch bounds the messages the publisher writes at once.
	publishBatch = 512
	// closeWait bounds how long Close spends flushing queued messages.
	closeWait = 5 * time.Second
)

// ErrConfig is wrapped by New's errors.
var ErrConfig = errors.New("redisengine: bad config")

// Config configures an Engine. Zero fields take the defaults given.
type Config struct {
	// URL is the Redis server: redis://[:password@]host:port/db, or
	// rediss:// for TLS. Required.
	URL string
	// Node is this node's id, unique in the cluster. Required.
	Node string
	// TLS configures the connection for a rediss:// URL (for example the
	// roots of a private CA); its ServerName defaults to the URL's host.
	// Nil: the system roots. Only with rediss://.
	TLS *tls.Config
	// ResumeGrace is how long after a dead or drained node was last seen
	// its sessions end (their clients may resume them on another node
	// meanwhile). Default 15s.
	ResumeGrace time.Duration
	// RecentPartners is how many past partners a session is kept from,
	// unless both have settled and nobody else waits. Default 3.
	RecentPartners int
	// LeaseTTL is how long a node's lease lasts; it is renewed every
	// LeaseTTL/5, and a node that has not renewed it for LeaseTTL is dead.
	// Default 5s.
	LeaseTTL time.Duration
	// Timeout bounds each round trip to Redis. Default 500ms.
	Timeout time.Duration
	// SendQueue is how many outbound pub/sub messages wait to be
	// published before more are dropped (and counted). Default 65536.
	SendQueue int
	// Logger receives the engine's logs. Nil: slog.Default().
	Logger *slog.Logger
	// Registerer receives the engine's metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// Engine is the Redis signaling.Engine. Make one with New.
//
// Goroutines, all started by Start and stopped by Close: the keeper
// (leases, reaper, orphans, reconnection), the subscriber (this node's
// channel, feeding the host) and the publisher (the outbound queue, on a
// connection of its own whose reader goroutine it owns).
type Engine struct {
	// Static after New.
	cfg     Config
	opts    *redis.Options
	log     *slog.Logger
	m       *metrics
	channel string // this node's pub/sub channel

	// Set by Start, static after.
	rdb    *redis.Client
	host   signaling.EngineHost
	bg     context.Context // cancelled by Close: the keeper and subscriber stop
	stopBg context.CancelFunc
	bgDone sync.WaitGroup // the keeper and subscriber
	// out is the publisher's queue: anyone enqueues (never blocking),
	// nobody closes it; pubQuit tells the publisher to flush and stop,
	// pubDone says it has.
	out     chan *outbound
	pubQuit chan struct{}
	pubDone chan struct{}
	// publishVia writes a batch for the publisher; nil: publishOn. Only a
	// benchmark sets it (before Start), to compare with a reference.
	publishVia func(pc *pubConn, batch []*outbound) *pubConn

	// epoch is the value of Redis's epoch key at the last renewal: a new
	// one means Redis lost its data. Owned by the keeper (Start sets it
	// before the keeper runs).
	epoch string
	// ps is the subscriber's current subscription, closed by setDown and
	// Close to wake it.
	psMu sync.Mutex
	ps   *redis.PubSub

	// Safe from any goroutine.
	up         atomic.Bool   // the last round trip worked
	pubGen     atomic.Uint64 // setDowns so far: the publisher's connection from before one is retired
	subscribed atomic.Bool   // the subscriber listens on channel
	started    atomic.Bool
	closed     atomic.Bool
	routes     routes
}

// New checks cfg, fills in its defaults and parses the URL. It does not
// connect: Start does.
func New(cfg Config) (*Engine, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL is required", ErrConfig)
	}
	if cfg.Node == "" {
		return nil, fmt.Errorf("%w: Node is required", ErrConfig)
	}
	if strings.ContainsAny(cfg.Node, " \t\r\n") {
		return nil, fmt.Errorf("%w: Node %q contains white space", ErrConfig, cfg.Node)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"ResumeGrace", &cfg.ResumeGrace, DefaultResumeGrace},
		{"LeaseTTL", &cfg.LeaseTTL, DefaultLeaseTTL},
		{"Timeout", &cfg.Timeout, DefaultTimeout},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%w: %s %v is negative", ErrConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.LeaseTTL < 50*time.Millisecond {
		return nil, fmt.Errorf("%w: LeaseTTL %v is under 50ms", ErrConfig, cfg.LeaseTTL)
	}
	if cfg.RecentPartners < 0 || cfg.SendQueue < 0 {
		return nil, fmt.Errorf("%w: RecentPartners and SendQueue must not be negative", ErrConfig)
	}
	if cfg.RecentPartners == 0 {
		cfg.RecentPartners = DefaultRecentPartners
	}
	if cfg.SendQueue == 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		// The URL may hold a password: name the scheme only.
		return nil, fmt.Errorf("%w: URL: %v", ErrConfig, redactURLError(err, cfg.URL))
	}
	if cfg.TLS != nil {
		if opts.TLSConfig == nil {
			return nil, fmt.Errorf("%w: TLS is set but the URL is not rediss://", ErrConfig)
		}
		t := cfg.TLS.Clone()
		if t.ServerName == "" {
			t.ServerName = opts.TLSConfig.ServerName
		}
		opts.TLSConfig = t
	}
	// Fail fast and let the engine decide: no retries, every wait bounded
	// by Timeout, no server-push features Redis may not have.
	opts.MaxRetries = -1
	opts.DialTimeout = cfg.Timeout
	opts.DialerRetries = 1
	opts.ReadTimeout = cfg.Timeout
	opts.WriteTimeout = cfg.Timeout
	opts.PoolTimeout = cfg.Timeout
	opts.ContextTimeoutEnabled = true
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Engine{
		cfg:     cfg,
		opts:    opts,
		log:     cfg.Logger.With("component", "redisengine", "node", cfg.Node),
		m:       m,
		channel: keyPrefix + "node:" + cfg.Node,
		routes:  routes{to: map[string]string{}, moved: map[string]movedTo{}, holds: map[string]*hold{}, parked: map[string]*hold{}},
	}, nil
}

// redactURLError keeps a URL parse error from repeating the URL (and its
// password).
func redactURLError(err error, url string) error {
	msg := err.Error()
	if url != "" {
		msg = strings.ReplaceAll(msg, url, "<url>")
	}
	if i := strings.Index(msg, "@"); i >= 0 {
		msg = "<url>" + msg[i:]
	}
	return errors.New(msg)
}

// Node names this instance.
func (e *Engine) Node() string { return e.cfg.Node }

// Ready reports whether Redis answers and this node's channel is
// subscribed.
func (e *Engine) Ready() bool {
	return e.started.Load() && !e.closed.Load() && e.up.Load() && e.subscribed.Load()
}

// Start connects, takes this node's lease, subscribes to its channel and
// starts the background work. If Redis does not answer, the engine starts
// down (not Ready, every call ErrEngineUnavailable) and keeps trying.
func (e *Engine) Start(host signaling.EngineHost) error {
	if host == nil {
		return errors.New("redisengine: Start: nil host")
	}
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("redisengine: Start called twice")
	}
	e.host = host
	e.rdb = redis.NewClient(e.opts)
	e.bg, e.stopBg = context.WithCancel(context.Background())
	e.out = make(chan *outbound, e.cfg.SendQueue)
	e.pubQuit = make(chan struct{})
	e.pubDone = make(chan struct{})
	if _, err := e.renew(true); err != nil {
		e.log.Warn("redis unreachable at start; matching waits for it", "err", err)
	} else {
		e.setUp()
	}
	e.bgDone.Add(2)
	go e.keeper()
	go e.subscriber()
	go e.publisher()
	// Ready as soon as the subscription is confirmed (bounded: otherwise
	// the keeper brings it up later).
	deadline := time.Now().Add(2 * e.cfg.Timeout)
	for e.up.Load() && !e.subscribed.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Close stops the background work and waits for it. With drain this
// node's sessions become orphans that other nodes' clients may claim
// within ResumeGrace (after which a reaper ends them); without, they end
// now and partners on other nodes are told.
func (e *Engine) Close(drain bool) error {
	if !e.started.Load() || !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	e.stopBg()
	e.closeSubscription()
	e.bgDone.Wait()
	var err error
	if e.up.Load() {
		err = e.leave(drain)
	}
	close(e.pubQuit)
	<-e.pubDone
	e.up.Store(false)
	e.m.up.Set(0)
	if cerr := e.rdb.Close(); cerr != nil && err == nil && !errors.Is(cerr, redis.ErrClosed) {
		err = fmt.Errorf("redisengine: close client: %w", cerr)
	}
	return err
}

// leave takes this node out of the cluster (see Close).
func (e *Engine) leave(drain bool) error {
	var res any
	err := e.roundTrip("leave", func(ctx context.Context) error {
		var err error
		res, err = leaveScript.Run(ctx, e.rdb, nil, keyPrefix, e.cfg.Node, flag(drain),
			e.cfg.ResumeGrace.Milliseconds(), e.cfg.RecentPartners, int64(recordTTL.Seconds())).Result()
		return err
	})
	if err != nil {
		return err
	}
	e.tellEnded(res, false)
	// The partners' nodes keep what they send to a drained session until
	// its client resumes it somewhere (kindMoved) instead of sending it
	// here, where nobody listens any more.
	if top, _ := res.([]any); len(top) == 3 {
		parts, _ := top[2].([]any)
		for _, x := range parts {
			if r := strs(x); len(r) == 2 {
				e.publish(r[1], &envelope{kind: kindDrained, f: []string{r[0]}})
			}
		}
	}
	return nil
}

// roundTrip runs f, one round trip, bounded by Timeout, unless the engine
// knows Redis is down. A failure of the connection marks it down.
func (e *Engine) roundTrip(what string, f func(ctx context.Context) error) error {
	if !e.up.Load() {
		return signaling.ErrEngineUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	e.m.roundTrip.Observe(time.Since(start).Seconds())
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	e.m.errors.Inc()
	if outage(err) {
		e.setDown(what, err)
		return fmt.Errorf("redisengine: %s: %w (%w)", what, signaling.ErrEngineUnavailable, err)
	}
	return fmt.Errorf("redisengine: %s: %w", what, err)
}

// outage tells a failure of the connection or of the server's state from
// an error reply to a command.
func outage(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // timeout, refused, reset, closed pool
	}
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOAUTH", "WRONGPASS"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

func (e *Engine) setUp() {
	if e.up.CompareAndSwap(false, true) {
		e.m.up.Set(1)
	}
}

func (e *Engine) setDown(what string, err error) {
	e.pubGen.Add(1)
	if e.up.CompareAndSwap(true, false) {
		e.m.up.Set(0)
		if e.bg.Err() == nil {
			e.log.Warn("redis unreachable: matching paused", "op", what, "err", err)
		}
	}
	e.closeSubscription()
}

// renew renews this node's lease. With force it bypasses the down check
// (the keeper finds Redis back with it). It reports whether the hub must
// resync: this node's lease had run out (the others took it for dead and
// orphaned its sessions), or Redis lost its data since the last renewal.
func (e *Engine) renew(force bool) (resync bool, err error) {
	var res []any
	call := func(ctx context.Context) error {
		var err error
		res, err = renewScript.Run(ctx, e.rdb, nil, keyPrefix, e.cfg.Node, e.cfg.LeaseTTL.Milliseconds(), sessionid.New(),
			comeBack.Milliseconds(), flag(e.epoch == ""), max(0, e.cfg.ResumeGrace-reapSlack).Milliseconds()).Slice()
		return err
	}
	if force {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
		defer cancel()
		start := time.Now()
		err = call(ctx)
		e.m.roundTrip.Observe(time.Since(start).Seconds())
		if err != nil {
			e.m.errors.Inc()
			err = fmt.Errorf("redisengine: renew lease: %w", err)
		}
	} else {
		err = e.roundTrip("renew lease", call)
	}
	if err != nil {
		return false, err
	}
	if len(res) != 4 {
		return false, errors.New("redisengine: renew lease: malformed reply")
	}
	had, _ := res[0].(int64)
	nodes, _ := res[1].(int64)
	epoch, _ := res[2].(string)
	if n, _ := res[3].(int64); n > 0 {
		e.log.Warn("sessions of an earlier process with this node id were left behind: they end after the resume grace unless resumed", "sessions", n)
	}
	e.m.nodes.Set(float64(nodes))
	lost := e.epoch != "" && epoch != e.epoch
	if lost {
		e.log.Warn("redis lost its data: registering every session again")
	} else if had == 0 && e.epoch != "" && !force {
		e.log.Warn("this node's lease had run out (taken for dead): registering every session again")
	}
	resync = lost || (had == 0 && e.epoch != "")
	e.epoch = epoch
	return resync, nil
}

// keeper renews the lease, reaps dead nodes, ends due orphans, prunes the
// route cache and, while Redis is down, tries it again; back up, it calls
// Resync. Owned by Start/Close.
func (e *Engine) keeper() {
	defer e.bgDone.Done()
	renewEvery := e.cfg.LeaseTTL / 5
	reapEvery := min(time.Second, renewEvery)
	orphanEvery := min(orphansEvery, reapEvery)
	tick := time.NewTicker(min(orphanEvery, pingEvery) / 2)
	defer tick.Stop()
	var lastRenew, lastReap, lastOrphans, lastPing, lastPrune time.Time
	wasUp := e.up.Load()
	for {
		select {
		case <-e.bg.Done():
			return
		case now := <-tick.C:
			if !e.up.Load() {
				wasUp = false
				if now.Sub(lastPing) < pingEvery {
					continue
				}
				lastPing = now
				if _, err := e.renew(true); err != nil {
					continue
				}
				lastRenew = now
				e.setUp()
				e.log.Info("redis reachable again: matching resumes")
			}
			if !wasUp {
				// The subscriber resubscribes now that the engine is up;
				// Resync once it has, so that nothing paired meanwhile is
				// missed (bounded: a slow subscription does not hold it).
				deadline := time.Now().Add(2 * e.cfg.Timeout)
				for !e.subscribed.Load() && e.up.Load() && time.Now().Before(deadline) && e.bg.Err() == nil {
					time.Sleep(5 * time.Millisecond)
				}
				wasUp = true
				e.host.Resync()
			}
			if now.Sub(lastRenew) >= renewEvery {
				lastRenew = now
				resync, err := e.renew(false)
				if err != nil {
					continue
				}
				if resync {
					e.host.Resync()
				}
			}
			if now.Sub(lastReap) >= reapEvery {
				lastReap = now
				e.reap()
			}
			if now.Sub(lastOrphans) >= orphanEvery {
				lastOrphans = now
				e.endOrphans()
			}
			if now.Sub(lastPrune) >= time.Second {
				lastPrune = now
				e.routes.prune(now)
			}
			for _, id := range e.routes.expiredHolds(now, e.holdWait()) {
				// The subscriber releases them, in order with the rest.
				e.publish(e.cfg.Node, &envelope{kind: kindFlush, f: []string{id}})
			}
		}
	}
}

// reap takes dead nodes out of the cluster (their sessions become
// orphans); only the node whose script removes a lease acts on it.
func (e *Engine) reap() {
	var dead []string
	err := e.roundTrip("reap", func(ctx context.Context) error {
		var err error
		dead, err = reapScript.Run(ctx, e.rdb, nil, keyPrefix, max(0, e.cfg.ResumeGrace-reapSlack).Milliseconds(),
			e.cfg.LeaseTTL.Milliseconds(), comeBack.Milliseconds()).StringSlice()
		return err
	})
	if err != nil {
		return
	}
	for _, n := range dead {
		e.log.Warn("node lease expired: its sessions end unless resumed elsewhere", "dead", n, "grace", e.cfg.ResumeGrace)
	}
}

// endOrphans ends the orphans that are due, telling their partners and
// every live node.
func (e *Engine) endOrphans() {
	var res any
	err := e.roundTrip("end orphans", func(ctx context.Context) error {
		var err error
		res, err = orphansScript.Run(ctx, e.rdb, nil, keyPrefix, e.cfg.RecentPartners, int64(recordTTL.Seconds()), orphansBatch).Result()
		return err
	})
	if err != nil {
		return
	}
	e.tellEnded(res, true)
}

// tellEnded tells, for each session a script ended ({results, live
// nodes}), its partner's node (if live) that the partner left, and every
// live node (this one too, when self) that it ended.
func (e *Engine) tellEnded(res any, self bool) {
	top, _ := res.([]any)
	if len(top) < 2 {
		return
	}
	ended, _ := top[0].([]any)
	live := map[string]bool{}
	for _, n := range strs(top[1]) {
		live[n] = true
	}
	e.m.nodes.Set(float64(len(live)))
	for _, x := range ended {
		r := strs(x)
		if len(r) != 4 {
			continue
		}
		id, partner, match, pnode := r[0], r[1], r[2], r[3]
		if partner != "" && live[pnode] {
			e.publish(pnode, &envelope{kind: kindLeft, f: []string{partner, match, string(signaling.LeftDisconnected), id}})
		}
		e.routes.forget(id)
		for n := range live {
			if n != e.cfg.Node || self {
				e.publish(n, &envelope{kind: kindEnded, f: []string{id, "0"}})
			}
		}
	}
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// strs converts a script's array of strings.
func strs(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
