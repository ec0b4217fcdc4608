package web_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/strangers-chat/strangers/web"
)

func TestHandlerHeaders(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	tests := []struct {
		path        string
		status      int
		contentType string
	}{
		{"/", 200, "text/html; charset=utf-8"},
		{"/app.js", 200, "text/javascript; charset=utf-8"},
		{"/protocol.js", 200, "text/javascript; charset=utf-8"},
		{"/style.css", 200, "text/css; charset=utf-8"},
		{"/manifest.webmanifest", 200, "application/manifest+json"},
		{"/sw.js", 200, "text/javascript; charset=utf-8"},
		{"/icons/icon.svg", 200, "image/svg+xml"},
		{"/icons/icon-192.png", 200, "image/png"},
		{"/no-such-file", 404, ""},
		// The type check's files beside the page are not served.
		{"/package.json", 404, ""},
		{"/tsconfig.json", 404, ""},
		{"/node_modules/typescript/package.json", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.contentType != "" && resp.Header.Get("Content-Type") != tt.contentType {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tt.contentType)
			}
			want := map[string]string{
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
				"X-Frame-Options":        "DENY",
			}
			if tt.status == 200 {
				want["Cache-Control"] = "no-cache"
			}
			if tt.path == "/sw.js" {
				// The worker may control the whole page (its scope
				// is the page's directory).
				want["Service-Worker-Allowed"] = "/"
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			pp := resp.Header.Get("Permissions-Policy")
			for _, p := range []string{"camera=(self)", "microphone=(self)"} {
				if !strings.Contains(pp, p) {
					t.Errorf("Permissions-Policy %q lacks %s", pp, p)
				}
			}
			csp := directives(resp.Header.Get("Content-Security-Policy"))
			for d, v := range map[string]string{
				"default-src":     "'self'",
				"script-src":      "'self'",
				"style-src":       "'self'",
				"object-src":      "'none'",
				"frame-ancestors": "'none'",
				"connect-src":     "'self' ws://" + host + " wss://" + host,
				"media-src":       "'self' blob: mediastream:",
			} {
				if csp[d] != v {
					t.Errorf("CSP %s = %q, want %q", d, csp[d], v)
				}
			}
		})
	}
}

// directives splits a CSP into its directives.
func directives(csp string) map[string]string {
	m := make(map[string]string)
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		m[name] = value
	}
	return m
}

func TestHandlerCSPHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host, connect string
	}{
		{"chat.example.com", "'self' ws://chat.example.com wss://chat.example.com"},
		{"127.0.0.1:8080", "'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080"},
		{"[::1]:8080", "'self'"},
		{"evil; script-src *", "'self'"},
		{"a b", "'self'"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			r.Host = tt.host
			w := httptest.NewRecorder()
			web.Handler().ServeHTTP(w, r)
			csp := w.Header().Get("Content-Security-Policy")
			if got := directives(csp)["connect-src"]; got != tt.connect {
				t.Errorf("connect-src %q, want %q (CSP %q)", got, tt.connect, csp)
			}
			if strings.Count(csp, "script-src") != 1 {
				t.Errorf("the Host header injected a directive: %q", csp)
			}
		})
	}
}

func TestHandlerRevalidates(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	for _, path := range []string{"/", "/app.js"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		tag := resp.Header.Get("ETag")
		if tag == "" {
			t.Fatalf("%s: no ETag", path)
		}
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("If-None-Match", tag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: status %d, want 304", path, resp.StatusCode)
		}
	}
}

