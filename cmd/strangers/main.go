// Command strangers is the talk-to-strangers server: the page, the
// WebSocket matchmaker and the embedded TURN/STUN relay in one binary.
// All configuration comes from STRANGERS_* environment variables
// (strangers -h lists them).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(command(os.Args[1:], os.Stdout, os.Stderr))
	}
	redis.SetLogger(redisClientLogger{}) // its messages go to our log, at debug
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "strangers: %v\n", oneLine(err))
		os.Exit(1)
	}
}
