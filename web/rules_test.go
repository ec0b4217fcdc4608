package web_test

import (
	"io"
	"net/http/httptest"
	"testing"

	"github.com/strangers-chat/strangers/web"
)

func TestRulesHandler(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, want string }{
		{"", web.DefaultRules},
		{"  \n", web.DefaultRules},
		{"# Ours\n- <b>no</b> markup\n", "# Ours\n- <b>no</b> markup\n"},
	} {
		rec := httptest.NewRecorder()
		web.Rules(tc.text).ServeHTTP(rec, httptest.NewRequest("GET", "/rules", nil))
		body, _ := io.ReadAll(rec.Body)
		if string(body) != tc.want {
			t.Errorf("rules %q served %q", tc.text, body)
		}
		h := rec.Header()
		if h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("headers %v: the rules must be served as plain text", h)
		}
	}
}
