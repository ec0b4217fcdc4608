// Package sessionid owns the form of a session id, the public name of a
// signaling session: the matchmaker mints one per session (New) and the
// relay finds it in TURN usernames ("<expiry>:<session id>") and checks it
// (Valid). A session id is base64url without padding (RFC 4648 §5) of 16
// random bytes: 22 characters of [A-Za-z0-9_-], in canonical form.
package sessionid

import (
	"crypto/rand"
	"encoding/base64"
)

const (
	// Bytes is how many random bytes a session id encodes.
	Bytes = 16
	// Len is the length of a session id in characters.
	Len = 22
)

// New returns a fresh session id from crypto/rand.
func New() string {
	var b [Bytes]byte
	rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Valid reports whether id has the form of a session id. It does not
// allocate: the relay calls it on every TURN username it parses.
func Valid(id string) bool {
	if len(id) != Len {
		return false
	}
	for i := range len(id) {
		if !urlSafe(id[i]) {
			return false
		}
	}
	// The last character carries only 2 of the 128 bits; the 4 unused bits
	// must be zero for the encoding to be canonical.
	switch id[Len-1] {
	case 'A', 'Q', 'g', 'w':
		return true
	default:
		return false
	}
}

// urlSafe reports whether c is in the base64url alphabet.
func urlSafe(c byte) bool {
	switch {
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	return c == '-' || c == '_'
}
