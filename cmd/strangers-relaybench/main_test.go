//go:build linux

package main

import (
	"os"
	"testing"
	"time"
)

func TestParseProfiles(t *testing.T) {
	ps, err := parseProfiles("smoke, 25k,1s-smoke")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.name)
	}
	want := []string{"smoke", "1s-smoke", "scale-smoke", "25k"}
	if len(names) != len(want) {
		t.Fatalf("profiles %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("profiles %v, want %v", names, want)
		}
	}
	if _, err := parseProfiles("25k,nope"); err == nil {
		t.Fatal("unknown profile accepted")
	}
	if p := profiles["scale"]; p.allocs != 5000 || p.active != 50 || p.kind != scale {
		t.Fatalf("scale profile %+v, want 5,000 allocations with traffic on 50", p)
	}
}

func TestParseUclient(t *testing.T) {
	out := []byte("0: Total connect time is 0\n" +
		"1: start_mclient: tot_send_msgs=100, tot_recv_msgs=90\n" +
		"2: start_mclient: tot_send_msgs=2000, tot_recv_msgs=1990\n" +
		"3: Average round trip delay 0.250000 ms; min = 0 ms, max = 3 ms\n")
	sent, recv, rtt, err := parseUclient(out)
	if err != nil || sent != 2000 || recv != 1990 || rtt != 0.25 {
		t.Fatalf("parseUclient = %d, %d, %v, %v; want the last totals 2000, 1990 and 0.25 ms", sent, recv, rtt, err)
	}
	if _, _, _, err := parseUclient([]byte("connection refused\n")); err == nil {
		t.Fatal("output without totals accepted")
	}
}

func TestProcParsers(t *testing.T) {
	rss, err := parseVmRSS("Name:\tturnserver\nVmPeak:\t  100 kB\nVmRSS:\t   20480 kB\nThreads:\t4\n")
	if err != nil || rss != 20480*1024 {
		t.Fatalf("parseVmRSS = %d, %v; want %d", rss, err, 20480*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseVmRSS(bad); err == nil {
			t.Errorf("parseVmRSS(%q) accepted", bad)
		}
	}
	// utime 150 and stime 50 ticks: fields 14 and 15; the command name
	// may hold spaces and parentheses.
	stat := "42 (turn (server)) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 4 0 1 2 3"
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 2*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 2s", cpu, err)
	}
	if _, err := parseStatCPU("42 (x) S 1"); err == nil {
		t.Fatal("short stat accepted")
	}
	// This process's own files parse.
	if rss, err := procRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("procRSS(self) = %d, %v", rss, err)
	}
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Errorf("procCPU(self): %v", err)
	}
}

func TestFigures(t *testing.T) {
	ct := &result{server: "coturn", sent: 1000, recv: 1000, cpu: 100 * time.Millisecond}
	ours := &result{server: "strangers", sent: 1000, recv: 990, cpu: 45 * time.Millisecond}
	if got := lossVsCoturn(ours, ct); got != "MORE" {
		t.Errorf("lossVsCoturn = %q, want MORE (1%% against 0%%)", got)
	}
	ours.recv = 1000
	if got := lossVsCoturn(ours, ct); got != "ok" {
		t.Errorf("lossVsCoturn = %q, want ok", got)
	}
	if got := ratio(ours.cpuPerMsg(), ct, "strangers"); got != "0.45" {
		t.Errorf("ratio = %s, want 0.45", got)
	}
	s := result{allocs: 5000, allocWall: 2 * time.Second, rss0: 10 << 20, rss1: 10<<20 + 5000*8*1024}
	if s.allocsPerSec() != 2500 || s.kbPerAlloc() != 8 {
		t.Errorf("scale figures %v alloc/s, %v KB/alloc; want 2500 and 8", s.allocsPerSec(), s.kbPerAlloc())
	}
	if g := goal(clientToClient, "strangers"); g != 0.5 {
		t.Errorf("handover goal %v, want 0.5", g)
	}
	if g := goal(oneSided, "strangers"); g != 0.85 {
		t.Errorf("one-sided goal %v, want 0.85", g)
	}
}

func TestCounterDelta(t *testing.T) {
	before := map[string]float64{"handed_over": 10, "packets{direction=to_peer}": 5}
	after := map[string]float64{"handed_over": 10, "packets{direction=to_peer}": 8, "dropped{direction=to_peer,reason=bitrate}": 2}
	if got, want := counterDelta(before, after), "dropped{direction=to_peer,reason=bitrate}=2 packets{direction=to_peer}=3"; got != want {
		t.Errorf("counterDelta = %q, want %q", got, want)
	}
	if got := counterDelta(after, after); got != "none" {
		t.Errorf("counterDelta of equal snapshots = %q, want none", got)
	}
}
