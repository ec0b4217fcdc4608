package signaling

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func TestClientKeys(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.IdentityKey = bytes.Repeat([]byte{7}, IdentityKeyLen)
	e := newEnv(t, cfg)

	// A hello without a key gets one.
	a := e.dial()
	key := a.hello().ClientKey
	if key == "" {
		t.Fatal("welcome without a client key")
	}

	// The key is kept when a browser brings it back.
	b := e.dial()
	b.send(Hello{Type: TypeHello, Version: ProtocolVersion, ClientKey: key})
	if got := b.expect(TypeWelcome).ClientKey; got != key {
		t.Fatalf("a valid key was replaced: %q, want %q", got, key)
	}

	// A forged key (another id with the old signature, a made-up
	// signature, garbage) is replaced by a fresh one.
	id, sig, _ := strings.Cut(key, ".")
	other, _ := newKeyring(cfg.IdentityKey).issue()
	otherID, _, _ := strings.Cut(other, ".")
	for _, forged := range []string{
		otherID + "." + sig,
		id + ".AAAAAAAAAAAAAAAAAAAAAA",
		"garbage",
		id,
	} {
		c := e.dial()
		c.send(Hello{Type: TypeHello, Version: ProtocolVersion, ClientKey: forged})
		got := c.expect(TypeWelcome).ClientKey
		if got == forged || got == key || got == "" {
			t.Errorf("forged key %q answered with %q", forged, got)
		}
		if _, ok := e.hub.keys.verify(got); !ok {
			t.Errorf("the replacement %q does not verify", got)
		}
	}
	if n := counter(e.hub.m.forgedKeys); n != 4 {
		t.Errorf("strangers_client_keys_replaced_total = %v, want 4", n)
	}

	// Another server key does not accept it.
	if _, ok := newKeyring(bytes.Repeat([]byte{8}, IdentityKeyLen)).verify(key); ok {
		t.Error("a key verified under another server key")
	}
}

func TestAddrHash(t *testing.T) {
	t.Parallel()
	k := newKeyring(bytes.Repeat([]byte{1}, IdentityKeyLen))
	h := func(s string) string { return k.addrHash(netip.MustParseAddr(s)) }
	if h("2001:db8::1") != h("2001:db8::ffff:1") {
		t.Error("two addresses of one IPv6 /64 hash apart")
	}
	if h("2001:db8::1") == h("2001:db8:0:1::1") || h("192.0.2.1") == h("192.0.2.2") {
		t.Error("two clients hash alike")
	}
	if h("192.0.2.1") != h("::ffff:192.0.2.1") {
		t.Error("an IPv4-mapped address hashes apart from its IPv4 form")
	}
	if strings.Contains(h("192.0.2.1"), "192") || len(h("192.0.2.1")) != 22 {
		t.Errorf("hash %q", h("192.0.2.1"))
	}
	if newKeyring(bytes.Repeat([]byte{2}, IdentityKeyLen)).addrHash(netip.MustParseAddr("192.0.2.1")) == h("192.0.2.1") {
		t.Error("the hash does not depend on the key")
	}
}
