//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// echoPeer is coturn's turnutils_peer, a plain UDP echo endpoint on
// 127.0.0.1: the far side of a one-sided call. Owned by run, which calls
// stop.
type echoPeer struct {
	cmd    *exec.Cmd
	port   int
	exited chan struct{}
}

func startPeer() (*echoPeer, error) {
	bin, err := exec.LookPath("turnutils_peer")
	if err != nil {
		return nil, fmt.Errorf("turnutils_peer not found (install the Debian package coturn): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting turnutils_peer: %w", err)
	}
	p := &echoPeer{cmd: cmd, port: port, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitEcho(10 * time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// waitEcho sends probes until one comes back, within bound.
func (p *echoPeer) waitEcho(bound time.Duration) error {
	// Unconnected, so an ICMP port unreachable from before the peer
	// listens is not reported as an error of a later read.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p.port}
	if err != nil {
		return fmt.Errorf("turnutils_peer probe: %w", err)
	}
	defer c.Close()
	deadline := time.Now().Add(bound)
	buf := make([]byte, 64)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return errors.New("turnutils_peer exited at start")
		default:
		}
		if _, err := c.WriteToUDP([]byte("relaybench probe"), to); err != nil {
			return fmt.Errorf("turnutils_peer probe: %w", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := c.ReadFromUDP(buf); err == nil && string(buf[:n]) == "relaybench probe" {
			return nil
		}
	}
	return fmt.Errorf("turnutils_peer on %d did not echo within %s", p.port, bound)
}

// stop kills the child by PID.
func (p *echoPeer) stop() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}
