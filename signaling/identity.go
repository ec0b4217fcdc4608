package signaling

import (
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"strings"

	"github.com/strangers-chat/strangers/internal/netkey"
)

// Identity without accounts: each browser keeps a client key the server
// signed (a random id and an HMAC of it), and each connection comes from a
// client address (IPv4 per address, IPv6 per /64, see netkey). Together they
// are what reports, limits and bans refer to. Addresses are kept only as
// keyed hashes; nothing else about the browser is looked at.

// Identity names a client for moderation.
type Identity struct {
	// Client is the id part of the client key: random, not secret (the
	// key's HMAC is what a browser cannot forge).
	Client string `json:"client,omitempty"`
	// Addr is a keyed hash of the client address (IPv6: its /64).
	Addr string `json:"addr,omitempty"`
}

// IdentityKeyLen is the least length of Config.IdentityKey.
const IdentityKeyLen = 32

const (
	clientIDBytes  = 16 // random bytes of a client id
	clientMACBytes = 16 // bytes of the HMAC kept in a client key
	addrHashBytes  = 16 // bytes of an address hash
	maxClientKey   = 128
)

// keyring signs client keys and hashes addresses with the server's
// identity key. Static after New.
type keyring struct{ key []byte }

func newKeyring(key []byte) keyring {
	if len(key) == 0 {
		key = make([]byte, IdentityKeyLen)
		crand.Read(key)
	}
	return keyring{key: key}
}

func (k keyring) mac(label, data string, n int) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write([]byte(data))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:n])
}

// issue returns a fresh client key and its id.
func (k keyring) issue() (key, id string) {
	id = newID(clientIDBytes)
	return id + "." + k.mac("client", id, clientMACBytes), id
}

// verify returns the id of a client key this server signed.
func (k keyring) verify(key string) (string, bool) {
	id, sig, ok := strings.Cut(key, ".")
	if !ok || len(id) != base64.RawURLEncoding.EncodedLen(clientIDBytes) {
		return "", false
	}
	want := k.mac("client", id, clientMACBytes)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", false
	}
	return id, true
}

// addrHash is the keyed hash of a client address, by netkey's rule; "" for
// no address.
func (k keyring) addrHash(a netip.Addr) string {
	a = netkey.Client(a)
	if !a.IsValid() {
		return ""
	}
	return k.mac("addr", a.String(), addrHashBytes)
}

// AddrHash returns the keyed hash the hub uses for a client address, for
// moderators who ban an address they know.
func (h *Hub) AddrHash(a netip.Addr) string { return h.keys.addrHash(a) }

// identify checks the client key a hello brought and returns the key the
// session keeps (the same, or a fresh one for a missing or forged key) and
// its identity.
func (h *Hub) identify(key string, ip netip.Addr) (string, Identity) {
	id, ok := h.keys.verify(key)
	if !ok {
		if key != "" {
			h.m.forgedKeys.Inc()
		}
		key, id = h.keys.issue()
	}
	return key, Identity{Client: id, Addr: h.keys.addrHash(ip)}
}
