package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"

	"github.com/strangers-chat/strangers/internal/wsclient"
	"github.com/strangers-chat/strangers/signaling"
)

// certWarnDays is how close to expiry a certificate gets a warning.
const certWarnDays = 14

// checkItem is one thing `strangers check` tested.
type checkItem struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"` // a browser needs it: a failure makes the exit code non-zero
	Detail   string `json:"detail"`
	Millis   int64  `json:"ms"`
}

// checkReport is the whole result, also the --json output.
type checkReport struct {
	URL    string      `json:"url"`
	OK     bool        `json:"ok"`
	Checks []checkItem `json:"checks"`
}

type checkOptions struct {
	timeout time.Duration // per probe
	roots   *x509.CertPool
}

// checkCommand is `strangers check [--json] [--timeout d] [--ca file] <url>`.
func checkCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON (for monitoring)")
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed for each probe")
	caFile := fs.String("ca", "", "PEM file of extra roots to trust (a private CA)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: strangers check [--json] [--timeout 5s] [--ca roots.pem] https://chat.example.com")
		fmt.Fprintln(stderr, "Tests a deployment the way a browser would: page, certificate, WebSocket, STUN, TURN over UDP, TCP and TLS, and relayed round trips.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	opts := checkOptions{timeout: *timeout}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "strangers check: --ca %s: no PEM certificates could be read (%v)\n", *caFile, err)
			return 2
		}
	}
	opts.roots = roots

	ctx, cancel := context.WithTimeout(context.Background(), 20*opts.timeout)
	defer cancel()
	report := runCheck(ctx, fs.Arg(0), opts)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report) // as the text report: nowhere else to say it failed
	} else {
		printCheck(stdout, report)
	}
	if !report.OK {
		return 1
	}
	return 0
}

func printCheck(w io.Writer, r checkReport) {
	fmt.Fprintf(w, "strangers check %s\n", r.URL)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	failed := 0
	for _, c := range r.Checks {
		mark := "ok"
		switch {
		case !c.OK && c.Required:
			mark = "FAIL"
			failed++
		case !c.OK:
			mark = "warn"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", mark, c.Name, c.Detail)
	}
	tw.Flush()
	if failed == 0 {
		fmt.Fprintln(w, "Everything a browser needs works.")
	} else {
		fmt.Fprintf(w, "%d problem(s) break calls for some or all visitors; see FAIL above.\n", failed)
	}
}

// checker runs the probes of one check.
type checker struct {
	opts   checkOptions
	target *url.URL
	report *checkReport
}

func (c *checker) add(name string, required bool, start time.Time, err error, okDetail string) bool {
	item := checkItem{Name: name, Required: required, OK: err == nil, Detail: okDetail, Millis: time.Since(start).Milliseconds()}
	if err != nil {
		item.Detail = err.Error()
	}
	c.report.Checks = append(c.report.Checks, item)
	if err != nil && required {
		c.report.OK = false
	}
	return err == nil
}

// runCheck tests the deployment at target the way a browser would.
func runCheck(ctx context.Context, target string, opts checkOptions) checkReport {
	report := checkReport{URL: target, OK: true}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		report.OK = false
		report.Checks = append(report.Checks, checkItem{Name: "url", Required: true, Detail: fmt.Sprintf("%q is not an http(s) URL such as https://chat.example.com", target)})
		return report
	}
	c := &checker{opts: opts, target: u, report: &report}

	if u.Scheme == "https" {
		c.checkCertificate(ctx)
	} else if host := u.Hostname(); host != "localhost" && !isLoopback(host) {
		c.add("https", true, time.Now(), errors.New("the page is not served over HTTPS: browsers give camera and microphone only to HTTPS pages (and localhost)"), "")
	}
	c.checkPage(ctx)

	ws, iceServers, ok := c.checkWebSocket(ctx)
	if ws != nil {
		defer ws.Close()
	}
	c.checkOrigin(ctx)
	if ok {
		c.checkICE(ctx, iceServers)
	}
	return report
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *checker) tlsConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: c.opts.roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
}

func (c *checker) hostPort() string {
	if c.target.Port() != "" {
		return c.target.Host
	}
	if c.target.Scheme == "https" {
		return net.JoinHostPort(c.target.Hostname(), "443")
	}
	return net.JoinHostPort(c.target.Hostname(), "80")
}

