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

	"github.com/gorilla/websocket"
)

// event is a server message as a load client sees it, stamped on arrival.
type event struct {
	typ   string
	match string
	at    time.Time
	sent  int64 // signal: the sender's clock when it sent the candidate (ns)
}

// client is one WebSocket session. Its read goroutine stamps and forwards
// messages while the client is active and discards them (answering pings)
// while it idles.
type client struct {
	ws      *websocket.Conn
	session string
	active  atomic.Bool
	in      chan event
	done    chan struct{} // closed when the read goroutine stops
	dropped atomic.Int64  // events lost because in was full
}

type dialer struct {
	url  string
	srcs []net.IP
	next atomic.Uint64
	ws   websocket.Dialer
	pool sync.Pool
}

func newDialer(url string, srcs []net.IP) *dialer {
	d := &dialer{url: url, srcs: srcs}
	d.ws = websocket.Dialer{
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  &d.pool,
		HandshakeTimeout: 30 * time.Second,
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
	ws, _, err := d.ws.DialContext(ctx, d.url, nil)
	if err != nil {
		return nil, err
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello","version":1}`)); err != nil {
		ws.Close()
		return nil, err
	}
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return nil, err
		}
		var w struct {
			Type    string `json:"type"`
			Session string `json:"session"`
		}
		_ = json.Unmarshal(data, &w) // anything else is not the welcome
		if w.Type == "welcome" {
			ws.SetReadDeadline(time.Time{})
			c := &client{ws: ws, session: w.Session, in: make(chan event, 256), done: make(chan struct{})}
			go c.read()
			return c, nil
		}
	}
}

func (c *client) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		if !c.active.Load() {
			continue
		}
		at := time.Now()
		var m struct {
			Type      string `json:"type"`
			Match     string `json:"match"`
			Candidate *struct {
				Candidate string `json:"candidate"`
			} `json:"candidate"`
		}
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		ev := event{typ: m.Type, match: m.Match, at: at}
		if m.Candidate != nil {
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

func (c *client) send(s string) error {
	c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
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
func (c *client) await(deadline time.Time, types ...string) (event, error) {
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
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
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
