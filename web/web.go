// Package web serves the page: static files embedded in the binary, with
// security headers that keep it to its own origin.
//
// The page (static/) is plain ES modules with no build step: protocol.js
// mirrors the signaling protocol, signaling.js is the WebSocket client,
// rtc.js the WebRTC call, ui.js renders and app.js ties them together;
// i18n.js puts the page in the visitor's language from locales/.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"strings"
	"sync"
)

// Only the page's own files (the modules and their message catalogs in
// static/locales, the web app manifest, service worker and icons): static/
// also holds package.json, tsconfig.json and, after npm ci, node_modules, for
// the checks CI runs.
//
//go:embed static/*.html static/*.js static/*.css static/locales/*.js static/*.webmanifest static/icons/*.svg static/icons/*.png
var static embed.FS

// Files is the page's file tree (index.html at its root).
func Files() fs.FS {
	// fs.Sub fails only for an invalid path, and "static" is valid (the
	// embed directive above guarantees the directory exists).
	sub, _ := fs.Sub(static, "static")
	return sub
}

// cspBase allows only our own origin: scripts, styles and images from it,
// and media from blob: (camera previews) and mediastream:. connect-src is
// completed per request with the WebSocket URLs of the host the page was
// loaded from.
const cspBase = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data: blob:; media-src 'self' blob: mediastream:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; connect-src 'self'"

// contentSecurityPolicy is cspBase plus ws:// and wss:// to the request's own
// host (CSP3 browsers match them with 'self' already; older ones need them
// spelled out). A Host that is not a plain name or IPv4 address with an
// optional port (CSP has no syntax for IPv6 literals) gets 'self' only.
func contentSecurityPolicy(host string) string {
	if !plainHost(host) {
		return cspBase
	}
	return cspBase + " ws://" + host + " wss://" + host
}

// plainHost reports whether h is a host name or IPv4 address with an
// optional port, and nothing that could end a CSP source expression.
func plainHost(h string) bool {
	if h == "" || len(h) > 260 {
		return false
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '.' || r == '-' || r == ':':
		default:
			return false
		}
	}
	return true
}

// etags maps each file's path to a strong validator of its content, so
// browsers can revalidate (the embedded files have no modification time).
var etags = sync.OnceValue(func() map[string]string {
	m := make(map[string]string)
	_ = fs.WalkDir(Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(Files(), path)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(b)
		m["/"+path] = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
		return nil
	})
	m["/"] = m["/index.html"]
	return m
})

// Handler serves the embedded page with security headers. Every response
// must be revalidated (no-cache): the modules have fixed names, so a cached
// old one must never meet a new index.html.
func Handler() http.Handler {
	files := http.FileServerFS(Files())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy(r.Host))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		if tag, ok := etags()[r.URL.Path]; ok {
			h.Set("ETag", tag)
		}
		switch {
		case strings.HasSuffix(r.URL.Path, ".webmanifest"):
			// Not in Go's own table of types; the system's may lack it.
			h.Set("Content-Type", "application/manifest+json")
		case r.URL.Path == "/sw.js":
			// The service worker's scope is the page's directory (its
			// default); said explicitly for proxies that check.
			h.Set("Service-Worker-Allowed", "/")
		}
		files.ServeHTTP(w, r)
	})
}
