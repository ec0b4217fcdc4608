package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strangers-chat/strangers/moderation"
	"github.com/strangers-chat/strangers/signaling"
)

// stateDir is where the moderation store lives: STRANGERS_STATE_DIR, else
// systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/strangers, else
// ~/.local/state/strangers; "" when there is no home directory either.
// explicit says the operator named it.
func stateDir(cfg settings, getenv func(string) string) (dir string, explicit bool) {
	if cfg.StateDir != "" {
		return cfg.StateDir, true
	}
	if d, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d, false
	}
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "strangers"), false
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", false
		}
	}
	return filepath.Join(home, ".local", "state", "strangers"), false
}

// errNoHome is why the default state directory cannot be used when the
// process has no home directory (a service started without one).
var errNoHome = errors.New("no home directory")

// modState is the moderation store and service of one run.
type modState struct {
	svc     *moderation.Service
	dir     string // the Bolt store's directory; "" with Redis
	tempDir string // a directory of our own to remove on close, when the default was taken
	key     []byte // signs client keys

	// hub enforces bans made through other nodes (with Redis), once set
	// by enforceOn; until then there are no sessions to end.
	hub atomic.Pointer[signaling.Hub]
}

// enforceOn makes bans learnt from other nodes end h's live sessions, as
// a ban made through this node's admin API does.
func (m *modState) enforceOn(h *signaling.Hub) { m.hub.Store(h) }

// onBan is moderation.Config.OnBan: a ban made through another node.
func (m *modState) onBan(logger *slog.Logger) func(moderation.Ban, signaling.BanNotice) {
	return func(b moderation.Ban, notice signaling.BanNotice) {
		h := m.hub.Load()
		if h == nil {
			return
		}
		if n := h.Enforce(signaling.Identity{Client: b.Client, Addr: b.Addr}, notice); n > 0 {
			logger.Info("ban from another node enforced", "component", "moderation", "ban", b.ID, "sessions", n)
		}
	}
}

// modConfig is the service's configuration but for its store.
func (m *modState) modConfig(cfg settings, logger *slog.Logger, reg prometheus.Registerer) moderation.Config {
	return moderation.Config{
		AppealContact:   cfg.AppealContact,
		ReportThreshold: cfg.ReportThreshold,
		Retention:       cfg.ReportRetention,
		Logger:          logger,
		Registerer:      reg,
		OnBan:           m.onBan(logger),
	}
}

// openSharedModeration keeps the moderation records in the Redis shared
// by every node (STRANGERS_REDIS_URL): all of them see the same bans,
// reports, shadow pool and audit log, and sign client keys with the same
// key.
func openSharedModeration(cfg settings, logger *slog.Logger, reg prometheus.Registerer) (*modState, error) {
	m := &modState{}
	store, err := moderation.OpenRedis(context.Background(), moderation.RedisConfig{URL: cfg.redisURL})
	if err != nil {
		return nil, fmt.Errorf("STRANGERS_REDIS_URL: %w", err) // never the URL: it holds the password
	}
	logger.Info("moderation store: Redis, shared by every node", "component", "moderation", "redis", store.Addr())
	m.key, err = store.Secret("identity", signaling.IdentityKeyLen)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("moderation: identity key: %w", err)
	}
	mcfg := m.modConfig(cfg, logger, reg)
	mcfg.Store = store
	if m.svc, err = moderation.New(mcfg); err != nil {
		store.Close()
		return nil, err
	}
	return m, nil
}

// openModeration opens the store and starts the service. When the default
// directory is held by another instance (tests, a second server on a
// laptop), or there is none (no home directory), it falls back to a
// temporary directory and says so; a directory the operator named must be
// ours.
func openModeration(cfg settings, getenv func(string) string, logger *slog.Logger, reg prometheus.Registerer) (*modState, error) {
	if cfg.redisURL != "" {
		return openSharedModeration(cfg, logger, reg)
	}
	dir, explicit := stateDir(cfg, getenv)
	m := &modState{dir: dir}
	var store *moderation.Bolt
	err := errNoHome
	if dir != "" {
		store, err = moderation.OpenBolt(dir)
	}
	if err != nil && !explicit {
		tmp, tmpErr := os.MkdirTemp("", "strangers-state-")
		if tmpErr != nil {
			return nil, fmt.Errorf("%w (and no temporary directory: %w)", err, tmpErr)
		}
		logger.Warn("the default state directory cannot be used: moderation state (bans, reports, the shadow pool, client keys) is not kept across restarts; set STRANGERS_STATE_DIR",
			"dir", dir, "err", err, "temporary", tmp)
		m.dir, m.tempDir = tmp, tmp
		store, err = moderation.OpenBolt(tmp)
	}
	if err != nil {
		m.removeTemp()
		if errors.Is(err, moderation.ErrLocked) {
			return nil, fmt.Errorf("STRANGERS_STATE_DIR=%s: %w: give each instance its own directory", dir, err)
		}
		return nil, fmt.Errorf("STRANGERS_STATE_DIR=%s: %w", dir, err)
	}
	m.key, err = store.Secret("identity", signaling.IdentityKeyLen)
	if err != nil {
		store.Close()
		m.removeTemp()
		return nil, fmt.Errorf("moderation: identity key: %w", err)
	}
	mcfg := m.modConfig(cfg, logger, reg)
	mcfg.Store = store
	m.svc, err = moderation.New(mcfg)
	if err != nil {
		store.Close()
		m.removeTemp()
		return nil, err
	}
	return m, nil
}

func (m *modState) removeTemp() {
	if m.tempDir != "" {
		os.RemoveAll(m.tempDir)
	}
}

// close stops the service, closes the store and removes a temporary
// directory.
func (m *modState) close() error {
	err := m.svc.Close()
	m.removeTemp()
	return err
}
