package web_test

// The page's words live in message catalogs, static/locales/<lang>.js, one
// per language, English (en.js) the reference. These tests keep them
// complete and keep the page from showing a string that is not in them.
//
// The rule for "a user-visible string" (what TestPageStringsInCatalogs
// enforces):
//
// index.html: every text node with a letter in it must be inside an element
// marked data-i18n="key", and every attribute a user sees or hears
// (aria-label, aria-description, aria-roledescription, aria-placeholder,
// aria-valuetext, placeholder, title, alt, label, a submit or button
// input's value, the description meta's content) with a letter in it must
// be named in its element's data-i18n-attr="attr:key …". The English text
// in the HTML must be the English catalog's, word for word (it is what
// shows before the catalog applies, and what tests find controls by). An
// element marked data-i18n has no child elements (its text is replaced).
// Exempt: anything under translate="no" (the brand name).
//
// The JavaScript modules (comments aside): a string or template literal
//   - shaped like a message key (dotted lowerCamel words, "chat.typing")
//     in a statement calling msg() or t() must be a key of the English
//     catalog (elsewhere it is code: a storage key, say);
//   - is prose, and so must not be there at all, if it has two words of
//     two or more letters separated by white space (placeholders ${…}
//     removed), unless it is in a console.* call (for developers);
//   - with any letter must not be in a statement that shows it to the
//     user: one assigning to textContent, innerText, title, placeholder,
//     alt, ariaLabel or label, calling setAttribute for aria-label,
//     aria-description, title, placeholder or alt, or calling append,
//     prepend, replaceChildren, before, after, createTextNode, alert,
//     confirm or prompt (a literal there even in a ternary counts, but
//     not one compared with === or !==).
// Text from code goes through i18n.js instead: msg('key', vars) and show().
// The few literals that read like words but are for developers only are
// listed in notForUsers, each with the reason.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/strangers-chat/strangers/web"
)

// notForUsers are the literals (as the test sees them: placeholders ${…}
// blanked) that read like words and are not for the user, with the reason.
var notForUsers = map[string]string{
	"page: #  is missing": "thrown at load when index.html lacks an element: a bug, seen in the console",
}

// requiredLanguages are the catalogs the page must ship (issue 17).
var requiredLanguages = []string{"en", "es", "pt-BR", "fr", "de", "ru", "tr", "ar"}

// pluralCategories are, per language, the Intl.PluralRules categories its
// counted texts must have (required) and may have (allowed: CLDR gives
// Spanish, French and Portuguese "many" for millions, which falls back to
// "other").
var pluralCategories = map[string]struct{ required, allowed []string }{
	"en":    {[]string{"one", "other"}, []string{"one", "other"}},
	"de":    {[]string{"one", "other"}, []string{"one", "other"}},
	"tr":    {[]string{"one", "other"}, []string{"one", "other"}},
	"es":    {[]string{"one", "other"}, []string{"one", "many", "other"}},
	"fr":    {[]string{"one", "other"}, []string{"one", "many", "other"}},
	"pt-BR": {[]string{"one", "other"}, []string{"one", "many", "other"}},
	"ru":    {[]string{"one", "few", "many", "other"}, []string{"one", "few", "many", "other"}},
	"ar":    {[]string{"zero", "one", "two", "few", "many", "other"}, []string{"zero", "one", "two", "few", "many", "other"}},
}

// entry is one message: a text, or plural forms by category.
type entry struct {
	text   string
	plural map[string]string
}

// forms returns the entry's texts (one, or one per plural form).
func (e entry) forms() map[string]string {
	if e.plural != nil {
		return e.plural
	}
	return map[string]string{"": e.text}
}

type catalog map[string]entry

