package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

const (
	// envReexec marks a process started by the lab in a client namespace:
	// its arguments name a role (peer, browser) instead of the matrix.
	envReexec = "STRANGERS_LAB_ROLE"
	// peerTimeout bounds one side of one pion call. It bounds a hang: a
	// call takes a second or two, several on a busy machine.
	peerTimeout = time.Minute
	// procGrace is how long a role process gets after its deadline before
	// it is killed.
	procGrace = 5 * time.Second
)

// ErrRun is returned when a run's processes cannot be started or say
// nothing intelligible.
var ErrRun = errors.New("strangers-lab: run")

// side is one end of a cell: where the client runs and how.
type side struct {
	site string // site name, e.g. "cone-a"
	hide bool   // "hide my IP"
}

func (s side) String() string {
	name := strings.TrimSuffix(strings.TrimSuffix(s.site, "-a"), "-b")
	if s.hide {
		name += " (hide IP)"
	}
	return name
}

// cell is one scenario of the matrix: two clients and what they run.
type cell struct {
	a, b    side
	browser bool // both sides are Chromium with the page; else pion peers
}

func (c cell) String() string {
	s := c.a.String() + " ↔ " + c.b.String()
	if c.browser {
		s += " [chromium]"
	}
	return s
}

// pionCells is every pair of site kinds (two sites of the same kind for a
// pair of equals) plus the "hide my IP" cases.
func pionCells() []cell {
	var cells []cell
	for i, ka := range siteKinds {
		for _, kb := range siteKinds[i:] {
			b := string(kb) + "-a"
			if ka == kb {
				b = string(kb) + "-b"
			}
			cells = append(cells, cell{a: side{site: string(ka) + "-a"}, b: side{site: b}})
		}
	}
	return append(cells,
		cell{a: side{site: "public-a", hide: true}, b: side{site: "public-b"}},
		cell{a: side{site: "cone-a", hide: true}, b: side{site: "cone-b", hide: true}},
		cell{a: side{site: "symmetric-a", hide: true}, b: side{site: "firewall-a"}},
	)
}

// browserCells are the Chromium cases: the corporate firewall on both sides
// and towards a full-cone home, and "Hide my IP" ticked in the page.
func browserCells() []cell {
	return []cell{
		{a: side{site: "firewall-a"}, b: side{site: "firewall-b"}, browser: true},
		{a: side{site: "firewall-a"}, b: side{site: "cone-a"}, browser: true},
		{a: side{site: "cone-b", hide: true}, b: side{site: "public-a"}, browser: true},
	}
}

// runResult is one run of a cell: what each side saw.
type runResult struct {
	a, b peerResult
	err  error // the run could not be carried out (not: the call failed)
}

// connected reports whether both sides connected and data flowed.
func (r runResult) connected() bool {
	return r.err == nil && r.a.Error == "" && r.b.Error == "" && r.a.Connected && r.b.Connected && (r.a.Echoed > 0 || r.b.Echoed > 0 || r.a.Frames > 0 && r.b.Frames > 0)
}

// ms is the run's time to connected: the slower side's.
func (r runResult) ms() float64 { return max(r.a.ConnectedMs, r.b.ConnectedMs) }

// cellResult is every run of a cell.
type cellResult struct {
	cell cell
	runs []runResult
}

// p50 is the median time to connected over the connected runs, and max
// the slowest; both zero when none connected.
func (c cellResult) p50() (p50, slowest float64) {
	var ms []float64
	for _, r := range c.runs {
		if r.connected() {
			ms = append(ms, r.ms())
		}
	}
	if len(ms) == 0 {
		return 0, 0
	}
	slices.Sort(ms)
	return ms[(len(ms)-1)/2], ms[len(ms)-1]
}

// connectedRuns counts the runs where both sides connected.
func (c cellResult) connectedRuns() int {
	n := 0
	for _, r := range c.runs {
		if r.connected() {
			n++
		}
	}
	return n
}

