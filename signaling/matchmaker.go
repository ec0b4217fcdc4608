package signaling

import (
	"math/rand/v2"
)

// The waiting pool. It belongs to the hub's owner goroutine: nothing here
// locks.
//
// Each mode has its own pool, so video and text users never meet. A waiting
// session sits in one set per interest tag and, once it accepts anyone (it
// has no tags, or its interest wait ran out), in the mode's "anyone" set.
// Every set keeps its members in a slice with each member's index stored in
// the member, so adding, removing and drawing at random are O(1). Finding a
// partner draws from at most MaxInterests+1 sets and probes at most maxProbe
// members of each, skipping the seeker itself and sessions either side is
// avoiding (recent partners, reported ones); it never scans the pool. Only
// if that finds no one, and the seeker has waited out its fallback, does a
// second draw of the same bound allow a recent partner (one that has waited
// out its own fallback too).

// maxProbe bounds the members examined per set when the random draw lands on
// an avoided one. Avoided sessions are few (RecentPartners plus reports), so
// in any set larger than that a compatible member is found long before.
const maxProbe = 64

// anySlot is the slot number of the "anyone" set in poolPos.
const anySlot = -1

// poolPos is a session's membership of the pool. Owned by the owner
// goroutine.
type poolPos struct {
	inPool bool
	inAny  bool                // in the mode's anyone set
	anyIdx int32               // index in the anyone set
	tagIdx [MaxInterests]int32 // index in the set of interests[i]
}

type member struct {
	s    *entry
	slot int8 // index into s.interests, or anySlot
}

type randSet struct{ items []member }

func (r *randSet) add(s *entry, slot int) {
	s.pos.setIdx(slot, int32(len(r.items)))
	r.items = append(r.items, member{s, int8(slot)})
}

func (r *randSet) remove(s *entry, slot int) {
	i := s.pos.idx(slot)
	last := len(r.items) - 1
	if int(i) != last {
		moved := r.items[last]
		r.items[i] = moved
		moved.s.pos.setIdx(int(moved.slot), i)
	}
	r.items[last] = member{}
	r.items = r.items[:last]
}

// pick returns a member for which ok holds, drawn at random, or nil.
func (r *randSet) pick(rng *rand.Rand, ok func(*entry) bool) *entry {
	n := len(r.items)
	if n == 0 {
		return nil
	}
	start := rng.IntN(n)
	for i := range min(n, maxProbe) {
		if c := r.items[(start+i)%n].s; ok(c) {
			return c
		}
	}
	return nil
}

func (p *poolPos) idx(slot int) int32 {
	if slot == anySlot {
		return p.anyIdx
	}
	return p.tagIdx[slot]
}

func (p *poolPos) setIdx(slot int, i int32) {
	if slot == anySlot {
		p.anyIdx = i
	} else {
		p.tagIdx[slot] = i
	}
}

type modePool struct {
	size   int
	anyone randSet
	tags   map[string]*randSet
}

// poolKey names one mode's pool, or its shadow pool: sessions in the
// shadow pool (see Moderator.Shadowed) meet only each other.
type poolKey struct {
	mode   Mode
	shadow bool
}

func keyOf(s *entry) poolKey { return poolKey{s.mode, s.shadow} }

// pool is the waiting pool of all modes.
type pool struct {
	modes map[poolKey]*modePool
	rng   *rand.Rand
}

func newPool(rng *rand.Rand) *pool {
	p := &pool{modes: map[poolKey]*modePool{}, rng: rng}
	for _, m := range []Mode{ModeVideo, ModeText} {
		for _, shadow := range []bool{false, true} {
			p.modes[poolKey{m, shadow}] = &modePool{tags: map[string]*randSet{}}
		}
	}
	return p
}

// waiting returns how many sessions wait in mode, shadow pool included.
func (p *pool) waiting(mode Mode) int {
	return p.modes[poolKey{mode, false}].size + p.modes[poolKey{mode, true}].size
}

// shadowWaiting returns how many sessions wait in the shadow pools.
func (p *pool) shadowWaiting() int {
	return p.modes[poolKey{ModeVideo, true}].size + p.modes[poolKey{ModeText, true}].size
}

// add puts s in its mode's pool under each of its interests, and in the
// anyone set if anyone is true. s.mode, s.shadow and s.interests must not
// change while s is in the pool.
func (p *pool) add(s *entry, anyone bool) {
	mp := p.modes[keyOf(s)]
	for i, tag := range s.interests {
		set := mp.tags[tag]
		if set == nil {
			set = &randSet{}
			mp.tags[tag] = set
		}
		set.add(s, i)
	}
	s.pos.inPool = true
	mp.size++
	if anyone {
		p.openToAnyone(s)
	}
}

// openToAnyone lets s be paired without a common interest from now on.
func (p *pool) openToAnyone(s *entry) {
	if !s.pos.inPool || s.pos.inAny {
		return
	}
	p.modes[keyOf(s)].anyone.add(s, anySlot)
	s.pos.inAny = true
}

// remove takes s out of the pool; a no-op if it is not in it.
func (p *pool) remove(s *entry) {
	if !s.pos.inPool {
		return
	}
	mp := p.modes[keyOf(s)]
	for i, tag := range s.interests {
		set := mp.tags[tag]
		set.remove(s, i)
		if len(set.items) == 0 {
			delete(mp.tags, tag)
		}
	}
	if s.pos.inAny {
		mp.anyone.remove(s, anySlot)
	}
	s.pos = poolPos{}
	mp.size--
}

// partnerFor draws a partner for s among the waiting sessions of its mode:
// first one sharing an interest (tags tried in random order), then, if
// anyone is true, anyone who also accepts anyone. s may or may not be in the
// pool itself; it is never its own partner, nor paired with a session
// either of them avoids, with one exception: when no one else will do and s
// has settled (waited out its fallback), a recent partner that has settled
// too is better than nobody. A reported one never is. Both draws are bounded
// like one, so this never scans the pool either.
func (p *pool) partnerFor(s *entry, anyone bool) *entry {
	if c := p.draw(s, anyone, func(c *entry) bool {
		return c != s && !s.avoids(c) && !c.avoids(s)
	}); c != nil || !s.settled {
		return c
	}
	return p.draw(s, anyone, func(c *entry) bool {
		return c != s && c.settled && !s.hasReported(c) && !c.hasReported(s)
	})
}

// draw is partnerFor with its own test of a candidate.
func (p *pool) draw(s *entry, anyone bool, ok func(*entry) bool) *entry {
	mp := p.modes[keyOf(s)]
	if n := len(s.interests); n > 0 {
		var order [MaxInterests]int
		for i := range n {
			order[i] = i
		}
		p.rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order[:n] {
			if set := mp.tags[s.interests[i]]; set != nil {
				if c := set.pick(p.rng, ok); c != nil {
					return c
				}
			}
		}
	}
	if anyone {
		return mp.anyone.pick(p.rng, ok)
	}
	return nil
}

// commonInterests returns the tags a and b share, in a's order, never nil.
func commonInterests(a, b []string) []string {
	common := []string{}
	for _, x := range a {
		for _, y := range b {
			if x == y {
				common = append(common, x)
				break
			}
		}
	}
	return common
}
