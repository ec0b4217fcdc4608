package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// runCheckCommand runs `strangers check --json` in-process and decodes
// its report.
func runCheckCommand(t *testing.T, args ...string) (checkReport, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := command(append([]string{"check", "--json", "--timeout", "3s"}, args...), &out, &errOut)
	var r checkReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("check output is not JSON (%v): %s %s", err, out.String(), errOut.String())
	}
	return r, code
}

func (r checkReport) item(name string) (checkItem, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return checkItem{}, false
}

func (r checkReport) String() string {
	var b strings.Builder
	printCheck(&b, r)
	return b.String()
}

func caFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, sharedCA.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckReportsEverythingOK(t *testing.T) {
	s := startTLSRun(t, nil)
	r, code := runCheckCommand(t, "--ca", caFile(t), "https://"+s.tlsHost(t))
	if code != 0 || !r.OK {
		t.Fatalf("exit %d, report:\n%s", code, r)
	}
	for _, name := range []string{"certificate", "page", "websocket", "origin policy", "ice servers", "turn udp", "relay udp", "turn tcp", "relay tcp", "turn tls", "relay tls"} {
		if c, ok := r.item(name); !ok || !c.OK {
			t.Errorf("%s: %+v (present %v)", name, c, ok)
		}
	}
	stunOK := false
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, "stun ") {
			stunOK = c.OK
		}
	}
	if !stunOK {
		t.Errorf("no passing stun item:\n%s", r)
	}
}

func TestCheckReportsTURNDisabled(t *testing.T) {
	s := startTLSRun(t, map[string]string{"STRANGERS_TURN_ENABLED": "false"})
	r, code := runCheckCommand(t, "--ca", caFile(t), "https://"+s.tlsHost(t))
	if code == 0 || r.OK {
		t.Fatalf("exit %d with TURN disabled; report:\n%s", code, r)
	}
	c, _ := r.item("turn udp")
	if c.OK || !c.Required || !strings.Contains(c.Detail, "no turn: URL") {
		t.Errorf("turn udp: %+v", c)
	}
}

func TestCheckReportsExpiredCertificate(t *testing.T) {
	certFile, keyFile := sharedCA.writeFiles(t, t.TempDir(), time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "localhost")
	s := startRun(t, map[string]string{
		"STRANGERS_TLS_ADDR":      "127.0.0.1:0",
		"STRANGERS_TLS_CERT_FILE": certFile,
		"STRANGERS_TLS_KEY_FILE":  keyFile,
	})
	r, code := runCheckCommand(t, "--ca", caFile(t), "https://"+s.tlsHost(t))
	if code == 0 || r.OK {
		t.Fatalf("exit %d with an expired certificate; report:\n%s", code, r)
	}
	c, _ := r.item("certificate")
	if c.OK || !strings.Contains(c.Detail, "expired on") {
		t.Errorf("certificate: %+v", c)
	}
}

func TestCheckUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := command([]string{"check"}, &out, &errOut); code != 2 {
		t.Errorf("check without URL: exit %d", code)
	}
	r, code := runCheckCommand(t, "ftp://example.com")
	if code == 0 || r.OK {
		t.Errorf("check ftp://: exit %d, %v", code, r)
	}
}

// TestCheckReportsUDPBlocked runs the server and the check inside a
// network namespace whose firewall drops UDP to the TURN port.
func TestCheckReportsUDPBlocked(t *testing.T) {
	ip := testsupport.Require(t, "ip", "iproute2")
	nft := testsupport.Require(t, "nft", "nftables")
	testsupport.RequireRoot(t, "network namespaces")
	bin := buildBinary(t)
	suffix := make([]byte, 3)
	rand.Read(suffix)
	ns := "strangers-check-" + hex.EncodeToString(suffix)
	mustRun := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	mustRun(ip, "netns", "add", ns)
	t.Cleanup(func() { exec.Command(ip, "netns", "delete", ns).Run() })
	mustRun(ip, "-n", ns, "link", "set", "lo", "up")
	mustRun(ip, "netns", "exec", ns, nft, "add table inet strangers_test; add chain inet strangers_test input { type filter hook input priority 0; policy accept; }; add rule inet strangers_test input udp dport 3478 drop")

	srv := exec.Command(ip, "netns", "exec", ns, bin)
	srv.Env = processEnv(map[string]string{"STRANGERS_HTTP_ADDR": "127.0.0.1:8080", "STRANGERS_TURN_ADDR": "127.0.0.1:3478"})
	stdout, _ := srv.StdoutPipe()
	var stderr bytes.Buffer
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"msg":"listening"`) {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("server exited: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}

	out, err := exec.Command(ip, "netns", "exec", ns, bin, "check", "--json", "--timeout", "2s", "http://127.0.0.1:8080").Output()
	var r checkReport
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("check output (%v): %s", jerr, out)
	}
	if err == nil || r.OK {
		t.Fatalf("check passed with UDP blocked:\n%s", r)
	}
	for _, c := range r.Checks {
		switch {
		case strings.HasPrefix(c.Name, "stun "), c.Name == "turn udp":
			if c.OK || !strings.Contains(c.Detail, "UDP") {
				t.Errorf("%s: %+v, want a failure that points at UDP", c.Name, c)
			}
		case c.Name == "turn tcp", c.Name == "relay tcp", c.Name == "websocket", c.Name == "page":
			if !c.OK {
				t.Errorf("%s failed although only UDP to the TURN port is blocked: %s", c.Name, c.Detail)
			}
		}
	}
}
