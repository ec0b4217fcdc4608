package enginetest_test

import (
	"math/rand/v2"
	"testing"

	"github.com/strangers-chat/strangers/signaling"
	"github.com/strangers-chat/strangers/signaling/enginetest"
)

// TestMemory runs the conformance suite against the memory engine.
func TestMemory(t *testing.T) {
	enginetest.Run(t, enginetest.Harness{
		Name: "memory",
		New: func(t *testing.T, hosts []signaling.EngineHost, opts enginetest.Options) []signaling.Engine {
			if len(hosts) != 1 {
				t.Fatalf("the memory engine has one node, not %d", len(hosts))
			}
			seed := rand.Uint64()
			t.Logf("memory engine seed %d", seed)
			e := signaling.NewMemoryEngine(signaling.MemoryConfig{
				RecentPartners: opts.RecentPartners,
				Rand:           rand.New(rand.NewPCG(seed, seed)),
			})
			if err := e.Start(hosts[0]); err != nil {
				t.Fatalf("Start: %v", err)
			}
			return []signaling.Engine{e}
		},
	})
}
