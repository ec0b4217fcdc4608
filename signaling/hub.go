package signaling

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// ICEProvider mints ICE servers (with fresh TURN credentials) for one
// session; called once per side at match time (and for an ice request),
// from the hub's owner goroutine, so it must be quick (no network round
// trips).
type ICEProvider interface {
	ICEServers(sessionID string) ([]ICEServer, error)
}

// SessionObserver is told when a session starts (after hello) and when it
// ends for good (stop+close, or the resume grace expired). The relay uses it
// to refuse credentials of departed sessions. Called from the hub's owner
// goroutine: it must be quick and must not call back into the hub.
type SessionObserver interface {
	SessionStarted(sessionID string)
	SessionEnded(sessionID string)
}

// Config configures a Hub. Zero fields take the defaults given. Validate
// states the rules every field must follow.
type Config struct {
	// ICE mints the ICE servers announced in matched. Nil: matched carries
	// an empty iceServers list.
	ICE ICEProvider
	// Sessions is told when sessions start and end. Nil: nobody is told.
	Sessions SessionObserver
	// Engine holds the waiting pool, pairing and session records (see
	// Engine). Nil: the memory engine, in process. An engine with a Node
	// name is shared with other instances: Shutdown then drains (the
	// sessions stay claimable on other nodes for ResumeGrace) instead of
	// ending every session.
	Engine Engine
	// AllowedOrigins lists the origins (like "https://chat.example.com")
	// whose pages may open a WebSocket; "*" allows any. Empty: only pages
	// served from the host the request was sent to (Origin host == Host).
	// Requests without an Origin header (not from a browser) are allowed.
	AllowedOrigins []string
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// counting connections per IP. Empty: the TCP peer address is used.
	TrustedProxies []netip.Prefix

	// IdentityKey signs client keys and keys the hashes of client
	// addresses (see Identity); at least IdentityKeyLen bytes. Keep it
	// across restarts, or every browser gets a new key. Nil: random.
	IdentityKey []byte

	// Moderator decides bans and the shadow pool and records reports (see
	// Moderator). Nil: no bans, no shadow pool, reports only keep the two
	// apart.
	Moderator Moderator
	// NextRate is how many finds and nexts one client key may send in a
	// minute; one more starts a cooldown of NextCooldown. Negative: no
	// limit. Default 20: a person who looks at each stranger for three
	// seconds stays below it; a script cycling through everyone does not.
	NextRate int
	// NextCooldown is how long a client over NextRate is not queued.
	// Default 30s.
	NextCooldown time.Duration

	// InterestWait is how long a session with interests waits for someone
	// sharing one before it may be paired with anyone, and how long any
	// waiting session keeps away from its recent partners before it may
	// meet one again (only if nobody else is waiting). Default 5s.
	InterestWait time.Duration
	// ResumeGrace is how long a session outlives its connection, waiting
	// for hello{resume}. Default 15s.
	ResumeGrace time.Duration
	// RestartRetry is the hint Shutdown gives every client in its
	// restarting message: how long to wait before reconnecting (a restart
	// usually takes a few seconds). Default 2s.
	RestartRetry time.Duration
	// RecentPartners is how many past partners a session will not be paired
	// with again, unless it has waited InterestWait and nobody else is
	// waiting. Default 3. Reported partners are never paired again.
	RecentPartners int

	// MaxMessageSize caps a client frame in bytes; a larger one closes the
	// connection with 1009. From 4 KiB (an SDP must fit) to 256 KiB.
	// Default 64 KiB.
	MaxMessageSize int64
	// RateLimit is the sustained messages per second a connection may
	// send. Default 20.
	RateLimit float64
	// RateBurst is the token bucket size: a burst of ICE candidates must
	// fit, so at least 10. Default 60.
	RateBurst int
	// MaxConnsPerIP caps concurrent connections per client IP (IPv6: per
	// /64); more get HTTP 429. Default 32.
	MaxConnsPerIP int
	// HandshakeTimeout bounds writing the upgrade response. Default 10s.
	HandshakeTimeout time.Duration
	// HelloTimeout is how long a new connection has to send its hello.
	// Default 10s.
	HelloTimeout time.Duration
	// PingInterval is how often the server pings, at least 100ms. Default
	// 20s.
	PingInterval time.Duration
	// PongWait is how long a connection may stay silent (no pong, no
	// message) after its hello before it is dropped; more than
	// PingInterval. Default 30s.
	PongWait time.Duration
	// WriteWait bounds every write; a client that cannot take a message in
	// that time is dropped. Default 10s.
	WriteWait time.Duration
	// SendQueue bounds the messages waiting to be written to one
	// connection (and those kept for a detached session); a client that
	// lets it fill is dropped. Default 256.
	SendQueue int
	// StatsInterval is the least time between two stats pushes, at least
	// 100ms; stats are pushed only when they changed. Default 5s.
	StatsInterval time.Duration
	// ReadBufferSize and WriteBufferSize size the WebSocket buffers. The
	// read buffer is held for the connection's life (larger messages are
	// read past it), write buffers only while writing (they are pooled).
	// At most 1 MiB each. Defaults 512 bytes and 4 KiB.
	ReadBufferSize, WriteBufferSize int

	// Logger receives the hub's logs. Nil: discard.
	Logger *slog.Logger
	// Registerer receives the hub's metrics. Nil: a private registry.
	Registerer prometheus.Registerer
	// Rand drives pairing and role choice; set a seeded one in tests. It is
	// used only by the hub's owner goroutine. Nil: seeded from crypto/rand.
	Rand *rand.Rand

	// onMatch, for tests, is called from the owner goroutine with every
	// match made and the session ids of its two sides.
	onMatch func(match, a, b string)
	// batchAll, for tests, makes the hub take even the memory engine's
	// results later, through a batcher, as it does a Batcher's.
	batchAll bool
}

