package relay

import (
	"net/netip"
	"sync"
	"time"
)

// pendingSlotTTL is how long a slot reserved for an Allocate may stay
// unconfirmed before the sweep reclaims it. pion reports relay creation
// failures through OnAllocationError, which releases the slot at once; the
// sweep is the safety net for paths that report nothing.
const pendingSlotTTL = 30 * time.Second

// Quota kinds, used as the "kind" label of quota_hits_total.
const (
	quotaSession     = "session"
	quotaTotal       = "total"
	quotaClientIP    = "client_ip"
	quotaPermissions = "permissions"
	quotaChannels    = "channels"
)

// quota counts allocations per session, per client address (IPv6 per /64,
// see clientUnit) and in total. Slots are reserved in
// pion's QuotaHandler, before the relay socket exists, so concurrent
// Allocates cannot all pass the check; the reservation is confirmed by
// OnAllocationCreated and released by OnAllocationDeleted (or, if creation
// failed, by OnAllocationError or the sweep). Slots are keyed by the client's
// transport address, so a retransmitted Allocate reuses its slot.
type quota struct {
	perSession, perIP, total int

	mu        sync.Mutex
	slots     map[string]*slot   // guarded by mu; key: transport key of the client
	bySession map[string]int     // guarded by mu
	byIP      map[netip.Addr]int // guarded by mu; key: clientUnit of the client
}

type slot struct {
	session   string
	ip        netip.Addr // clientUnit of the client
	confirmed bool
	reserved  time.Time
}

func newQuota(perSession, perIP, total int) *quota {
	return &quota{
		perSession: perSession,
		perIP:      perIP,
		total:      total,
		slots:      make(map[string]*slot),
		bySession:  make(map[string]int),
		byIP:       make(map[netip.Addr]int),
	}
}

// reserve takes a slot for an Allocate from key (client address ip, already
// reduced by clientUnit) on behalf of session. It returns "" on success,
// else the kind of quota that is exhausted.
func (q *quota) reserve(key, session string, ip netip.Addr, now time.Time) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s, ok := q.slots[key]; ok && s.session == session {
		return "" // retransmission or retry from the same transport address
	}
	if len(q.slots) >= q.total {
		return quotaTotal
	}
	if q.bySession[session] >= q.perSession {
		return quotaSession
	}
	if q.byIP[ip] >= q.perIP {
		return quotaClientIP
	}
	if old, ok := q.slots[key]; ok {
		q.dropLocked(key, old)
	}
	q.slots[key] = &slot{session: session, ip: ip, reserved: now}
	q.bySession[session]++
	q.byIP[ip]++
	return ""
}

// confirm marks the slot of key as backing a live allocation.
func (q *quota) confirm(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s, ok := q.slots[key]; ok {
		s.confirmed = true
	}
}

// release frees the slot of key, confirmed or not.
func (q *quota) release(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s, ok := q.slots[key]; ok {
		q.dropLocked(key, s)
	}
}

// releasePending frees the slot of key only if it was never confirmed, and
// reports whether it did.
func (q *quota) releasePending(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s, ok := q.slots[key]; ok && !s.confirmed {
		q.dropLocked(key, s)
		return true
	}
	return false
}

// sweep reclaims unconfirmed slots reserved before cutoff.
func (q *quota) sweep(cutoff time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for k, s := range q.slots {
		if !s.confirmed && s.reserved.Before(cutoff) {
			q.dropLocked(k, s)
			n++
		}
	}
	return n
}

func (q *quota) dropLocked(key string, s *slot) {
	delete(q.slots, key)
	if q.bySession[s.session] <= 1 {
		delete(q.bySession, s.session)
	} else {
		q.bySession[s.session]--
	}
	if q.byIP[s.ip] <= 1 {
		delete(q.byIP, s.ip)
	} else {
		q.byIP[s.ip]--
	}
}

// counts returns the number of slots in use and those held by session.
func (q *quota) counts(session string) (total, perSession int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.slots), q.bySession[session]
}

// ipCount returns the slots held by client address ip (a clientUnit).
func (q *quota) ipCount(ip netip.Addr) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.byIP[ip]
}
