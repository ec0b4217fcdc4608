package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// The lab's address plan. Everything lives inside namespaces the lab
// creates; nothing here is ever configured in the caller's namespace.
//
//	inet: bridge br0 = 203.0.113.1 (strangers: TLS 443, TURN 3478)
//	      default route via 198.51.100.2 into bh, which drops everything
//	  ├─ cone-a NAT 203.0.113.11 ── cone-a client 192.168.11.2
//	  ├─ cone-b NAT 203.0.113.12 ── cone-b client 192.168.12.2
//	  ├─ symmetric-a/b NATs .21/.22, firewall-a/b NATs .31/.32 (same shape)
//	  └─ public-a/b hosts 203.0.113.41/.42 (no NAT)
const (
	inetCIDR   = "203.0.113.0/24"
	serverAddr = "203.0.113.1"
	// The link from the internet router to the blackhole namespace.
	bhLinkInet = "198.51.100.1/30"
	bhLinkBH   = "198.51.100.2/30"
	bhGateway  = "198.51.100.2"

	// cmdTimeout bounds every ip, nft and sysctl command the lab runs.
	cmdTimeout = 20 * time.Second
)

var (
	// ErrCommand is returned when a command configuring the lab fails.
	ErrCommand = errors.New("strangers-lab: command failed")
	// ErrNoSite is returned for a site name the lab does not have.
	ErrNoSite = errors.New("strangers-lab: no such site")
)

// siteKind is the kind of network a client sits in.
type siteKind string

const (
	// kindPublic is a host with a public address and no NAT.
	kindPublic siteKind = "public"
	// kindCone is an endpoint-independent NAT (full cone): port-preserving
	// masquerade plus inbound UDP forwarded to the one private host.
	kindCone siteKind = "cone"
	// kindSymmetric is an address-and-port-dependent NAT: a fresh random
	// mapping per destination (masquerade fully-random).
	kindSymmetric siteKind = "symmetric"
	// kindFirewall is a corporate firewall: a symmetric NAT that lets only
	// TCP to port 443 out, no UDP at all.
	kindFirewall siteKind = "firewall"
)

// siteKinds is every kind, in the order the matrix prints them.
var siteKinds = []siteKind{kindPublic, kindCone, kindSymmetric, kindFirewall}

// baseOctet is the first public octet of a kind's sites (…1 is site a).
var baseOctet = map[siteKind]int{kindCone: 10, kindSymmetric: 20, kindFirewall: 30, kindPublic: 40}

// site is one place a client runs: a private namespace behind a NAT
// namespace, or a public host.
type site struct {
	name    string     // e.g. "cone-a"
	kind    siteKind   // what the client sits behind
	nat     string     // the NAT namespace; "" for a public host
	client  string     // the namespace the client runs in
	public  netip.Addr // the site's address on the internet (NAT or host)
	private netip.Addr // the client's private address; invalid for a public host
}

// addrs returns every address of the site's own client.
func (s *site) addrs() []netip.Addr {
	if s.private.IsValid() {
		return []netip.Addr{s.public, s.private}
	}
	return []netip.Addr{s.public}
}

// lab is a set of network namespaces: the internet with the server, a
// blackhole, and client sites. Close deletes all of it.
type lab struct {
	id    string // random, part of every namespace name
	inet  string // the internet namespace (router, bridge, server)
	bh    string // the blackhole namespace
	sites []*site
	netns []string // every namespace created, for Close
}

// nsPrefix starts every namespace name the lab creates.
const nsPrefix = "sl-"

