package web_test

// The browser tests run the real server and a headless Chromium inside a
// network namespace made for the test: the namespace has only loopback and a
// veth pair with test addresses (198.51.100.0/24, TEST-NET-2), so ICE host
// candidates never name the machine's interfaces and no packet can leave.
//
// The test binary re-executes itself inside the namespace (ip netns exec) with
// envNamespace set; the copy inside starts the server binary and Chromium,
// drives the page, and reports through its output and exit status, which the
// outer test relays.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

const (
	// envNamespace names the namespace a re-executed test runs in; its
	// presence means "you are the copy inside".
	envNamespace = "STRANGERS_WEB_NETNS"
	// envServerBin is the path of the strangers binary built by the outer test.
	envServerBin = "STRANGERS_WEB_SERVER_BIN"
	// envArtifacts is where the copy inside saves screenshots.
	envArtifacts = "STRANGERS_WEB_ARTIFACTS"
	// envScreenshots=all saves every user's screen at the end of each test,
	// not only on failure (to look at the page).
	envScreenshots = "STRANGERS_WEB_SCREENSHOTS"

	// Addresses inside the namespace. relayIP is the veth end the server
	// advertises as its public address (TURN); peerIP is the other end.
	relayIP = "198.51.100.1"
	peerIP  = "198.51.100.2"
	netBits = "24"
	// The namespace is empty, so fixed ports cannot collide.
	httpPort = "8080"
	turnPort = "3478"
	// The relay's ports, kept apart from the namespace's ephemeral range
	// (set in newStage) so a firewall rule can tell relay traffic from the
	// browsers' own.
	relayPortMin  = 40000
	relayPortMax  = 40999
	ephemeralPort = "41000 60999"

	// childTimeout bounds one re-executed test run when the outer test
	// has no deadline (-timeout 0); otherwise the copy inside may run
	// until childMargin before the outer deadline. It bounds a hang only:
	// on a busy machine a run takes minutes.
	childTimeout = 20 * time.Minute
	// childMargin is kept for the copy inside to print its goroutines when
	// it is stopped, and for the outer test to clean up.
	childMargin = 30 * time.Second
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
	buildOut  []byte
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
		os.Exit(code)
	}))
}

// inNamespace reports whether this process is the copy inside a namespace.
func inNamespace() bool { return os.Getenv(envNamespace) != "" }

// checkPrerequisites skips (or fails) when the browser tests cannot run here.
func checkPrerequisites(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("browser tests take a minute or two; skipped with -short")
	}
	if os.Geteuid() != 0 {
		testsupport.Missing(tb, "browser tests need root to create a network namespace (ip netns); run as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testsupport.Missing(tb, "browser tests need the ip command (Debian package iproute2)")
	}
	if _, err := testsupport.FindChromium(); err != nil {
		testsupport.Missing(tb, "browser tests need Chromium at /usr/bin/chromium (Debian package chromium)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		testsupport.Missing(tb, "browser tests build cmd/strangers and need the go command")
	}
}

// serverBinary builds cmd/strangers once per test process.
func serverBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "strangers-web-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "strangers")
		cmd := exec.Command("go", "build", "-o", buildBin, "../cmd/strangers")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		tb.Fatalf("go build ../cmd/strangers: %v\n%s", buildErr, buildOut)
	}
	return buildBin
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNamespace creates a network namespace with loopback up and a veth pair
// whose two ends carry relayIP and peerIP. It is deleted when the test ends.
func newNamespace(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := randomHex(4)
	ns := "strangers-web-" + id
	if err := ipCmd(ctx, "netns", "add", ns); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ipCmd(ctx, "netns", "del", ns); err != nil {
			tb.Errorf("deleting the namespace: %v", err)
		}
	})
	// Both ends are created inside the namespace (ip -n), so nothing is ever
	// left behind in the host's namespace. They get no IPv6 link-local
	// address: its duplicate address detection ends a second or two after
	// the link comes up, just as Chromium loads its first page, and
	// Chromium takes that as a network change and aborts what it is
	// fetching (a module the page needs, so its script never runs).
	a, b := "swa"+id, "swb"+id
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", a, "type", "veth", "peer", "name", b},
		{"-n", ns, "link", "set", a, "addrgenmode", "none"},
		{"-n", ns, "link", "set", b, "addrgenmode", "none"},
		{"-n", ns, "addr", "add", relayIP + "/" + netBits, "dev", a},
		{"-n", ns, "addr", "add", peerIP + "/" + netBits, "dev", b},
		{"-n", ns, "link", "set", a, "up"},
		{"-n", ns, "link", "set", b, "up"},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			tb.Fatal(err)
		}
	}
	return ns
}

