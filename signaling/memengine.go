package signaling

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
)

// MemoryConfig configures the memory engine.
type MemoryConfig struct {
	// RecentPartners is how many past partners a session is kept from,
	// unless both have settled and nobody else waits. Default 3.
	RecentPartners int
	// Rand drives the draw, the match ids' order of roles and the order
	// tags are tried in. Used only by the caller's goroutine. Nil: seeded
	// from crypto/rand.
	Rand *rand.Rand
}

// memEngine is the Engine of one instance: everything in process, on the
// hub's owner goroutine, which alone calls it (nothing here locks). Its
// sessions are all the hub's, so a partner is never remote and the host
// is never called.
type memEngine struct {
	// Static after NewMemoryEngine.
	recentPartners int
	rng            *rand.Rand

	// Owned by the caller's (the hub's owner) goroutine.
	entries map[string]*entry // by session id
	pool    *pool
	serial  uint64
}

// entry is a session as the memory engine knows it. Owned by the engine.
type entry struct {
	id     string
	serial uint64 // for the avoid lists
	ident  Identity

	// While it waits (the pool reads these; they do not change while it is
	// in the pool).
	mode      Mode
	shadow    bool
	interests []string
	settled   bool
	pos       poolPos

	match   string // the match it is in, if any
	partner *entry // its partner in that match
	role    Role

	recent     []uint64            // ring of the last recentPartners partners
	recentNext int                 // next slot of recent to overwrite
	reported   map[uint64]struct{} // never paired again
}

// defaultRecentPartners is MemoryConfig.RecentPartners's default, as
// Config.RecentPartners's.
const defaultRecentPartners = 3

// NewMemoryEngine returns the in-process engine: today's matchmaker for a
// single instance. The Hub makes one when Config.Engine is nil.
func NewMemoryEngine(cfg MemoryConfig) Engine {
	if cfg.RecentPartners <= 0 {
		cfg.RecentPartners = defaultRecentPartners
	}
	if cfg.Rand == nil {
		var seed [16]byte
		crand.Read(seed[:])
		cfg.Rand = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	return &memEngine{
		recentPartners: cfg.RecentPartners,
		rng:            cfg.Rand,
		entries:        make(map[string]*entry),
		pool:           newPool(cfg.Rand),
	}
}

func (e *memEngine) Start(EngineHost) error { return nil }
func (e *memEngine) Close(bool) error       { return nil }
func (e *memEngine) Node() string           { return "" }
func (e *memEngine) Ready() bool            { return true }

func (e *memEngine) Register(rec SessionRecord) error {
	if e.entries[rec.ID] != nil {
		return nil
	}
	e.serial++
	e.entries[rec.ID] = &entry{id: rec.ID, serial: e.serial, ident: rec.Ident}
	return nil
}

func (e *memEngine) Claim(string) (SessionRecord, bool, error) {
	return SessionRecord{}, false, nil
}

func (e *memEngine) End(id string, _ bool) error {
	x := e.entries[id]
	if x == nil {
		return nil
	}
	e.pool.remove(x)
	if p := x.partner; p != nil && p.partner == x {
		p.partner, p.match = nil, ""
	}
	delete(e.entries, id)
	return nil
}

// entry returns the entry of id, registering it if the hub has not (a
// hub always registers first; this keeps the engine total).
func (e *memEngine) entry(id string) *entry {
	x := e.entries[id]
	if x == nil {
		_ = e.Register(SessionRecord{ID: id})
		x = e.entries[id]
	}
	return x
}

func (e *memEngine) Queue(t Ticket) (Pairing, error) {
	x := e.entry(t.Session)
	if x.match != "" {
		return x.pairing(true), nil
	}
	e.pool.remove(x)
	x.mode, x.shadow, x.interests, x.settled, x.ident = t.Mode, t.Shadow, t.Interests, t.Settled, t.Ident
	if p := e.pool.partnerFor(x, t.Anyone); p != nil {
		e.pair(x, p)
		return x.pairing(false), nil
	}
	e.pool.add(x, t.Anyone)
	return Pairing{}, nil
}

// pair makes a match of x and p, taking both out of the pool.
func (e *memEngine) pair(x, p *entry) {
	e.pool.remove(x)
	e.pool.remove(p)
	id := newID(matchIDBytes)
	x.match, p.match = id, id
	x.partner, p.partner = p, x
	x.role, p.role = RoleOfferer, RoleAnswerer
	if e.rng.IntN(2) == 1 {
		x.role, p.role = p.role, x.role
	}
}

// pairing is x's view of its match.
func (x *entry) pairing(earlier bool) Pairing {
	p := x.partner
	return Pairing{
		Match:        x.match,
		Partner:      p.id,
		Role:         x.role,
		Common:       commonInterests(x.interests, p.interests),
		PartnerIdent: p.ident,
		Earlier:      earlier,
	}
}

func (e *memEngine) Withdraw(id string) (Pairing, error) {
	x := e.entries[id]
	if x == nil {
		return Pairing{}, nil
	}
	e.pool.remove(x)
	return Pairing{}, nil
}

func (e *memEngine) EndMatch(matchID, id, partnerID string, _ LeftReason) error {
	x := e.entries[id]
	if x == nil || x.match != matchID {
		return ErrMatchGone
	}
	p := x.partner
	for _, s := range [2]*entry{x, p} {
		o := s.partner
		s.match, s.partner = "", nil
		s.remember(o, e.recentPartners)
	}
	return nil
}

func (e *memEngine) Block(reporterID, reportedID string) error {
	r, o := e.entries[reporterID], e.entries[reportedID]
	if r == nil || o == nil {
		return nil
	}
	r.block(o.serial)
	return nil
}

// Send is never called: every partner is on this node.
func (e *memEngine) Send(string, string, []byte) {}

func (e *memEngine) Counts() (EngineCounts, error) {
	return EngineCounts{
		Online:       len(e.entries),
		WaitingVideo: e.pool.waiting(ModeVideo),
		WaitingText:  e.pool.waiting(ModeText),
		Shadowed:     e.pool.shadowWaiting(),
		Nodes:        1,
	}, nil
}

// avoids reports whether x would rather not be paired with o: o is one of
// its last partners, or it reported o.
func (x *entry) avoids(o *entry) bool {
	return x.recentlyMet(o) || x.hasReported(o)
}

// recentlyMet reports whether o is one of x's last partners.
func (x *entry) recentlyMet(o *entry) bool {
	for _, r := range x.recent {
		if r == o.serial {
			return true
		}
	}
	return false
}

// hasReported reports whether x reported o: they are never paired again.
func (x *entry) hasReported(o *entry) bool {
	_, rep := x.reported[o.serial]
	return rep
}

func (x *entry) remember(o *entry, keep int) {
	if len(x.recent) < keep {
		x.recent = append(x.recent, o.serial)
		return
	}
	x.recent[x.recentNext] = o.serial
	x.recentNext = (x.recentNext + 1) % keep
}

func (x *entry) block(serial uint64) {
	if x.reported == nil {
		x.reported = make(map[uint64]struct{})
	}
	if len(x.reported) >= maxReported {
		for k := range x.reported {
			delete(x.reported, k)
			break
		}
	}
	x.reported[serial] = struct{}{}
}
