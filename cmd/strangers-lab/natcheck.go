package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// probeWait bounds each wait for a probe packet or connection; on the lab's
// network a packet that gets through arrives within microseconds.
const probeWait = time.Second

// ErrProbe is returned when a NAT probe cannot be carried out.
var ErrProbe = errors.New("strangers-lab: NAT probe")

// natBehaviour is what a site's NAT does to its client's traffic, seen
// from the internet.
type natBehaviour struct {
	UDP          bool       // UDP gets out at all
	Mapped       netip.Addr // the public address the client's UDP appears from
	SamePort     bool       // the public port is the client's own port
	IndepMapping bool       // one mapping whatever the destination
	IndepFilter  bool       // anyone may send to a mapping, not just its destination
	TCP443       bool       // TCP to port 443 gets out
	TCPOther     bool       // TCP to another port (3478) gets out
}

// want is the behaviour a kind of site must show.
func (k siteKind) want(s *site) natBehaviour {
	switch k {
	case kindPublic:
		return natBehaviour{UDP: true, Mapped: s.public, SamePort: true, IndepMapping: true, IndepFilter: true, TCP443: true, TCPOther: true}
	case kindCone:
		return natBehaviour{UDP: true, Mapped: s.public, SamePort: true, IndepMapping: true, IndepFilter: true, TCP443: true, TCPOther: true}
	case kindSymmetric:
		return natBehaviour{UDP: true, Mapped: s.public, TCP443: true, TCPOther: true}
	case kindFirewall:
		return natBehaviour{TCP443: true}
	}
	return natBehaviour{}
}

// probeNAT measures a site's NAT from sockets opened in its client
// namespace and in the internet namespace; the server must be running
// (it answers TCP on 443 and 3478).
func (l *lab) probeNAT(ctx context.Context, s *site) (natBehaviour, error) {
	var b natBehaviour
	var client *net.UDPConn
	err := inNetns(s.client, func() error {
		var err error
		client, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	})
	if err != nil {
		return b, fmt.Errorf("%w: client socket in %s: %w", ErrProbe, s.name, err)
	}
	defer client.Close()
	var refl [3]*net.UDPConn // reflectors: two destinations and a stranger
	err = inNetns(l.inet, func() error {
		for i := range refl {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(serverAddr)})
			if err != nil {
				return err
			}
			refl[i] = c
		}
		return nil
	})
	defer func() {
		for _, c := range refl {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err != nil {
		return b, fmt.Errorf("%w: reflector sockets: %w", ErrProbe, err)
	}

	// Mapping: where do two packets to two destinations come from?
	var seen [2]netip.AddrPort
	for i := range seen {
		if _, err := client.WriteToUDPAddrPort([]byte("probe"), refl[i].LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			return b, fmt.Errorf("%w: sending: %w", ErrProbe, err)
		}
		from, ok := readFrom(refl[i])
		if !ok {
			break // no UDP out
		}
		seen[i] = from
	}
	b.UDP = seen[0].IsValid() && seen[1].IsValid()
	if b.UDP {
		b.Mapped = seen[0].Addr()
		b.SamePort = seen[0].Port() == uint16(client.LocalAddr().(*net.UDPAddr).Port)
		b.IndepMapping = seen[0] == seen[1]
		// Filtering: a stranger sends to the first mapping, then its own
		// destination does. Both take the same path in order, so whether
		// the stranger's packet arrives first tells whether it got in.
		if _, err := refl[2].WriteToUDPAddrPort([]byte("stranger"), seen[0]); err != nil {
			return b, fmt.Errorf("%w: sending from a stranger: %w", ErrProbe, err)
		}
		if _, err := refl[0].WriteToUDPAddrPort([]byte("known"), seen[0]); err != nil {
			return b, fmt.Errorf("%w: sending from the destination: %w", ErrProbe, err)
		}
		buf := make([]byte, 64)
		client.SetReadDeadline(time.Now().Add(probeWait))
		n, _, err := client.ReadFromUDPAddrPort(buf)
		if err != nil {
			return b, fmt.Errorf("%w: no reply from the destination itself: %w", ErrProbe, err)
		}
		b.IndepFilter = string(buf[:n]) == "stranger"
	}

	// TCP: the server listens on 443 (TLS) and 3478 (TURN).
	for _, p := range []struct {
		port int
		ok   *bool
	}{{443, &b.TCP443}, {3478, &b.TCPOther}} {
		err := inNetns(s.client, func() error {
			d := net.Dialer{Timeout: probeWait}
			c, err := d.DialContext(ctx, "tcp4", net.JoinHostPort(serverAddr, fmt.Sprint(p.port)))
			if err == nil {
				*p.ok = true
				c.Close()
			}
			return nil
		})
		if err != nil {
			return b, fmt.Errorf("%w: TCP to %d: %w", ErrProbe, p.port, err)
		}
	}
	return b, nil
}

// nowhere is an address that exists nowhere in the lab (TEST-NET-1).
const nowhere = "192.0.2.1:9"

// probeBlackhole sends from the internet namespace towards an address
// that exists nowhere and reports whether the packets vanish silently:
// no "network unreachable" on send, no ICMP error afterwards.
func (l *lab) probeBlackhole() (silent bool, err error) {
	var c *net.UDPConn
	err = inNetns(l.inet, func() error {
		raddr, err := net.ResolveUDPAddr("udp4", nowhere)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, raddr)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("%w: socket towards %s: %w", ErrProbe, nowhere, err)
	}
	defer c.Close()
	for range 2 {
		if _, err := c.Write([]byte("anyone?")); err != nil {
			return false, nil
		}
	}
	// An ICMP error would surface as an error on this read; silence is a
	// timeout.
	c.SetReadDeadline(time.Now().Add(probeWait / 4))
	_, err = c.Read(make([]byte, 16))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout(), nil
}

// readFrom waits up to probeWait for a packet on c and returns its source.
func readFrom(c *net.UDPConn) (netip.AddrPort, bool) {
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(probeWait))
	_, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), true
}

// inNetns runs fn on an OS thread that has entered network namespace ns;
// sockets fn opens stay in ns. The thread is discarded afterwards, so the
// namespace never leaks into other goroutines.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			errc <- fmt.Errorf("%w: opening namespace %s: %w", ErrProbe, ns, err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("%w: entering namespace %s: %w", ErrProbe, ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