// paths lists the distinct paths the runs took, e.g. "host ↔ relay/tls".
func (c cellResult) paths() string {
	var seen []string
	for _, r := range c.runs {
		if !r.connected() {
			continue
		}
		p := pathOf(r.a) + " ↔ " + pathOf(r.b)
		if !slices.Contains(seen, p) {
			seen = append(seen, p)
		}
	}
	if len(seen) == 0 {
		return "-"
	}
	return strings.Join(seen, ", ")
}

// pathOf is one side's end of the selected pair: its local candidate type,
// with the transport to the relay when it is relayed.
func pathOf(r peerResult) string {
	if r.Local == "relay" && r.RelayProto != "" {
		return "relay/" + r.RelayProto
	}
	return r.Local
}

// runner carries out cells in a lab whose server is up.
type runner struct {
	lab     *lab
	exe     string   // this program, re-executed in client namespaces
	env     []string // environment of every role process
	log     io.Writer
	browser browserOptions
	waits   nominationWaits
}

// nominationWaits are the pion peers' waits before nominating a pair by
// candidate type (see defaultSrflxWait).
type nominationWaits struct {
	srflx, prflx, relay time.Duration
}

func (w nominationWaits) String() string {
	return fmt.Sprintf("srflx %v, prflx %v, relay %v", w.srflx, w.prflx, w.relay)
}

// newRunner prepares role processes: they trust the lab CA (SSL_CERT_FILE
// for Go's TLS, and a Chromium NSS db under HOME made by the browser role).
func newRunner(l *lab, certs labCerts, logw io.Writer, bo browserOptions, waits nominationWaits) (*runner, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%w: finding this executable: %w", ErrRun, err)
	}
	return &runner{
		lab: l,
		exe: exe,
		env: []string{
			"PATH=" + os.Getenv("PATH"),
			"SSL_CERT_FILE=" + certs.caFile,
			envReexec + "=1",
		},
		log:     logw,
		browser: bo,
		waits:   waits,
	}, nil
}

// runCell carries out n runs of c, one after the other.
func (r *runner) runCell(ctx context.Context, c cell, n int) cellResult {
	res := cellResult{cell: c}
	for range n {
		var rr runResult
		if c.browser {
			rr = r.runBrowser(ctx, c)
		} else {
			rr = r.runPion(ctx, c)
		}
		res.runs = append(res.runs, rr)
		if ctx.Err() != nil {
			break
		}
	}
	return res
}

// runPion starts a pion peer in each side's client namespace and collects
// their results.
func (r *runner) runPion(ctx context.Context, c cell) runResult {
	tag := "lab" + randHex(6)
	var out [2]peerResult
	var errs [2]error
	var wg sync.WaitGroup
	for i, s := range []side{c.a, c.b} {
		st, err := r.lab.site(s.site)
		if err != nil {
			return runResult{err: err}
		}
		args := []string{"peer", "-tag", tag, "-timeout", peerTimeout.String(),
			"-srflx-wait", r.waits.srflx.String(), "-prflx-wait", r.waits.prflx.String(), "-relay-wait", r.waits.relay.String()}
		if s.hide {
			args = append(args, "-hide", "-leak")
		}
		wg.Go(func() { out[i], errs[i] = r.role(ctx, st.client, peerTimeout+procGrace, args) })
	}
	wg.Wait()
	return runResult{a: out[0], b: out[1], err: errors.Join(errs[0], errs[1])}
}

// role runs this program with args in namespace ns and decodes the
// peerResult it prints; what it logs on stderr is passed to r.log.
func (r *runner) role(ctx context.Context, ns string, limit time.Duration, args []string) (peerResult, error) {
	var res peerResult
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, r.exe}, args...)...)
	cmd.Env = r.env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = procGrace
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stderr.Len() > 0 && r.log != nil {
		fmt.Fprintf(r.log, "[%s %s]\n%s", ns, args[0], stderr.Bytes())
	}
	if jerr := json.Unmarshal(lastLine(stdout.Bytes()), &res); jerr != nil {
		return res, fmt.Errorf("%w: %s in %s printed no result (exit: %v): %w; stderr:\n%s", ErrRun, args[0], ns, err, jerr, tail(stderr.String(), 20))
	}
	if err != nil {
		// It printed a result but did not end cleanly (under the race
		// detector, a data race makes the exit status 66).
		return res, fmt.Errorf("%w: %s in %s: %w; stderr:\n%s", ErrRun, args[0], ns, err, tail(stderr.String(), 40))
	}
	return res, nil
}

