package redisengine

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
	"github.com/strangers-chat/strangers/signaling/enginetest"
)

// TestConformance runs the engine conformance suite against the Redis
// engine: every test its own redis-server (persisting, so that an outage
// can bring its data back), its nodes on it; a node is killed as
// engine_test.go's tests kill one.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	servers := map[*testing.T]*testsupport.Redis{} // the last server New started in each test
	enginetest.Run(t, enginetest.Harness{
		Name:   "redis",
		Shared: true,
		New: func(t *testing.T, hosts []signaling.EngineHost, opts enginetest.Options) []signaling.Engine {
			r := testsupport.StartRedis(t, testsupport.RedisOptions{Persist: true})
			mu.Lock()
			servers[t] = r
			mu.Unlock()
			t.Cleanup(func() {
				mu.Lock()
				delete(servers, t)
				mu.Unlock()
			})
			var engines []signaling.Engine
			for i, h := range hosts {
				e, err := New(Config{
					URL:            r.URL(),
					Node:           fmt.Sprintf("node%d", i),
					ResumeGrace:    opts.ResumeGrace,
					RecentPartners: opts.RecentPartners,
					LeaseTTL:       time.Second,
					Timeout:        2 * time.Second,
					Logger:         slog.New(slog.DiscardHandler),
				})
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := e.Start(h); err != nil {
					t.Fatalf("node%d: Start: %v", i, err)
				}
				engines = append(engines, e)
			}
			return engines
		},
		Kill: func(e signaling.Engine) { (&node{Engine: e.(*Engine)}).kill() },
		Outage: func(t *testing.T) (stop func(), start func(keepData bool)) {
			mu.Lock()
			r := servers[t]
			mu.Unlock()
			if r == nil {
				t.Fatal("Outage before New")
			}
			return r.Kill, r.Restart
		},
	})
}