var (
	keyShape         = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*(?:\.[a-z][a-zA-Z0-9]*)+$`)
	placeholderRe    = regexp.MustCompile(`\{(\w+)\}`)
	catalogImport    = regexp.MustCompile(`'?([A-Za-z-]+)'?: \(\) => import\('\./locales/([A-Za-z-]+)\.js'\)`)
	exportDefaultRe  = regexp.MustCompile(`(?m)^export default `)
	visibleAttrs     = []string{"aria-label", "aria-description", "aria-roledescription", "aria-placeholder", "aria-valuetext", "placeholder", "title", "alt", "label"}
	letterWordsRe    = regexp.MustCompile(`\p{L}{2,}\s+\p{L}{2,}`)
	sinkRe           = regexp.MustCompile(`\.(?:textContent|innerText|title|placeholder|alt|ariaLabel|label)\s*=[^=]|setAttribute\(\s*'(?:aria-label|aria-description|title|placeholder|alt)'\s*,|\.(?:append|prepend|replaceChildren|before|after)\(|createTextNode\(|\b(?:alert|confirm|prompt)\(`)
	consoleStatement = regexp.MustCompile(`\bconsole\.\w+\(`)
	messageCall      = regexp.MustCompile(`\b(?:msg|t)\(`)
)

// parseCatalog reads a catalog module: "export default" and one JSON
// object. Duplicate keys are an error (JSON would keep the last).
func parseCatalog(src string) (catalog, error) {
	loc := exportDefaultRe.FindStringIndex(src)
	if loc == nil {
		return nil, fmt.Errorf("no line starting with \"export default \"")
	}
	body := strings.TrimSpace(src[loc[1]:])
	body = strings.TrimSuffix(body, ";")
	dec := json.NewDecoder(strings.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("export default is not followed by a JSON object (%v)", err)
	}
	c := catalog{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: not JSON: %w", key, err)
		}
		if _, dup := c[key]; dup {
			return nil, fmt.Errorf("%s: defined twice", key)
		}
		var e entry
		if err := json.Unmarshal(raw, &e.text); err != nil {
			if err := json.Unmarshal(raw, &e.plural); err != nil || e.plural == nil {
				return nil, fmt.Errorf("%s: neither a string nor an object of plural forms", key)
			}
		}
		c[key] = e
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not JSON at the end: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("something after the object")
	}
	return c, nil
}

// readCatalogs parses every embedded catalog, by language tag.
func readCatalogs(tb testing.TB) map[string]catalog {
	tb.Helper()
	files := web.Files()
	names, err := fs.Glob(files, "locales/*.js")
	if err != nil || len(names) == 0 {
		tb.Fatalf("no catalogs embedded under locales/ (%v)", err)
	}
	out := map[string]catalog{}
	for _, name := range names {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			tb.Fatal(err)
		}
		c, err := parseCatalog(string(b))
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		out[strings.TrimSuffix(strings.TrimPrefix(name, "locales/"), ".js")] = c
	}
	return out
}

// placeholders returns the set of {names} in s.
func placeholders(s string) map[string]bool {
	m := map[string]bool{}
	for _, p := range placeholderRe.FindAllStringSubmatch(s, -1) {
		m[p[1]] = true
	}
	return m
}

func setString(m map[string]bool) string {
	return "{" + strings.Join(slices.Sorted(maps.Keys(m)), "} {") + "}"
}

// TestCatalogs checks every catalog against English: the same keys, none
// empty, the same placeholders, the plural forms its language needs; and
// that i18n.js loads exactly the catalogs there are.
func TestCatalogs(t *testing.T) {
	t.Parallel()
	cats := readCatalogs(t)
	for _, lang := range requiredLanguages {
		if _, ok := cats[lang]; !ok {
			t.Errorf("no catalog for %s (locales/%s.js)", lang, lang)
		}
	}
	en := cats["en"]
	if len(en) == 0 {
		t.Fatal("the English catalog is empty")
	}

	// i18n.js lists how to load each catalog.
	src, err := fs.ReadFile(web.Files(), "i18n.js")
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{"en": true}
	for _, m := range catalogImport.FindAllStringSubmatch(string(src), -1) {
		if m[1] != m[2] {
			t.Errorf("i18n.js loads %s from locales/%s.js", m[1], m[2])
		}
		loaded[m[1]] = true
	}
	for lang := range cats {
		if !loaded[lang] {
			t.Errorf("i18n.js never loads locales/%s.js", lang)
		}
	}
	for lang := range loaded {
		if _, ok := cats[lang]; !ok {
			t.Errorf("i18n.js loads locales/%s.js, which is not embedded", lang)
		}
	}

	for key, e := range en {
		if !keyShape.MatchString(key) {
			t.Errorf("en: key %q is not dotted lowerCamel words (\"chat.typing\")", key)
		}
		if e.plural != nil && !placeholders(e.plural["other"])["count"] {
			t.Errorf("en: %s has plural forms but its other form has no {count}", key)
		}
	}

	for lang, c := range cats {
		plural, known := pluralCategories[lang]
		if !known {
			t.Errorf("%s: add the language's plural categories to pluralCategories in this test", lang)
		}
		for key := range c {
			if _, ok := en[key]; !ok {
				t.Errorf("%s: %s is not in the English catalog", lang, key)
			}
		}
		for key, want := range en {
			got, ok := c[key]
			if !ok {
				t.Errorf("%s: lacks %s (English: %q)", lang, key, want.forms())
				continue
			}
			if (got.plural == nil) != (want.plural == nil) {
				t.Errorf("%s: %s: plural forms in one of English and this catalog only", lang, key)
				continue
			}
			for form, text := range got.forms() {
				if strings.TrimSpace(text) == "" {
					t.Errorf("%s: %s %s is empty", lang, key, form)
				}
				// Braces only as placeholders: a broken one shows as is.
				if rest := placeholderRe.ReplaceAllString(text, ""); strings.ContainsAny(rest, "{}") {
					t.Errorf("%s: %s %s: a stray brace in %q", lang, key, form, text)
				}
			}
			if want.plural == nil {
				if w, g := placeholders(want.text), placeholders(got.text); !maps.Equal(w, g) {
					t.Errorf("%s: %s has placeholders %s, English %s", lang, key, setString(g), setString(w))
				}
				continue
			}
			// Counted texts: every form names the English placeholders
			// (a form may say the count in words: "one stranger").
			w := map[string]bool{}
			for _, text := range want.plural {
				maps.Copy(w, placeholders(text))
			}
			for form, text := range got.plural {
				if known && !slices.Contains(plural.allowed, form) {
					t.Errorf("%s: %s has a plural form %q the language does not use (it uses %v)", lang, key, form, plural.allowed)
				}
				g := placeholders(text)
				for name := range g {
					if !w[name] {
						t.Errorf("%s: %s %s has placeholder {%s}, which English lacks", lang, key, form, name)
					}
				}
				for name := range w {
					if name != "count" && !g[name] {
						t.Errorf("%s: %s %s lacks placeholder {%s}", lang, key, form, name)
					}
				}
			}
			for _, form := range plural.required {
				if _, ok := got.plural[form]; !ok {
					t.Errorf("%s: %s lacks the plural form %q", lang, key, form)
				}
			}
		}
	}
}

// TestPageStringsInCatalogs enforces the rule at the top of this file on
// index.html and the page's modules.
func TestPageStringsInCatalogs(t *testing.T) {
	t.Parallel()
	en := readCatalogs(t)["en"]
	files := web.Files()

	b, err := fs.ReadFile(files, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range htmlProblems(b, en) {
		t.Errorf("index.html: %s", p)
	}

	// Keys nothing uses yet are not an error (a catalog may be ahead of
	// the code), but are worth knowing about.
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`data-i18n(?:-attr)?="([^"]+)"`).FindAllSubmatch(b, -1) {
		for _, f := range strings.Fields(string(m[1])) {
			_, key, ok := strings.Cut(f, ":")
			if !ok {
				key = f
			}
			used[key] = true
		}
	}
	modules, _ := fs.Glob(files, "*.js")
	for _, name := range modules {
		src, err := fs.ReadFile(files, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range jsProblems(string(src), en, notForUsers) {
			t.Errorf("%s: %s", name, p)
		}
		_, _, lits := scanJS(string(src))
		for _, l := range lits {
			used[l.text] = true
		}
	}
	var unused []string
	for key := range en {
		if !used[key] {
			unused = append(unused, key)
		}
	}
	if len(unused) > 0 {
		slices.Sort(unused)
		t.Logf("catalog keys the page does not use (yet): %s", strings.Join(unused, " "))
	}
}

// hasLetter reports whether s has a letter (not only digits, symbols or
// punctuation such as "…" or "×").
func hasLetter(s string) bool {
	return strings.IndexFunc(s, unicode.IsLetter) >= 0
}

func normalizeSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func attr(n *html.Node, name string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val, true
		}
	}
	return "", false
}

// htmlProblems applies the rule for index.html.
func htmlProblems(src []byte, en catalog) []string {
	doc, err := html.Parse(bytes.NewReader(src))
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	// english returns the English text of a key the HTML uses, which has
	// no placeholders or plural forms (the HTML gives no values).
	english := func(key string) (string, bool) {
		e, ok := en[key]
		if !ok {
			bad("key %s is not in the English catalog", key)
			return "", false
		}
		if e.plural != nil || len(placeholders(e.text)) > 0 {
			bad("key %s has placeholders or plural forms, which index.html cannot fill", key)
			return "", false
		}
		return e.text, true
	}

	var walk func(n *html.Node, marked, exempt bool)
	walk = func(n *html.Node, marked, exempt bool) {
		switch n.Type {
		case html.TextNode:
			if !marked && !exempt && hasLetter(n.Data) {
				bad("text %q is not in the catalogs (mark its element data-i18n)", normalizeSpace(n.Data))
			}
			return
		case html.ElementNode:
			if n.Data == "script" || n.Data == "style" {
				return
			}
			if v, ok := attr(n, "translate"); ok && v == "no" {
				exempt = true
			}
			if key, ok := attr(n, "data-i18n"); ok {
				marked = true
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					if c.Type == html.ElementNode {
						bad("<%s data-i18n=%q> has a child element, which the translation would remove", n.Data, key)
					}
				}
				var text strings.Builder
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					if c.Type == html.TextNode {
						text.WriteString(c.Data)
					}
				}
				if want, ok := english(key); ok && normalizeSpace(text.String()) != normalizeSpace(want) {
					bad("<%s data-i18n=%q> says %q, the English catalog %q", n.Data, key, normalizeSpace(text.String()), want)
				}
			}
			translated := map[string]bool{}
			if pairs, ok := attr(n, "data-i18n-attr"); ok {
				for _, pair := range strings.Fields(pairs) {
					name, key, ok := strings.Cut(pair, ":")
					if !ok {
						bad("data-i18n-attr %q: want attr:key pairs", pairs)
						continue
					}
					translated[name] = true
					val, _ := attr(n, name)
					if want, ok := english(key); ok && val != want {
						bad("<%s %s=%q> is %q in the English catalog (%s)", n.Data, name, val, want, key)
					}
				}
			}
			seen := slices.Clone(visibleAttrs)
			if name, _ := attr(n, "name"); n.Data == "meta" && name == "description" {
				seen = append(seen, "content")
			}
			if typ, _ := attr(n, "type"); n.Data == "input" && (typ == "submit" || typ == "button" || typ == "reset") {
				seen = append(seen, "value")
			}
			for _, name := range seen {
				if val, ok := attr(n, name); ok && hasLetter(val) && !translated[name] && !exempt {
					bad("<%s %s=%q> is not in the catalogs (name it in data-i18n-attr)", n.Data, name, val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, marked, exempt)
		}
	}
	walk(doc, false, false)
	return problems
}

// jsLiteral is a string or template literal in a module.
type jsLiteral struct {
	start int    // offset of its opening quote
	text  string // its value, a template's ${…} parts left out
}

// scanJS returns the module's code with comments and the insides of
// literals blanked (offsets kept), and its literals. It knows enough of
// JavaScript for our modules: strings, templates with nested ${…},
// comments and regular expression literals.
func scanJS(src string) (code, masked string, lits []jsLiteral) {
	out := []byte(src)
	// Comments are blanked in both, the insides of literals in out only.
	noComments := []byte(src)
	blankComment := func(from, to int) {
		for k := from; k < to && k < len(out); k++ {
			if out[k] != '\n' {
				out[k] = ' '
				noComments[k] = ' '
			}
		}
	}
	blank := func(from, to int) {
		for k := from; k < to && k < len(out); k++ {
			if out[k] != '\n' {
				out[k] = ' '
			}
		}
	}
	// prevSignificant is the last character of code before i (comments
	// and white space skipped), and the word ending there.
	prevSignificant := func(i int) (byte, string) {
		j := i - 1
		for j >= 0 && (out[j] == ' ' || out[j] == '\t' || out[j] == '\n' || out[j] == '\r') {
			j--
		}
		if j < 0 {
			return 0, ""
		}
		k := j
		for k >= 0 && (out[k] == '_' || out[k] == '$' || unicode.IsLetter(rune(out[k])) || unicode.IsDigit(rune(out[k]))) {
			k--
		}
		return out[j], string(out[k+1 : j+1])
	}
	var scanCode func(i int, untilBrace bool) int
	// scanQuoted reads a string from i (the quote) and returns the offset
	// after it.
	scanQuoted := func(i int) int {
		q := src[i]
		var val strings.Builder
		j := i + 1
		for j < len(src) && src[j] != q && src[j] != '\n' {
			if src[j] == '\\' && j+1 < len(src) {
				r, n := jsEscape(src[j:])
				val.WriteRune(r)
				j += n
				continue
			}
			val.WriteByte(src[j])
			j++
		}
		lits = append(lits, jsLiteral{start: i, text: val.String()})
		blank(i+1, j)
		return j + 1
	}
	scanTemplate := func(i int) int {
		var val strings.Builder
		j := i + 1
		for j < len(src) && src[j] != '`' {
			switch {
			case src[j] == '\\' && j+1 < len(src):
				r, n := jsEscape(src[j:])
				blank(j, j+n)
				j += n
				val.WriteRune(r)
			case src[j] == '$' && j+1 < len(src) && src[j+1] == '{':
				blank(j, j+2)
				j = scanCode(j+2, true)
				blank(j-1, j) // the closing brace: no statement ends there
				val.WriteByte(' ')
			default:
				blank(j, j+1)
				val.WriteByte(src[j])
				j++
			}
		}
		lits = append(lits, jsLiteral{start: i, text: val.String()})
		return j + 1
	}
	scanCode = func(i int, untilBrace bool) int {
		depth := 0
		for i < len(src) {
			c := src[i]
			switch {
			case c == '/' && i+1 < len(src) && src[i+1] == '/':
				j := strings.IndexByte(src[i:], '\n')
				if j < 0 {
					j = len(src) - i
				}
				blankComment(i, i+j)
				i += j
			case c == '/' && i+1 < len(src) && src[i+1] == '*':
				j := strings.Index(src[i+2:], "*/")
				if j < 0 {
					j = len(src) - i - 4
				}
				blankComment(i, i+j+4)
				i += j + 4
			case c == '\'' || c == '"':
				i = scanQuoted(i)
			case c == '`':
				i = scanTemplate(i)
			case c == '/':
				p, word := prevSignificant(i)
				regex := p == 0 || strings.IndexByte("(,=:[!&|?{};+-*%<>~^", p) >= 0 ||
					slices.Contains([]string{"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw"}, word)
				if !regex {
					i++
					continue
				}
				j, class := i+1, false
				for j < len(src) && src[j] != '\n' {
					if src[j] == '\\' {
						j += 2
						continue
					}
					if src[j] == '[' {
						class = true
					} else if src[j] == ']' {
						class = false
					} else if src[j] == '/' && !class {
						break
					}
					j++
				}
				blank(i+1, j)
				i = j + 1
			case c == '{':
				depth++
				i++
			case c == '}':
				if untilBrace && depth == 0 {
					return i + 1
				}
				depth--
				i++
			default:
				i++
			}
		}
		return i
	}
	scanCode(0, false)
	return string(noComments), string(out), lits
}

// jsEscape decodes the escape sequence at the start of s (a backslash and
// what follows) and returns the character and the sequence's length.
func jsEscape(s string) (rune, int) {
	if len(s) < 2 {
		return ' ', len(s)
	}
	hex := func(h string) (rune, bool) {
		v, err := strconv.ParseUint(h, 16, 32)
		return rune(v), err == nil
	}
	switch s[1] {
	case 'n', 'r', 't':
		return ' ', 2
	case 'u':
		if strings.HasPrefix(s[2:], "{") {
			if end := strings.IndexByte(s, '}'); end > 0 {
				if r, ok := hex(s[3:end]); ok {
					return r, end + 1
				}
			}
		} else if len(s) >= 6 {
			if r, ok := hex(s[2:6]); ok {
				return r, 6
			}
		}
	case 'x':
		if len(s) >= 4 {
			if r, ok := hex(s[2:4]); ok {
				return r, 4
			}
		}
	}
	r, n := utf8.DecodeRuneInString(s[1:])
	return r, 1 + n
}

// statementBefore returns the code of the statement around offset i up to
// it (from the last ; { or } before it).
func statementBefore(masked string, i int) string {
	j := strings.LastIndexAny(masked[:i], ";{}")
	return masked[j+1 : i]
}

var (
	comparedBefore = regexp.MustCompile(`[=!]==?\s*$`)
	comparedAfter  = regexp.MustCompile(`^\s*[=!]==?`)
)

// compared reports whether the literal is one side of a comparison (code,
// not shown).
func compared(code string, l jsLiteral) bool {
	end := l.start + 1
	if q := code[l.start]; end < len(code) {
		if k := strings.IndexByte(code[end:], q); k >= 0 {
			end += k + 1
		}
	}
	return comparedBefore.MatchString(code[:l.start]) || comparedAfter.MatchString(code[end:])
}

// jsProblems applies the rule for a module; allowed are its notForUsers.
func jsProblems(src string, en catalog, allowed map[string]string) []string {
	code, masked, lits := scanJS(src)
	var problems []string
	for _, l := range lits {
		line := strings.Count(src[:l.start], "\n") + 1
		stmt := code[l.start-len(statementBefore(masked, l.start)) : l.start]
		if _, ok := allowed[l.text]; ok {
			continue
		}
		switch {
		case keyShape.MatchString(l.text) && messageCall.MatchString(stmt):
			if _, ok := en[l.text]; !ok {
				problems = append(problems, fmt.Sprintf("line %d: message key %q is not in the English catalog", line, l.text))
			}
		case consoleStatement.MatchString(stmt):
			// for developers, in the console
		case letterWordsRe.MatchString(l.text):
			problems = append(problems, fmt.Sprintf("line %d: %q reads like words for the user: put them in the catalogs and use msg()", line, l.text))
		case hasLetter(l.text) && sinkRe.MatchString(stmt) && !compared(code, l):
			problems = append(problems, fmt.Sprintf("line %d: %q is shown to the user: put it in the catalogs and use msg()", line, l.text))
		}
	}
	return problems
}

// TestPageStringsRule checks that the rule catches what it should (on
// samples) and nothing in the modules that is code.
func TestPageStringsRule(t *testing.T) {
	t.Parallel()
	en := catalog{"chat.typing": {text: "Stranger is typing…"}, "button.start": {text: "Start"}}
	tests := []struct {
		src  string
		want int // problems
	}{
		{`ui.setStage('Looking for a stranger\u2026');`, 1},
		{"el.x.textContent = `Relayed (TURN over ${t})`;", 1},
		{`el.status.textContent = 'Connected';`, 1},
		{`b.setAttribute('aria-label', 'Close');`, 1},
		{`p.append('Stranger: ');`, 1},
		{`name.textContent = who === 'you' ? 'You: ' : 'Stranger: ';`, 2},
		{`el.hidden = x === 'video'; el.textContent = 'text' !== mode ? '' : '\u2026';`, 0},
		{`show(el.typing, msg('chat.typing'));`, 0},
		{`show(el.typing, msg('chat.tpying'));`, 1},
		{`show(el.x, msg(on ? 'chat.typing' : 'chat.tpying'));`, 1},
		{`localStorage.setItem('strangers.clientKey', key);`, 0},
		{`console.warn('could not start this', err);`, 0},
		{`// A comment with words in it.
		 /* and 'quoted words' in another */ const ok = /^a b$/.test(x) ? 'video' : 'text';`, 0},
		{`const re = /it's a "regex" with spaces/; x = a / b / c; y = 'Two words';`, 1},
		{"const u = `${a ? 'wss:' : 'ws:'}//${host}/ws`;", 0},
		{"const u = `${a ? 'some words' : 'ws:'}//x`;", 1},
		{"e.textContent = `${n} ${n === 1 ? 'stranger' : 'strangers'}`;", 2},
		{`e.textContent = '';`, 0},
		{`rm.textContent = '\u00d7';`, 0},
	}
	for _, tt := range tests {
		if got := jsProblems(tt.src, en, nil); len(got) != tt.want {
			t.Errorf("%s: %d problems %q, want %d", tt.src, len(got), got, tt.want)
		}
	}
	htmlTests := []struct {
		src  string
		want int
	}{
		{`<p>Hello there</p>`, 1},
		{`<button data-i18n="button.start">Start</button>`, 0},
		{`<button data-i18n="button.start">Begin</button>`, 1},
		{`<button data-i18n="button.start"><b>Start</b></button>`, 2}, // a child, and the text differs
		{`<input placeholder="Type here">`, 1},
		{`<input placeholder="Start" data-i18n-attr="placeholder:button.start">`, 0},
		{`<h1 translate="no">Strangers</h1><p>… · 2</p>`, 0},
		{`<video aria-label="Stranger's video"></video>`, 1},
	}
	for _, tt := range htmlTests {
		if got := htmlProblems([]byte(tt.src), en); len(got) != tt.want {
			t.Errorf("%s: %d problems %q, want %d", tt.src, len(got), got, tt.want)
		}
	}
}
