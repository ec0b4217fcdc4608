package redisengine

import (
	"context"
	"fmt"
	"log/slog"
)

// ClientLogger carries the Redis client library's own messages (a failed
// dial, a dropped pub/sub connection: the engine reports what matters of
// them itself) to a slog.Logger at debug level. The library's logger is
// process-wide, so only main should install one:
//
//	redis.SetLogger(redisengine.ClientLogger{Logger: log})
//
// Without it the library prints them to standard error.
type ClientLogger struct{ Logger *slog.Logger }

// Printf logs one message of the library.
func (l ClientLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.Logger == nil {
		return
	}
	l.Logger.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "redis-client")
}
