package main

import (
	"context"
	"errors"
	"io"
)

// ErrNoBrowser is returned for browser cells, which this build lacks.
var ErrNoBrowser = errors.New("strangers-lab: browser cells are not available")

// browserOptions are what the browser role needs from the matrix.
type browserOptions struct {
	chromium string // the browser binary
	dir      string // the lab's temp dir
	caFile   string // the lab CA, PEM
}

func (r *runner) runBrowser(ctx context.Context, c cell) runResult {
	return runResult{err: ErrNoBrowser}
}

func runBrowserRole(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return ErrNoBrowser
}
