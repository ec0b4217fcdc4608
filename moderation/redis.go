package moderation

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultRedisTimeout bounds each call of a RedisStore (RedisConfig.Timeout).
const DefaultRedisTimeout = 3 * time.Second

// Redis keys, all under one prefix. Records are JSON in hashes keyed by
// their id (or client), so that listings sort by key as Bolt's do.
const (
	redisPrefix   = "strangers:mod:"
	rSecretPrefix = redisPrefix + "secret:"      // + name: a string
	rBans         = redisPrefix + "bans"         // hash: ban id → Ban
	rReports      = redisPrefix + "reports"      // hash: report id → Report
	rFrames       = redisPrefix + "frames"       // hash: report id → still frame
	rReportTimes  = redisPrefix + "reports:time" // sorted set: report id by Unix µs of its time
	rReportsOpen  = redisPrefix + "reports:open" // set: ids of open reports
	rPool         = redisPrefix + "pool"         // hash: client → PoolEntry
	rReporters    = redisPrefix + "reporters"    // hash: client → Reporter
	rAudit        = redisPrefix + "audit"        // hash: entry id → AuditEntry
	rVersion      = redisPrefix + "version"      // counter: bumped by every write of bans or the pool
	// ChangesChannel is the pub/sub channel on which every write of bans,
	// the shadow pool, reporters and reports is announced (a Change, in
	// JSON).
	ChangesChannel = redisPrefix + "changes"
)

// deleteBatch is how many reports DeleteReportsBefore deletes per round trip.
const deleteBatch = 500

// RedisConfig configures OpenRedis.
type RedisConfig struct {
	// URL is redis://[user:password@]host:port[/db], or rediss:// for TLS.
	// Required. It is never part of an error or a log.
	URL string
	// Timeout bounds every call (and each dial, read and write).
	// Default DefaultRedisTimeout.
	Timeout time.Duration
	// TLS configures the connection for a rediss:// URL (for example the
	// roots of a private CA); its ServerName defaults to the URL's host.
	// Nil: the system roots. Only with rediss://.
	TLS *tls.Config
}

// RedisStore is the Store shared by several instances through one Redis:
// every instance sees the same bans, reports, shadow pool, reporters,
// audit log and secrets. It is Shared: each write is announced on
// ChangesChannel, so that every instance's Service learns of it.
type RedisStore struct {
	// Static after OpenRedis; go-redis's client is safe for concurrent use.
	c       *redis.Client
	addr    string // host:port, for errors
	timeout time.Duration

	mu      sync.Mutex
	secrets map[string][]byte // handed out by Secret, put back after Redis lost them
}

var _ Shared = (*RedisStore)(nil)

// OpenRedis connects to the Redis at cfg.URL and checks that it answers.
func OpenRedis(ctx context.Context, cfg RedisConfig) (*RedisStore, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRedisTimeout
	}
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, fmt.Errorf("moderation: the Redis URL: %w", err)
	}
	if cfg.TLS != nil {
		if opt.TLSConfig == nil {
			return nil, errors.New("moderation: the Redis URL is not rediss:// but TLS is configured")
		}
		t := cfg.TLS.Clone()
		if t.ServerName == "" {
			t.ServerName = opt.TLSConfig.ServerName
		}
		opt.TLSConfig = t
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout, cfg.Timeout
	opt.ContextTimeoutEnabled = true
	// Plain RESP: no client name, no server push Redis may not have.
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	s := &RedisStore{c: redis.NewClient(opt), addr: opt.Addr, timeout: cfg.Timeout, secrets: map[string][]byte{}}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := s.c.Ping(ctx).Err(); err != nil {
		s.c.Close()
		return nil, fmt.Errorf("moderation: redis %s: %w", s.addr, err)
	}
	return s, nil
}

// Addr is the Redis server's host:port.
func (s *RedisStore) Addr() string { return s.addr }

// Close closes the connections.
func (s *RedisStore) Close() error {
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("moderation: redis %s: close: %w", s.addr, err)
	}
	return nil
}

func (s *RedisStore) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

func (s *RedisStore) fail(what string, err error) error {
	return fmt.Errorf("moderation: redis %s: %s: %w", s.addr, what, err)
}

// write runs f in a transaction that also announces change (unless nil).
func (s *RedisStore) write(what string, change *Change, f func(ctx context.Context, p redis.Pipeliner)) error {
	var msg []byte
	if change != nil {
		var err error
		if msg, err = json.Marshal(change); err != nil {
			return fmt.Errorf("moderation: encode: %w", err)
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		f(ctx, p)
		if msg != nil {
			p.Publish(ctx, ChangesChannel, msg)
		}
		return nil
	})
	if err != nil {
		return s.fail(what, err)
	}
	return nil
}

func (s *RedisStore) put(key, field string, v any, change *Change) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("moderation: encode: %w", err)
	}
	return s.write("write "+key, change, func(ctx context.Context, p redis.Pipeliner) {
		p.HSet(ctx, key, field, data)
		if key == rBans || key == rPool {
			p.Incr(ctx, rVersion)
		}
	})
}

