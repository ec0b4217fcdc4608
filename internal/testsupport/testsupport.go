// Package testsupport holds what the tests of several packages repeat:
// requiring an external tool, waiting for a condition, a throwaway
// certificate authority, starting Chromium and a redis-server. It changes nothing
// process-wide (no environment variables, no global roots): callers decide
// what to do with what it returns.
package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// EnvRequire names the variable that, set to "all", turns every skip for a
// missing prerequisite into a failure (CI sets it: there a missing tool is
// a broken image, not a reason to test less).
const EnvRequire = "STRANGERS_TEST_REQUIRE"

// Missing skips tb for a missing prerequisite described by format, or fails
// it when STRANGERS_TEST_REQUIRE=all.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(EnvRequire) == "all" {
		tb.Fatalf("%s (required: %s=all)", msg, EnvRequire)
	}
	tb.Skipf("%s (set %s=all to make this a failure)", msg, EnvRequire)
}

// Required reports whether missing prerequisites are failures
// (STRANGERS_TEST_REQUIRE=all), for tests that leave out a part rather than
// skip.
func Required() bool { return os.Getenv(EnvRequire) == "all" }

// Require returns the path of the command name, or calls Missing when it is
// not installed; pkg is the Debian package that has it ("" if none).
func Require(tb testing.TB, name, pkg string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if pkg != "" {
			Missing(tb, "%s not installed (Debian package %s)", name, pkg)
		} else {
			Missing(tb, "%s not installed", name)
		}
	}
	return path
}

// RequireRoot calls Missing unless the test runs as root; why says what
// needs it.
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Missing(tb, "%s needs root; run as root", why)
	}
}

// Polling bounds of WaitFor and Eventually: a condition that holds soon is
// seen at once, a slow one costs little.
const (
	firstPoll = time.Millisecond
	maxPoll   = 100 * time.Millisecond
)

// Eventually polls cond until it holds or d passes, and reports whether it
// held.
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	wait := firstPoll
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
		wait = min(2*wait, maxPoll)
	}
	return true
}

// WaitFor polls cond until it holds, failing tb when d passes first; what
// names the condition in the failure.
func WaitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Eventually(d, cond) {
		tb.Fatalf("waited %v for %s", d, what)
	}
}