// lastLine returns the last non-empty line of b.
func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func randHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// violation is one "must hold" rule a cell broke.
type violation struct {
	where string // the cell or site
	msg   string
}

func (v violation) String() string { return v.where + ": " + v.msg }

// expectDirect reports whether a cell must connect without the relay:
// nobody hides, no firewall, and not two symmetric NATs.
func expectDirect(l *lab, c cell) bool {
	ka, kb := kindOf(l, c.a), kindOf(l, c.b)
	if c.a.hide || c.b.hide || ka == kindFirewall || kb == kindFirewall {
		return false
	}
	return !(ka == kindSymmetric && kb == kindSymmetric)
}

func kindOf(l *lab, s side) siteKind {
	st, err := l.site(s.site)
	if err != nil {
		return ""
	}
	return st.kind
}

// check returns every rule of the lab's "must hold" list that res breaks.
func check(l *lab, res cellResult) []violation {
	c := res.cell
	var out []violation
	bad := func(format string, args ...any) {
		out = append(out, violation{c.String(), fmt.Sprintf(format, args...)})
	}
	if len(res.runs) == 0 {
		bad("no runs")
	}
	for i, r := range res.runs {
		run := fmt.Sprintf("run %d", i+1)
		if !r.connected() {
			bad("%s did not connect: %s", run, describeFailure(r))
			continue
		}
		sides := [2]struct {
			s    side
			self peerResult
			peer peerResult
		}{{c.a, r.a, r.b}, {c.b, r.b, r.a}}
		if expectDirect(l, c) && !(r.a.direct() && r.b.direct()) {
			bad("%s relayed (%s ↔ %s) although a direct path exists", run, pathOf(r.a), pathOf(r.b))
		}
		if kindOf(l, c.a) == kindSymmetric && kindOf(l, c.b) == kindSymmetric && r.a.Local != "relay" && r.b.Local != "relay" {
			bad("%s: symmetric ↔ symmetric connected without the relay (%s ↔ %s)", run, pathOf(r.a), pathOf(r.b))
		}
		for _, sd := range sides {
			if kindOf(l, sd.s) == kindFirewall && (sd.self.Local != "relay" || sd.self.RelayProto != "tls") {
				bad("%s: the firewalled side %s uses %s, want relay over TLS on 443", run, sd.s, pathOf(sd.self))
			}
			if !sd.s.hide {
				continue
			}
			if sd.self.Leaked == 0 && !c.browser {
				bad("%s: %s hides its IP but offered no candidates of its own to leak, so nothing was checked", run, sd.s)
			}
			if sd.self.Local != "relay" || !throughOurRelay(sd.peer) {
				bad("%s: %s hides its IP but the path is %s (its view), remote %s %s (partner's view)", run, sd.s, pathOf(sd.self), sd.peer.Remote, sd.peer.RemoteAddr)
			}
			for _, cand := range sd.peer.Received {
				if candidateType(cand) != "relay" {
					bad("%s: the partner of %s received a %s candidate: %s", run, sd.s, candidateType(cand), cand)
				}
			}
			st, _ := l.site(sd.s.site)
			for _, a := range sd.peer.Addrs {
				if addr, err := netip.ParseAddr(a); err == nil && st != nil && slices.Contains(st.addrs(), addr) {
					bad("%s: the partner of %s was told its address %s", run, sd.s, a)
				}
			}
		}
	}
	return out
}