// redisList returns the records of a hash in the order of their keys.
func redisList[T any](s *RedisStore, key string) ([]T, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	m, err := s.c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, s.fail("read "+key, err)
	}
	var out []T
	for _, k := range slices.Sorted(maps.Keys(m)) {
		var x T
		if err := json.Unmarshal([]byte(m[k]), &x); err != nil {
			return nil, fmt.Errorf("moderation: decode %s %s: %w", key, k, err)
		}
		out = append(out, x)
	}
	return out, nil
}

// secretScript returns the secret at KEYS[1] if it is ARGV[2] bytes long,
// else stores ARGV[1] there and returns it: atomically, so that every
// instance gets the same one.
var secretScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.len(v) == tonumber(ARGV[2]) then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`)

// Secret implements Store: the first instance to ask makes it, every
// other one gets the same.
func (s *RedisStore) Secret(name string, n int) ([]byte, error) {
	fresh := make([]byte, n)
	crand.Read(fresh)
	ctx, cancel := s.ctx()
	defer cancel()
	v, err := secretScript.Run(ctx, s.c, []string{rSecretPrefix + name}, fresh, n).Text()
	if err != nil {
		return nil, s.fail("secret "+name, err)
	}
	if len(v) != n {
		return nil, fmt.Errorf("moderation: redis %s: secret %s is %d bytes, want %d", s.addr, name, len(v), n)
	}
	s.mu.Lock()
	s.secrets[name] = []byte(v)
	s.mu.Unlock()
	return []byte(v), nil
}

// restoreSecrets puts back the secrets this store handed out if Redis
// lost them (restarted without its data): an instance starting later
// then gets the key the running ones sign with, not a new one.
func (s *RedisStore) restoreSecrets(ctx context.Context) {
	s.mu.Lock()
	secrets := maps.Clone(s.secrets)
	s.mu.Unlock()
	for name, v := range secrets {
		ctx, cancel := context.WithTimeout(ctx, s.timeout)
		_ = s.c.SetNX(ctx, rSecretPrefix+name, v, 0).Err() // tried again at the next reconnection
		cancel()
	}
}

// PutBan implements Store.
func (s *RedisStore) PutBan(b Ban) error { return s.put(rBans, b.ID, b, &Change{Ban: &b}) }

// Version implements Shared.
func (s *RedisStore) Version() (uint64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	v, err := s.c.Get(ctx, rVersion).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail("read the version", err)
	}
	return v, nil
}

// Bans implements Store.
func (s *RedisStore) Bans() ([]Ban, error) { return redisList[Ban](s, rBans) }

// PutReport implements Store.
func (s *RedisStore) PutReport(r Report, frame []byte) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("moderation: encode: %w", err)
	}
	brief := r
	brief.Chat, brief.Note = nil, "" // the others need only what counts towards the shadow pool
	return s.write("write report", &Change{Report: &brief, Reports: true}, func(ctx context.Context, p redis.Pipeliner) {
		if frame != nil {
			p.HSet(ctx, rFrames, r.ID, frame)
		}
		p.HSet(ctx, rReports, r.ID, data)
		p.ZAdd(ctx, rReportTimes, redis.Z{Score: float64(r.Time.UnixMicro()), Member: r.ID})
		if r.Status == StatusOpen {
			p.SAdd(ctx, rReportsOpen, r.ID)
		} else {
			p.SRem(ctx, rReportsOpen, r.ID)
		}
	})
}

// Report implements Store.
func (s *RedisStore) Report(id string) (Report, []byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var rc, fc *redis.StringCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		rc, fc = p.HGet(ctx, rReports, id), p.HGet(ctx, rFrames, id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Report{}, nil, s.fail("read report", err)
	}
	data, err := rc.Bytes()
	if errors.Is(err, redis.Nil) {
		return Report{}, nil, ErrNotFound
	}
	if err != nil {
		return Report{}, nil, s.fail("read report", err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return Report{}, nil, fmt.Errorf("moderation: decode report %s: %w", id, err)
	}
	frame, err := fc.Bytes()
	if errors.Is(err, redis.Nil) {
		return r, nil, nil
	}
	if err != nil {
		return Report{}, nil, s.fail("read frame", err)
	}
	return r, frame, nil
}

// Reports implements Store.
func (s *RedisStore) Reports() ([]Report, error) { return redisList[Report](s, rReports) }

// OpenReports implements Shared.
func (s *RedisStore) OpenReports() (int, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	n, err := s.c.SCard(ctx, rReportsOpen).Result()
	if err != nil {
		return 0, s.fail("count open reports", err)
	}
	return int(n), nil
}

// deleteReportsScript deletes the reports ARGV (KEYS: reports, frames,
// times, open) and returns how many it deleted and how many of them were
// open, counting only those still there: two instances sweeping at once
// count each report once.
var deleteReportsScript = redis.NewScript(`
local n, open = 0, 0
for _, id in ipairs(ARGV) do
  if redis.call('HDEL', KEYS[1], id) == 1 then
    n = n + 1
    redis.call('HDEL', KEYS[2], id)
    open = open + redis.call('SREM', KEYS[4], id)
  end
  redis.call('ZREM', KEYS[3], id)