// checkCertificate inspects the certificate without trusting it first, so
// that it can say what is wrong with it.
func (c *checker) checkCertificate(ctx context.Context) {
	start := time.Now()
	d := tls.Dialer{Config: &tls.Config{ServerName: c.target.Hostname(), InsecureSkipVerify: true}}
	dctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", c.hostPort())
	if err != nil {
		c.add("certificate", true, start, fmt.Errorf("no TLS handshake with %s: %w", c.hostPort(), err), "")
		return
	}
	defer conn.Close()
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	leaf := chain[0]
	now := time.Now()
	switch {
	case now.After(leaf.NotAfter):
		c.add("certificate", true, start, fmt.Errorf("expired on %s: browsers refuse the page and the TURN-over-TLS relay", leaf.NotAfter.UTC().Format(time.DateOnly)), "")
		return
	case now.Before(leaf.NotBefore):
		c.add("certificate", true, start, fmt.Errorf("not valid before %s (is the clock right?)", leaf.NotBefore.UTC().Format(time.RFC3339)), "")
		return
	}
	inter := x509.NewCertPool()
	for _, cert := range chain[1:] {
		inter.AddCert(cert)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.opts.roots, Intermediates: inter, DNSName: c.target.Hostname()}); err != nil {
		c.add("certificate", true, start, fmt.Errorf("not trusted for %s: %w", c.target.Hostname(), err), "")
		return
	}
	days := int(leaf.NotAfter.Sub(now).Hours() / 24)
	detail := fmt.Sprintf("valid for %s until %s (%d days), issued by %s", c.target.Hostname(), leaf.NotAfter.UTC().Format(time.DateOnly), days, leaf.Issuer.CommonName)
	if days < certWarnDays {
		c.add("certificate renewal", false, start, fmt.Errorf("expires in %d days (%s): is renewal working?", days, leaf.NotAfter.UTC().Format(time.DateOnly)), "")
	}
	c.add("certificate", true, start, nil, detail)
}

func (c *checker) checkPage(ctx context.Context) {
	start := time.Now()
	client := &http.Client{Timeout: c.opts.timeout, Transport: &http.Transport{TLSClientConfig: c.tlsConfig(""), ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.target.String(), nil)
	resp, err := client.Do(req)
	if err != nil {
		c.add("page", true, start, fmt.Errorf("GET %s: %w", c.target, err), "")
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		c.add("page", true, start, fmt.Errorf("GET %s: %s, %s", c.target, resp.Status, resp.Header.Get("Content-Type")), "")
		return
	}
	c.add("page", true, start, nil, fmt.Sprintf("served over %s", resp.Proto))
}

func (c *checker) wsURL() string {
	scheme := "ws"
	if c.target.Scheme == "https" {
		scheme = "wss"
	}
	return scheme + "://" + c.target.Host + "/ws"
}

func (c *checker) origin() string { return c.target.Scheme + "://" + c.target.Host }

// checkWebSocket opens /ws as the page would, says hello and asks for ICE
// servers; ok is false when it could not learn them. The connection stays
// open: the TURN credentials are good only while the session lives.
func (c *checker) checkWebSocket(ctx context.Context) (_ *wsclient.Conn, _ []turnURL, ok bool) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	ws, err := wsclient.Dial(dctx, c.wsURL(), c.wsOptions(c.origin()))
	if err != nil {
		var herr *wsclient.HandshakeError
		if errors.As(err, &herr) {
			err = fmt.Errorf("%s: %w (HTTP %s; behind a proxy? it must pass WebSocket upgrades)", c.wsURL(), herr.Err, herr.Status)
		} // else it names the URL already
		c.add("websocket", true, start, err, "")
		return nil, nil, false
	}
	// One deadline for each exchange, as long as one probe may take.
	hctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	if _, err := ws.Hello(hctx, ""); err != nil {
		ws.Close()
		c.add("websocket", true, start, fmt.Errorf("hello on %s: %w", c.wsURL(), err), "")
		return nil, nil, false
	}
	c.add("websocket", true, start, nil, "handshake and hello answered on "+c.wsURL())

	start = time.Now()
	ictx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	reply, err := askICE(ictx, ws)
	if err != nil {
		c.add("ice servers", true, start, fmt.Errorf("asking for ICE servers: %w", err), "")
		return ws, nil, false
	}
	var urls []turnURL
	var names []string
	for _, s := range reply.ICEServers {
		for _, raw := range s.URLs {
			uri, err := stun.ParseURI(raw)
			if err != nil {
				continue
			}
			urls = append(urls, turnURL{uri: uri, username: s.Username, password: s.Credential})
			names = append(names, raw)
		}
	}
	if len(urls) == 0 {
		c.add("ice servers", true, start, errors.New("the server offers no STUN or TURN server: visitors behind NAT will not connect"), "")
		return ws, nil, true
	}
	c.add("ice servers", true, start, nil, strings.Join(names, " "))
	return ws, urls, true
}

