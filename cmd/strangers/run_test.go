package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	ca, err := makeCA()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test CA:", err)
		os.Exit(1)
	}
	sharedCA = ca
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binaryDir != "" {
			os.RemoveAll(binaryDir)
		}
	}))
}

// metricFamilies scrapes the server's /metrics and parses it.
func metricFamilies(t *testing.T, s *server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, s.url("/metrics"))
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	return families
}

// counterValue returns the value of the unlabelled counter name on the
// server's /metrics.
func counterValue(t *testing.T, s *server, name string) float64 {
	t.Helper()
	f, ok := metricFamilies(t, s)[name]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetCounter() == nil {
		t.Fatalf("/metrics has no counter %s", name)
	}
	return f.GetMetric()[0].GetCounter().GetValue()
}

func TestRunServesHealthReadyMetricsAndPage(t *testing.T) {
	s := startRun(t, nil)

	if code, body := get(t, s.url("/healthz")); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, s.url("/readyz")); code != 200 {
		t.Errorf("/readyz = %d %q, want 200", code, body)
	}

	families := metricFamilies(t, s)
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "strangers_build_info"} {
		if _, ok := families[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	code, body := get(t, s.url("/"))
	if code != 200 || !strings.Contains(body, ">Strangers</title>") {
		t.Errorf("/ = %d, body %.80q", code, body)
	}
}

func TestRunStopsWithinGraceOnCancel(t *testing.T) {
	s := startRun(t, map[string]string{"STRANGERS_SHUTDOWN_GRACE": "5s"})
	// An idle keep-alive connection must not hold shutdown up.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(s.url("/healthz"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	start := time.Now()
	if err := s.stop(t); err != nil {
		t.Fatalf("run returned %v after cancel, want nil", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("run took %v to stop, more than the 5s grace", took)
	}
	if _, ok := s.logs.waitFor(func(m map[string]any) bool { return m["msg"] == "stopped" }, time.Second); !ok {
		t.Errorf("no 'stopped' log line; logs:\n%s", s.logs.String())
	}
}

func TestRunFailsWhenPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := testEnv()
	env["STRANGERS_HTTP_ADDR"] = ln.Addr().String()
	err = run(t.Context(), func(k string) string { return env[k] }, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("run with a busy port = %v, want an error naming %s", err, ln.Addr())
	}
}

func TestRunRejectsBadConfigBeforeListening(t *testing.T) {
	env := testEnv()
	env["STRANGERS_SHUTDOWN_GRACE"] = "soon"
	var out strings.Builder
	err := run(t.Context(), func(k string) string { return env[k] }, &out)
	if err == nil || !strings.Contains(err.Error(), "STRANGERS_SHUTDOWN_GRACE=soon") {
		t.Fatalf("run = %v, want an error naming STRANGERS_SHUTDOWN_GRACE=soon", err)
	}
	if strings.Contains(out.String(), "listening") {
		t.Errorf("run listened despite bad config: %s", out.String())
	}
}

func TestRunSummarisesAndWarnsAboutRiskySettings(t *testing.T) {
	s := startRun(t, map[string]string{
		"STRANGERS_RELAY_ALLOW_PEERS": "127.0.0.0/8",
		"STRANGERS_RELAY_PORT_MIN":    "50000",
		"STRANGERS_RELAY_PORT_MAX":    "50099",
	})
	for _, key := range []string{"http", "turn_udp", "turn_tcp", "public_ip", "relay_ports", "version"} {
		if _, ok := s.addrs[key]; !ok {
			t.Errorf("startup line lacks %s: %v", key, s.addrs)
		}
	}
	for _, want := range []string{"STRANGERS_TURN_SECRET is unset", "relay port range is smaller", "STRANGERS_RELAY_ALLOW_PEERS lets the relay reach private"} {
		if _, ok := s.logs.waitFor(func(m map[string]any) bool {
			msg, _ := m["msg"].(string)
			return m["level"] == "WARN" && strings.Contains(msg, want)
		}, 5*time.Second); !ok {
			t.Errorf("no warning containing %q; logs:\n%s", want, s.logs.String())
		}
	}
	if strings.Contains(s.logs.String(), "secret\":") {
		t.Errorf("a secret reached the logs:\n%s", s.logs.String())
	}
}

func TestAdvertisedIP(t *testing.T) {
	t.Parallel()
	cases := []struct{ publicIP, turnAddr, want string }{
		{"203.0.113.7", "127.0.0.1:3478", "203.0.113.7"}, // set: always wins
		{"", "127.0.0.1:3478", "127.0.0.1"},              // a relay on one address is reachable only there
		{"", ":3478", "invalid IP"},                      // unset and unbound: the relay detects one
		{"", "0.0.0.0:3478", "invalid IP"},
		{"", "[::1]:3478", "invalid IP"}, // relay addresses are IPv4: the relay detects one
	}
	for _, c := range cases {
		env := map[string]string{"STRANGERS_TURN_ADDR": c.turnAddr}
		if c.publicIP != "" {
			env["STRANGERS_PUBLIC_IP"] = c.publicIP
		}
		s, _, err := load(t, env)
		if err != nil {
			t.Fatal(err)
		}
		if got := advertisedIP(s).String(); got != c.want {
			t.Errorf("PUBLIC_IP=%q TURN_ADDR=%q: advertised %s, want %s", c.publicIP, c.turnAddr, got, c.want)
		}
	}
}
