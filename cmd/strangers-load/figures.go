package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// figures are what one run measured, for the summary.
type figures struct {
	label          string // "1 node", "3 nodes + Redis"
	connected      int    // sessions this tool still had open at the end
	serverSessions int    // sessions the nodes counted then, summed
	matchesPerSec  float64
	// find -> matched (phase 3) and signal -> partner (phase 4); with
	// several nodes the two sides are always on different nodes.
	findP50, findP99   time.Duration
	findN              int
	relayP50, relayP99 time.Duration
	relayN             int
}

// printFigures prints the runs side by side, with the targets.
func printFigures(w io.Writer, runs []figures) {
	fmt.Fprintln(w, "\nfigures")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	defer tw.Flush()
	row := func(name string, target string, cell func(f figures) string) {
		fmt.Fprintf(tw, "  %s", name)
		for _, f := range runs {
			fmt.Fprintf(tw, "\t%s", cell(f))
		}
		fmt.Fprintf(tw, "\t%s\n", target)
	}
	ms := func(d time.Duration, n int) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	row("", "target", func(f figures) string { return f.label })
	row("connected sessions", ">= 10000", func(f figures) string {
		return fmt.Sprintf("%d (servers: %d)", f.connected, f.serverSessions)
	})
	row("matches/s", ">= 5000", func(f figures) string {
		if f.matchesPerSec == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", f.matchesPerSec)
	})
	row("find -> matched p50", "", func(f figures) string { return ms(f.findP50, f.findN) })
	row("find -> matched p99", "<= 25 ms", func(f figures) string { return ms(f.findP99, f.findN) })
	row("signal relay p50", "", func(f figures) string { return ms(f.relayP50, f.relayN) })
	row("signal relay p99", "<= 5 ms", func(f figures) string { return ms(f.relayP99, f.relayN) })
}

// makeGroups deals clients into groups of groupSize, taking from each
// node in turn, so that a group spans as many nodes as it can.
func makeGroups(clients []*client, groups, nodes int) [][]*client {
	byNode := make([][]*client, nodes)
	for _, c := range clients {
		byNode[c.node] = append(byNode[c.node], c)
	}
	out := make([][]*client, groups)
	n, left := 0, len(clients)
	for g := range out {
		for len(out[g]) < groupSize && left > 0 {
			if src := byNode[n%nodes]; len(src) > 0 {
				out[g] = append(out[g], src[0])
				byNode[n%nodes] = src[1:]
				left--
			}
			n++
		}
	}
	return out
}
