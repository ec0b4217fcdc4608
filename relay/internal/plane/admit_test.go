package plane

import (
	"net/netip"
	"testing"
)

type noCounter struct{}

func (noCounter) Inc() {}

// BenchmarkAdmit measures admission's cost per datagram, without a cap
// and with one that is never reached, from one and from all cores (one
// allocation's two directions are read by two goroutines at most; all
// cores on one bucket is the worst case).
func BenchmarkAdmit(b *testing.B) {
	peer := netip.MustParseAddr("203.0.113.7")
	for _, tt := range []struct {
		name string
		rate int64
	}{{"uncapped", -1}, {"capped", 1 << 50}} {
		var c noCounter
		lim := NewLimits(LimitsConfig{
			Bitrate: tt.rate, Dropped: [2][2]Counter{{c, c}, {c, c}}, Denied: c,
			Guarded: func(netip.AddrPort) bool { return false },
		})
		a := NewRelay(nil, netip.AddrPort{}, lim)
		a.Permit(peer)
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !a.admit(ToPeer, peer, 1200) {
					b.Fatal("dropped")
				}
			}
		})
		b.Run(tt.name+"/parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !a.admit(ToPeer, peer, 1200) {
						b.Error("dropped")
						return
					}
				}
			})
		})
	}
}
