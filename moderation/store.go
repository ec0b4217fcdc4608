package moderation

import (
	"errors"
	"time"

	"github.com/strangers-chat/strangers/signaling"
)

// Store keeps what moderation must not lose in a restart: bans, reports
// with their evidence, the shadow pool, reporters' records, the audit log
// and the server's secrets. Bolt (an embedded file) is the one-box store;
// another implementation (Redis, for several nodes) can stand in for it.
// Every method is safe for concurrent use and does its own I/O: callers
// keep it off latency-sensitive paths.
type Store interface {
	// Secret returns the named random secret of n bytes, made and kept on
	// first use.
	Secret(name string, n int) ([]byte, error)

	PutBan(Ban) error
	Bans() ([]Ban, error) // every ban, lifted and expired ones too, oldest first

	// PutReport stores r and, unless frame is nil, its still frame.
	PutReport(r Report, frame []byte) error
	// Report returns a report and its frame (nil without one), or
	// ErrNotFound.
	Report(id string) (Report, []byte, error)
	Reports() ([]Report, error) // oldest first, without frames
	// DeleteReportsBefore deletes the reports (and frames) made before t
	// and returns how many, and how many of them were open.
	DeleteReportsBefore(t time.Time) (deleted, open int, err error)

	PutPool(PoolEntry) error
	Pool() ([]PoolEntry, error)
	DeletePool(client string) error

	PutReporter(Reporter) error
	Reporters() ([]Reporter, error)

	AppendAudit(AuditEntry) error
	Audit() ([]AuditEntry, error) // oldest first

	Close() error
}

// ErrNotFound is returned for a record that does not exist.
var ErrNotFound = errors.New("moderation: not found")

// Ban keeps a client out until Until, unless lifted. It names a client
// key, an address hash, or both; a session matching either is banned.
type Ban struct {
	ID      string    `json:"id"`
	Client  string    `json:"client,omitempty"`
	Addr    string    `json:"addr,omitempty"`
	Reason  string    `json:"reason"`
	Created time.Time `json:"created"`
	Until   time.Time `json:"until"`
	Lifted  time.Time `json:"lifted,omitzero"`
	By      string    `json:"by"`               // the moderator's token id
	Report  string    `json:"report,omitempty"` // the report it was made from
}

// InForce reports whether b bans at now.
func (b Ban) InForce(now time.Time) bool { return b.Lifted.IsZero() && now.Before(b.Until) }

func (b Ban) identity() signaling.Identity { return signaling.Identity{Client: b.Client, Addr: b.Addr} }

// Report statuses.
const (
	StatusOpen      = "open"
	StatusDismissed = "dismissed"
	StatusActioned  = "actioned" // a ban was made from it
)

// Report is a user's report with its evidence (the frame is stored apart).
type Report struct {
	ID       string               `json:"id"`
	Time     time.Time            `json:"time"`
	Match    string               `json:"match"`
	Reporter signaling.Identity   `json:"reporter"`
	Reported signaling.Identity   `json:"reported"`
	Ended    bool                 `json:"ended"` // made after the match ended
	Reason   string               `json:"reason,omitempty"`
	Note     string               `json:"note,omitempty"`
	Chat     []signaling.ChatLine `json:"chat"`
	HasFrame bool                 `json:"hasFrame"`
	Weight   float64              `json:"weight"` // what it counted for towards the shadow pool
	Status   string               `json:"status"`
	Closed   time.Time            `json:"closed,omitzero"`
	ClosedBy string               `json:"closedBy,omitempty"`
	Ban      string               `json:"ban,omitempty"`
}

// PoolEntry is a client in the shadow pool until Until.
type PoolEntry struct {
	Client    string    `json:"client"`
	Addr      string    `json:"addr,omitempty"`
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	Reporters int       `json:"reporters"` // distinct reporters that put it there
}

// Reporter is what is known of a client's reports: the more of them
// moderators dismiss, the less its reports count.
type Reporter struct {
	Client    string `json:"client"`
	Reports   int    `json:"reports"`
	Dismissed int    `json:"dismissed"`
}

// AuditEntry is one moderator action.
type AuditEntry struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Token  string    `json:"token"`  // the token id, not the token
	Action string    `json:"action"` // ban, lift, dismiss, act, unshadow
	Target string    `json:"target"` // the ban, report or client acted on
	Detail string    `json:"detail,omitempty"`
}
