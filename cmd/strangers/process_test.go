package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binaryDir  string
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// buildBinary builds cmd/strangers once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		binaryDir, binaryErr = os.MkdirTemp("", "strangers-bin-")
		if binaryErr != nil {
			return
		}
		binaryPath = filepath.Join(binaryDir, "strangers")
		out, err := exec.Command("go", "build", "-o", binaryPath, ".").CombinedOutput()
		if err != nil {
			binaryErr = err
			t.Logf("go build: %s", out)
		}
	})
	if binaryErr != nil {
		t.Fatalf("building strangers: %v", binaryErr)
	}
	return binaryPath
}

// processEnv is the binary's environment: testEnv plus extra. Without
// STRANGERS_STATE_DIR in extra the default state directory under HOME is
// taken, or a temporary one when another test's binary holds it.
func processEnv(extra map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for k, v := range testEnv() {
		env = append(env, k+"="+v)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

func TestBinaryStartsServesAndStopsOnSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin)
	cmd.Env = processEnv(nil)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})

	addr := make(chan string, 1)
	var logs bytes.Buffer
	var logsMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logsMu.Lock()
			logs.Write(sc.Bytes())
			logs.WriteByte('\n')
			logsMu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" {
				addr <- m["http"].(string)
			}
		}
	}()
	var httpAddr string
	select {
	case httpAddr = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatalf("binary did not start; stderr: %s", stderr.String())
	}

	if code, _ := get(t, "http://"+httpAddr+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			logsMu.Lock()
			defer logsMu.Unlock()
			t.Fatalf("exit after SIGTERM: %v; stderr: %s; logs: %s", err, stderr.String(), logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("binary did not exit after SIGTERM")
	}
}

func TestBinaryBadConfigExitsNonZero(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin)
	cmd.Env = processEnv(map[string]string{"STRANGERS_RELAY_PORT_MIN": "70000"})
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("exit 0 with a bad port; output: %s", out)
	}
	if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), "STRANGERS_RELAY_PORT_MIN=70000") {
		t.Fatalf("exit %d, output %q: want non-zero naming STRANGERS_RELAY_PORT_MIN=70000", cmd.ProcessState.ExitCode(), out)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n != 0 {
		t.Errorf("want one line, got %d: %q", n+1, out)
	}
}

func TestBinaryHelpAndVersion(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "-h").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variables() {
		if !strings.Contains(string(out), v.Name) {
			t.Errorf("strangers -h lacks %s", v.Name)
		}
	}
	out, err = exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "strangers ") {
		t.Errorf("strangers version = %q, %v", out, err)
	}
	if err := exec.Command(bin, "frobnicate").Run(); err == nil {
		t.Error("an unknown command exited 0")
	}
}
