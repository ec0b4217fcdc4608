//go:build linux

package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

func (r result) loss() float64 {
	if r.sent == 0 {
		return 100
	}
	return 100 * float64(r.sent-r.recv) / float64(r.sent)
}

// cpuPerMsg is server CPU per received message. A client-to-client message
// crosses the relay once (client -> its allocation -> peer allocation ->
// peer); a one-sided message is relayed twice, to the echo peer and back,
// and counted once; scale traffic is client to client. Ratios compare
// like with like.
func (r result) cpuPerMsg() float64 {
	if r.recv == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.recv)
}

func (r result) allocsPerSec() float64 {
	if r.allocWall <= 0 {
		return 0
	}
	return float64(r.allocs) / r.allocWall.Seconds()
}

func (r result) cpuPerAlloc() float64 {
	if r.allocs == 0 {
		return 0
	}
	return float64(r.allocCPU.Microseconds()) / float64(r.allocs)
}

// clientCPUPerAlloc is the bench's own CPU per allocation: the pion
// clients that make them, competing with the server for the same cores.
func (r result) clientCPUPerAlloc() float64 {
	if r.allocs == 0 {
		return 0
	}
	return float64(r.clientCPU.Microseconds()) / float64(r.allocs)
}

// kbPerAlloc is the growth of the server's RSS per live allocation.
func (r result) kbPerAlloc() float64 {
	if r.allocs == 0 {
		return 0
	}
	return float64(r.rss1-r.rss0) / 1024 / float64(r.allocs)
}

func shortName(s string) string {
	switch s {
	case "strangers":
		return "ours"
	case "strangers-kernel":
		return "kernel"
	}
	return s
}

// goal is the CPU-per-message target of the issue for a server, as a
// fraction of coturn's; 0 for coturn.
func goal(kind profileKind, server string) float64 {
	switch {
	case server == "strangers" && kind == clientToClient:
		return 0.5 // in-process handover
	case server == "strangers-kernel", server == "strangers" && kind == oneSided:
		return 0.85
	}
	return 0
}