// newLab builds the lab with two sites of every kind. On error it deletes
// whatever it had created.
func newLab(ctx context.Context) (_ *lab, err error) {
	l := &lab{id: randHex(6)}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	l.inet, l.bh = l.nsName("inet"), l.nsName("bh")
	if err := l.addNS(ctx, l.inet); err != nil {
		return nil, err
	}
	if err := l.addNS(ctx, l.bh); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"-n", l.inet, "link", "add", "br0", "type", "bridge"},
		{"-n", l.inet, "addr", "add", serverAddr + "/24", "dev", "br0"},
		{"-n", l.inet, "link", "set", "br0", "up"},
		{"-n", l.inet, "link", "add", "bh0", "type", "veth", "peer", "name", "up0", "netns", l.bh},
		{"-n", l.inet, "addr", "add", bhLinkInet, "dev", "bh0"},
		{"-n", l.inet, "link", "set", "bh0", "up"},
		{"-n", l.bh, "addr", "add", bhLinkBH, "dev", "up0"},
		{"-n", l.bh, "link", "set", "up0", "up"},
		// Sends to addresses that exist nowhere vanish, as on the real
		// internet, instead of failing at once with "network unreachable".
		{"-n", l.inet, "route", "add", "default", "via", bhGateway},
	}
	if err := l.ip(ctx, steps...); err != nil {
		return nil, err
	}
	if err := l.sysctl(ctx, l.inet, "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	if err := l.nft(ctx, l.bh, blackholeRules); err != nil {
		return nil, err
	}
	for _, kind := range siteKinds {
		for i, suffix := range []string{"a", "b"} {
			s, err := l.addSite(ctx, kind, suffix, baseOctet[kind]+i+1)
			if err != nil {
				return nil, err
			}
			l.sites = append(l.sites, s)
		}
	}
	return l, nil
}

func (l *lab) nsName(role string) string { return nsPrefix + l.id + "-" + role }

