package plane

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Admission: the per-datagram checks of the data plane.
//
// Every datagram relayed between a client and a peer passes one
// allocation's admission exactly once, whichever path carries it: this
// package's (ChannelData from the client, a datagram from a peer on a
// bound channel, data handed over in process between two relay sockets
// of ours) or pion's (the relay socket wrapper calls AdmitTo for every
// datagram pion sends to a peer and FromPeer for every one it reads). It
// counts the datagrams a relay socket sends and reads, and drops a
// datagram, counting it, when
//   - the allocation holds no live permission for the peer's IP (RFC 8656:
//     without one, data is dropped in both directions, also over a bound
//     channel, which pion would keep relaying until the channel expires);
//   - to a peer: the peer is an address of this host outside our relay
//     ports (Limits' guard);
//   - it would exceed the cap in its direction.
//
// The bitrate cap is a token bucket per direction in GCRA form: one atomic
// "theoretical arrival time" on the process's monotonic clock, moved on
// by each admitted datagram's transmission time at the cap. A datagram is
// admitted while the bucket is at most capBurst ahead of now, so a second
// at the cap (at least capMinBurst bytes) may pass at once: key frames
// are bursts.

// capBurst is how far ahead of the clock a direction's bucket may run.
const capBurst = time.Second

// capMinBurst is the smallest burst in bytes, whatever the cap: a few
// full-size datagrams.
const capMinBurst = 64 << 10

// Directions of a datagram through an allocation, the first index of
// Limits' drop counters.
const (
	ToPeer   = 0
	FromPeer = 1
)

// Reasons for a drop, the second index of Limits' drop counters.
const (
	NoPermission = 0
	Bitrate      = 1
)

// Counter is a metric admission counts into (a prometheus.Counter).
type Counter interface{ Inc() }

// LimitsConfig configures the admission every Relay of a process shares.
type LimitsConfig struct {
	// Bitrate caps each direction of each allocation, in bits per second
	// of payload; 0 or less: no cap.
	Bitrate int64
	// PermissionLife, when positive, makes a permission lapse this long
	// after pion created it, whatever pion does (tests).
	PermissionLife time.Duration
	// Dropped counts drops by [direction][reason].
	Dropped [2][2]Counter
	// Guarded reports whether a peer is an address of this host that the
	// relay must not send to; Denied counts those sends.
	Guarded func(netip.AddrPort) bool
	Denied  Counter
}

// Limits is what every allocation's admission shares: the cap, the clock,
// the guard and the drop counters. It is read-only once made.
type Limits struct {
	rate     int64 // bits per second per direction; 0: no cap
	burst    int64 // nanoseconds a bucket may run ahead of the clock
	epoch    time.Time
	permLife time.Duration
	dropped  [2][2]Counter
	guarded  func(netip.AddrPort) bool
	denied   Counter
}

// NewLimits returns the shared admission limits.
func NewLimits(cfg LimitsConfig) *Limits {
	l := &Limits{
		epoch: time.Now(), permLife: cfg.PermissionLife,
		dropped: cfg.Dropped, guarded: cfg.Guarded, denied: cfg.Denied,
	}
	if cfg.Bitrate > 0 {
		l.rate = cfg.Bitrate
		l.burst = max(int64(capBurst), l.cost(capMinBurst))
	}
	return l
}

// Burst returns how far ahead of the clock a bucket may run: the burst
// the cap lets pass at once, in time at the cap.
func (l *Limits) Burst() time.Duration { return time.Duration(l.burst) }

// now returns the monotonic clock in nanoseconds.
func (l *Limits) now() int64 { return int64(time.Since(l.epoch)) }

// cost returns the time n bytes take at the cap, in nanoseconds.
func (l *Limits) cost(n int) int64 { return int64(n) * 8 * int64(time.Second) / l.rate }

// Counters are one relay socket's traffic: what it read from peers (From),
// what was sent to peers on its behalf (To), how many of those were handed
// over in process to another relay socket of ours (Handed), and how many
// datagrams this package rather than pion sent to peers (FastTo) and to
// the client (FastFrom). Each socket counts into its own atomics: no
// shared cache line, no lock on the packet path.
type Counters struct {
	BytesFrom, PacketsFrom, BytesTo, PacketsTo, Handed atomic.Uint64
	FastTo, FastFrom                                   atomic.Uint64
}

// admit decides whether a datagram of n bytes to or from (dir) a peer at
// ip passes, counting a drop. It allocates nothing.
func (r *Relay) admit(dir int, ip netip.Addr, n int) bool {
	lapse, ok := r.bind.load().perms[ip]
	var now int64
	if ok && (lapse != 0 || r.lim.rate > 0) {
		now = r.lim.now()
	}
	if !ok || (lapse != 0 && now >= lapse) {
		r.lim.dropped[dir][NoPermission].Inc()
		return false
	}
	if r.lim.rate > 0 && !r.take(dir, now, n) {
		r.lim.dropped[dir][Bitrate].Inc()
		return false
	}
	return true
}

// take takes n bytes from dir's bucket at time now, if it holds them.
func (r *Relay) take(dir int, now int64, n int) bool {
	cost := r.lim.cost(n)
	b := &r.tat[dir]
	for {
		old := b.Load()
		next := max(old, now) + cost
		if next-now > r.lim.burst {
			return false
		}
		if b.CompareAndSwap(old, next) {
			return true
		}
	}
}

// refund gives back what a successful admit of n bytes in dir took from
// the bucket, for a datagram that was then not sent but passed on to be
// admitted again.
func (r *Relay) refund(dir, n int) {
	if r.lim.rate > 0 {
		r.tat[dir].Add(-r.lim.cost(n))
	}
}

// AdmitTo decides whether the client's datagram of n bytes may go to
// peer: a live permission, not a guarded address of this host (counted as
// a denial), and room under the cap.
func (r *Relay) AdmitTo(peer netip.AddrPort, n int) bool {
	if !r.admit(ToPeer, peer.Addr(), n) {
		return false
	}
	if r.lim.guarded(peer) {
		r.lim.denied.Inc()
		r.refund(ToPeer, n)
		return false
	}
	return true
}

// admitFrom decides whether a datagram of n bytes from peer may go to the
// client.
func (r *Relay) admitFrom(peer netip.AddrPort, n int) bool {
	return r.admit(FromPeer, peer.Addr(), n)
}

// Guarded reports whether peer is an address of this host the relay does
// not send to.
func (r *Relay) Guarded(peer netip.AddrPort) bool { return r.lim.guarded(peer) }

// CountTo counts a datagram of n bytes sent to a peer.
func (r *Relay) CountTo(n int) {
	r.Counters.BytesTo.Add(uint64(n))
	r.Counters.PacketsTo.Add(1)
}

// countFrom counts a datagram of n bytes read from a peer.
func (r *Relay) countFrom(n int) {
	r.Counters.BytesFrom.Add(uint64(n))
	r.Counters.PacketsFrom.Add(1)
}
