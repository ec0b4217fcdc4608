package signaling

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a client message was not acted on or a message not delivered
// (the reason label of strangers_dropped_messages_total).
const (
	dropStale       = "stale_match"  // named a match other than the sender's current one
	dropNoMatch     = "not_in_match" // the sender is in no match at all
	dropRelayOnly   = "relay_only"   // a non-relay candidate from a relayOnly sender
	dropRateLimited = "rate_limited" // over the sender's token bucket
	dropResumeQueue = "resume_queue" // the detached recipient's resume queue was full
	dropClosed      = "closed"       // the recipient's connection was closing
	dropInvalid     = "invalid"      // failed Decode
	dropBeforeHello = "before_hello" // anything but hello as a first message
	dropState       = "bad_state"    // made no sense in the session's state
	dropICEAddress  = "ice_address"  // an ice request over its client address's budget
)

// Reasons an upgrade was refused (HTTP status in brackets).
const (
	rejectShutdown = "shutdown"  // 503
	rejectPerIP    = "per_ip"    // 429
	rejectOrigin   = "origin"    // 403
	rejectUpgrade  = "handshake" // 400 and others, answered by the upgrader
)

// metrics are registered on Config.Registerer. Label values come from fixed
// sets; nothing is labelled per session.
type metrics struct {
	sessions     prometheus.Gauge
	connections  prometheus.Gauge
	waiting      *prometheus.GaugeVec
	matches      prometheus.Counter
	timeToMatch  prometheus.Histogram
	messages     *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	closes       *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	rateLimited  prometheus.Counter
	reports      prometheus.Counter
	resumes      *prometheus.CounterVec
	iceErrors    prometheus.Counter
	forgedKeys   prometheus.Counter
	bansEnforced prometheus.Counter
	cooldowns    prometheus.Counter
	engineErrors *prometheus.CounterVec
	refused      prometheus.Counter

	// Children looked up once.
	msgByType                 map[MsgType]prometheus.Counter // read concurrently, never written after newMetrics
	waitingVideo, waitingText prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strangers_sessions", Help: "Sessions that said hello and have not ended (attached or within their resume grace).",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strangers_connections", Help: "Open WebSocket connections.",
		}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strangers_waiting", Help: "Sessions waiting for a partner, by mode.",
		}, []string{"mode"}),
		matches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_matches_total", Help: "Matches made (with a shared engine: by this node, so that the nodes' sum is the cluster's).",
		}),
		timeToMatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strangers_time_to_match_seconds",
			Help:    "Time from entering the queue to being matched, per side.",
			Buckets: []float64{.001, .005, .02, .1, .5, 1, 2, 5, 10, 30, 60, 300},
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strangers_messages_total", Help: "Messages received from clients, by type (invalid: failed to decode).",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strangers_dropped_messages_total", Help: "Client messages not acted on or not delivered, by reason.",
		}, []string{"reason"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strangers_closes_total", Help: "WebSocket connections ended, by reason.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strangers_rejected_upgrades_total", Help: "WebSocket upgrades refused, by reason.",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_rate_limit_hits_total", Help: "Messages and control frames dropped by a connection's token bucket.",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_reports_total", Help: "Reports of a partner.",
		}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strangers_resumes_total", Help: "Hellos with a resume token, by outcome (ok, unknown).",
		}, []string{"outcome"}),
		iceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_ice_server_errors_total", Help: "Matches announced without ICE servers because the provider failed.",
		}),
		forgedKeys: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_client_keys_replaced_total", Help: "Hellos whose client key was forged or damaged and was replaced by a fresh one.",
		}),
		bansEnforced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_bans_enforced_total", Help: "Sessions and connections ended or refused because their client is banned.",
		}),
		cooldowns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_cooldowns_total", Help: "Cooldowns started because a client sent more finds and nexts in a minute than the skip limit.",
		}),
		engineErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strangers_engine_errors_total", Help: "Matchmaking engine calls that failed, by operation (with Redis: also while it is down).",
		}, []string{"op"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_pairings_refused_total", Help: "Pairings this node refused, because a session of it was already in a match, no longer waiting, or gone.",
		}),
	}
	for _, c := range []prometheus.Collector{
		m.forgedKeys, m.bansEnforced, m.cooldowns, m.engineErrors, m.refused,
		m.sessions, m.connections, m.waiting, m.matches, m.timeToMatch, m.messages,
		m.dropped, m.closes, m.rejected, m.rateLimited, m.reports, m.resumes, m.iceErrors,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("signaling: registering metrics: %w", err)
		}
	}
	m.msgByType = make(map[MsgType]prometheus.Counter)
	for _, t := range []MsgType{TypeHello, TypeFind, TypeNext, TypeStop, TypeSignal, TypeChat, TypeTyping, TypeMedia, TypeReport, TypeICE, "invalid"} {
		m.msgByType[t] = m.messages.WithLabelValues(string(t))
	}
	m.waitingVideo = m.waiting.WithLabelValues(string(ModeVideo))
	m.waitingText = m.waiting.WithLabelValues(string(ModeText))
	return m, nil
}

func (m *metrics) message(t MsgType) {
	if c, ok := m.msgByType[t]; ok {
		c.Inc()
	}
}

func (m *metrics) drop(reason string) { m.dropped.WithLabelValues(reason).Inc() }
