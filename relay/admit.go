package relay

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Admission: the per-datagram checks of the data plane.
//
// Every datagram relayed between a client and a peer passes one
// allocation's admission exactly once, whichever path carries it: the
// fast path (ChannelData from the client, a datagram from a peer on a
// bound channel, data handed over in process between two relay sockets
// of ours) or pion (relayConn.WriteTo sees every datagram pion sends to a
// peer, relayConn.ReadFrom every one pion reads from a peer). A datagram
// is dropped, and counted in dropped_packets_total, when
//   - the allocation holds no live permission for the peer's IP (RFC 8656:
//     without one, data is dropped in both directions, also over a bound
//     channel, which pion would keep relaying until the channel expires);
//   - to a peer: the peer is an address of this host outside our relay
//     ports (Server.deniedHost);
//   - it would exceed Config.MaxBitrate in its direction.
//
// Permissions mirror pion's: pion reports a permission when it creates it
// (a CreatePermission or a ChannelBind for a new peer IP) and when it
// deletes it (it expired: refreshes, by either request, extend it inside
// pion without an event). The mirror is an immutable map swapped whole
// under Server.mu, so the packet path reads it without a lock.
//
// The bitrate cap is a token bucket per direction in GCRA form: one atomic
// "theoretical arrival time" on the server's monotonic clock, moved on by
// each admitted datagram's transmission time at the cap. A datagram is
// admitted while the bucket is at most capBurst ahead of now, so a second
// at the cap (at least capMinBurst bytes) may pass at once: key frames
// are bursts.

// capBurst is how far ahead of the clock a direction's bucket may run.
const capBurst = time.Second

// capMinBurst is the smallest burst in bytes, whatever the cap: a few
// full-size datagrams.
const capMinBurst = 64 << 10

// Directions of a datagram through an allocation.
const (
	toPeerDir   = 0
	fromPeerDir = 1
)

// Reasons in dropped_packets_total.
const (
	dropNoPermission = "no_permission"
	dropBitrate      = "bitrate"
)

// permSet maps the peer IPs an allocation holds a permission for to when
// the permission lapses in nanoseconds of the server's clock (0: when pion
// deletes it).
type permSet map[netip.Addr]int64

var noPerms = permSet{}

// admitLimits is what every allocation's admission shares: the cap, the
// clock and the drop counters. It is read-only after New.
type admitLimits struct {
	rate     int64 // bits per second per direction; 0: no cap
	burst    int64 // nanoseconds a bucket may run ahead of the clock
	epoch    time.Time
	permLife time.Duration // 0: permissions last until pion deletes them

	dropped [2][2]prometheus.Counter // [direction][0 no permission, 1 bitrate]
}

func newAdmitLimits(cfg Config, m *metrics) *admitLimits {
	l := &admitLimits{epoch: time.Now(), permLife: cfg.permissionLifetime}
	if cfg.MaxBitrate > 0 {
		l.rate = cfg.MaxBitrate
		l.burst = max(int64(capBurst), l.cost(capMinBurst))
	}
	for d, dir := range []string{dirToPeer, dirFromPeer} {
		for r, reason := range []string{dropNoPermission, dropBitrate} {
			l.dropped[d][r] = m.dropped.WithLabelValues(dir, reason)
		}
	}
	return l
}

// now returns the server's monotonic clock in nanoseconds.
func (l *admitLimits) now() int64 { return int64(time.Since(l.epoch)) }

// cost returns the time n bytes take at the cap, in nanoseconds.
func (l *admitLimits) cost(n int) int64 { return int64(n) * 8 * int64(time.Second) / l.rate }

// admission is one allocation's state for admission, in its relay socket.
type admission struct {
	lim   *admitLimits
	perms atomic.Pointer[permSet] // replaced whole under Server.mu
	tat   [2]atomic.Int64         // per direction: the bucket's theoretical arrival time
}

func (a *admission) init(lim *admitLimits) {
	a.lim = lim
	a.perms.Store(&noPerms)
}

// admit decides whether a datagram of n bytes to or from (dir) a peer at
// ip passes, counting a drop. It allocates nothing.
func (a *admission) admit(dir int, ip netip.Addr, n int) bool {
	lapse, ok := (*a.perms.Load())[ip]
	var now int64
	if ok && (lapse != 0 || a.lim.rate > 0) {
		now = a.lim.now()
	}
	if !ok || (lapse != 0 && now >= lapse) {
		a.lim.dropped[dir][0].Inc()
		return false
	}
	if a.lim.rate > 0 && !a.take(dir, now, n) {
		a.lim.dropped[dir][1].Inc()
		return false
	}
	return true
}

// take takes n bytes from dir's bucket at time now, if it holds them.
func (a *admission) take(dir int, now int64, n int) bool {
	cost := a.lim.cost(n)
	b := &a.tat[dir]
	for {
		old := b.Load()
		next := max(old, now) + cost
		if next-now > a.lim.burst {
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
func (a *admission) refund(dir, n int) {
	if a.lim.rate > 0 {
		a.tat[dir].Add(-a.lim.cost(n))
	}
}

// permit records a live permission for ip. Called with Server.mu held.
func (a *admission) permit(ip netip.Addr) {
	var lapse int64
	if a.lim.permLife > 0 {
		lapse = a.lim.now() + int64(a.lim.permLife)
	}
	a.editPerms(func(m permSet) { m[ip] = lapse })
}

// revoke forgets the permission for ip. Called with Server.mu held.
func (a *admission) revoke(ip netip.Addr) {
	a.editPerms(func(m permSet) { delete(m, ip) })
}

func (a *admission) editPerms(edit func(permSet)) {
	old := *a.perms.Load()
	m := make(permSet, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	edit(m)
	a.perms.Store(&m)
}

// admitTo decides whether the client's datagram of n bytes may go to
// peer: a live permission, not a guarded address of this host (counted as
// a peer-policy denial), and room under the cap.
func (c *relayConn) admitTo(peer netip.AddrPort, n int) bool {
	if !c.adm.admit(toPeerDir, peer.Addr(), n) {
		return false
	}
	if c.deny(peer) {
		c.adm.refund(toPeerDir, n)
		return false
	}
	return true
}

// admitFrom decides whether a datagram of n bytes from peer may go to the
// client.
func (c *relayConn) admitFrom(peer netip.AddrPort, n int) bool {
	return c.adm.admit(fromPeerDir, peer.Addr(), n)
}
