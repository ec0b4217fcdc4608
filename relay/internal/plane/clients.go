package plane

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// clientShards is how many shards a Clients map has. Creating or deleting
// an allocation copies one shard, so at 5,000 allocations on a socket an
// update copies about 20 entries instead of all of them.
const clientShards = 256

// Clients maps the client transport addresses a client-facing UDP socket
// serves to their allocations' Relays. Lookups take no lock; updates are
// serialised per shard and replace the shard's map with an edited copy.
type Clients struct {
	shards [clientShards]clientShard
}

type clientShard struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[netip.AddrPort]*Relay]
	_  [48]byte // keep shards on separate cache lines
}

func shardOf(ap netip.AddrPort) int {
	a := ap.Addr().As16()
	h := uint32(a[12])<<24 | uint32(a[13])<<16 | uint32(a[14])<<8 | uint32(a[15])
	h ^= uint32(ap.Port()) * 0x9E3779B1
	return int((h ^ h>>16) % clientShards)
}

// Get returns the Relay of the client at ap, nil if none.
func (c *Clients) Get(ap netip.AddrPort) *Relay {
	m := c.shards[shardOf(ap)].m.Load()
	if m == nil {
		return nil
	}
	return (*m)[ap]
}

// Set makes r the Relay of the client at ap.
func (c *Clients) Set(ap netip.AddrPort, r *Relay) {
	c.edit(ap, func(m map[netip.AddrPort]*Relay) { m[ap] = r })
}

// Delete forgets the client at ap if its Relay is r.
func (c *Clients) Delete(ap netip.AddrPort, r *Relay) {
	c.edit(ap, func(m map[netip.AddrPort]*Relay) {
		if m[ap] == r {
			delete(m, ap)
		}
	})
}

func (c *Clients) edit(ap netip.AddrPort, edit func(map[netip.AddrPort]*Relay)) {
	s := &c.shards[shardOf(ap)]
	s.mu.Lock()
	defer s.mu.Unlock()
	n := make(map[netip.AddrPort]*Relay)
	if old := s.m.Load(); old != nil {
		for k, v := range *old {
			n[k] = v
		}
	}
	edit(n)
	s.m.Store(&n)
}