func goalLabel(kind profileKind, server string) string {
	if g := goal(kind, server); g > 0 {
		return fmt.Sprintf("<=%.2f", g)
	}
	return "-"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func noiseLabel(on bool) string {
	if on {
		return "on (a busy loop pinned to one CPU, in its own process, during every server's runs, coturn's too)"
	}
	return "off"
}

const (
	runFormat   = "%-5s %-6s %-4s %-11s %8d %8d %7.3f %9d %9.3f %11.2f\n"
	scaleFormat = "%-5s %-6s %-11s %6d %8.0f %9.1f %9.1f %8.1f %8.1f %8.2f %7d %7d %7.3f %10.2f\n"
)

func printRunHeader() {
	fmt.Printf("%-5s %-6s %-4s %-11s %8s %8s %7s %9s %9s %11s\n",
		"round", "server", "tr", "profile", "sent", "recv", "loss%", "rcvbufErr", "rtt_ms", "cpu_us/msg")
}

func printScaleHeader() {
	fmt.Printf("%-5s %-6s %-11s %6s %8s %9s %9s %8s %8s %8s %7s %7s %7s %10s\n",
		"round", "server", "profile", "allocs", "alloc/s", "us/alloc", "cl_us/al", "rss0_MB", "rss_MB", "KB/alloc",
		"sent", "recv", "loss%", "cpu_us/msg")
}

// printResult prints one run as it finishes.
func printResult(r result) {
	if r.kind == scale {
		printScaleHeader()
		fmt.Printf(scaleFormat, fmt.Sprint(r.round), shortName(r.server), r.profile, r.allocs, r.allocsPerSec(),
			r.cpuPerAlloc(), r.clientCPUPerAlloc(), mb(r.rss0), mb(r.rss1), r.kbPerAlloc(), r.sent, r.recv, r.loss(), r.cpuPerMsg())
		printRunHeader()
		return
	}
	fmt.Printf(runFormat, fmt.Sprint(r.round), shortName(r.server), r.transport, r.profile,
		r.sent, r.recv, r.loss(), r.rcvbufErrors, r.rttMs, r.cpuPerMsg())
	if r.counters != "" {
		fmt.Printf("      relay packets: %s\n", r.counters)
	}
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// groupKey is one table row group: the runs that are compared with coturn.
type groupKey struct {
	transport, profile string
	kind               profileKind
}

// groups splits results by group and server, keeping first-seen order.
func groups(results []result) ([]groupKey, map[groupKey]map[string][]result) {
	var keys []groupKey
	g := map[groupKey]map[string][]result{}
	for _, r := range results {
		k := groupKey{r.transport, r.profile, r.kind}
		if g[k] == nil {
			g[k] = map[string][]result{}
			keys = append(keys, k)
		}
		g[k][r.server] = append(g[k][r.server], r)
	}
	return keys, g
}

// serverOrder is the row order in tables: coturn first, the reference.
var serverOrder = []string{"coturn", "strangers", "strangers-kernel"}

// printRoundTables prints one round's loss and CPU per message with the
// ratio to coturn's, and the scale figures.
func printRoundTables(title string, round []result) {
	fmt.Printf("\n%s\n", title)
	keys, g := groups(round)
	if slices.ContainsFunc(keys, func(k groupKey) bool { return k.kind != scale }) {
		fmt.Printf("%-4s %-11s %-6s %7s %7s %11s %7s %6s\n", "tr", "profile", "server", "loss%", "vs_ct", "cpu_us/msg", "ratio", "goal")
	}
	for _, k := range keys {
		if k.kind == scale {
			continue
		}
		ct := first(g[k]["coturn"])
		for _, srv := range serverOrder {
			r := first(g[k][srv])
			if r == nil {
				continue
			}
			fmt.Printf("%-4s %-11s %-6s %7.3f %7s %11.2f %7s %6s\n", k.transport, k.profile, shortName(srv),
				r.loss(), lossVsCoturn(r, ct), r.cpuPerMsg(), ratio(r.cpuPerMsg(), ct, srv), goalLabel(k.kind, srv))
		}
	}
	for _, k := range keys {
		if k.kind != scale {
			continue
		}
		printScaleHeader()
		for _, srv := range serverOrder {
			if r := first(g[k][srv]); r != nil {
				fmt.Printf(scaleFormat, fmt.Sprint(r.round), shortName(r.server), r.profile, r.allocs, r.allocsPerSec(),
					r.cpuPerAlloc(), r.clientCPUPerAlloc(), mb(r.rss0), mb(r.rss1), r.kbPerAlloc(), r.sent, r.recv, r.loss(), r.cpuPerMsg())
			}
		}
	}
}

func first(rs []result) *result {
	if len(rs) == 0 {
		return nil
	}
	return &rs[0]
}

// lossVsCoturn says whether r lost more than coturn in the same cell: "ok"
// (no more), "MORE", or "-" (coturn itself, or no coturn run).
func lossVsCoturn(r, ct *result) string {
	if ct == nil || r.server == "coturn" {
		return "-"
	}
	if r.sent-r.recv > 0 && r.loss() > ct.loss() {
		return "MORE"
	}
	return "ok"
}

func ratio(cpu float64, ct *result, srv string) string {
	if ct == nil || srv == "coturn" || ct.cpuPerMsg() == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", cpu/ct.cpuPerMsg())
}

// summarize prints, per cell, medians over rounds, the worst round, and in
// how many rounds the server lost more than coturn.
func summarize(rounds int, noise bool, results []result) {
	keys, g := groups(results)
	fmt.Printf("\nsummary over %d rounds (noise %s; load average at end %s): medians; max over rounds; "+
		"rounds in which more was lost than coturn lost\n", rounds, onOff(noise), loadAvg())
	if slices.ContainsFunc(keys, func(k groupKey) bool { return k.kind != scale }) {
		fmt.Printf("%-4s %-11s %-6s %7s %8s %6s %9s %9s %11s %7s %9s %6s\n", "tr", "profile", "server",
			"loss%", "loss_max", "worse", "rcvbufErr", "rtt_ms", "cpu_us/msg", "ratio", "ratio_max", "goal")
	}
	for _, k := range keys {
		if k.kind == scale {
			continue
		}
		cts := g[k]["coturn"]
		byRound := map[int]*result{}
		for i := range cts {
			byRound[cts[i].round] = &cts[i]
		}
		for _, srv := range serverOrder {
			rs := g[k][srv]
			if len(rs) == 0 {
				continue
			}
			worse, ratios := 0, []float64{}
			for i := range rs {
				ct := byRound[rs[i].round]
				if lossVsCoturn(&rs[i], ct) == "MORE" {
					worse++
				}
				if ct != nil && srv != "coturn" && ct.cpuPerMsg() > 0 {
					ratios = append(ratios, rs[i].cpuPerMsg()/ct.cpuPerMsg())
				}
			}
			ratioMed, ratioMax := "-", "-"
			if len(ratios) > 0 {
				ratioMed = fmt.Sprintf("%.2f", medianOf(ratios))
				ratioMax = fmt.Sprintf("%.2f", maxOf(ratios))
			}
			worseLabel := "-"
			if srv != "coturn" {
				worseLabel = fmt.Sprintf("%d/%d", worse, len(rs))
			}
			fmt.Printf("%-4s %-11s %-6s %7.3f %8.3f %6s %9.0f %9.3f %11.2f %7s %9s %6s\n",
				k.transport, k.profile, shortName(srv),
				median(rs, result.loss), maxOf(values(rs, result.loss)), worseLabel,
				median(rs, func(r result) float64 { return float64(r.rcvbufErrors) }),
				median(rs, func(r result) float64 { return r.rttMs }),
				median(rs, result.cpuPerMsg), ratioMed, ratioMax, goalLabel(k.kind, srv))
		}
	}
	for _, k := range keys {
		if k.kind != scale {
			continue
		}
		fmt.Printf("\nscale summary (%s): medians over rounds; the goal is >= 2000 alloc/s and <= 16 KB/alloc\n", k.profile)
		fmt.Printf("%-6s %6s %8s %9s %9s %8s %8s %7s %10s %7s\n",
			"server", "rounds", "alloc/s", "us/alloc", "cl_us/al", "rss_MB", "KB/alloc", "loss%", "cpu_us/msg", "ratio")
		var ctCPU float64
		for _, srv := range serverOrder {
			rs := g[k][srv]
			if len(rs) == 0 {
				continue
			}
			cpu := median(rs, result.cpuPerMsg)
			r := "-"
			if srv == "coturn" {
				ctCPU = cpu
			} else if ctCPU > 0 {
				r = fmt.Sprintf("%.2f", cpu/ctCPU)
			}
			fmt.Printf("%-6s %6d %8.0f %9.1f %9.1f %8.1f %8.2f %7.3f %10.2f %7s\n", shortName(srv), len(rs),
				median(rs, result.allocsPerSec), median(rs, result.cpuPerAlloc), median(rs, result.clientCPUPerAlloc),
				median(rs, func(r result) float64 { return mb(r.rss1) }), median(rs, result.kbPerAlloc),
				median(rs, result.loss), cpu, r)
		}
	}
}

func values(rs []result, f func(result) float64) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return v
}

func median(rs []result, f func(result) float64) float64 { return medianOf(values(rs, f)) }

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