// TestPageSelfContained checks what the CSP would otherwise only reveal in a
// browser: nothing inline, nothing from elsewhere, no eval, no HTML built
// from strings.
func TestPageSelfContained(t *testing.T) {
	t.Parallel()
	files := web.Files()
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(index)
	htmlBad := []struct {
		re   *regexp.Regexp
		what string
	}{
		{regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), "an inline script"},
		{regexp.MustCompile(`<style`), "a <style> element"},
		{regexp.MustCompile(`\sstyle=`), "a style attribute"},
		{regexp.MustCompile(`\son[a-z]+=`), "an inline event handler"},
		{regexp.MustCompile(`(?:src|href)="(?:[a-z]+:)?//`), "a resource from another origin"},
		{regexp.MustCompile(`javascript:`), "a javascript: URL"},
	}
	for _, b := range htmlBad {
		if b.re.MatchString(html) {
			t.Errorf("index.html has %s: %q", b.what, b.re.FindString(html))
		}
	}
	for _, ref := range regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(html, -1) {
		if _, err := fs.Stat(files, strings.TrimPrefix(ref[1], "./")); err != nil {
			t.Errorf("index.html refers to %s, which is not embedded", ref[1])
		}
	}

	// The manifest names only our own files, and the service worker
	// loads nothing else.
	manifest, err := fs.ReadFile(files, "manifest.webmanifest")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range regexp.MustCompile(`"(?:src|start_url|scope|id)":\s*"([^"]*)"`).FindAllStringSubmatch(string(manifest), -1) {
		if strings.Contains(ref[1], "//") || strings.HasPrefix(ref[1], "/") || strings.Contains(ref[1], ":") {
			t.Errorf("manifest.webmanifest refers to %q, not a path of its own", ref[1])
		}
	}
	if sw, err := fs.ReadFile(files, "sw.js"); err != nil {
		t.Error(err)
	} else if regexp.MustCompile(`importScripts|\bimport\s*\(`).Match(sw) {
		t.Error("sw.js loads other scripts")
	}

	jsBad := []struct {
		re   *regexp.Regexp
		what string
	}{
		{regexp.MustCompile(`\beval\s*\(`), "eval"},
		{regexp.MustCompile(`new\s+Function\b`), "new Function"},
		{regexp.MustCompile(`\.(?:inner|outer)HTML\s*=|insertAdjacentHTML|document\.write`), "HTML built from strings"},
		{regexp.MustCompile(`setTimeout\(\s*['"` + "`" + `]`), "setTimeout with a string"},
		{regexp.MustCompile(`(?m)^\s*import\b[^;]*from\s+['"](?:[a-z]+:)?//`), "an import from elsewhere"},
		{regexp.MustCompile(`\.style\.cssText|setAttribute\(\s*['"]style`), "an inline style"},
	}
	matches, _ := fs.Glob(files, "*.js")
	catalogs, _ := fs.Glob(files, "locales/*.js")
	matches = append(matches, catalogs...)
	if len(matches) < 5 {
		t.Fatalf("only %d modules embedded: %v", len(matches), matches)
	}
	for _, name := range matches {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		if !strings.HasPrefix(src, "// @ts-check") {
			t.Errorf("%s does not start with // @ts-check", name)
		}
		for _, bad := range jsBad {
			if bad.re.MatchString(src) {
				t.Errorf("%s uses %s: %q", name, bad.what, bad.re.FindString(src))
			}
		}
		for _, imp := range regexp.MustCompile(`(?m)^import\b[^;]*?from\s+'([^']+)'`).FindAllStringSubmatch(src, -1) {
			if _, err := fs.Stat(files, strings.TrimPrefix(imp[1], "./")); err != nil {
				t.Errorf("%s imports %s, which is not embedded", name, imp[1])
			}
		}
	}
}

// TestAccessibleNames checks the names tests and screen readers rely on
// (the browser tests find controls by them too).
func TestAccessibleNames(t *testing.T) {
	t.Parallel()
	b, err := fs.ReadFile(web.Files(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, want := range []string{
		`>Start</button>`, `>Next</button>`, `>Stop</button>`, `>Send</button>`, `>Report</button>`,
		`aria-label="Stranger's video"`, `aria-label="Your video"`, `role="log"`,
		`aria-label="Fullscreen"`, `aria-label="Picture in picture"`, `aria-label="Sound alerts"`, `>Mirror</button>`,
		`rel="manifest"`, `rel="icon"`,
		`<label for="chat-input" class="visually-hidden" data-i18n="chat.messageLabel">Message</label>`,
		`<label for="language"><span class="visually-hidden" data-i18n="language.label">Language</span></label>`,
		`playsinline`, `<html lang="en">`, `name="viewport"`,
		`>Turn on camera</button>`, `<label for="preview-camera" data-i18n="devices.camera">Camera</label>`, `<label for="preview-mic" data-i18n="devices.microphone">Microphone</label>`,
		`>Continue with text only</button>`, `>Mute mic</button>`, `>Camera off</button>`,
		`role="img" aria-label="Stranger's microphone is muted"`, `>Stranger turned their camera off</p>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
	for _, video := range regexp.MustCompile(`<video[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(video, "playsinline") || !strings.Contains(video, "autoplay") {
			t.Errorf("%s: want autoplay and playsinline (mobile browsers)", video)
		}
	}
}

// TestStartWaitsForScript: Start comes disabled, so a press before app.js
// has run cannot submit the form natively and reload the page; app.js
// enables it (the browser tests, which wait for it, fail if it does not).
func TestStartWaitsForScript(t *testing.T) {
	t.Parallel()
	b, err := fs.ReadFile(web.Files(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	start := regexp.MustCompile(`<button[^>]*\sid="start"[^>]*>`).FindString(string(b))
	if !regexp.MustCompile(`\sdisabled[\s>]`).MatchString(start) {
		t.Errorf("Start is not disabled in index.html: %q", start)
	}
}
