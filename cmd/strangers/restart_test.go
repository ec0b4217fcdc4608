package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

// On SIGINT or SIGTERM (run's context ending) every client is told that the
// server is restarting, with a retry hint, before its connection is closed
// with 1001; a page says so instead of "connection lost".
func TestShutdownTellsClientsRestarting(t *testing.T) {
	s := startRun(t, nil)
	addr := s.addrs["http"].(string)
	a, b := dialPeer(t, addr), dialPeer(t, addr)
	a.send(signaling.Find{Mode: signaling.ModeText})
	b.send(signaling.Find{Mode: signaling.ModeText})
	expect[signaling.Matched](a, 10*time.Second)
	expect[signaling.Matched](b, 10*time.Second)

	if err := s.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, p := range []*wsPeer{a, b} {
		r := expect[signaling.Restarting](p, 10*time.Second)
		if r.Type != signaling.TypeRestarting || r.RetryIn <= 0 {
			t.Errorf("restarting %+v, want a positive retryIn", r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := p.Next(ctx)
		cancel()
		var ce *websocket.CloseError
		if !errors.Is(err, wsclient.ErrClosed) || !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Errorf("after restarting: %v, want the connection closed with 1001", err)
		}
	}
}
