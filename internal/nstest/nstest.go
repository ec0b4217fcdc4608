// Package nstest runs a test inside a network namespace of its own, for
// tests that need addresses the host does not have (a second public
// address, many IPv6 addresses of one /64). The test binary re-executes
// itself with `ip netns exec`, running just that test; the copy inside
// finds an environment variable set and runs the test's body.
//
// Tests skip when they cannot create a namespace (not root, no ip
// command), unless STRANGERS_TEST_REQUIRE=all, when they fail instead.
package nstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	// envInside names the namespace the copy runs in; set only in the copy.
	envInside = "STRANGERS_TEST_NETNS"
	// childTimeout bounds the copy's run.
	childTimeout = 3 * time.Minute
)

// Name returns the namespace this process runs in, "" outside one.
func Name() string { return os.Getenv(envInside) }

// Run runs the calling test inside a new network namespace whose loopback
// is up, after `ip -n <namespace> <args>` for each of setup. In the copy
// inside the namespace it returns true at once and the test goes on with
// its body; outside it runs the copy, reports its outcome and returns
// false, and the test returns.
func Run(t *testing.T, setup ...[]string) bool {
	t.Helper()
	if Name() != "" {
		return true
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		missing(t, "this test needs the ip command (Debian package iproute2) to create a network namespace")
	}
	if os.Geteuid() != 0 {
		missing(t, "this test needs root to create a network namespace (ip netns)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	ns := "strangers-t-" + hex.EncodeToString(suffix)
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns, err, bytes.TrimSpace(out))
		}
	})
	run("-n", ns, "link", "set", "lo", "up")
	for _, args := range setup {
		run(append([]string{"-n", ns}, args...)...)
	}

	var pattern []string
	for _, part := range strings.Split(t.Name(), "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.CommandContext(ctx, ip, "netns", "exec", ns, self,
		"-test.run", strings.Join(pattern, "/"), "-test.v", "-test.count=1", "-test.timeout", childTimeout.String())
	cmd.Env = append(os.Environ(), envInside+"="+ns)
	out, err := cmd.CombinedOutput()
	passed := bytes.Contains(out, []byte("--- PASS: "+t.Name()+" "))
	switch {
	case err != nil || !passed && !bytes.Contains(out, []byte("--- SKIP: "+t.Name()+" ")):
		t.Fatalf("inside network namespace %s: %v\n%s", ns, err, out)
	case !passed:
		t.Skipf("skipped inside network namespace %s:\n%s", ns, out)
	default:
		t.Logf("inside network namespace %s:\n%s", ns, out)
	}
	return false
}

func missing(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("STRANGERS_TEST_REQUIRE") == "all" {
		t.Fatal(msg + " (required: STRANGERS_TEST_REQUIRE=all)")
	}
	t.Skip(msg)
}

// Addrs returns n IPv6 addresses of prefix (written like "2001:db8::"),
// numbered from first, and the ip arguments that put them on lo.
func Addrs(prefix string, first, n int) (addrs []string, setup [][]string) {
	for i := range n {
		a := fmt.Sprintf("%s%x", prefix, first+i)
		addrs = append(addrs, a)
		setup = append(setup, []string{"-6", "addr", "add", a + "/64", "dev", "lo", "nodad"})
	}
	return addrs, setup
}