// fill validates c (see Validate) and fills in its defaults.
func (c *Config) fill() error {
	if err := c.Validate(); err != nil {
		return err
	}
	*c = c.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Rand == nil {
		var seed [16]byte
		crand.Read(seed[:])
		c.Rand = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	return nil
}

// Hub serves the signaling WebSocket and runs the matchmaker.
type Hub struct {
	// Static after New.
	cfg       Config
	log       *slog.Logger
	m         *metrics
	origins   originPolicy
	upgrader  websocket.Upgrader
	limits    Limits
	keys      keyring
	events    chan event    // decode shards to the owner goroutine
	quit      chan struct{} // closed by Shutdown once connections are gone
	ownerDone chan struct{} // closed when the owner goroutine has returned

	// Guarded by mu.
	mu        sync.Mutex
	shutdown  bool
	perIP     map[netip.Addr]int
	pingSlots []map[*conn]struct{} // every connection, in the slot it is pinged in (made by New)
	conns     int                  // connections open (in pingSlots)
	connCount uint64               // connections ever accepted

	// Made by New; Shutdown closes the shards and waits for each group.
	shards  []chan frame   // decode shards (decode.go); closed by Shutdown
	connWG  sync.WaitGroup // per connection: its read loop, and its write loop while one runs
	shardWG sync.WaitGroup // one per shard
	bgWG    sync.WaitGroup // the pinger and askCounts' goroutine

	// Owned by the owner goroutine (see owner.go).
	sessions  map[string]*session         // by resume token
	byID      map[string]*session         // the same, by session id
	away      map[string]struct{}         // sessions that moved to another node: the relay here still honours them until they end
	iceByAddr map[netip.Addr]*tokenBucket // ice requests by client address, see icelimit.go
	skipLogs  map[string]*skipLog         // finds and nexts by client key, see skiplimit.go
	engine    Engine                      // cfg.Engine, or the memory engine; its own methods say which goroutine may call them
	batch     *batcher                    // set by New when engine is a Batcher; closed by Shutdown after the owner stops
	node      string                      // engine.Node()

	// This node's sessions in the pool, by mode and in the shadow pool.
	waitingVideo, waitingText, waitingShadow int
	lastCounts                               EngineCounts // the cluster's, as last asked
	countsAsked                              bool         // askCounts is waiting for the engine's answer
	deadlines                                deadlineHeap
	timer                                    *time.Timer
	timerAt                                  time.Time // when timer fires; zero: stopped

	lastStats  Stats   // last pushed
	statsTicks int     // statsTick calls
	statsData  []byte  // lastStats, encoded
	statsTo    []*conn // the connections to send statsData; kept whole so its array is reused
	statsNext  int     // statsTo[statsNext:] are still to be sent
	statsChunk int     // how many of statsTo per tick
}

// New validates cfg, fills defaults and starts the matchmaker's owner
// goroutine. Call Shutdown to stop it.
func New(cfg Config) (*Hub, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	origins, err := newOriginPolicy(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "signaling"),
		m:       m,
		origins: origins,
		upgrader: websocket.Upgrader{
			HandshakeTimeout: cfg.HandshakeTimeout,
			ReadBufferSize:   cfg.ReadBufferSize,
			WriteBufferSize:  cfg.WriteBufferSize,
			WriteBufferPool:  new(sync.Pool),
			CheckOrigin:      func(*http.Request) bool { return true }, // checked before Upgrade
		},
		limits: Limits{
			MaxMessageSize: cfg.MaxMessageSize,
			RateLimit:      cfg.RateLimit,
			RateBurst:      cfg.RateBurst,
			MaxInterests:   MaxInterests,
			MaxInterestLen: MaxInterestLen,
			MaxChatLen:     MaxChatLen,
			InterestWaitMs: cfg.InterestWait.Milliseconds(),
			ResumeGraceMs:  cfg.ResumeGrace.Milliseconds(),
			MaxNoteLen:     MaxNoteLen,
			MaxFrameBytes:  maxFrame(cfg.MaxMessageSize),
			NextRate:       max(0, cfg.NextRate),
		},
		keys:      newKeyring(cfg.IdentityKey),
		events:    make(chan event, 1024),
		quit:      make(chan struct{}),
		ownerDone: make(chan struct{}),
		perIP:     make(map[netip.Addr]int),
		sessions:  make(map[string]*session),
		iceByAddr: make(map[netip.Addr]*tokenBucket),
		skipLogs:  make(map[string]*skipLog),
		byID:      make(map[string]*session),
		away:      make(map[string]struct{}),
		engine:    cfg.Engine,
		timer:     time.NewTimer(time.Hour),
	}
	h.timer.Stop()
	if h.engine == nil {
		h.engine = NewMemoryEngine(MemoryConfig{RecentPartners: cfg.RecentPartners, Rand: cfg.Rand})
	}
	h.node = h.engine.Node()
	if err := h.engine.Start(engineHost{h}); err != nil {
		return nil, fmt.Errorf("signaling: starting the matchmaking engine: %w", err)
	}
	if cfg.batchAll {
		if _, ok := h.engine.(Batcher); !ok {
			h.engine = &eachBatcher{Engine: h.engine}
		}
	}
	if b, ok := h.engine.(Batcher); ok {
		h.batch = newBatcher(h, b)
	}
	h.pingSlots = make([]map[*conn]struct{}, pingSlotsFor(h.cfg.PingInterval))
	for i := range h.pingSlots {
		h.pingSlots[i] = make(map[*conn]struct{})
	}
	h.shards = make([]chan frame, min(64, max(2, 2*runtime.GOMAXPROCS(0))))
	for i := range h.shards {
		h.shards[i] = make(chan frame, shardQueue)
		h.shardWG.Add(1)
		go h.runShard(h.shards[i])
	}
	h.bgWG.Add(1)
	go h.pinger()
	go h.run()
	return h, nil
}