// askICE sends ice and waits for the answer.
func askICE(ctx context.Context, ws *wsclient.Conn) (*signaling.ICEReply, error) {
	if err := ws.Send(ctx, signaling.ICERequest{}); err != nil {
		return nil, err
	}
	return wsclient.Wait[signaling.ICEReply](ctx, ws, signaling.TypeICE)
}

// wsOptions are the WebSocket options of a probe sending origin.
func (c *checker) wsOptions(origin string) wsclient.Options {
	return wsclient.Options{Origin: origin, TLS: c.tlsConfig(""), HandshakeTimeout: c.opts.timeout, WriteWait: c.opts.timeout}
}

// checkOrigin checks that a page from elsewhere cannot open /ws.
func (c *checker) checkOrigin(ctx context.Context) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	ws, err := wsclient.Dial(dctx, c.wsURL(), c.wsOptions("https://strangers-check.invalid"))
	if err == nil {
		ws.Close()
		c.add("origin policy", false, start, errors.New("a page on any other site may open /ws (is STRANGERS_ALLOWED_ORIGINS=*?)"), "")
		return
	}
	var herr *wsclient.HandshakeError
	if errors.As(err, &herr) && herr.StatusCode == http.StatusForbidden {
		c.add("origin policy", false, start, nil, "pages from other origins are refused")
		return
	}
	c.add("origin policy", false, start, fmt.Errorf("could not tell: %w", err), "")
}

// turnURL is one STUN or TURN URL with its credentials.
type turnURL struct {
	uri                *stun.URI
	username, password string
}

func (t turnURL) transport() string {
	switch {
	case t.uri.Scheme == stun.SchemeTypeTURNS:
		return "tls"
	case t.uri.Proto == stun.ProtoTypeTCP:
		return "tcp"
	}
	return "udp"
}

func (t turnURL) addr() string { return net.JoinHostPort(t.uri.Host, strconv.Itoa(t.uri.Port)) }

// checkICE probes every STUN URL and, for each TURN transport, allocates
// and relays a round trip between two allocations of its own.
func (c *checker) checkICE(ctx context.Context, urls []turnURL) {
	seen := map[string]bool{}
	haveTLS := false
	for _, u := range urls {
		switch u.uri.Scheme {
		case stun.SchemeTypeSTUN, stun.SchemeTypeSTUNS:
			start := time.Now()
			mapped, err := c.stunBinding(u)
			c.add("stun "+u.addr(), true, start, err, "binding answered over UDP; seen as "+fmt.Sprint(mapped))
		case stun.SchemeTypeTURN, stun.SchemeTypeTURNS:
			tr := u.transport()
			if seen[tr] {
				continue
			}
			seen[tr] = true
			haveTLS = haveTLS || tr == "tls"
			c.checkTURN(ctx, u)
		}
	}
	for _, tr := range []string{"udp", "tcp"} {
		if !seen[tr] {
			c.add("turn "+tr, true, time.Now(), fmt.Errorf("no turn: URL over %s is offered: visitors behind strict NATs will not connect", tr), "")
		}
	}
	if !haveTLS {
		c.add("turn tls", false, time.Now(), errors.New("no turns: URL is offered: visitors behind firewalls that only let TLS on 443 out will not connect (configure TLS)"), "")
	}
}

// hint says what most often breaks a transport.
func hint(tr string) string {
	switch tr {
	case "udp":
		return "is UDP to the TURN port open in the firewall?"
	case "tcp":
		return "is TCP to the TURN port open in the firewall?"
	default:
		return "does the certificate cover this host, and is the TLS port open?"
	}
}

// dialTURN connects a TURN client over u's transport.
func (c *checker) dialTURN(u turnURL) (*turn.Client, func(), error) {
	var conn net.PacketConn
	var closeConn func()
	switch u.transport() {
	case "udp":
		pc, err := net.ListenPacket("udp", ":0")
		if err != nil {
			return nil, nil, err
		}
		conn, closeConn = pc, func() { pc.Close() }
	case "tcp":
		tc, err := net.DialTimeout("tcp", u.addr(), c.opts.timeout)
		if err != nil {
			return nil, nil, fmt.Errorf("TCP connect to %s: %w", u.addr(), err)
		}
		conn, closeConn = turn.NewSTUNConn(tc), func() { tc.Close() }
	case "tls":
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: c.opts.timeout}, Config: c.tlsConfig(u.uri.Host)}
		tc, err := d.Dial("tcp", u.addr())
		if err != nil {
			return nil, nil, fmt.Errorf("TLS connect to %s: %w", u.addr(), err)
		}
		conn, closeConn = turn.NewSTUNConn(tc), func() { tc.Close() }
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: u.addr(),
		TURNServerAddr: u.addr(),
		Username:       u.username,
		Password:       u.password,
		Conn:           conn,
		RTO:            c.opts.timeout / 8,
		LoggerFactory:  quietLoggerFactory(),
	})
	if err != nil {
		closeConn()
		return nil, nil, err
	}
	if err := client.Listen(); err != nil {
		client.Close()
		closeConn()
		return nil, nil, err
	}
	return client, func() { client.Close(); closeConn() }, nil
}

