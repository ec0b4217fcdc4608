package relay

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/pion/logging"
)

// levelTrace is below slog's Debug: pion's trace lines only show up when a
// handler is configured that low.
const levelTrace = slog.LevelDebug - 4

// pionQuiet lists pion error/warning lines that a client can trigger at will
// (one per bad packet); they are demoted to Debug so they cannot flood the
// log. Matching is by prefix of the formatted message.
var pionQuiet = []string{
	"Failed to send ChannelData",
	"Failed to send DataIndication",
	"Failed to reset",
	"Failed to close allocation",
	"Failed to close conn",
	"Failed to remove ChannelBind",
	"Failed to handle datagram",
	"No Permission or Channel exists",
	"permission denied for client",
	"Invalid time-windowed username",
	"Expired time-windowed username",
}

// credentialPattern matches TURN REST usernames ("<expiry>:<session id>"),
// which pion puts in some debug lines. They are redacted before logging.
var credentialPattern = regexp.MustCompile(`[0-9]{1,12}:[A-Za-z0-9_-]{22}`)

// pionLoggerFactory adapts pion's logging.LoggerFactory onto slog.
type pionLoggerFactory struct {
	log *slog.Logger
}

// NewLogger implements logging.LoggerFactory.
func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{log: f.log.With("pion", scope)}
}

// pionLogger implements logging.LeveledLogger. pion's Info level carries
// per-request chatter, so it maps to Debug; Warn and Error map to Warn
// (nothing pion reports is fatal to the server), except the lines in
// pionQuiet, which map to Debug.
type pionLogger struct {
	log *slog.Logger
}

func (l *pionLogger) emit(level slog.Level, msg string) {
	if level >= slog.LevelWarn {
		for _, q := range pionQuiet {
			if strings.HasPrefix(msg, q) {
				level = slog.LevelDebug
				break
			}
		}
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, credentialPattern.ReplaceAllString(msg, "<expiry>:<session>"))
}

func (l *pionLogger) logf(level slog.Level, format string, args ...any) {
	if level < slog.LevelWarn && !l.log.Enabled(context.Background(), level) {
		return // cheap exit before formatting
	}
	l.emit(level, fmt.Sprintf(format, args...))
}

func (l *pionLogger) Trace(msg string)                  { l.emit(levelTrace, msg) }
func (l *pionLogger) Tracef(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l *pionLogger) Debug(msg string)                  { l.emit(slog.LevelDebug, msg) }
func (l *pionLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l *pionLogger) Info(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l *pionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l *pionLogger) Warn(msg string)                   { l.emit(slog.LevelWarn, msg) }
func (l *pionLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l *pionLogger) Error(msg string)                  { l.emit(slog.LevelWarn, msg) }
func (l *pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelWarn, format, args...) }