// pingTick is the ping interval's granularity: connections go into one
// slot per pingTick of the interval, and every slot is pinged once per
// interval. No connection needs a timer of its own.
//
// The pinger wakes for about pingBatch connections at a time, taking as
// many slots as that needs: a few writes (and their pongs) at a time, not
// a burst of thousands that every message arriving meanwhile would queue
// behind, nor a wake-up every pingTick for a handful of connections (a
// wake-up costs more than a ping on a busy host). With few connections it
// wakes at least pingWakes times per interval.
const (
	pingTick     = 16 * time.Millisecond
	pingBatch    = 16
	pingWakes    = 64
	maxPingSlots = 4096
)

// pingSlotsFor is how many slots connections are split into for a ping
// interval: one per pingTick.
func pingSlotsFor(interval time.Duration) int {
	return int(min(maxPingSlots, max(1, interval/pingTick)))
}

// pingStride is how many of slots the pinger takes in one wake-up with
// conns connections: enough for about pingBatch of them, and at most
// slots/pingWakes.
func pingStride(slots, conns int) int {
	return max(1, min(slots/pingWakes, pingBatch*slots/max(1, conns)))
}

func (h *Hub) pinger() {
	defer h.bgWG.Done()
	slots := len(h.pingSlots)
	tick := h.cfg.PingInterval / time.Duration(slots)
	next := time.Now().Add(tick) // the wake-ups keep to this schedule
	timer := time.NewTimer(tick)
	defer timer.Stop()
	var batch []*conn
	for slot := 0; ; {
		select {
		case <-timer.C:
		case <-h.quit:
			return
		}
		h.mu.Lock()
		stride := pingStride(slots, h.conns)
		for range stride {
			for c := range h.pingSlots[slot] {
				batch = append(batch, c)
			}
			slot = (slot + 1) % slots
		}
		h.mu.Unlock()
		// Each slot is pinged once per pass, and a pass takes the interval:
		// the next wake-up is as many ticks after this one was due as slots
		// were taken, so that late wake-ups do not add up over a pass (a
		// connection would go unpinged for longer than the interval). After
		// a stall of more than a whole pass, it starts afresh.
		next = next.Add(time.Duration(stride) * tick)
		if now := time.Now(); now.Sub(next) > h.cfg.PingInterval {
			next = now
		}
		timer.Reset(time.Until(next))
		for _, c := range batch {
			c.ping()
		}
		clear(batch)
		batch = batch[:0]
	}
}

