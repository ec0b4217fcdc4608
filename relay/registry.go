package relay

import (
	"net"
	"net/netip"
	"time"

	"github.com/strangers-chat/strangers/relay/internal/plane"
	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// The allocation registry: live sessions, live allocations by client
// transport, open relay sockets by port, and which client-facing side
// serves each allocation's data plane. Guarded by Server.mu.

// session is a session the matchmaker declared live.
type session struct {
	ended  bool        // SessionEnded was called; timer closes it after the grace
	timer  *time.Timer // set while ended
	allocs map[string]struct{}
}

// allocState is what the relay tracks about one live allocation. Its
// permissions and channels are in its relay socket's binding table
// (relay.pl), the only copy.
type allocState struct {
	username string
	session  string
	relay    *relayConn     // nil if it closed before pion reported the allocation
	owner    clientSide     // the client-facing side the data plane serves it on; nil: pion relays all
	clientAP netip.AddrPort // the client, with owner
}

// expireSession ends a session whose grace has passed and closes the relay
// sockets of its allocations; pion then deletes the allocations.
func (s *Server) expireSession(id string, st *session) {
	s.mu.Lock()
	if s.sessions[id] != st || !st.ended {
		s.mu.Unlock()
		return
	}
	delete(s.sessions, id)
	var relays []*relayConn
	for key := range st.allocs {
		if a := s.allocs[key]; a != nil && a.relay != nil {
			relays = append(relays, a.relay)
		}
	}
	s.mu.Unlock()
	for _, r := range relays {
		r.Close()
	}
	if len(relays) > 0 {
		s.log.Debug("session ended, allocations closed", "allocations", len(relays))
	}
}

// sessionLive reports whether the session is live or in its grace.
func (s *Server) sessionLive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sessions[id]
	return ok
}

// sessionActive reports whether the session is live and not in its grace:
// only such a session may create allocations.
func (s *Server) sessionActive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.sessions[id]
	return ok && !st.ended
}

// allocatedWith reports whether the client at key holds a live allocation
// made with username.
func (s *Server) allocatedWith(key, username string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.allocs[key]
	return ok && a.username == username
}

// localRelay returns our open relay socket at ap, nil if ap is not one.
// Called with s.mu held.
func (s *Server) localRelay(ap netip.AddrPort) *plane.Relay {
	if s.cfg.NoLocalHandover || !ap.Addr().Is4() || ap.Addr().As4() != s.own4 {
		return nil
	}
	rc := s.relays[int(ap.Port())]
	if rc == nil || rc.pl.Closed() {
		return nil
	}
	return rc.pl
}

// noteAllocate records that owner is handing pion an Allocate request from
// client, so that onAllocationCreated, which pion calls while handling it,
// knows which socket serves the allocation. It returns the key to pass to
// forgetAllocate before owner reads again.
func (s *Server) noteAllocate(owner clientSide, client net.Addr) string {
	key := transportKey(client)
	s.mu.Lock()
	if prev, ok := s.pendingOwner[key]; ok && prev != owner {
		owner = nil // two sockets at once: serve that allocation through pion only
	}
	s.pendingOwner[key] = owner
	s.mu.Unlock()
	return key
}

// forgetAllocate drops what noteAllocate recorded.
func (s *Server) forgetAllocate(key string) {
	s.mu.Lock()
	delete(s.pendingOwner, key)
	s.mu.Unlock()
}

// serve hands a new allocation's channel data to the data plane, through
// the client-facing side that read its Allocate. Without one (two sockets
// at once), with Config.NoFastPath, or without a relay socket, pion
// relays everything of the allocation. Called with s.mu held.
func (s *Server) serve(key string, src net.Addr, a *allocState) {
	owner := s.pendingOwner[key]
	if owner == nil || a.relay == nil || s.cfg.NoFastPath {
		return
	}
	ap, ok := addrPort(src)
	pl := a.relay.pl
	switch o := owner.(type) {
	case *turnPacketConn:
		if !ok {
			return
		}
		pl.Serve(o, o.sio.Dest(src, ap))
		o.clients.Set(ap, pl)
	case *streamConn:
		pl.Serve(o, sockio.Dest{})
		o.fast.Store(pl)
	default:
		return
	}
	a.owner, a.clientAP = owner, ap
}

// unserve undoes serve. Called with s.mu held.
func (s *Server) unserve(a *allocState) {
	if a.owner == nil {
		return
	}
	pl := a.relay.pl
	pl.Unserve()
	switch o := a.owner.(type) {
	case *turnPacketConn:
		o.clients.Delete(a.clientAP, pl)
	case *streamConn:
		o.fast.CompareAndSwap(pl, nil)
	}
	a.owner = nil
}
