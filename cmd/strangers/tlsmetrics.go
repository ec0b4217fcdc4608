package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/strangers-chat/strangers/internal/tlsmux"
)

// Reasons the shared TLS port refuses a connection before classifying it,
// the "reason" label of strangers_tls_refused_total.
const (
	tlsRefusedPerIP   = "per_ip"  // the client (IPv6: its /64) holds too many unclassified connections
	tlsRefusedPending = "pending" // too many unclassified connections in all
)

// muxRefusals exports the connections m refused, by reason.
func muxRefusals(m *tlsmux.Mux) []prometheus.Collector {
	counter := func(reason string, read func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "strangers_tls_refused_total",
			Help:        "Connections the shared TLS port closed before the TLS handshake, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(read()) })
	}
	return []prometheus.Collector{
		counter(tlsRefusedPerIP, func() uint64 { perIP, _ := m.Refused(); return perIP }),
		counter(tlsRefusedPending, func() uint64 { _, pending := m.Refused(); return pending }),
	}
}
