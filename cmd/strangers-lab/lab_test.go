package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// TestMain also serves the lab's role processes: the lab re-executes this
// test binary inside client namespaces with envReexec set and a role's
// arguments (peer, browser) instead of test flags.
func TestMain(m *testing.M) {
	if os.Getenv(envReexec) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// requireLab skips (or fails) when the lab cannot be built here.
func requireLab(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("the NAT lab takes about a minute; skipped with -short")
	}
	testsupport.RequireRoot(tb, "the NAT lab (network namespaces)")
	for _, tool := range []struct{ name, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}, {"go", "golang"}} {
		testsupport.Require(tb, tool.name, tool.pkg)
	}
}

// buildServer builds cmd/strangers into a temporary directory.
func buildServer(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "strangers")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../strangers").CombinedOutput()
	if err != nil {
		tb.Fatalf("go build ../strangers: %v\n%s", err, out)
	}
	return bin
}

// TestLab builds the lab, checks every NAT behaves as its kind must, then
// runs the matrix once per cell and asserts the lab's rules: every cell
// connects; pairs that can connect directly do so without the relay;
// symmetric ↔ symmetric uses the relay; firewalled sides use TURN over TLS
// on 443; a side that hides its IP is relayed and its partner never learns
// its addresses. Chromium cells run when Chromium is installed.
func TestLab(t *testing.T) {
	requireLab(t)
	bin := buildServer(t)
	chromium := defaultChromium()
	if chromium == "" {
		if testsupport.Required() {
			t.Fatalf("the browser cells need Chromium at /usr/bin/chromium (Debian package chromium) (required: %s=all)", testsupport.EnvRequire)
		}
		t.Log("no Chromium (Debian package chromium): the browser cells are skipped")
	} else if _, err := exec.LookPath("certutil"); err != nil {
		if testsupport.Required() {
			t.Fatalf("the browser cells need certutil (Debian package libnss3-tools) to trust the lab CA (required: %s=all)", testsupport.EnvRequire)
		}
		t.Log("no certutil (Debian package libnss3-tools): the browser cells are skipped")
		chromium = ""
	}

	// The lab bounds a hang only: it may run until shortly before the
	// test's deadline (a few minutes when the machine is quiet, more when
	// it is busy).
	limit := 8 * time.Minute
	if dl, ok := t.Deadline(); ok {
		limit = max(time.Until(dl)-time.Minute, time.Minute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	logw := &testWriter{t: t}
	// A pion peer nominates the first pair that works once its type's
	// wait is over, and never switches. The lab's short wait for relay
	// pairs keeps its figures close to a browser's, but on a busy machine
	// a direct pair's checks can take longer: here, where the rules and
	// not the times are checked, a relay pair waits long enough for any
	// direct path to be found first. It costs time only where the relay
	// is the only way.
	waits := nominationWaits{srflx: defaultSrflxWait, prflx: defaultPrflxWait, relay: 3 * time.Second}
	cfg := matrixConfig{Runs: 1, Strangers: bin, Chromium: chromium, Verbose: testing.Verbose(), Waits: waits}
	m, err := startMatrix(ctx, cfg, slog.New(slog.NewTextHandler(logw, nil)), logw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log (tail):\n%s", tail(m.server.Logs(), 200))
		}
		if err := m.Close(); err != nil {
			t.Errorf("tearing the lab down: %v", err)
		}
		if left := labNamespaces(t, m.lab.id); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})

	t.Run("nat", func(t *testing.T) {
		for _, s := range m.lab.sites {
			t.Run(s.name, func(t *testing.T) {
				got, err := m.lab.probeNAT(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				if want := s.kind.want(s); got != want {
					t.Errorf("behaves as %+v, want %+v", got, want)
				}
			})
		}
	})

	t.Run("blackhole", func(t *testing.T) {
		silent, err := m.lab.probeBlackhole()
		if err != nil {
			t.Fatal(err)
		}
		if !silent {
			t.Error("a send from the internet namespace to an address that exists nowhere failed or drew an error; it must vanish")
		}
	})

	// Cells run one after the other, not in parallel: their times are
	// the figure, and two calls at once would share the CPU.
	var results []cellResult
	runCells := func(t *testing.T, cells []cell) {
		for _, c := range cells {
			t.Run(c.String(), func(t *testing.T) {
				r := m.runner.runCell(ctx, c, cfg.Runs)
				results = append(results, r)
				for _, run := range r.runs {
					t.Logf("A %+v", run.a)
					t.Logf("B %+v", run.b)
				}
				for _, v := range check(m.lab, r) {
					t.Error(v.msg)
				}
			})
		}
	}
	t.Run("pion", func(t *testing.T) { runCells(t, pionCells()) })
	t.Run("chromium", func(t *testing.T) {
		if chromium == "" {
			t.Skip("no Chromium or certutil (Debian packages chromium, libnss3-tools)")
		}
		runCells(t, browserCells())
	})
	var table strings.Builder
	printMatrix(&table, results)
	t.Logf("matrix (%d run per cell):\n%s", cfg.Runs, table.String())
}

// labNamespaces lists the namespaces of lab id that still exist.
func labNamespaces(t *testing.T, id string) []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Errorf("ip netns list: %v", err)
		return nil
	}
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], nsPrefix+id+"-") {
			left = append(left, f[0])
		}
	}
	return left
}

// testWriter sends what it is given to the test log, line by line.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