func (c *checker) stunBinding(u turnURL) (net.Addr, error) {
	client, done, err := c.dialTURN(turnURL{uri: &stun.URI{Scheme: stun.SchemeTypeSTUN, Host: u.uri.Host, Port: u.uri.Port, Proto: stun.ProtoTypeUDP}})
	if err != nil {
		return nil, err
	}
	defer done()
	mapped, err := client.SendBindingRequest()
	if err != nil {
		return nil, fmt.Errorf("no binding answer from %s over UDP: %s; %s", u.addr(), plainTURNError(err), hint("udp"))
	}
	return mapped, nil
}

// checkTURN allocates twice over u's transport and sends a message from
// one allocation to the other and back.
func (c *checker) checkTURN(ctx context.Context, u turnURL) {
	tr := u.transport()
	name := "turn " + tr
	start := time.Now()
	var relays [2]net.PacketConn
	var clients [2]*turn.Client
	for i := range relays {
		client, done, err := c.dialTURN(u)
		if err != nil {
			c.add(name, true, start, fmt.Errorf("%w; %s", err, hint(tr)), "")
			return
		}
		defer done()
		relay, err := client.Allocate()
		if err != nil {
			c.add(name, true, start, fmt.Errorf("allocation at %s refused or unanswered: %s; %s", u.addr(), plainTURNError(err), hint(tr)), "")
			return
		}
		defer relay.Close()
		relays[i], clients[i] = relay, client
	}
	c.add(name, true, start, nil, fmt.Sprintf("allocated at %s, relay address %s", u.addr(), relays[0].LocalAddr()))

	start = time.Now()
	name = "relay " + tr
	for i, j := range []int{1, 0} {
		if err := clients[i].CreatePermission(relays[j].LocalAddr()); err != nil {
			c.add(name, true, start, fmt.Errorf("permission to the server's own relay address refused: %w (the peer policy must allow it)", err), "")
			return
		}
	}
	rtt, err := roundTrip(ctx, relays[0], relays[1], c.opts.timeout)
	if err != nil {
		c.add(name, true, start, fmt.Errorf("no relayed round trip: %w; is the UDP relay port range open?", err), "")
		return
	}
	c.add(name, true, start, nil, fmt.Sprintf("round trip between two relay allocations in %v", rtt.Round(100*time.Microsecond)))
}

// plainTURNError says a TURN client error in words: the client's own
// timeout message names a transaction id, which helps nobody.
func plainTURNError(err error) string {
	if strings.Contains(err.Error(), "all retransmissions failed") {
		return "no answer"
	}
	return err.Error()
}

// roundTrip sends a message from a to b, which echoes it back, retrying
// a few times (UDP may drop the first packets while permissions settle).
func roundTrip(ctx context.Context, a, b net.PacketConn, timeout time.Duration) (time.Duration, error) {
	payload := []byte("strangers check round trip")
	buf := make([]byte, 1500)
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		sent := time.Now()
		if _, err := a.WriteTo(payload, b.LocalAddr()); err != nil {
			return 0, err
		}
		b.SetReadDeadline(time.Now().Add(timeout / 10))
		n, from, err := b.ReadFrom(buf)
		if err != nil {
			lastErr = err
			continue
		}
		if _, err := b.WriteTo(buf[:n], from); err != nil {
			return 0, err
		}
		a.SetReadDeadline(time.Now().Add(timeout / 10))
		n, _, err = a.ReadFrom(buf)
		if err != nil {
			lastErr = err
			continue
		}
		if string(buf[:n]) == string(payload) {
			return time.Since(sent), nil
		}
	}
	if lastErr == nil {
		lastErr = context.DeadlineExceeded
	}
	return 0, lastErr
}

// quietLoggerFactory silences pion's own logs; check reports in its words.
func quietLoggerFactory() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}
