package sessionid

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewIsValid(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := New()
		if !Valid(id) {
			t.Fatalf("New() = %q, refused by Valid", id)
		}
		if seen[id] {
			t.Fatalf("New() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"AAAAAAAAAAAAAAAAAAAAAA", true},
		{"Zm9vYmFyYmF6cXV4MTIzNA", true},
		{"__________________-_-w", true},
		{"", false},
		{"short", false},
		{strings.Repeat("A", 21), false},
		{strings.Repeat("A", 23), false},
		{"AAAAAAAAAAAAAAAAAAAAA+", false}, // standard alphabet, not URL-safe
		{"AAAAAAAAAAAAAAAAAAAAA/", false},
		{"AAAAAAAAAAAAAAAAAAAAA=", false},
		{"AAAAAAAAAAAAAAAAAAAAAB", false}, // unused bits set: not canonical
		{"AAAAAAAAAAAAAAAAAAAA:A", false},
		{"AAAAAAAAAAAAAAAAAAAA\x00A", false},
		{"AAAAAAAAAAAAAAAAAAAAé", false},
	} {
		if got := Valid(tc.id); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

// Valid agrees with the standard library's strict decoder on every string
// of the right length.
func FuzzValid(f *testing.F) {
	for _, s := range []string{"AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAB", "AAAAAAAAAAAAAAAAAAAAA+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		b, err := base64.RawURLEncoding.Strict().DecodeString(id)
		want := err == nil && len(b) == Bytes
		if got := Valid(id); got != want {
			t.Fatalf("Valid(%q) = %v, strict decoding says %v", id, got, want)
		}
	})
}

func TestValidDoesNotAllocate(t *testing.T) {
	id := New()
	ok := true
	if n := testing.AllocsPerRun(100, func() { ok = ok && Valid(id) }); n != 0 {
		t.Errorf("Valid allocates %v times", n)
	}
	if !ok {
		t.Errorf("Valid(%q) = false", id)
	}
}
