package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

// event is a server message as a load client sees it, stamped on arrival.
type event struct {
	typ   signaling.MsgType
	match string
	at    time.Time
	sent  int64 // signal: the sender's clock when it sent the candidate (ns)
}

// client is one WebSocket session. Its read goroutine stamps and forwards
// messages while the client is active and discards them (answering pings)
// while it idles.
type client struct {
	ws      *wsclient.Conn
	session string
	node    int // index of the node (dialer URL) it is connected to
	active  atomic.Bool
	in      chan event
	done    chan struct{} // closed when the read goroutine stops
	dropped atomic.Int64  // events lost because in was full
}

// dialer opens sessions on its URLs in turn, one per node.
type dialer struct {
	urls []string
	turn atomic.Uint64 // which URL the next dial takes
	srcs []net.IP
	next atomic.Uint64
	opts wsclient.Options
	pool sync.Pool
}

func newDialer(urls []string, srcs []net.IP) *dialer {
	d := &dialer{urls: urls, srcs: srcs}
	d.opts = wsclient.Options{
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  &d.pool,
		HandshakeTimeout: 30 * time.Second,
		WriteWait:        10 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			src := d.srcs[d.next.Add(1)%uint64(len(d.srcs))]
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 30 * time.Second, Control: bindNoPort}
			return nd.DialContext(ctx, network, addr)
		},
	}
	return d
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT: binding to a source address
// then picks the port at connect time, per destination, instead of
// searching for a port free for every destination (which slows each dial
// down as thousands are open).
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

const ipBindAddressNoPort = 24 // IP_BIND_ADDRESS_NO_PORT, Linux 4.2+

// dial opens a connection, says hello and waits for welcome.
func (d *dialer) dial(ctx context.Context) (*client, error) {
	node := int((d.turn.Add(1) - 1) % uint64(len(d.urls)))
	ws, err := wsclient.Dial(ctx, d.urls[node], d.opts)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := ws.Hello(hctx, "")
	if err != nil {
		ws.Close()
		return nil, err
	}
	c := &client{ws: ws, session: w.Session, node: node, in: make(chan event, 256), done: make(chan struct{})}
	go c.read()
	return c, nil
}

// serverMsg is the little of a server message the load client reads:
// one JSON decode per message, no per-type value.
type serverMsg struct {
	Type      signaling.MsgType `json:"type"`
	Match     string            `json:"match"`
	Candidate *struct {
		Candidate string `json:"candidate"`
	} `json:"candidate"`
}

func (c *client) read() {
	defer close(c.done)
	var m serverMsg
	for {
		data, err := c.ws.RecvRaw()
		if err != nil {
			return
		}
		if !c.active.Load() {
			continue
		}
		m = serverMsg{}
		if json.Unmarshal(data, &m) != nil {
			m.Type = "" // not a message any phase waits for
		}
		ev := event{typ: m.Type, match: m.Match, at: time.Now()}
		if m.Type == signaling.TypeSignal && m.Candidate != nil {
			if i := strings.LastIndex(m.Candidate.Candidate, " sent "); i >= 0 {
				ev.sent, _ = strconv.ParseInt(m.Candidate.Candidate[i+6:], 10, 64)
			}
		}
		select {
		case c.in <- ev:
		default:
			c.dropped.Add(1)
		}
	}
}

// send writes one client message (a signaling message value).
func (c *client) send(msg any) error {
	return c.ws.Send(context.Background(), msg)
}

// activate empties the client's queue and starts forwarding messages.
func (c *client) activate() {
	c.drain()
	c.active.Store(true)
}

func (c *client) deactivate() {
	c.active.Store(false)
	c.drain()
}

func (c *client) drain() {
	for {
		select {
		case <-c.in:
		default:
			return
		}
	}
}

// await returns the next event of one of the types, or an error at the
// deadline or if the connection ends.
func (c *client) await(deadline time.Time, types ...signaling.MsgType) (event, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case ev := <-c.in:
			for _, t := range types {
				if ev.typ == t {
					return ev, nil
				}
			}
		case <-c.done:
			return event{}, fmt.Errorf("connection of %s ended", c.session)
		case <-timer.C:
			return event{}, fmt.Errorf("no %v for %s in time", types, c.session)
		}
	}
}

// close ends the session for good (close 1000) and waits for the reader.
func (c *client) close() {
	_ = c.ws.SendClose() // best effort: the connection may be gone
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	c.ws.Close()
	<-c.done
}

func (c *client) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}