// throughOurRelay reports whether the far end of r's selected pair is our
// relay: a relay candidate, or a peer-reflexive one at the relay's address
// (a connectivity check from the partner's relay arrived before the
// partner's relay candidate did; which comes first is a race). Either way
// r learnt no address but the relay's.
func throughOurRelay(r peerResult) bool {
	return r.Remote == "relay" || r.Remote == "prflx" && r.RemoteAddr == serverAddr
}

// describeFailure says why a run did not connect.
func describeFailure(r runResult) string {
	if r.err != nil {
		return r.err.Error()
	}
	var parts []string
	for i, p := range []peerResult{r.a, r.b} {
		s := fmt.Sprintf("side %d: connected=%v echoed=%d", i+1, p.Connected, p.Echoed)
		if p.Error != "" {
			s += " error=" + p.Error
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// candidateType returns the value after "typ" in a candidate line.
func candidateType(line string) string {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "typ" {
			return f[i+1]
		}
	}
	return ""
}

// checkNAT probes every site's NAT and returns where one does not
// behave as its kind must; it writes what it measured to w.
func checkNAT(ctx context.Context, l *lab, w io.Writer) ([]violation, error) {
	var out []violation
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tUDP OUT\tMAPPED AS\tSAME PORT\tINDEP. MAPPING\tINDEP. FILTERING\tTCP 443\tTCP OTHER")
	for _, s := range l.sites {
		got, err := l.probeNAT(ctx, s)
		if err != nil {
			return out, err
		}
		mapped := "-"
		if got.Mapped.IsValid() {
			mapped = got.Mapped.String()
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%v\t%v\t%v\t%v\t%v\n", s.name, got.UDP, mapped, got.SamePort, got.IndepMapping, got.IndepFilter, got.TCP443, got.TCPOther)
		if want := s.kind.want(s); got != want {
			out = append(out, violation{s.name, fmt.Sprintf("NAT behaves as %+v, want %+v", got, want)})
		}
	}
	tw.Flush()
	silent, err := l.probeBlackhole()
	if err != nil {
		return out, err
	}
	fmt.Fprintf(w, "sends from the internet to an address that exists nowhere vanish silently: %v\n", silent)
	if !silent {
		out = append(out, violation{"blackhole", "a send to an address that exists nowhere failed or drew an error"})
	}
	return out, nil
}

// printMatrix writes the results as a table and as a grid of p50 times.
func printMatrix(w io.Writer, results []cellResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CELL\tCONNECTED\tPATH (A ↔ B: local candidate[/relay transport])\tP50 MS\tMAX MS")
	for _, r := range results {
		p50, slowest := r.p50()
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%.0f\t%.0f\n", r.cell, r.connectedRuns(), len(r.runs), r.paths(), p50, slowest)
	}
	tw.Flush()

	// The grid: pion cells without "hide my IP", by kind.
	grid := map[[2]siteKind]cellResult{}
	for _, r := range results {
		if r.cell.browser || r.cell.a.hide || r.cell.b.hide {
			continue
		}
		ka, kb := siteKind(strings.TrimSuffix(strings.TrimSuffix(r.cell.a.site, "-a"), "-b")), siteKind(strings.TrimSuffix(strings.TrimSuffix(r.cell.b.site, "-a"), "-b"))
		grid[[2]siteKind{ka, kb}], grid[[2]siteKind{kb, ka}] = r, r
	}
	if len(grid) == 0 {
		return
	}
	fmt.Fprintln(w, "\np50 time to connected (ms), pion ↔ pion:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, k := range siteKinds {
		fmt.Fprintf(tw, "%s\t", k)
	}
	fmt.Fprintln(tw)
	for _, ka := range siteKinds {
		fmt.Fprintf(tw, "%s\t", ka)
		for _, kb := range siteKinds {
			r, ok := grid[[2]siteKind{ka, kb}]
			switch {
			case !ok:
				fmt.Fprint(tw, "-\t")
			case r.connectedRuns() < len(r.runs):
				fmt.Fprintf(tw, "FAIL %d/%d\t", r.connectedRuns(), len(r.runs))
			default:
				p50, _ := r.p50()
				fmt.Fprintf(tw, "%.0f\t", p50)
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
