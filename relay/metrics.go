package relay

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/relay/internal/plane"
)

// Directions of relayed traffic, the "direction" label of bytes_total and
// packets_total.
const (
	dirFromPeer = "from_peer" // received on a relay socket, forwarded to the client
	dirToPeer   = "to_peer"   // received from the client, sent from a relay socket
)

// metrics holds the relay's Prometheus metrics. None is labelled by
// username or session: REST usernames are ephemeral and would leak series.
type metrics struct {
	reg            prometheus.Registerer
	collectors     []prometheus.Collector
	allocCreated   prometheus.Counter
	allocFailed    *prometheus.CounterVec // reason: see server.go
	authFailures   *prometheus.CounterVec // reason: see auth.go
	peerDenied     *prometheus.CounterVec // reason: reserved, host
	quotaHits      *prometheus.CounterVec // kind: see quota.go
	tcpRejected    *prometheus.CounterVec // reason: per_ip, first_message, idle, frame
	repliesDropped *prometheus.CounterVec // reason: see reply.go
	dropped        *prometheus.CounterVec // direction, reason: see admit.go

	peerDeniedReserved, peerDeniedHost prometheus.Counter // children of peerDenied
}

func newMetrics(reg prometheus.Registerer, activeAllocs func() float64, traffic *trafficCounters) (*metrics, error) {
	const ns, sub = "strangers", "relay"
	m := &metrics{
		reg: reg,
		allocCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "allocations_created_total",
			Help: "TURN allocations created.",
		}),
		allocFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "allocations_failed_total",
			Help: "Authenticated Allocate requests that did not create an allocation, by reason.",
		}, []string{"reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_failures_total",
			Help: "Refused TURN authentications, by reason.",
		}, []string{"reason"}),
		peerDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "peer_denied_total",
			Help: "Permissions, channel binds and sends refused by the peer policy, by reason.",
		}, []string{"reason"}),
		quotaHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "quota_hits_total",
			Help: "Requests refused because a quota was reached, by kind.",
		}, []string{"kind"}),
		tcpRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stream_conns_closed_total",
			Help: "TURN-over-TCP connections refused or closed by the listener hardening, by reason.",
		}, []string{"reason"}),
		repliesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "responses_dropped_total",
			Help: "Responses to unauthenticated requests not sent, by reason.",
		}, []string{"reason"}),
		dropped: newDroppedVec(),
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "allocations_active",
		Help: "TURN allocations currently live.",
	}, activeAllocs)
	m.collectors = []prometheus.Collector{
		m.allocCreated, m.allocFailed, m.authFailures, m.peerDenied, m.quotaHits, m.tcpRejected,
		m.repliesDropped, m.dropped, active, traffic,
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("relay: registering metrics: %w", err)
		}
	}
	// Pre-create the label values so dashboards see zeros.
	m.peerDeniedReserved = m.peerDenied.WithLabelValues(deniedReserved)
	m.peerDeniedHost = m.peerDenied.WithLabelValues(deniedHost)
	for _, r := range []string{authRealm, authMalformed, authExpired, authFuture, authSession, authIntegrity} {
		m.authFailures.WithLabelValues(r)
	}
	for _, k := range []string{quotaSession, quotaClientIP, quotaTotal, quotaPermissions, quotaChannels} {
		m.quotaHits.WithLabelValues(k)
	}
	for _, r := range []string{failQuotaSession, failQuotaClientIP, failQuotaTotal, failSessionEnded, failRelay} {
		m.allocFailed.WithLabelValues(r)
	}
	for _, r := range []string{dropAmplification, dropRateLimited} {
		m.repliesDropped.WithLabelValues(r)
	}
	return m, nil
}

func newDroppedVec() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "strangers", Subsystem: "relay", Name: "dropped_packets_total",
		Help: "Datagrams between clients and peers not relayed, by direction and reason: no live permission for the peer, or over the bitrate cap.",
	}, []string{"direction", "reason"})
}

func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

// trafficCounters exports bytes and packets relayed. Each relay socket
// counts into its own atomics (no shared cache line, no lock on the packet
// path); Collect sums the live sockets and the totals of closed ones.
type trafficCounters struct {
	bytesDesc, packetsDesc, handedDesc *prometheus.Desc

	mu      sync.Mutex
	live    map[*relayConn]struct{} // guarded by mu
	retired trafficSnapshot         // guarded by mu
}

type trafficSnapshot struct {
	bytesFrom, packetsFrom, bytesTo, packetsTo, handed uint64
}

// snapshot reads the counters of a relay socket's data plane. Handed
// counts the datagrams to peers (also in PacketsTo) handed over in
// process to another relay socket of ours.
func snapshot(c *plane.Counters) trafficSnapshot {
	return trafficSnapshot{
		bytesFrom: c.BytesFrom.Load(), packetsFrom: c.PacketsFrom.Load(),
		bytesTo: c.BytesTo.Load(), packetsTo: c.PacketsTo.Load(),
		handed: c.Handed.Load(),
	}
}

func (t *trafficSnapshot) add(o trafficSnapshot) {
	t.bytesFrom += o.bytesFrom
	t.packetsFrom += o.packetsFrom
	t.bytesTo += o.bytesTo
	t.packetsTo += o.packetsTo
	t.handed += o.handed
}

func newTrafficCounters() *trafficCounters {
	return &trafficCounters{
		bytesDesc: prometheus.NewDesc("strangers_relay_bytes_total",
			"Payload bytes relayed, by direction.", []string{"direction"}, nil),
		packetsDesc: prometheus.NewDesc("strangers_relay_packets_total",
			"Datagrams relayed, by direction.", []string{"direction"}, nil),
		handedDesc: prometheus.NewDesc("strangers_relay_handed_over_packets_total",
			"Datagrams between two relay addresses of this server handed over in process (also in packets_total).", nil, nil),
		live: make(map[*relayConn]struct{}),
	}
}

func (t *trafficCounters) attach(c *relayConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live[c] = struct{}{}
}

func (t *trafficCounters) detach(c *relayConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.live[c]; ok {
		delete(t.live, c)
		t.retired.add(snapshot(&c.pl.Counters))
	}
}

// total returns the current totals.
func (t *trafficCounters) total() trafficSnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	sum := t.retired
	for c := range t.live {
		sum.add(snapshot(&c.pl.Counters))
	}
	return sum
}

// Describe implements prometheus.Collector.
func (t *trafficCounters) Describe(ch chan<- *prometheus.Desc) {
	ch <- t.bytesDesc
	ch <- t.packetsDesc
	ch <- t.handedDesc
}

// Collect implements prometheus.Collector.
func (t *trafficCounters) Collect(ch chan<- prometheus.Metric) {
	sum := t.total()
	for _, v := range []struct {
		desc *prometheus.Desc
		val  uint64
		dir  string
	}{
		{t.bytesDesc, sum.bytesFrom, dirFromPeer},
		{t.bytesDesc, sum.bytesTo, dirToPeer},
		{t.packetsDesc, sum.packetsFrom, dirFromPeer},
		{t.packetsDesc, sum.packetsTo, dirToPeer},
	} {
		m, err := prometheus.NewConstMetric(v.desc, prometheus.CounterValue, float64(v.val), v.dir)
		if err != nil {
			m = prometheus.NewInvalidMetric(v.desc, err)
		}
		ch <- m
	}
	m, err := prometheus.NewConstMetric(t.handedDesc, prometheus.CounterValue, float64(sum.handed))
	if err != nil {
		m = prometheus.NewInvalidMetric(t.handedDesc, err)
	}
	ch <- m
}
