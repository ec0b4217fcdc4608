package main

// Temporary: pins the module's dependencies until the packages that use them land.
import (
	_ "github.com/caarlos0/env/v11"
	_ "github.com/gorilla/websocket"
	_ "github.com/pion/stun/v3"
	_ "github.com/pion/turn/v4"
	_ "github.com/pion/webrtc/v4"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/collectors"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "github.com/prometheus/common/expfmt"
	_ "go.uber.org/goleak"
)
