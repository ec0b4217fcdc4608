package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// ErrRules is returned when the matrix breaks a "must hold" rule.
var ErrRules = errors.New("strangers-lab: the matrix breaks the rules")

// run is the whole program: a role when args name one, else the matrix.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "peer":
			return runPeer(ctx, args[1:], stdout)
		case "browser":
			return runBrowserRole(ctx, args[1:], os.Stdin, stdout, stderr)
		}
	}
	return runMatrix(ctx, args, stdout, stderr)
}

// matrixConfig is what the matrix command is told.
type matrixConfig struct {
	// Runs is how many times each cell runs. Default 5.
	Runs int
	// Strangers is the server binary. Default: "strangers" next to this
	// program, else on PATH.
	Strangers string
	// Chromium is the browser for the browser cells; "" skips them.
	// Default /usr/bin/chromium when it exists.
	Chromium string
	// Only keeps the cells whose name contains it. Default: all.
	Only string
	// Waits are the pion peers' nomination waits. Default: the lab's
	// (defaultSrflxWait, defaultPrflxWait, defaultRelayWait).
	Waits nominationWaits
	// Verbose passes the role processes' logs and the server's debug log
	// through to stderr.
	Verbose bool
}

func runMatrix(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg matrixConfig
	fs := flag.NewFlagSet("strangers-lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Runs, "runs", 5, "runs per cell")
	fs.StringVar(&cfg.Strangers, "strangers", defaultStrangers(), "path of the strangers server binary")
	fs.StringVar(&cfg.Chromium, "chromium", defaultChromium(), `Chromium for the browser cells ("" skips them)`)
	fs.StringVar(&cfg.Only, "only", "", "run only the cells whose name contains this")
	fs.DurationVar(&cfg.Waits.srflx, "srflx-wait", defaultSrflxWait, "pion peers: wait before nominating a srflx pair (pion's default 500ms)")
	fs.DurationVar(&cfg.Waits.prflx, "prflx-wait", defaultPrflxWait, "pion peers: wait before nominating a prflx pair (pion's default 1s)")
	fs.DurationVar(&cfg.Waits.relay, "relay-wait", defaultRelayWait, "pion peers: wait before nominating a relay pair (pion's default 2s)")
	fs.BoolVar(&cfg.Verbose, "v", false, "pass the clients' and the server's logs through")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Runs < 1 {
		cfg.Runs = 1
	}
	if cfg.Strangers == "" {
		return fmt.Errorf("strangers-lab: no strangers binary: build it (go build ./cmd/strangers) and pass -strangers")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	m, err := startMatrix(ctx, cfg, log, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	cells := pionCells()
	if cfg.Chromium != "" {
		cells = append(cells, browserCells()...)
	}
	cells = slices.DeleteFunc(cells, func(c cell) bool { return !strings.Contains(c.String(), cfg.Only) })
	fmt.Fprintf(stdout, "strangers-lab: %d cells × %d runs, server %s (TLS on :443, TURN on :3478)\n", len(cells), cfg.Runs, serverAddr)
	fmt.Fprintf(stdout, "pion nomination waits: %v\n\n", cfg.Waits)
	broken, err := checkNAT(ctx, m.lab, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	var results []cellResult
	for _, c := range cells {
		r := m.runner.runCell(ctx, c, cfg.Runs)
		results = append(results, r)
		broken = append(broken, check(m.lab, r)...)
		if ctx.Err() != nil {
			break
		}
	}
	printMatrix(stdout, results)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("strangers-lab: interrupted: %w", err)
	}
	if len(broken) > 0 {
		fmt.Fprintln(stdout, "\nBROKEN:")
		for _, v := range broken {
			fmt.Fprintln(stdout, "  "+v.String())
		}
		return ErrRules
	}
	fmt.Fprintln(stdout, "\nevery rule holds")
	return nil
}

// matrixLab is a lab with its server running, ready for cells.
type matrixLab struct {
	lab    *lab
	server *serverProc
	runner *runner
	dir    string
}

// startMatrix builds the lab, the test CA and starts the server. Close
// undoes all of it; on error startMatrix has undone it already.
func startMatrix(ctx context.Context, cfg matrixConfig, log *slog.Logger, stderr io.Writer) (_ *matrixLab, err error) {
	m := &matrixLab{}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if m.dir, err = os.MkdirTemp("", "strangers-lab-"); err != nil {
		return nil, fmt.Errorf("strangers-lab: temp dir: %w", err)
	}
	// Role processes run as root in other namespaces but read these files.
	if err := os.Chmod(m.dir, 0o755); err != nil {
		return nil, fmt.Errorf("strangers-lab: temp dir: %w", err)
	}
	certs, err := writeCerts(m.dir, net.ParseIP(serverAddr))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if m.lab, err = newLab(ctx); err != nil {
		return nil, err
	}
	log.Info("lab built", "lab", m.lab.id, "namespaces", len(m.lab.netns), "took", time.Since(start).Round(time.Millisecond))
	if m.server, err = startServer(ctx, m.lab.inet, cfg.Strangers, serverEnv(certs, cfg.Verbose)); err != nil {
		return nil, err
	}
	var logw io.Writer
	if cfg.Verbose {
		logw = stderr
	}
	bo := browserOptions{chromium: cfg.Chromium, caFile: certs.caFile}
	if cfg.Waits == (nominationWaits{}) {
		cfg.Waits = nominationWaits{defaultSrflxWait, defaultPrflxWait, defaultRelayWait}
	}
	if m.runner, err = newRunner(m.lab, certs, logw, bo, cfg.Waits); err != nil {
		return nil, err
	}
	return m, nil
}

// Close stops the server, deletes the lab and the temp files.
func (m *matrixLab) Close() error {
	var errs []error
	if m.server != nil {
		errs = append(errs, m.server.Stop())
	}
	if m.lab != nil {
		errs = append(errs, m.lab.Close())
	}
	if m.dir != "" {
		errs = append(errs, os.RemoveAll(m.dir))
	}
	return errors.Join(errs...)
}

// defaultStrangers finds the server binary next to this program or on PATH.
func defaultStrangers() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "strangers")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("strangers"); err == nil {
		return p
	}
	return ""
}

// defaultChromium is Debian's Chromium when it is installed.
func defaultChromium() string {
	p, _ := testsupport.FindChromium()
	return p
}
