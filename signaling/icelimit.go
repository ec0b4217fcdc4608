package signaling

import (
	"net/netip"
	"time"
)

// Minting TURN credentials outside a match (ice) is limited per session
// and per client address (IPv6 per /64): a client that opens session after
// session, asking each for credentials, gets a few and then one per
// iceAddrEvery, like any other session from its address.
const (
	iceAddrBurst = 10
	iceAddrEvery = 6 * time.Second
	// iceAddrMax bounds the per-address buckets; when full, buckets that
	// have refilled are dropped, then an arbitrary one.
	iceAddrMax = 16384
)

// iceRequest answers an ice request from s, or refuses it with
// rate_limited when its session or its address is over its budget. Runs on
// the owner goroutine.
func (h *Hub) iceRequest(s *session, now time.Time) {
	if s.iceBucket == nil {
		b := newTokenBucket(1/iceRequestEvery.Seconds(), iceRequestBurst, now)
		s.iceBucket = &b
	}
	if !s.iceBucket.take(now) {
		h.m.drop(dropRateLimited)
		s.conn.sendError(CodeRateLimited, "too many ice requests")
		return
	}
	if !h.iceAddrTake(s.conn.ip, now) {
		h.m.drop(dropICEAddress)
		s.conn.sendError(CodeRateLimited, "too many ice requests from this address")
		return
	}
	h.deliver(s, encode(&ICEReply{Type: TypeICE, ICEServers: h.iceServers(s)}), false)
}

// iceAddrTake takes a token from the ice bucket of ip (already reduced to
// its /64 by clientAddr).
func (h *Hub) iceAddrTake(ip netip.Addr, now time.Time) bool {
	b := h.iceByAddr[ip]
	if b == nil {
		if len(h.iceByAddr) >= iceAddrMax {
			for k, old := range h.iceByAddr {
				if old.refilled(now) {
					delete(h.iceByAddr, k)
				}
			}
		}
		if len(h.iceByAddr) >= iceAddrMax {
			for k := range h.iceByAddr {
				delete(h.iceByAddr, k)
				break
			}
		}
		nb := newTokenBucket(1/iceAddrEvery.Seconds(), iceAddrBurst, now)
		b = &nb
		h.iceByAddr[ip] = b
	}
	return b.take(now)
}

// refilled reports whether b would be full at now: forgetting it changes
// nothing.
func (b *tokenBucket) refilled(now time.Time) bool {
	return b.tokens+now.Sub(b.last).Seconds()*b.rate >= b.burst
}
