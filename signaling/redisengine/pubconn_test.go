package redisengine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// The publisher's own connection logs in as the URL says (user, password,
// database), names itself, and is replaced after Redis drops it (as Redis
// or a proxy may drop an idle one): the next message arrives on a new
// connection, and Redis is not taken for down meanwhile.
func TestPublisherConnection(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t, testsupport.RedisOptions{Password: "pw"})
	u, err := url.Parse(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User, u.Path = url.UserPassword("default", "pw"), "/5"
	withURL := func(c *Config) { c.URL = u.String() }
	a, b := startNode(t, r, "a", withURL), startNode(t, r, "b", withURL)
	sa, _, match := pairAcross(t, a, b)
	b.Send(sa, match, []byte("first"))
	testsupport.WaitFor(t, wait, "the first delivery", func() (ok bool) {
		a.host.read(func() { ok = len(a.host.delivered[sa]) == 1 })
		return ok
	})

	ctx := context.Background()
	publisher := func() (id, db string) {
		list, err := a.rdb.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(list, "\n") {
			f := map[string]string{}
			for _, kv := range strings.Fields(line) {
				k, v, _ := strings.Cut(kv, "=")
				f[k] = v
			}
			if f["name"] == "strangers-publisher-b" {
				return f["id"], f["db"]
			}
		}
		return "", ""
	}
	id, db := publisher()
	if id == "" || db != "5" {
		t.Fatalf("b's publisher connection: id %q, db %q; want one on db 5", id, db)
	}
	if err := a.rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
		t.Fatal(err)
	}
	// Messages sent after the kill reach a: on a new connection, dialled
	// once the old one is seen closed (one written in the moment before
	// may be lost with it).
	testsupport.WaitFor(t, wait, "a delivery after the connection was dropped", func() (ok bool) {
		b.Send(sa, match, []byte("again"))
		a.host.read(func() {
			d := a.host.delivered[sa]
			ok = len(d) > 1 && strings.HasSuffix(d[len(d)-1], "again")
		})
		return ok
	})
	if again, _ := publisher(); again == "" || again == id {
		t.Errorf("publisher connection %q after the kill, want a new one (was %q)", again, id)
	}
	if !b.Ready() || gaugeValue(t, b.m.up) != 1 {
		t.Error("b not ready after its publisher's connection was dropped: that is no outage")
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// fakeRedis accepts connections and answers what the publisher sends:
// +OK to its hello, :1 to each PUBLISH. It counts the connections.
func fakeRedis(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			t.Cleanup(func() { c.Close() })
			go func() {
				r := bufio.NewReader(c)
				for {
					var n int
					if _, err := fmt.Fscanf(r, "*%d\r\n", &n); err != nil {
						return
					}
					var args []string
					for range n {
						var size int
						if _, err := fmt.Fscanf(r, "$%d\r\n", &size); err != nil {
							return
						}
						buf := make([]byte, size+2)
						if _, err := io.ReadFull(r, buf); err != nil {
							return
						}
						args = append(args, string(buf[:size]))
					}
					reply := "+OK\r\n"
					if args[0] == "PUBLISH" {
						reply = ":1\r\n"
					}
					if _, err := io.WriteString(c, reply); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), accepted
}

// A write on a connection found closed is tried once more on a new
// connection; a write that timed out is not (part of the batch may have
// gone out), and Redis is taken for down.
func TestPublishRetriesOnlyAClosedConnection(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		timedOut bool
	}{{"closed", false}, {"timed out", true}} {
		t.Run(c.name, func(t *testing.T) {
			addr, accepted := fakeRedis(t)
			e, err := New(Config{URL: "redis://" + addr + "/0", Node: "n", Timeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			e.bg = context.Background()
			e.up.Store(true)
			old, far := net.Pipe() // nobody reads far: a write waits for its deadline
			defer far.Close()
			pc := &pubConn{c: old, w: bufio.NewWriter(old), r: bufio.NewReader(old), failed: make(chan struct{}), done: make(chan struct{})}
			go pc.read(e)
			if !c.timedOut {
				far.Close() // closed under the publisher, its reader not yet told
			}
			batch := []*outbound{{channel: "strangers:node:m", data: []byte("x")}}
			next := e.publishOn(pc, batch)
			if c.timedOut {
				if next != nil || accepted.Load() != 0 || e.up.Load() || gaugeValue(t, e.m.up) == 1 {
					t.Errorf("after a timeout: connection %v, %d dialled, up %v; want none, none, down", next, accepted.Load(), e.up.Load())
				}
				return
			}
			if next == nil || accepted.Load() != 1 || !e.up.Load() {
				t.Fatalf("after a closed connection: connection %v, %d dialled, up %v; want a new one, 1, up", next, accepted.Load(), e.up.Load())
			}
			next.close()
		})
	}
}
