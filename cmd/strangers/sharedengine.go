package main

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/signaling"
)

// newSharedEngine builds the matchmaker's engine shared with the other
// nodes through Redis (cfg.redisURL is set).
func newSharedEngine(cfg settings, logger *slog.Logger, reg prometheus.Registerer) (signaling.Engine, error) {
	_, _, _ = cfg, logger, reg
	return nil, errors.New("STRANGERS_REDIS_URL: this build has no Redis engine")
}
