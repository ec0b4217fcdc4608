package relay

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestPionLoggerAdapter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := pionLoggerFactory{log: log}.NewLogger("turn")

	l.Debugf("Failed to handle datagram: no such user 1700000000:%s", "Zm9vYmFyYmF6cXV4MTIzNA")
	l.Errorf("Failed to send ChannelData from allocation %v", "x")
	l.Error("something unexpected")
	l.Tracef("trace %d", 1)
	out := buf.String()

	if strings.Contains(out, "Zm9vYmFyYmF6cXV4MTIzNA") {
		t.Errorf("session id leaked into the log:\n%s", out)
	}
	if !strings.Contains(out, "<expiry>:<session>") {
		t.Errorf("username not redacted:\n%s", out)
	}
	if !strings.Contains(out, `level=DEBUG msg="Failed to send ChannelData`) {
		t.Errorf("noisy pion error not demoted to debug:\n%s", out)
	}
	if !strings.Contains(out, `level=WARN msg="something unexpected"`) || !strings.Contains(out, "pion=turn") {
		t.Errorf("pion error not logged as a warning with its scope:\n%s", out)
	}
	if strings.Contains(out, "trace 1") {
		t.Errorf("trace line logged at debug level:\n%s", out)
	}
}
