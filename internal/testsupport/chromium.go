package testsupport

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// ErrNoChromium is returned by FindChromium when no Chromium is installed.
var ErrNoChromium = errors.New("testsupport: no Chromium at /usr/bin/chromium (Debian package chromium)")

// FindChromium returns the path of Debian's Chromium.
func FindChromium() (string, error) {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", ErrNoChromium
}

// Chromium says how to start a headless Chromium for a test.
type Chromium struct {
	// Path is the browser binary. Default: FindChromium.
	Path string
	// UserDataDir is the profile directory; each browser needs a fresh
	// one. Required.
	UserDataDir string
	// Home, when set, is the browser's HOME: Chromium on Linux trusts the
	// CAs of $HOME/.pki/nssdb.
	Home string
	// Resolve lists the addresses, besides loopback, that page loads may
	// name; every other host name fails to resolve, so nothing leaves the
	// test's network.
	Resolve []string
	// Prompt leaves camera and microphone prompts to the page's
	// permissions (which a test can set) instead of granting them all.
	Prompt bool
	// DisableFeatures are disabled besides chromedp's defaults and those
	// every test needs.
	DisableFeatures []string
	// Flags are more command-line switches (name without "--", value true
	// for a bare switch); they override the ones set here.
	Flags map[string]any
}

// disabledFeatures are off in every test browser: host candidates carry
// plain addresses, not mDNS names a test could not resolve, and nothing
// phones home.
var disabledFeatures = []string{"WebRtcHideLocalIpsWithMdns", "OptimizationHints", "MediaRouter", "DialMediaRouteProvider"}

// chromedpDisabledFeatures is the disable-features list of
// chromedp.DefaultExecAllocatorOptions; Chromium reads only one such
// switch, so the lists are merged.
var chromedpDisabledFeatures = []string{"Translate", "BlinkGenPropertyTrees"}

// Options returns the allocator options for c: chromedp's defaults, the
// switches every test browser needs, and c's own.
func (c Chromium) Options() ([]chromedp.ExecAllocatorOption, error) {
	path := c.Path
	if path == "" {
		var err error
		if path, err = FindChromium(); err != nil {
			return nil, err
		}
	}
	if c.UserDataDir == "" {
		return nil, errors.New("testsupport: Chromium needs a fresh UserDataDir")
	}
	opts := append([]chromedp.ExecAllocatorOption{}, chromedp.DefaultExecAllocatorOptions[:]...)
	opts = append(opts,
		chromedp.ExecPath(path),
		chromedp.UserDataDir(c.UserDataDir),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("host-resolver-rules", HostResolverRules(c.Resolve...)),
	)
	if !c.Prompt {
		opts = append(opts, chromedp.Flag("use-fake-ui-for-media-stream", true))
	}
	if c.Home != "" {
		opts = append(opts, chromedp.Env("HOME="+c.Home))
	}
	opts = append(opts, chromedp.Flag("disable-features", c.DisabledFeatures()))
	for name, v := range c.Flags {
		opts = append(opts, chromedp.Flag(name, v))
	}
	return opts, nil
}

// DisabledFeatures is the one --disable-features list: chromedp's
// defaults, those every test browser needs, then c's own.
func (c Chromium) DisabledFeatures() string {
	var all []string
	for _, f := range slices.Concat(chromedpDisabledFeatures, disabledFeatures, c.DisableFeatures) {
		if !slices.Contains(all, f) {
			all = append(all, f)
		}
	}
	return strings.Join(all, ",")
}

// HostResolverRules is Chromium's --host-resolver-rules making every name
// fail to resolve except loopback and the given addresses.
func HostResolverRules(addrs ...string) string {
	rules := "MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE ::1"
	for _, a := range addrs {
		rules += " , EXCLUDE " + a
	}
	return rules
}

// StartChromium starts a browser that lives until tb ends and returns its
// root context: tabs are its children (chromedp.NewContext). A missing
// Chromium is a Missing prerequisite.
func StartChromium(tb testing.TB, c Chromium) context.Context {
	tb.Helper()
	if c.Path == "" {
		path, err := FindChromium()
		if err != nil {
			Missing(tb, "%v", err)
		}
		c.Path = path
	}
	if c.UserDataDir == "" {
		c.UserDataDir = tb.TempDir()
	}
	opts, err := c.Options()
	if err != nil {
		tb.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tb.Cleanup(cancelAlloc)
	root, cancelRoot := chromedp.NewContext(allocCtx)
	tb.Cleanup(cancelRoot)
	// The first run starts Chromium and ties it to the context it is given:
	// that must be root itself, not a shorter-lived child.
	if err := chromedp.Do(root); err != nil {
		tb.Fatalf("starting Chromium: %v", err)
	}
	return root
}