// childRunPattern is the -test.run pattern for the copy inside: this test,
// plus whatever subtest pattern the outer run was given.
func childRunPattern(name string) string {
	pattern := "^" + regexp.QuoteMeta(name) + "$"
	if f := flag.Lookup("test.run"); f != nil {
		parts := strings.SplitN(f.Value.String(), "/", 2)
		if len(parts) == 2 && parts[1] != "" {
			pattern += "/" + parts[1]
		}
	}
	return pattern
}

// childLimit is how long the copy inside may run: until a little before
// the outer test's deadline, or childTimeout when it has none.
func childLimit(tb testing.TB) time.Duration {
	d, ok := tb.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return childTimeout
	}
	dl, ok := d.Deadline()
	if !ok {
		return childTimeout
	}
	return max(time.Until(dl)-childMargin, time.Minute)
}

// reexec runs this test (or benchmark) again inside a new namespace and
// relays its output; it returns that output.
func reexec(tb testing.TB, bench bool) string {
	tb.Helper()
	checkPrerequisites(tb)
	bin := serverBinary(tb)
	ns := newNamespace(tb)

	limit := childLimit(tb)
	// The copy's own timeout comes first: it names the test that hung.
	ctx, cancel := context.WithTimeout(context.Background(), limit+childMargin/3)
	defer cancel()
	args := []string{"netns", "exec", ns, os.Args[0], "-test.v", "-test.count=1",
		"-test.timeout=" + limit.String()}
	if bench {
		args = append(args, "-test.run=^$", "-test.bench=^"+regexp.QuoteMeta(tb.Name())+"$", "-test.benchtime=1x")
	} else {
		args = append(args, "-test.run="+childRunPattern(tb.Name()))
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(),
		envNamespace+"="+ns,
		envServerBin+"="+bin,
		envArtifacts+"="+tb.ArtifactDir(),
	)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var all strings.Builder
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line)
		all.WriteByte('\n')
		tb.Log("netns| " + line)
	}
	err = cmd.Wait()
	output := all.String()
	if skipped := regexp.MustCompile(`(?m)^--- SKIP: ` + regexp.QuoteMeta(tb.Name()) + ` `).MatchString(output); skipped && err == nil {
		tb.Skip("skipped inside the namespace (see the log above)")
	}
	if err != nil {
		tb.Fatalf("the test inside namespace %s failed: %v (its output is above)", ns, err)
	}
	return output
}

// ---- Inside the namespace: the server ---------------------------------------

// server is the strangers binary running inside the namespace.
type server struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	logs bytes.Buffer
}

// startServer starts the server and waits until it is listening.
func startServer(tb testing.TB, extraEnv ...string) *server {
	tb.Helper()
	bin := os.Getenv(envServerBin)
	if bin == "" {
		tb.Fatalf("%s is not set", envServerBin)
	}
	s := &server{done: make(chan struct{})}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.TempDir(),
		"STRANGERS_HTTP_ADDR=0.0.0.0:" + httpPort,
		"STRANGERS_TURN_ADDR=" + relayIP + ":" + turnPort,
		"STRANGERS_PUBLIC_IP=" + relayIP,
		"STRANGERS_RELAY_ALLOW_PEERS=127.0.0.0/8,198.51.100.0/24",
		"STRANGERS_TURN_SECRET=" + randomHex(16),
		"STRANGERS_LOG_FORMAT=json",
		"STRANGERS_LOG_LEVEL=debug",
		"STRANGERS_INTEREST_WAIT=1s",
		"STRANGERS_WS_MAX_PER_IP=200",
		"STRANGERS_STATE_DIR=" + tb.TempDir(),
		"STRANGERS_NEXT_RATE=0", // benchmarks press Next as fast as they can
		fmt.Sprintf("STRANGERS_RELAY_PORT_MIN=%d", relayPortMin),
		fmt.Sprintf("STRANGERS_RELAY_PORT_MAX=%d", relayPortMax),
	}, extraEnv...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", bin, err)
	}
	listening := make(chan map[string]any, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.logs.Write(sc.Bytes())
			s.logs.WriteByte('\n')
			s.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				select {
				case listening <- m:
				default:
				}
			}
		}
	}()
	tb.Cleanup(func() { s.stop(tb) })
	select {
	case <-listening:
	case <-s.done:
		tb.Fatalf("the server exited before listening:\n%s", s.Logs())
	case <-time.After(time.Minute):
		tb.Fatalf("the server did not log \"listening\" within a minute:\n%s", s.Logs())
	}
	return s
}

