package plane

import (
	"net"
	"net/netip"
	"testing"

	"github.com/strangers-chat/strangers/relay/internal/sockio"
)

// fakeUDP is a sockio.UDP that does nothing: these tests send nothing.
type fakeUDP struct{ sockio.UDP }

func (fakeUDP) Dest(addr net.Addr, _ netip.AddrPort) sockio.Dest { return sockio.Dest{} }

func testRelay() *Relay {
	var c noCounter
	lim := NewLimits(LimitsConfig{
		Dropped: [2][2]Counter{{c, c}, {c, c}}, Denied: c,
		Guarded: func(netip.AddrPort) bool { return false },
	})
	return NewRelay(fakeUDP{}, netip.MustParseAddrPort("192.0.2.1:50000"), lim)
}

// TestBindingTable checks that the binding table, the only copy of an
// allocation's permissions and channels, counts what the control plane
// reported, and that a table handed out earlier does not change.
func TestBindingTable(t *testing.T) {
	t.Parallel()
	r := testRelay()
	ip1, ip2 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	p1, p2 := netip.AddrPortFrom(ip1, 1000), netip.AddrPortFrom(ip2, 2000)
	if n, has := r.Permissions(ip1); n != 0 || has {
		t.Fatalf("new relay: %d permissions, has %v", n, has)
	}
	r.Permit(ip1)
	r.Permit(ip1) // pion reports each creation once; a repeat changes nothing
	r.Permit(ip2)
	if n, has := r.Permissions(ip1); n != 2 || !has || !r.Live(ip1) {
		t.Fatalf("after two permits: %d permissions, has %v", n, has)
	}
	before := r.bind.load()
	r.Bind(0x4000, net.UDPAddrFromAddrPort(p1), p1, nil)
	r.Bind(0x4001, net.UDPAddrFromAddrPort(p2), p2, nil)
	if n, has := r.Channels(0x4001); n != 2 || !has {
		t.Fatalf("after two binds: %d channels, has %v", n, has)
	}
	if len(before.byNum) != 0 {
		t.Fatal("an update changed a table handed out before it")
	}
	// Rebinding a channel to another peer forgets the old peer.
	r.Bind(0x4000, net.UDPAddrFromAddrPort(p2), p2, nil)
	tb := r.bind.load()
	if _, ok := tb.byPeer[p1]; ok || tb.byPeer[p2] != 0x4000 || len(tb.byNum) != 2 {
		t.Fatalf("after a rebind: byNum %v byPeer %v", tb.byNum, tb.byPeer)
	}
	r.Unbind(0x4001) // bound to p2 before the rebind: p2 stays on 0x4000
	r.Unbind(0x4001)
	tb = r.bind.load()
	if n, _ := r.Channels(0); n != 1 || tb.byPeer[p2] != 0x4000 {
		t.Fatalf("after unbind: byNum %v byPeer %v", tb.byNum, tb.byPeer)
	}
	r.Revoke(ip1)
	r.Revoke(ip1)
	if n, has := r.Permissions(ip1); n != 1 || has || r.Live(ip1) {
		t.Fatalf("after revoke: %d permissions, has %v", n, has)
	}
	if !r.AdmitTo(p2, 100) || r.AdmitTo(p1, 100) {
		t.Error("admission does not follow the binding table's permissions")
	}
}

// TestClients checks the sharded client map: lookups see what was set,
// and a delete only removes the Relay it names.
func TestClients(t *testing.T) {
	t.Parallel()
	var c Clients
	r1, r2 := testRelay(), testRelay()
	var aps []netip.AddrPort
	for i := range 1000 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(1024+i))
		aps = append(aps, ap)
		c.Set(ap, r1)
	}
	for _, ap := range aps {
		if c.Get(ap) != r1 {
			t.Fatalf("Get(%v) lost the relay", ap)
		}
	}
	c.Delete(aps[0], r2) // not its relay: stays
	if c.Get(aps[0]) != r1 {
		t.Fatal("Delete removed another relay's client")
	}
	for _, ap := range aps {
		c.Delete(ap, r1)
	}
	for _, ap := range aps {
		if c.Get(ap) != nil {
			t.Fatalf("Get(%v) after delete", ap)
		}
	}
}
