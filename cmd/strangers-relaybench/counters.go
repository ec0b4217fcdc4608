//go:build linux

package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// relayCounters reads the packet counters of one in-process relay, so each
// run of ours can say where datagrams went: relayed to peers, from peers,
// handed over in process, or dropped by the relay and why. Datagrams lost
// before the relay read them (socket receive buffers, TCP not read in
// time) or after it sent them do not show here.
type relayCounters struct {
	reg *prometheus.Registry
}

// snapshot returns the counters of packets and of closed stream
// connections, keyed "name{label=value,...}" without the strangers_relay_
// prefix.
func (c relayCounters) snapshot() (map[string]float64, error) {
	mfs, err := c.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("relay metrics: %w", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		name := strings.TrimPrefix(mf.GetName(), "strangers_relay_")
		if !(strings.Contains(name, "packets") || strings.Contains(name, "conns_closed")) || mf.GetType().String() != "COUNTER" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := strings.TrimSuffix(strings.TrimSuffix(name, "_total"), "_packets")
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = m.GetCounter().GetValue()
		}
	}
	return out, nil
}

// counterDelta formats the counters that changed between two snapshots.
func counterDelta(before, after map[string]float64) string {
	var parts []string
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			parts = append(parts, fmt.Sprintf("%s=%.0f", k, d))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