// Logs returns what the server has logged so far.
func (s *server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// stop sends SIGTERM, waits for a graceful exit, and kills it if it hangs.
func (s *server) stop(tb testing.TB) {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() {
		<-s.done
		exited <- s.cmd.Wait()
	}()
	select {
	case err := <-exited:
		if err != nil {
			tb.Errorf("server exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-exited
		tb.Errorf("the server did not exit within 20s of SIGTERM")
	}
	if tb.Failed() {
		tb.Logf("server logs (the relay's per-datagram lines left out):\n%s", headTail(withoutDatagrams(s.Logs()), 0, 300))
	}
}

// LogLen is how many bytes the server has logged so far: where a test's
// own part of the logs starts.
func (s *server) LogLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.Len()
}

// LogsSince returns what the server logged after LogLen returned from.
func (s *server) LogsSince(from int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.logs.Bytes()
	return string(b[min(from, len(b)):])
}

// datagramLine matches the relay's debug lines about single datagrams,
// which bury everything else in a log of a call.
var datagramLine = regexp.MustCompile(`"msg":"(Received \d+ bytes of|Received (DataPacket|SendIndication|ChannelData) from|Handling TURN packet|Relay socket |Relaying message from)`)

// withoutDatagrams drops datagramLine's lines from a log.
func withoutDatagrams(logs string) string {
	lines := strings.SplitAfter(logs, "\n")
	var b strings.Builder
	for _, l := range lines {
		if !datagramLine.MatchString(l) {
			b.WriteString(l)
		}
	}
	return b.String()
}

// headTail keeps the first head and the last tail lines of s, and says how
// many it left out between them.
func headTail(s string, head, tail int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= head+tail {
		return strings.Join(lines, "\n")
	}
	kept := append(slices.Clip(lines[:head]), fmt.Sprintf("… %d lines left out", len(lines)-head-tail))
	return strings.Join(append(kept, lines[len(lines)-tail:]...), "\n")
}

// blockUDP drops every UDP datagram in the namespace except those between
// relay ports (relay to relay), as on a network that lets only TCP out; with
// turnTCP false it drops TCP to the TURN port too. It lasts until the test
// ends.
func blockUDP(tb testing.TB, turnTCP bool) {
	tb.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		testsupport.Missing(tb, "this test needs the nft command (Debian package nftables)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	rules := fmt.Sprintf(`table inet strangers_test {
  chain out {
    type filter hook output priority 0; policy accept;
    meta l4proto udp udp sport != %[1]d-%[2]d drop
  }
}
`, relayPortMin, relayPortMax)
	if !turnTCP {
		rules = strings.Replace(rules, "drop\n", "drop\n    tcp dport "+turnPort+" drop\n", 1)
	}
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("nft: %v: %s", err, out)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "nft", "delete", "table", "inet", "strangers_test").CombinedOutput(); err != nil {
			tb.Errorf("nft delete: %v: %s", err, out)
		}
	})
}

// killConnections resets every TCP connection to the server made to the
// given local address: to the browser it looks like a network drop (no close
// frame), to the server like a lost connection.
func killConnections(ctx context.Context, localAddr string) error {
	var killed bool
	srcs := []string{localAddr}
	if !strings.HasPrefix(localAddr, "[") {
		// On a dual-stack listener IPv4 peers appear IPv4-mapped.
		srcs = append(srcs, "[::ffff:"+localAddr+"]")
	}
	for _, src := range srcs {
		out, err := exec.CommandContext(ctx, "ss", "-K", "-tn", "src", src, "and", "sport", "=", ":"+httpPort).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ss -K: %w: %s", err, out)
		}
		killed = killed || strings.Contains(string(out), src+":"+httpPort)
	}
	if !killed {
		list, _ := exec.CommandContext(ctx, "ss", "-tn").CombinedOutput()
		return fmt.Errorf("ss -K found no connection to %s:%s to kill; connections:\n%s", localAddr, httpPort, list)
	}
	return nil
}

func TestHeadTail(t *testing.T) {
	for _, c := range []struct {
		in         string
		head, tail int
		want       string
	}{
		{"a\nb\nc\n", 1, 1, "a\n… 1 lines left out\nc"},
		{"a\nb\nc\nd", 0, 2, "… 2 lines left out\nc\nd"},
		{"a\nb\n", 1, 1, "a\nb"},
	} {
		if got := headTail(c.in, c.head, c.tail); got != c.want {
			t.Errorf("headTail(%q, %d, %d) = %q, want %q", c.in, c.head, c.tail, got, c.want)
		}
	}
}