end
return {n, open}
`)

// DeleteReportsBefore implements Store.
func (s *RedisStore) DeleteReportsBefore(t time.Time) (int, int, error) {
	n, open := 0, 0
	for {
		ctx, cancel := s.ctx()
		ids, err := s.c.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: rReportTimes, Start: "-inf", Stop: strconv.FormatInt(t.UnixMicro(), 10), ByScore: true, Count: deleteBatch,
		}).Result()
		cancel()
		if err != nil {
			return n, open, s.fail("list old reports", err)
		}
		if len(ids) == 0 {
			return n, open, nil
		}
		ctx, cancel = s.ctx()
		datas, err := s.c.HMGet(ctx, rReports, ids...).Result()
		cancel()
		if err != nil {
			return n, open, s.fail("read old reports", err)
		}
		var doomed []any
		for i, d := range datas {
			str, ok := d.(string)
			if !ok { // gone: only its index entry is left
				doomed = append(doomed, ids[i])
				continue
			}
			var r Report
			if err := json.Unmarshal([]byte(str), &r); err != nil {
				return n, open, fmt.Errorf("moderation: decode report %s: %w", ids[i], err)
			}
			if r.Time.Before(t) {
				doomed = append(doomed, ids[i])
			}
		}
		if len(doomed) > 0 {
			ctx, cancel = s.ctx()
			res, err := deleteReportsScript.Run(ctx, s.c, []string{rReports, rFrames, rReportTimes, rReportsOpen}, doomed...).Int64Slice()
			cancel()
			if err != nil || len(res) != 2 {
				return n, open, s.fail("delete old reports", err)
			}
			n, open = n+int(res[0]), open+int(res[1])
			if res[0] > 0 {
				if err := s.write("announce deleted reports", &Change{Reports: true}, func(context.Context, redis.Pipeliner) {}); err != nil {
					return n, open, err
				}
			}
		}
		if len(doomed) < len(ids) || len(ids) < deleteBatch {
			// What is left in range was made within t's microsecond, at
			// or after t; or nothing is left.
			return n, open, nil
		}
		// The deleted ones left the index: the next batch starts there.
	}
}

// PutPool implements Store.
func (s *RedisStore) PutPool(e PoolEntry) error { return s.put(rPool, e.Client, e, &Change{Pool: &e}) }

// Pool implements Store.
func (s *RedisStore) Pool() ([]PoolEntry, error) { return redisList[PoolEntry](s, rPool) }

// DeletePool implements Store.
func (s *RedisStore) DeletePool(client string) error {
	return s.write("delete pool entry", &Change{Unpooled: client}, func(ctx context.Context, p redis.Pipeliner) {
		p.HDel(ctx, rPool, client)
		p.Incr(ctx, rVersion)
	})
}

// PutReporter implements Store.
func (s *RedisStore) PutReporter(r Reporter) error {
	return s.put(rReporters, r.Client, r, &Change{Reporter: &r})
}

// Reporters implements Store.
func (s *RedisStore) Reporters() ([]Reporter, error) { return redisList[Reporter](s, rReporters) }

// AppendAudit implements Store.
func (s *RedisStore) AppendAudit(e AuditEntry) error { return s.put(rAudit, e.ID, e, nil) }

// Audit implements Store.
func (s *RedisStore) Audit() ([]AuditEntry, error) { return redisList[AuditEntry](s, rAudit) }

// Changes implements Shared: it subscribes to ChangesChannel and delivers
// what every instance (this one too) writes, and Change{All: true} when
// the subscription starts or resumes after a lost connection (changes
// may have been missed; then the secrets handed out are put back if
// Redis lost them). The goroutine it starts is owned by ctx: it
// unsubscribes and closes the channel when ctx ends.
func (s *RedisStore) Changes(ctx context.Context) <-chan Change {
	out := make(chan Change, 64)
	subCtx, cancel := context.WithTimeout(ctx, s.timeout)
	ps := s.c.Subscribe(subCtx, ChangesChannel) // retried by the channel below if Redis is away
	cancel()
	in := ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	go func() {
		defer close(out)
		defer ps.Close()
		for {
			var m any
			var ok bool
			select {
			case <-ctx.Done():
				return
			case m, ok = <-in:
				if !ok {
					return
				}
			}
			var c Change
			switch m := m.(type) {
			case *redis.Subscription:
				s.restoreSecrets(ctx)
				c.All = true
			case *redis.Message:
				if err := json.Unmarshal([]byte(m.Payload), &c); err != nil {
					c = Change{All: true}
				}
			default:
				continue
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
