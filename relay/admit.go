package relay

import (
	"github.com/strangers-chat/strangers/relay/internal/plane"
)

// Admission, the per-datagram checks of the data plane (counters,
// permissions, the own-address guard, the bitrate cap), is
// plane/admit.go's; every relayed datagram passes it once, on our path or
// pion's. This file gives it the server's settings, guard and metrics.

// Reasons in dropped_packets_total.
const (
	dropNoPermission = "no_permission"
	dropBitrate      = "bitrate"
)

// newLimits returns the admission limits every relay socket shares.
func (s *Server) newLimits() *plane.Limits {
	cfg := plane.LimitsConfig{
		PermissionLife: s.cfg.permissionLifetime,
		Guarded:        s.deniedHost,
		Denied:         s.metrics.peerDeniedHost,
	}
	if s.cfg.MaxBitrate > 0 {
		cfg.Bitrate = s.cfg.MaxBitrate
	}
	dirs := [2]string{plane.ToPeer: dirToPeer, plane.FromPeer: dirFromPeer}
	reasons := [2]string{plane.NoPermission: dropNoPermission, plane.Bitrate: dropBitrate}
	for d, dir := range dirs {
		for r, reason := range reasons {
			cfg.Dropped[d][r] = s.metrics.dropped.WithLabelValues(dir, reason)
		}
	}
	return plane.NewLimits(cfg)
}
