//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v4"

	"github.com/strangers-chat/strangers/relay"
)

// The scale profile holds many live allocations on one server, made by
// pion/turn clients in this process, and relays traffic on a few of them.
// It reports how fast the allocations were made, the server's CPU per
// allocation, its RSS per allocation (VmRSS before and after, the server
// alone in its process) and, with them all live, loss and CPU per message
// of the traffic.
//
// Our relay answers at most 64 challenges at once per client IPv4 address
// (then 16/s): the clients are spread over loopback source addresses
// 127.77.x.y, scalePerIP each, so that limit is not what is measured.
const (
	scalePerIP   = 40
	scaleWorkers = 64 // allocations being made at once
	helloSize    = 8  // warm-up datagram; traffic datagrams are profile.size
)

// scaleClient is one pion client with its allocation. Owned by runScale.
type scaleClient struct {
	conn   net.PacketConn // the client's UDP socket
	client *turn.Client
	relay  net.PacketConn // the allocation; nil if it failed
}

func (c *scaleClient) close() {
	if c.relay != nil {
		_ = c.relay.Close() // a Refresh with lifetime 0, not waited for
	}
	if c.client != nil {
		c.client.Close()
	}
	_ = c.conn.Close()
}

// scaleSourceIP is the loopback address client i sends from.
func scaleSourceIP(i int) netip.Addr {
	k := i/scalePerIP + 1
	return netip.AddrFrom4([4]byte{127, 77, byte(k >> 8), byte(k)})
}

// runScale measures p.allocs allocations on the server at port, whose
// process is pid.
func runScale(ctx context.Context, port, pid int, secret, sid string, p profile, timeout time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	user, pass := relay.Credentials([]byte(secret), sid, time.Now().Add(24*time.Hour))
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled

	var res result
	var err error
	if res.rss0, err = procRSS(pid); err != nil {
		return res, err
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return res, err
	}

	self0, err := selfCPU()
	if err != nil {
		return res, err
	}
	clients := make([]*scaleClient, p.allocs)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			if c != nil {
				wg.Go(c.close)
			}
		}
		wg.Wait()
	}()
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range scaleWorkers {
		wg.Go(func() {
			for i := range next {
				c, err := newScaleClient(scaleSourceIP(i), server, user, pass, lf)
				clients[i] = c
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
feed:
	for i := range p.allocs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	res.allocWall = time.Since(start)
	for _, c := range clients {
		if c != nil && c.relay != nil {
			res.allocs++
		}
	}
	if res.allocs < p.allocs {
		return res, fmt.Errorf("%d of %d allocations made (%d failed) within %s; first error: %v",
			res.allocs, p.allocs, failed.Load(), timeout, firstErr)
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return res, err
	}
	res.allocCPU = cpu1 - cpu0
	self1, err := selfCPU()
	if err != nil {
		return res, err
	}
	res.clientCPU = self1 - self0
	if res.rss1, err = procRSS(pid); err != nil {
		return res, err
	}

	// Traffic: allocation 2k sends to 2k+1's relay address and back.
	active := clients[:p.active]
	if err := scaleWarmUp(ctx, active); err != nil {
		return res, err
	}
	cpu2, err := procCPU(pid)
	if err != nil {
		return res, err
	}
	sent, recv, err := scaleTraffic(ctx, active, p)
	if err != nil {
		return res, err
	}
	cpu3, err := procCPU(pid)
	if err != nil {
		return res, err
	}
	res.sent, res.recv, res.cpu = sent, recv, cpu3-cpu2
	return res, nil
}

func newScaleClient(src netip.Addr, server, user, pass string, lf logging.LoggerFactory) (*scaleClient, error) {
	conn, err := net.ListenPacket("udp4", netip.AddrPortFrom(src, 0).String())
	if err != nil {
		return nil, fmt.Errorf("scale: listen %s: %w", src, err)
	}
	c := &scaleClient{conn: conn}
	c.client, err = turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Username:       user,
		Password:       pass,
		Conn:           conn,
		LoggerFactory:  lf,
	})
	if err != nil {
		return c, fmt.Errorf("scale: client: %w", err)
	}
	if err := c.client.Listen(); err != nil {
		return c, fmt.Errorf("scale: client listen: %w", err)
	}
	r, err := c.client.Allocate()
	if err != nil {
		return c, fmt.Errorf("scale: allocate from %s: %w", src, err)
	}
	c.relay = r
	return c, nil
}

// partner returns the relay address client i of active sends to.
func partner(active []*scaleClient, i int) net.Addr {
	return active[i^1].relay.LocalAddr()
}

// scaleWarmUp has every active client send one datagram to its partner,
// which makes the permissions (all relay addresses are on 127.0.0.1).
func scaleWarmUp(ctx context.Context, active []*scaleClient) error {
	if len(active)%2 != 0 || len(active) == 0 {
		return errors.New("scale: traffic needs an even, non-zero number of allocations")
	}
	var wg sync.WaitGroup
	errs := make([]error, len(active))
	for i, c := range active {
		wg.Go(func() {
			if _, err := c.relay.WriteTo(make([]byte, helloSize), partner(active, i)); err != nil {
				errs[i] = fmt.Errorf("scale: warm-up send: %w", err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// scaleTraffic has every active client send p.msgs datagrams of p.size
// bytes to its partner, one every p.gap ms, and counts what arrives (until
// all has or 2 s after the last send).
func scaleTraffic(ctx context.Context, active []*scaleClient, p profile) (sent, recv int, err error) {
	var nsent, nrecv atomic.Int64
	var readers sync.WaitGroup
	stopRead := make(chan struct{})
	for _, c := range active {
		readers.Go(func() {
			buf := make([]byte, 2048)
			for {
				select {
				case <-stopRead:
					return
				default:
				}
				_ = c.relay.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				n, _, err := c.relay.ReadFrom(buf)
				if err == nil && n == p.size {
					nrecv.Add(1)
				}
			}
		})
	}
	var senders sync.WaitGroup
	errs := make([]error, len(active))
	for i, c := range active {
		senders.Go(func() {
			payload := make([]byte, p.size)
			to := partner(active, i)
			tick := time.NewTicker(time.Duration(p.gap) * time.Millisecond)
			defer tick.Stop()
			for range p.msgs {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
				if _, err := c.relay.WriteTo(payload, to); err != nil {
					errs[i] = fmt.Errorf("scale: send: %w", err)
					return
				}
				nsent.Add(1)
			}
		})
	}
	senders.Wait()
	drain := time.Now().Add(2 * time.Second)
	for nrecv.Load() < nsent.Load() && time.Now().Before(drain) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond) // polling a counter, bounded by drain
	}
	close(stopRead)
	readers.Wait()
	return int(nsent.Load()), int(nrecv.Load()), errors.Join(errs...)
}
