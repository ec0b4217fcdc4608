// Command strangers-lab proves that strangers connect across real NATs and
// firewalls through the strangers server. It builds a lab of Linux network
// namespaces (an "internet" with the server on 203.0.113.1, full-cone,
// symmetric and firewalled sites, public hosts), runs WebRTC calls between
// every pair of site kinds with pion peers and headless Chromium, prints
// the matrix (connected, selected candidate pairs, time to connected) and
// exits non-zero when a cell breaks the rules below. It needs root, ip
// (iproute2) and nft (nftables); Chromium for the browser cells.
//
// Usage:
//
//	strangers-lab [-runs 5] [-strangers path] [-chromium path] [-v]
//
// The rules: every cell connects; pairs that can connect directly do so
// without the relay; symmetric ↔ symmetric uses the relay; firewalled
// sides use TURN over TLS on 443; a side that hides its IP is relayed and
// its partner never learns its addresses.
//
// The same program, re-executed inside a client namespace, plays one side
// of a call ("peer": pion/webrtc; "browser": Chromium driving the page).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