// addSite creates one client site with public address 203.0.113.<octet>.
func (l *lab) addSite(ctx context.Context, kind siteKind, suffix string, octet int) (*site, error) {
	s := &site{
		name:   string(kind) + "-" + suffix,
		kind:   kind,
		public: netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", octet)),
	}
	s.client = l.nsName(s.name)
	if err := l.addNS(ctx, s.client); err != nil {
		return nil, err
	}
	port := fmt.Sprintf("s%d", octet) // the site's port on the bridge
	if kind == kindPublic {
		err := l.ip(ctx,
			[]string{"-n", s.client, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", l.inet},
			[]string{"-n", l.inet, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", s.client, "addr", "add", s.public.String() + "/24", "dev", "eth0"},
			[]string{"-n", s.client, "link", "set", "eth0", "up"},
			[]string{"-n", s.client, "route", "add", "default", "via", serverAddr},
		)
		return s, err
	}
	s.nat = l.nsName(s.name + "-nat")
	if err := l.addNS(ctx, s.nat); err != nil {
		return nil, err
	}
	gw := fmt.Sprintf("192.168.%d.1", octet)
	s.private = netip.MustParseAddr(fmt.Sprintf("192.168.%d.2", octet))
	err := l.ip(ctx,
		[]string{"-n", s.nat, "link", "add", "wan", "type", "veth", "peer", "name", port, "netns", l.inet},
		[]string{"-n", l.inet, "link", "set", port, "master", "br0", "up"},
		[]string{"-n", s.nat, "addr", "add", s.public.String() + "/24", "dev", "wan"},
		[]string{"-n", s.nat, "link", "set", "wan", "up"},
		[]string{"-n", s.nat, "route", "add", "default", "via", serverAddr},
		[]string{"-n", s.nat, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", s.client},
		[]string{"-n", s.nat, "addr", "add", gw + "/24", "dev", "lan"},
		[]string{"-n", s.nat, "link", "set", "lan", "up"},
		[]string{"-n", s.client, "addr", "add", s.private.String() + "/24", "dev", "eth0"},
		[]string{"-n", s.client, "link", "set", "eth0", "up"},
		[]string{"-n", s.client, "route", "add", "default", "via", gw},
	)
	if err != nil {
		return nil, err
	}
	if err := l.sysctl(ctx, s.nat, "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	if err := l.nft(ctx, s.nat, natRules(kind, s.private)); err != nil {
		return nil, err
	}
	return s, nil
}

// site returns the site with this name.
func (l *lab) site(name string) (*site, error) {
	for _, s := range l.sites {
		if s.name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoSite, name)
}

// addNS creates a namespace with loopback up and IPv6 off (the lab is IPv4
// only; link-local IPv6 addresses would only add dead candidates).
func (l *lab) addNS(ctx context.Context, ns string) error {
	if err := l.ip(ctx, []string{"netns", "add", ns}); err != nil {
		return err
	}
	l.netns = append(l.netns, ns)
	if err := l.sysctl(ctx, ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		return err
	}
	return l.ip(ctx, []string{"-n", ns, "link", "set", "lo", "up"})
}

// Close deletes every namespace of the lab. Processes still running in one
// keep it alive until they exit, so callers stop theirs first. A second
// Close finds nothing to delete.
func (l *lab) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var errs []error
	for i := len(l.netns) - 1; i >= 0; i-- {
		if err := l.ip(ctx, []string{"netns", "del", l.netns[i]}); err != nil {
			errs = append(errs, err)
		}
	}
	l.netns = nil
	return errors.Join(errs...)
}

// ip runs "ip <args>" for each step in order.
func (l *lab) ip(ctx context.Context, steps ...[]string) error {
	for _, args := range steps {
		if err := command(ctx, nil, "ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// sysctl sets kernel parameters inside namespace ns.
func (l *lab) sysctl(ctx context.Context, ns string, settings ...string) error {
	return command(ctx, nil, "ip", append([]string{"netns", "exec", ns, "sysctl", "-q", "-w"}, settings...)...)
}

// nft loads a ruleset into namespace ns.
func (l *lab) nft(ctx context.Context, ns, rules string) error {
	return command(ctx, strings.NewReader(rules), "ip", "netns", "exec", ns, "nft", "-f", "-")
}

// command runs name with args and stdin, bounded by cmdTimeout.
func command(ctx context.Context, stdin *strings.Reader, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s %s: %w: %s", ErrCommand, name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// blackholeRules make the blackhole namespace swallow every packet without
// an answer (no ICMP errors either).
const blackholeRules = `table inet blackhole {
	chain input { type filter hook input priority 0; policy drop; }
	chain forward { type filter hook forward priority 0; policy drop; }
	chain output { type filter hook output priority 0; policy drop; }
}
`

// natRules returns the nftables ruleset of a NAT namespace of this kind;
// "wan" faces the internet, "lan" the private client at private.
func natRules(kind siteKind, private netip.Addr) string {
	var pre, post, forward string
	switch kind {
	case kindCone:
		// Port-preserving masquerade maps a private port to the same public
		// port whatever the destination (endpoint-independent mapping);
		// inbound UDP from anyone is sent on to the one private host, port
		// unchanged (endpoint-independent filtering): a full cone.
		post = `oifname "wan" masquerade`
		pre = fmt.Sprintf(`iifname "wan" meta l4proto udp dnat to %s`, private)
	case kindSymmetric:
		post = `oifname "wan" masquerade fully-random`
	case kindFirewall:
		post = `oifname "wan" masquerade fully-random`
		forward = `ct state established,related accept
		iifname "lan" oifname "wan" tcp dport 443 accept
		drop`
	}
	return fmt.Sprintf(`table ip lab {
	chain prerouting { type nat hook prerouting priority dstnat; policy accept;
		%s
	}
	chain postrouting { type nat hook postrouting priority srcnat; policy accept;
		%s
	}
	chain forward { type filter hook forward priority filter; policy accept;
		%s
	}
	# Nothing is addressed to the NAT itself: unsolicited packets vanish
	# instead of drawing ICMP errors, as at a real home or office router.
	chain input { type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
	}
}
`, pre, post, forward)
}
