package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/signaling"
	"github.com/strangers-chat/strangers/signaling/redisengine"
)

// newSharedEngine builds the matchmaker's engine shared with the other
// nodes through Redis (cfg.redisURL is set). It does not reach Redis yet:
// the hub starts it, and a node whose Redis is down starts not ready.
func newSharedEngine(cfg settings, logger *slog.Logger, reg prometheus.Registerer) (signaling.Engine, error) {
	e, err := redisengine.New(redisengine.Config{
		URL:            cfg.redisURL,
		Node:           cfg.nodeID,
		ResumeGrace:    cfg.ResumeGrace, // the hub's: a session outlives its node as long as its connection
		RecentPartners: recentPartners,
		Logger:         logger,
		Registerer:     reg,
	})
	if err != nil {
		return nil, fmt.Errorf("STRANGERS_REDIS_URL (host %s): %w", cfg.redisHost, err) // the engine's errors never repeat the URL
	}
	return e, nil
}

// redisClientLog is the running server's logger, for the Redis client
// library's own messages: main installs redisClientLogger as the library's
// (process-wide) logger once, before run, and run stores its logger here.
var redisClientLog atomic.Pointer[slog.Logger]

// redisClientLogger hands the Redis client library's messages to
// redisClientLog at debug level (see redisengine.ClientLogger).
type redisClientLogger struct{}

func (redisClientLogger) Printf(ctx context.Context, format string, v ...any) {
	redisengine.ClientLogger{Logger: redisClientLog.Load()}.Printf(ctx, format, v...)
}
