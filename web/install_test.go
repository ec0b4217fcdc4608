package web_test

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/strangers-chat/strangers/web"
)

// TestManifest checks the web app manifest against the files embedded: every
// icon exists, PNG icons are the size they claim (and small), there is one
// for the sizes installers look for, and a maskable one.
func TestManifest(t *testing.T) {
	t.Parallel()
	files := web.Files()
	b, err := fs.ReadFile(files, "manifest.webmanifest")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Name, Display string
		Icons         []struct{ Src, Sizes, Type, Purpose string }
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("manifest.webmanifest: %v", err)
	}
	if m.Name == "" || m.Display != "standalone" {
		t.Errorf("manifest: name %q, display %q", m.Name, m.Display)
	}
	sizes := map[string]bool{}
	maskable := false
	for _, icon := range m.Icons {
		data, err := fs.ReadFile(files, icon.Src)
		if err != nil {
			t.Errorf("icon %s: %v", icon.Src, err)
			continue
		}
		maskable = maskable || icon.Purpose == "maskable"
		switch icon.Type {
		case "image/svg+xml":
			if icon.Sizes != "any" || !bytes.HasPrefix(data, []byte("<svg ")) {
				t.Errorf("icon %s: sizes %q, want any, and an SVG", icon.Src, icon.Sizes)
			}
		case "image/png":
			cfg, err := png.DecodeConfig(bytes.NewReader(data))
			if err != nil {
				t.Errorf("icon %s: %v", icon.Src, err)
				continue
			}
			if got := strconv.Itoa(cfg.Width) + "x" + strconv.Itoa(cfg.Height); got != icon.Sizes {
				t.Errorf("icon %s is %s, the manifest says %s", icon.Src, got, icon.Sizes)
			}
			sizes[icon.Sizes] = true
			if len(data) > 16<<10 {
				t.Errorf("icon %s is %d bytes; keep icons small", icon.Src, len(data))
			}
		default:
			t.Errorf("icon %s: type %q", icon.Src, icon.Type)
		}
	}
	for _, want := range []string{"192x192", "512x512"} {
		if !sizes[want] {
			t.Errorf("no %s PNG icon", want)
		}
	}
	if !maskable {
		t.Error("no maskable icon")
	}
	// The touch icon index.html names is a PNG too.
	if b, err := fs.ReadFile(files, "icons/apple-touch-icon.png"); err != nil {
		t.Error(err)
	} else if cfg, err := png.DecodeConfig(bytes.NewReader(b)); err != nil || cfg.Width != 180 {
		t.Errorf("apple-touch-icon.png: %v, %d px wide, want 180", err, cfg.Width)
	}
}

// TestServiceWorkerScope checks what the service worker would cache: the
// page's static files, never the WebSocket, health, metrics or an API; and
// that it goes to the network first (a new deploy shows at once).
func TestServiceWorkerScope(t *testing.T) {
	t.Parallel()
	b, err := fs.ReadFile(web.Files(), "sw.js")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	m := regexp.MustCompile(`const staticFile = /(.+)/;`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("sw.js: no staticFile pattern")
	}
	static := regexp.MustCompile(strings.ReplaceAll(m[1], `\/`, `/`))
	for _, path := range []string{"", "index.html", "app.js", "style.css", "manifest.webmanifest", "icons/icon.svg", "icons/icon-192.png"} {
		if !static.MatchString(path) {
			t.Errorf("sw.js does not cache /%s", path)
		}
	}
	for _, path := range []string{"ws", "healthz", "metrics", "api/stats", "admin/", "ws?resume=x", "../ws", "node_modules/axe-core/axe.min.js"} {
		if static.MatchString(path) {
			t.Errorf("sw.js would cache /%s", path)
		}
	}
	// Every static file embedded matches (a new kind of file must be
	// added to the pattern, or it would not work offline).
	fs.WalkDir(web.Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && path != "sw.js" && !static.MatchString(path) {
			t.Errorf("sw.js does not cache the embedded %s", path)
		}
		return nil
	})
	if !strings.Contains(src, "networkFirst") || !regexp.MustCompile(`try \{\s*const resp = await fetch\(req\)`).MatchString(src) {
		t.Error("sw.js does not ask the network first")
	}
}
