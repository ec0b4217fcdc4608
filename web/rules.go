package web

import (
	"net/http"
	"strings"
)

// DefaultRules are the rules the page shows before the first Start when the
// operator gives none: plain text with a little Markdown (headings, "-"
// lists, **bold**), which the page renders as text, never as HTML.
const DefaultRules = `# House rules

- You must be **18 or older**.
- Be kind. No harassment, hate, threats or bullying.
- No nudity or sexual content, and nothing illegal.
- No spam, advertising or scams.
- Don't share anyone's personal details, yours included.

Press **Report** if someone breaks these rules: moderators see what you report and can ban them. Press **Next** to meet someone else.`

// MaxRulesSize bounds the rules text.
const MaxRulesSize = 64 << 10

// Rules serves the rules text (Markdown, as text/plain) at /rules; empty
// text serves DefaultRules.
func Rules(text string) http.Handler {
	if strings.TrimSpace(text) == "" {
		text = DefaultRules
	}
	body := []byte(text)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		_, _ = w.Write(body)
	})
}