// ServeHTTP upgrades the request to the signaling WebSocket.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip := clientAddr(r, h.cfg.TrustedProxies)
	h.mu.Lock()
	switch {
	case h.shutdown:
		h.mu.Unlock()
		h.m.rejected.WithLabelValues(rejectShutdown).Inc()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	case h.perIP[ip] >= h.cfg.MaxConnsPerIP:
		h.mu.Unlock()
		h.m.rejected.WithLabelValues(rejectPerIP).Inc()
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
		return
	}
	h.perIP[ip]++
	h.mu.Unlock()
	release := func() {
		h.mu.Lock()
		if h.perIP[ip]--; h.perIP[ip] <= 0 {
			delete(h.perIP, ip)
		}
		h.mu.Unlock()
	}

	if !h.origins.allow(r) {
		release()
		h.m.rejected.WithLabelValues(rejectOrigin).Inc()
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	meter := func(c net.Conn) net.Conn { return newFrameMeter(c, h.cfg.RateLimit, h.cfg.RateBurst) }
	ws, err := h.upgrader.Upgrade(meteredWriter{ResponseWriter: w, meter: meter}, r, nil)
	if err != nil {
		release() // the upgrader has answered
		h.m.rejected.WithLabelValues(rejectUpgrade).Inc()
		return
	}

	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		release()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "shutting down"), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	h.connCount++
	c := newConn(h, ws, ip, h.connCount)
	h.pingSlots[c.slot][c] = struct{}{}
	h.conns++
	h.connWG.Add(1)
	h.mu.Unlock()
	h.m.connections.Inc()
	// The handler returns now, so that net/http's per-connection state and
	// buffers are freed; the connection lives on in its read loop (and a
	// write loop when there is something to write).
	go c.readLoop()
}

// Shutdown stops accepting connections (new upgrades get 503), tells every
// connection that has said hello that the server is restarting (a
// restarting message with Config.RestartRetry as the hint), closes every
// connection with 1001 "going away", waits for their goroutines and stops
// the hub's own (decode shards, pinger, owner), ending every session. If ctx
// ends first, the remaining connections are dropped without ceremony and
// ctx's error is returned. Afterwards no goroutine of the hub is left.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		return ErrShutdown
	}
	h.shutdown = true
	var conns []*conn
	for _, slot := range h.pingSlots {
		for c := range slot {
			conns = append(conns, c)
		}
	}
	h.mu.Unlock()

	restarting := encode(&Restarting{Type: TypeRestarting, RetryIn: h.cfg.RestartRetry.Milliseconds()})
	for _, c := range conns {
		if c.helloed.Load() {
			c.send(restarting) // the write loop flushes it before the close frame
		}
		c.closeWith(CloseGoingAway, "server shutting down", reasonShutdown)
	}
	done := make(chan struct{})
	go func() {
		h.connWG.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		for _, c := range conns {
			c.kill(reasonShutdown)
		}
		<-done
	}
	// No read loop is left to send a frame: let the shards finish theirs
	// (they may still post to the owner), then stop the owner and pinger.
	for _, q := range h.shards {
		close(q)
	}
	h.shardWG.Wait()
	close(h.quit)
	<-h.ownerDone
	h.bgWG.Wait()
	if h.batch != nil {
		h.batch.close()
	}
	if cerr := h.engine.Close(h.node != ""); cerr != nil && err == nil {
		err = fmt.Errorf("signaling: closing the matchmaking engine: %w", cerr)
	}
	return err
}

// Ready reports whether the hub can pair new finds now: false while a
// shared engine's backend is down. Safe from any goroutine.
func (h *Hub) Ready() bool {
	return h.cfg.Engine == nil || h.cfg.Engine.Ready()
}

// post hands an event to the owner goroutine; false once the hub stopped.
func (h *Hub) post(ev event) bool {
	select {
	case h.events <- ev:
		return true
	case <-h.quit:
		return false
	}
}

// newID returns n random bytes from crypto/rand, base64url without padding.
func newID(n int) string {
	b := make([]byte, n)
	crand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
