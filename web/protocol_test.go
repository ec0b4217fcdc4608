package web_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/strangers-chat/strangers/signaling"
	"github.com/strangers-chat/strangers/web"
)

// TestProtocolMirrorsGo checks protocol.js against signaling/protocol.go:
// every message type, error code and enumerated value, every JSON field
// name, the version and the bounds. The names are a public contract, so a
// change on one side must show up here.
func TestProtocolMirrorsGo(t *testing.T) {
	t.Parallel()
	b, err := fs.ReadFile(web.Files(), "protocol.js")
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)

	file, err := parser.ParseFile(token.NewFileSet(), "../signaling/protocol.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	enums := map[string]bool{"MsgType": true, "ErrorCode": true, "Mode": true, "Role": true, "LeftReason": true, "State": true}
	var values, fields []string
	ast.Inspect(file, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			id, ok := n.Type.(*ast.Ident)
			if !ok || !enums[id.Name] {
				return true
			}
			for _, v := range n.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					values = append(values, s)
				}
			}
		case *ast.Field:
			if n.Tag == nil {
				return true
			}
			tag, _ := strconv.Unquote(n.Tag.Value)
			name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
			if name != "" && name != "-" {
				fields = append(fields, name)
			}
		}
		return true
	})
	if len(values) < 20 || len(fields) < 20 {
		t.Fatalf("found only %d values and %d fields in signaling/protocol.go", len(values), len(fields))
	}
	for _, v := range values {
		if !strings.Contains(js, "'"+v+"'") {
			t.Errorf("protocol.js does not mention %q", v)
		}
	}
	for _, f := range fields {
		if !regexp.MustCompile(`[{,(]\s*` + regexp.QuoteMeta(f) + `\??:|@property \{[^}]+\} \[?` + regexp.QuoteMeta(f) + `\b`).MatchString(js) {
			t.Errorf("protocol.js has no field %q", f)
		}
	}

	for name, want := range map[string]int{
		"PROTOCOL_VERSION": signaling.ProtocolVersion,
		"MAX_INTERESTS":    signaling.MaxInterests,
		"MAX_INTEREST_LEN": signaling.MaxInterestLen,
		"MAX_CHAT_LEN":     signaling.MaxChatLen,
		"MAX_REASON_LEN":   signaling.MaxReasonLen,
		"MAX_NOTE_LEN":     signaling.MaxNoteLen,
		"MAX_FRAME_BYTES":  signaling.MaxFrameBytes,
	} {
		m := regexp.MustCompile(`export const ` + name + ` = (\d+);`).FindStringSubmatch(js)
		if m == nil {
			t.Errorf("protocol.js lacks %s", name)
			continue
		}
		if got, _ := strconv.Atoi(m[1]); got != want {
			t.Errorf("protocol.js %s = %d, the server's is %d", name, got, want)
		}
	}
	if m := regexp.MustCompile(`CLOSE_RESUMED = (\d+)`).FindStringSubmatch(js); m == nil || m[1] != strconv.Itoa(signaling.CloseResumed) {
		t.Errorf("protocol.js CLOSE_RESUMED %v, the server's is %d", m, signaling.CloseResumed)
	}
	if m := regexp.MustCompile(`CLOSE_BANNED = (\d+)`).FindStringSubmatch(js); m == nil || m[1] != strconv.Itoa(signaling.CloseBanned) {
		t.Errorf("protocol.js CLOSE_BANNED %v, the server's is %d", m, signaling.CloseBanned)
	}
}
