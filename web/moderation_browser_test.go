package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	browserAdminToken = "browser-moderation-token-0123456789"
	browserAdminAddr  = "127.0.0.1:9091"
	browserAppeal     = "appeals@example.com"
	// The rules carry markup that must show as text.
	browserRules = "# Rules of this test\n- **Be kind** <img src=x onerror=\"window.__pwned=1\">\n- No spam\n"
)

// adminGet reads one admin API resource with the token.
func adminGet(t *testing.T, path string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+browserAdminAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+browserAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// TestBrowserModeration drives the moderation parts of the page and the
// admin page in Chromium against the real server: the rules gate, a report
// after Next with a still frame, and a moderator banning from the admin
// page, which ends the banned user's call and shows them why.
func TestBrowserModeration(t *testing.T) {
	if !inNamespace() {
		reexec(t, false)
		return
	}
	dir := t.TempDir()
	tokenFile, rulesFile := filepath.Join(dir, "token"), filepath.Join(dir, "rules.md")
	for path, content := range map[string]string{tokenFile: browserAdminToken, rulesFile: browserRules} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := newStage(t,
		"STRANGERS_ADMIN_TOKEN_FILE="+tokenFile,
		"STRANGERS_ADMIN_ADDR="+browserAdminAddr,
		"STRANGERS_APPEAL_CONTACT="+browserAppeal,
		"STRANGERS_RULES_FILE="+rulesFile,
	)
	st.requireSignaling(t)

	t.Run("rules gate shows once", func(t *testing.T) {
		u := st.newUser(t, "newcomer", withRulesGate())
		u.start(startOptions{text: true})
		u.waitFor(`document.getElementById('rules-dialog').open`, "the rules")
		u.waitText("rules-text", "Rules of this test")
		if !eval[bool](u, `(() => { const r = document.getElementById('rules-text');
			return r.querySelector('strong')?.textContent === 'Be kind' && r.querySelector('img') === null &&
				r.textContent.includes('<img src=x') && !window.__pwned; })()`) {
			t.Fatalf("the rules were not rendered as text: %s", eval[string](u, `document.getElementById('rules-text').innerHTML`))
		}
		u.press("Accept and start")
		u.waitText("rules-error", "18 or older")
		if !eval[bool](u, `document.getElementById('chat').hidden`) {
			t.Fatal("started without the 18+ confirmation")
		}
		u.do("ticking 18+", chromedp.Click("#rules-age", byID("rules-age")))
		u.press("Accept and start")
		u.waitFor(`!document.getElementById('chat').hidden && !document.getElementById('rules-dialog').open`, "the chat view")
		u.press("Stop")

		// Once per browser: after a reload, Start starts.
		if err := navigate(u.ctx, st.base+"/"); err != nil {
			t.Fatal(err)
		}
		u.waitFor(`/^\d/.test(document.getElementById('online-count').textContent)`, "the page again")
		u.start(startOptions{text: true})
		u.waitFor(`!document.getElementById('chat').hidden`, "the chat view")
		if eval[bool](u, `document.getElementById('rules-dialog').open`) {
			t.Error("the rules were shown a second time")
		}

		// Above the fold on a phone: the confirmation and its button.
		p := st.newUser(t, "phone", withRulesGate(), phone())
		p.start(startOptions{text: true})
		p.waitFor(`document.getElementById('rules-dialog').open`, "the rules on a phone")
		if !eval[bool](p, `(() => { const h = window.innerHeight;
			return [document.getElementById('rules-age'), document.querySelector('#rules-form button[value=accept]')]
				.every((e) => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= h; }); })()`) {
			t.Error("on a phone the 18+ confirmation or its button is below the fold")
		}
	})

	// bob is on 127.0.0.1, the others on localhost (::1): a ban of bob's
	// address spares them.
	local := from("http://localhost:" + httpPort)
	var reportID string

	t.Run("report after Next carries a still frame", func(t *testing.T) {
		a := st.newUser(t, "alice", local)
		b := st.newUser(t, "bob")
		a.start(startOptions{})
		b.start(startOptions{})
		a.seesStranger()
		b.seesStranger()
		b.waitFor(`!document.getElementById('chat-input').disabled`, "bob's message box")
		eval[bool](b, `(() => { document.getElementById('chat-input').value = 'bob was here';
			document.getElementById('chat-form').requestSubmit(); return true; })()`)
		a.waitFor(`document.querySelector('[role=log]').textContent.includes('bob was here')`, "bob's message")
		a.press("Next")
		b.waitText("stage", "Stranger has disconnected")
		b.press("Stop")
		a.waitFor(`!document.getElementById('report').disabled`, "Report after Next")
		a.press("Report")
		a.waitFor(`document.getElementById('report-dialog').open && document.getElementById('report-frame').checked &&
			!document.getElementById('report-frame').disabled`, "the report dialog with a still frame ticked")
		if eval[bool](a, `document.querySelector('#report-form input[name=reason]:checked') !== null`) {
			t.Error("a reason is preselected")
		}
		a.do("writing a note", chromedp.SendKeys("#report-note", "rude to me", byID("report-note")))
		a.press("Send report")
		a.press("Stop")

		var reports []struct {
			ID       string `json:"id"`
			HasFrame bool   `json:"hasFrame"`
		}
		eventually(t, "the report in the admin API", func() bool {
			adminGet(t, "/api/v1/reports", &reports)
			return len(reports) == 1
		})
		var r struct {
			Note  string `json:"note"`
			Ended bool   `json:"ended"`
			Chat  []struct{ From, Text string }
			Frame []byte `json:"frame"`
		}
		adminGet(t, "/api/v1/reports/"+reports[0].ID, &r)
		if !r.Ended || r.Note != "rude to me" || len(r.Chat) != 1 || r.Chat[0].From != "reported" || r.Chat[0].Text != "bob was here" {
			t.Errorf("report %+v", r)
		}
		img, err := jpeg.Decode(bytes.NewReader(r.Frame))
		if err != nil {
			t.Fatalf("the still frame (%d bytes) is not a JPEG: %v", len(r.Frame), err)
		}
		if b := img.Bounds(); b.Dx() < 16 || b.Dy() < 16 {
			t.Errorf("the still frame is %v", b)
		}
		reportID = reports[0].ID
	})

	t.Run("admin page bans from a report and ends the call", func(t *testing.T) {
		if reportID == "" {
			t.Skip("no report")
		}
		// bob comes back (same browser: a new page of his context would
		// have a new key, but the ban names his address too) and meets carol.
		b := st.newUser(t, "bob")
		c := st.newUser(t, "carol", local)
		b.start(startOptions{})
		c.start(startOptions{})
		b.seesStranger()
		c.seesStranger()

		m := st.newUser(t, "moderator", from("http://"+browserAdminAddr), withoutSignaling())
		m.waitFor(`document.getElementById('token') !== null && document.getElementById('status').textContent !== ''`, "the admin page")
		eval[bool](m, `(() => { document.getElementById('token').value = '`+browserAdminToken+`';
			document.getElementById('login').requestSubmit(); return true; })()`)
		m.waitFor(`(() => { const i = document.querySelector('[data-report="`+reportID+`"] img.frame');
			return i !== null && i.complete && i.naturalWidth > 0; })()`, "the report with its still frame")
		m.waitText("reports", "bob was here")
		m.press("Ban")

		b.waitFor(`!document.getElementById('banned').hidden`, "the banned screen")
		if reason := b.text("banned-reason"); !strings.Contains(reason, "Breaking the house rules") {
			t.Errorf("banned reason %q", reason)
		}
		if until := eval[float64](b, `Number(document.getElementById('banned-until').dataset.until)`); until < float64(time.Now().Add(50*time.Minute).UnixMilli()) {
			t.Errorf("banned until %v, want about an hour from now", until)
		}
		if appeal := b.text("banned-appeal"); !strings.Contains(appeal, browserAppeal) {
			t.Errorf("banned appeal %q", appeal)
		}
		c.waitText("stage", "Stranger has disconnected")
		m.waitFor(`document.querySelectorAll('#bans tr').length === 1`, "the ban in the list")

		// Reloading does not help bob.
		if err := navigate(b.ctx, st.base+"/"); err != nil {
			t.Fatal(err)
		}
		b.waitFor(`!document.getElementById('banned').hidden && document.getElementById('landing').hidden`, "the banned screen after a reload")
	})
}
