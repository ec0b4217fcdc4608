package redisengine

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on Config.Registerer. Nothing is labelled.
type metrics struct {
	roundTrip prometheus.Histogram
	errors    prometheus.Counter
	up        prometheus.Gauge
	lag       prometheus.Histogram
	dropped   prometheus.Counter
	nodes     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		roundTrip: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strangers_redis_round_trip_seconds",
			Help:    "Time of each round trip to Redis (a script, for a batch of calls or another, a lookup; for publishes written at once, from the write to the last reply), failed ones included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_redis_errors_total",
			Help: "Round trips to Redis that failed (timeout, refused, reset, or an error reply, for a batch or one of its calls), and lost subscriptions.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strangers_redis_up",
			Help: "1 while Redis answers (matching works), 0 while it does not.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strangers_pubsub_lag_seconds",
			Help:    "Time from a node publishing a message to another node (or itself) to its receipt.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strangers_pubsub_dropped_total",
			Help: "Messages for other nodes not published: the send queue was full, Redis was down, or the recipient's node was unknown.",
		}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strangers_cluster_nodes",
			Help: "Nodes alive in the cluster (holding a lease), this one included.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.roundTrip, m.errors, m.up, m.lag, m.dropped, m.nodes} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("redisengine: metrics already registered (one engine per registry): %w", err)
			}
			return nil, fmt.Errorf("redisengine: register metrics: %w", err)
		}
	}
	return m, nil
}
