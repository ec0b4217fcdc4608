package redisengine

import (
	"context"
	"net/url"
	"strings"
	"testing"

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
