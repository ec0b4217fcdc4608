package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strangers-chat/strangers/signaling"
)

// TestRunAllPhases runs every phase with tiny numbers against a hub in this
// process, so that the tool keeps working as the server changes.
func TestRunAllPhases(t *testing.T) {
	reg := prometheus.NewRegistry()
	hub, err := signaling.New(signaling.Config{Registerer: reg, MaxConnsPerIP: 10000, RateLimit: 1000, RateBurst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer hub.Shutdown(t.Context())

	o := options{
		url:        "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws",
		serverPID:  strconv.Itoa(os.Getpid()),
		nodes:      1,
		n:          120,
		connected:  100,
		srcIPs:     2,
		workers:    20,
		settle:     10 * time.Millisecond,
		churners:   40,
		matchDur:   300 * time.Millisecond,
		groups:     5,
		pairRate:   100,
		latDur:     300 * time.Millisecond,
		signalRate: 200,
		relayDur:   300 * time.Millisecond,
		phases:     "idle,matches,latency,relay",
		timeout:    time.Minute,
	}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(ds, q); got != want {
			t.Errorf("percentile(%v) = %v, want %v", q, got, want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("empty")
	}
}

// TestRunSeveralURLs runs the phases over two URLs (two listeners of one
// hub here), as against two nodes: sessions alternate between them and the
// pairs of phases 3 and 4 have a side on each.
func TestRunSeveralURLs(t *testing.T) {
	reg := prometheus.NewRegistry()
	hub, err := signaling.New(signaling.Config{Registerer: reg, MaxConnsPerIP: 10000, RateLimit: 1000, RateBurst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Shutdown(t.Context())
	var urls, pids []string
	for range 2 {
		mux := http.NewServeMux()
		mux.Handle("/ws", hub)
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		urls = append(urls, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws")
		pids = append(pids, strconv.Itoa(os.Getpid()))
	}
	o := options{
		url:        strings.Join(urls, ","),
		serverPID:  strings.Join(pids, ","),
		nodes:      1,
		n:          60,
		connected:  60,
		srcIPs:     2,
		workers:    20,
		churners:   20,
		matchDur:   300 * time.Millisecond,
		groups:     4,
		pairRate:   100,
		latDur:     300 * time.Millisecond,
		signalRate: 200,
		relayDur:   300 * time.Millisecond,
		phases:     "matches,latency,relay",
		timeout:    time.Minute,
	}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
}

func TestMakeGroupsSpreadsNodes(t *testing.T) {
	var cs []*client
	for i := range 30 {
		cs = append(cs, &client{node: i % 3})
	}
	for _, g := range makeGroups(cs, 3, 3) {
		seen := map[int]int{}
		for _, c := range g {
			seen[c.node]++
		}
		if len(g) != groupSize || len(seen) != 3 {
			t.Errorf("group of %d over nodes %v, want %d over 3", len(g), seen, groupSize)
		}
	}
}

func TestNodeProcs(t *testing.T) {
	for _, c := range []struct {
		flag, n, cpus int
		envSet        bool
		want          int
	}{
		{-1, 3, 2, false, 1},  // three nodes on two CPUs: one each
		{-1, 1, 8, false, 8},  // one node: the whole machine
		{-1, 3, 8, false, 2},  // rounded down, so they never oversubscribe
		{-1, 3, 2, true, 0},   // the tool's own GOMAXPROCS is passed on
		{0, 3, 2, false, 0},   // left to Go
		{4, 3, 2, false, 4},   // as asked
		{-1, 4, 16, false, 4}, // at least 1, at most the share
	} {
		if got := nodeProcs(c.flag, c.n, c.cpus, c.envSet); got != c.want {
			t.Errorf("nodeProcs(%d, %d nodes, %d CPUs, env %v) = %d, want %d", c.flag, c.n, c.cpus, c.envSet, got, c.want)
		}
	}
}
