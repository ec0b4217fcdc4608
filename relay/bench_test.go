package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v4"
)

// benchConfig is testConfig with quotas out of the way of the benchmarks.
func benchConfig() Config {
	cfg := testConfig()
	cfg.SessionQuota = 1 << 20
	cfg.TotalQuota = 1 << 20
	cfg.IPQuota = 1 << 20
	cfg.PortMin = 40000 // room for allocationsHeld relay ports
	return cfg
}

// BenchmarkAllocate measures allocations per second: each iteration is a
// real pion TURN client on loopback that authenticates, allocates a UDP
// relay and releases it (Refresh with lifetime 0), several clients at a
// time.
//
//	go test -run '^$' -bench BenchmarkAllocate -benchtime 2000x ./relay/
func BenchmarkAllocate(b *testing.B) {
	s := newServer(b, benchConfig())
	sid := newSID(b)
	s.SessionStarted(sid)
	user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := allocateOnce(s, user, pass); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "allocs/s")
	waitFor(b, "allocations to be released", func() bool { return s.AllocationCount() == 0 })
}

// allocateOnce runs one pion client through Allocate and release.
func allocateOnce(s *Server, user, pass string) error {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer conn.Close()
	addr := s.UDPAddr().String()
	client, err := turn.NewClient(pionConfig(s, addr, conn, user, pass))
	if err != nil {
		return err
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		return err
	}
	relayed, err := client.Allocate()
	if err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	return relayed.Close()
}

// BenchmarkAllocationMemory measures what live allocations cost the relay
// at scale: it creates allocationsHeld allocations (raw clients over UDP,
// a few at a time, all on the relay's client-facing sockets) and reports
// the rate at which they were created, the growth of the process's
// resident set (VmRSS) and of the Go heap and stacks per allocation, and
// the rate at which they are then deleted (Refresh with lifetime 0).
// Client sockets are opened before the first measurement, so only the
// relay's share is counted. It needs about 2×allocationsHeld file
// descriptors.
//
//	go test -run '^$' -bench BenchmarkAllocationMemory -benchtime 1x ./relay/
func BenchmarkAllocationMemory(b *testing.B) {
	const allocationsHeld, workers = 5000, 4
	for range b.N {
		b.StopTimer()
		s, err := New(benchConfig())
		if err != nil {
			b.Fatal(err)
		}
		sid := newSID(b)
		s.SessionStarted(sid)
		user, pass := Credentials(testSecret, sid, time.Now().Add(time.Hour))
		clients := make([]*rawClient, allocationsHeld)
		for i := range clients {
			clients[i] = dialRaw(b, s, user, pass, false)
		}
		rss0, mem0 := settledMemory(b)

		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(clients); i += workers {
					if resp := clients[i].allocate(); !isSuccess(resp) {
						errs <- fmt.Errorf("allocation %d refused: %v", i, errorCode(resp))
						return
					}
				}
			}()
		}
		wg.Wait()
		created := time.Since(start)
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		if n := s.AllocationCount(); n != allocationsHeld {
			b.Fatalf("%d allocations live, want %d", n, allocationsHeld)
		}
		rss1, mem1 := settledMemory(b)
		b.ReportMetric(float64(rss1-rss0)/allocationsHeld, "rss-bytes/alloc")
		b.ReportMetric(float64(mem1-mem0)/allocationsHeld, "go-bytes/alloc")
		b.ReportMetric(allocationsHeld/created.Seconds(), "allocs/s")

		start = time.Now()
		errs = make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(clients); i += workers {
					if resp := clients[i].refresh(0); !isSuccess(resp) {
						errs <- fmt.Errorf("deletion %d refused: %v", i, errorCode(resp))
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		waitFor(b, "allocations to be deleted", func() bool { return s.AllocationCount() == 0 })
		b.ReportMetric(allocationsHeld/time.Since(start).Seconds(), "deletes/s")
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		for _, c := range clients {
			c.conn.Close()
		}
	}
}

// settledMemory returns VmRSS and the Go heap plus stacks in use, after a
// garbage collection that returns freed memory to the system.
func settledMemory(b *testing.B) (rss, goMem int64) {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			rss = kb << 10
		}
	}
	return rss, int64(ms.HeapInuse + ms.StackInuse)
}
