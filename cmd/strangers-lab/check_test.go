package main

import (
	"net/netip"
	"strings"
	"testing"
)

// fakeLab is a lab without namespaces: only its site list, for check.
func fakeLab() *lab {
	l := &lab{}
	for _, k := range siteKinds {
		for i, suffix := range []string{"a", "b"} {
			s := &site{name: string(k) + "-" + suffix, kind: k, public: netip.AddrFrom4([4]byte{203, 0, 113, byte(baseOctet[k] + i + 1)})}
			if k != kindPublic {
				s.private = netip.AddrFrom4([4]byte{192, 168, byte(baseOctet[k] + i + 1), 2})
			}
			l.sites = append(l.sites, s)
		}
	}
	return l
}

func TestCheck(t *testing.T) {
	t.Parallel()
	l := fakeLab()
	ok := func(local, remote, proto string) peerResult {
		return peerResult{Connected: true, Echoed: 10, Local: local, Remote: remote, RelayProto: proto}
	}
	relayCand := "candidate:1 1 udp 16777215 203.0.113.1 50000 typ relay raddr 0.0.0.0 rport 0"
	tests := []struct {
		name string
		c    cell
		run  runResult
		want string // substring of the one expected violation; "" for none
	}{
		{"direct cone-public", cell{a: side{site: "cone-a"}, b: side{site: "public-a"}},
			runResult{a: ok("host", "host", ""), b: ok("host", "prflx", "")}, ""},
		{"relayed cone-public", cell{a: side{site: "cone-a"}, b: side{site: "public-a"}},
			runResult{a: ok("relay", "host", "udp"), b: ok("host", "relay", "")}, "although a direct path exists"},
		{"not connected", cell{a: side{site: "cone-a"}, b: side{site: "cone-b"}},
			runResult{a: peerResult{Error: "boom"}, b: ok("host", "host", "")}, "did not connect"},
		{"symmetric pair relayed", cell{a: side{site: "symmetric-a"}, b: side{site: "symmetric-b"}},
			runResult{a: ok("host", "relay", ""), b: ok("relay", "prflx", "udp")}, ""},
		{"symmetric pair direct", cell{a: side{site: "symmetric-a"}, b: side{site: "symmetric-b"}},
			runResult{a: ok("host", "prflx", ""), b: ok("host", "prflx", "")}, "without the relay"},
		{"firewall over tls", cell{a: side{site: "firewall-a"}, b: side{site: "public-a"}},
			runResult{a: ok("relay", "host", "tls"), b: ok("host", "relay", "")}, ""},
		{"firewall over tcp", cell{a: side{site: "firewall-a"}, b: side{site: "public-a"}},
			runResult{a: ok("relay", "host", "tcp"), b: ok("host", "relay", "")}, "TLS on 443"},
		{"hide ok", cell{a: side{site: "cone-a", hide: true}, b: side{site: "public-a"}},
			runResult{a: peerResult{Connected: true, Echoed: 10, Leaked: 2, Local: "relay", Remote: "host", RelayProto: "udp"},
				b: peerResult{Connected: true, Local: "host", Remote: "relay", Received: []string{relayCand}, Addrs: []string{"203.0.113.1", "0.0.0.0"}}}, ""},
		{"hide ok, the partner met the relay by a check first", cell{a: side{site: "cone-a", hide: true}, b: side{site: "public-a"}},
			runResult{a: peerResult{Connected: true, Echoed: 10, Leaked: 2, Local: "relay", Remote: "host", RelayProto: "tcp"},
				b: peerResult{Connected: true, Local: "host", Remote: "prflx", RemoteAddr: "203.0.113.1", Received: []string{relayCand}}}, ""},
		{"hide, the partner reached another address", cell{a: side{site: "cone-a", hide: true}, b: side{site: "public-a"}},
			runResult{a: peerResult{Connected: true, Echoed: 10, Leaked: 2, Local: "relay", Remote: "host", RelayProto: "udp"},
				b: peerResult{Connected: true, Local: "host", Remote: "prflx", RemoteAddr: "203.0.113.11", Received: []string{relayCand}}}, "remote prflx 203.0.113.11"},
		{"hide leaked a candidate", cell{a: side{site: "cone-a", hide: true}, b: side{site: "public-a"}},
			runResult{a: peerResult{Connected: true, Echoed: 10, Leaked: 2, Local: "relay", Remote: "host", RelayProto: "udp"},
				b: peerResult{Connected: true, Local: "host", Remote: "relay", Received: []string{relayCand, "candidate:2 1 udp 1 203.0.113.11 4000 typ srflx"}}}, "received a srflx candidate"},
		{"hide leaked an address", cell{a: side{site: "cone-a", hide: true}, b: side{site: "public-a"}},
			runResult{a: peerResult{Connected: true, Echoed: 10, Leaked: 2, Local: "relay", Remote: "host", RelayProto: "udp"},
				b: peerResult{Connected: true, Local: "host", Remote: "relay", Received: []string{relayCand}, Addrs: []string{"192.168.11.2"}}}, "was told its address 192.168.11.2"},
		{"hide direct", cell{a: side{site: "cone-a", hide: true}, b: side{site: "public-a"}},
			runResult{a: peerResult{Connected: true, Echoed: 10, Leaked: 2, Local: "host", Remote: "host"},
				b: peerResult{Connected: true, Local: "host", Remote: "prflx"}}, "hides its IP but the path is host"},
		{"hide without a leak attempt", cell{a: side{site: "cone-a", hide: true}, b: side{site: "public-a"}},
			runResult{a: peerResult{Connected: true, Echoed: 10, Local: "relay", Remote: "host", RelayProto: "udp"},
				b: peerResult{Connected: true, Local: "host", Remote: "relay"}}, "nothing was checked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := check(l, cellResult{cell: tt.c, runs: []runResult{tt.run}})
			switch {
			case tt.want == "" && len(got) > 0:
				t.Errorf("violations %v, want none", got)
			case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0].msg, tt.want)):
				t.Errorf("violations %v, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestP50(t *testing.T) {
	t.Parallel()
	conn := func(ms float64) runResult {
		return runResult{a: peerResult{Connected: true, Echoed: 1, ConnectedMs: ms}, b: peerResult{Connected: true, ConnectedMs: ms / 2}}
	}
	tests := []struct {
		name          string
		runs          []runResult
		p50, slowest  float64
		connectedRuns int
	}{
		{"none", nil, 0, 0, 0},
		{"odd", []runResult{conn(30), conn(10), conn(20)}, 20, 30, 3},
		{"even takes the lower middle", []runResult{conn(40), conn(10), conn(20), conn(30)}, 20, 40, 4},
		{"failed runs are left out", []runResult{conn(10), {a: peerResult{Error: "x"}}}, 10, 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cellResult{runs: tt.runs}
			p50, slowest := r.p50()
			if p50 != tt.p50 || slowest != tt.slowest || r.connectedRuns() != tt.connectedRuns {
				t.Errorf("p50 %v max %v connected %d, want %v %v %d", p50, slowest, r.connectedRuns(), tt.p50, tt.slowest, tt.connectedRuns)
			}
		})
	}
}

func TestNATRules(t *testing.T) {
	t.Parallel()
	private := netip.MustParseAddr("192.168.11.2")
	tests := []struct {
		kind     siteKind
		contains []string
		lacks    []string
	}{
		{kindCone, []string{`oifname "wan" masquerade`, "dnat to 192.168.11.2"}, []string{"fully-random", "dport 443"}},
		{kindSymmetric, []string{"masquerade fully-random"}, []string{"dnat", "dport 443"}},
		{kindFirewall, []string{"masquerade fully-random", "tcp dport 443 accept\n\t\tdrop"}, []string{"dnat"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			t.Parallel()
			rules := natRules(tt.kind, private)
			for _, s := range tt.contains {
				if !strings.Contains(rules, s) {
					t.Errorf("rules lack %q:\n%s", s, rules)
				}
			}
			for _, s := range tt.lacks {
				if strings.Contains(rules, s) {
					t.Errorf("rules contain %q:\n%s", s, rules)
				}
			}
		})
	}
}
