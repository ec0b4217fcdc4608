package moderation

import (
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned by OpenBolt when another process holds the store.
var ErrLocked = errors.New("moderation: the store is in use by another process")

// Bucket names.
var (
	bSecrets   = []byte("secrets")
	bBans      = []byte("bans")
	bReports   = []byte("reports")
	bFrames    = []byte("frames")
	bPool      = []byte("pool")
	bReporters = []byte("reporters")
	bAudit     = []byte("audit")
)

// DBFile is the name of the store's file in its directory.
const DBFile = "moderation.db"

// Bolt is the embedded Store: one bbolt file (pure Go, no cgo) in a
// directory. Only one process may hold it.
type Bolt struct {
	db *bolt.DB // static after OpenBolt; bbolt serialises writers itself
}

// OpenBolt opens (creating it and dir if need be) the store in dir. It
// waits at most a second for another process to let go of the file, then
// returns ErrLocked.
func OpenBolt(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("moderation: state directory: %w", err)
	}
	path := filepath.Join(dir, DBFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("moderation: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bSecrets, bBans, bReports, bFrames, bPool, bReporters, bAudit} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("moderation: open %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Path is the store's file.
func (s *Bolt) Path() string { return s.db.Path() }

// Close closes the file.
func (s *Bolt) Close() error { return s.db.Close() }

func (s *Bolt) put(bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("moderation: encode: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), data)
	})
}

func list[T any](s *Bolt, bucket []byte) ([]T, error) {
	var out []T
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("moderation: decode %s: %w", bucket, err)
			}
			out = append(out, x)
			return nil
		})
	})
	return out, err
}

// Secret implements Store.
func (s *Bolt) Secret(name string, n int) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSecrets)
		if v := b.Get([]byte(name)); len(v) == n {
			out = append([]byte(nil), v...)
			return nil
		}
		out = make([]byte, n)
		crand.Read(out)
		return b.Put([]byte(name), out)
	})
	return out, err
}

// PutBan implements Store.
func (s *Bolt) PutBan(b Ban) error { return s.put(bBans, b.ID, b) }

// Bans implements Store.
func (s *Bolt) Bans() ([]Ban, error) { return list[Ban](s, bBans) }

// PutReport implements Store.
func (s *Bolt) PutReport(r Report, frame []byte) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("moderation: encode: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if frame != nil {
			if err := tx.Bucket(bFrames).Put([]byte(r.ID), frame); err != nil {
				return err
			}
		}
		return tx.Bucket(bReports).Put([]byte(r.ID), data)
	})
}

// Report implements Store.
func (s *Bolt) Report(id string) (Report, []byte, error) {
	var r Report
	var frame []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bReports).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		if f := tx.Bucket(bFrames).Get([]byte(id)); f != nil {
			frame = append([]byte(nil), f...)
		}
		return json.Unmarshal(v, &r)
	})
	return r, frame, err
}

// Reports implements Store.
func (s *Bolt) Reports() ([]Report, error) { return list[Report](s, bReports) }

// DeleteReportsBefore implements Store. Report ids start with their time
// (newID), so the old ones come first.
func (s *Bolt) DeleteReportsBefore(t time.Time) (int, int, error) {
	n, open := 0, 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		reports, frames := tx.Bucket(bReports), tx.Bucket(bFrames)
		c := reports.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var r Report
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("moderation: decode report: %w", err)
			}
			if !r.Time.Before(t) {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
			if err := frames.Delete(k); err != nil {
				return err
			}
			n++
			if r.Status == StatusOpen {
				open++
			}
		}
		return nil
	})
	return n, open, err
}

// PutPool implements Store.
func (s *Bolt) PutPool(e PoolEntry) error { return s.put(bPool, e.Client, e) }

// Pool implements Store.
func (s *Bolt) Pool() ([]PoolEntry, error) { return list[PoolEntry](s, bPool) }

// DeletePool implements Store.
func (s *Bolt) DeletePool(client string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bPool).Delete([]byte(client)) })
}

// PutReporter implements Store.
func (s *Bolt) PutReporter(r Reporter) error { return s.put(bReporters, r.Client, r) }

// Reporters implements Store.
func (s *Bolt) Reporters() ([]Reporter, error) { return list[Reporter](s, bReporters) }

// AppendAudit implements Store.
func (s *Bolt) AppendAudit(e AuditEntry) error { return s.put(bAudit, e.ID, e) }

// Audit implements Store.
func (s *Bolt) Audit() ([]AuditEntry, error) { return list[AuditEntry](s, bAudit) }

// newID returns an id that sorts by time, then by seq (which orders ids
// of one instant): 16 hex digits of Unix nanoseconds, 8 of seq and 8
// random ones.
func newID(now time.Time, seq uint64) string {
	var r [4]byte
	crand.Read(r[:])
	return fmt.Sprintf("%016x%08x%x", now.UnixNano(), uint32(seq), r)
}
