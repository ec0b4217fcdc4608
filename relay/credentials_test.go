package relay

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/sessionid"
)

// TestCredentialsCoturnVectors checks the TURN REST formula against values
// computed independently of Go, with:
//
//	echo -n "1700000000:AAAAAAAAAAAAAAAAAAAAAA" | openssl dgst -sha1 -hmac "coturn-shared-secret" -binary | base64
//	echo -n "4102444800:Zm9vYmFyYmF6cXV4MTIzNA" | openssl dgst -sha1 -hmac "s3cr3t" -binary | base64
//
// (TestInteropTurnutilsUclient checks the same formula against coturn's own
// client.)
func TestCredentialsCoturnVectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		secret, sid string
		expiry      int64
		user, pass  string
	}{
		{"coturn-shared-secret", "AAAAAAAAAAAAAAAAAAAAAA", 1700000000,
			"1700000000:AAAAAAAAAAAAAAAAAAAAAA", "bd7v1GT5T0AvBAxehhsj25H5hq8="},
		{"s3cr3t", "Zm9vYmFyYmF6cXV4MTIzNA", 4102444800,
			"4102444800:Zm9vYmFyYmF6cXV4MTIzNA", "q5U1/Fw69Nko3PjMJDA4Ufp6v3o="},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			t.Parallel()
			user, pass := Credentials([]byte(tc.secret), tc.sid, time.Unix(tc.expiry, 0))
			if user != tc.user || pass != tc.pass {
				t.Errorf("Credentials = %q, %q; want %q, %q", user, pass, tc.user, tc.pass)
			}
			exp, sid, err := ParseUsername(user)
			if err != nil || exp != tc.expiry || sid != tc.sid {
				t.Errorf("ParseUsername(%q) = %d, %q, %v", user, exp, sid, err)
			}
		})
	}
}

func TestParseUsername(t *testing.T) {
	t.Parallel()
	const sid = "Zm9vYmFyYmF6cXV4MTIzNA"
	tests := []struct {
		in     string
		expiry int64
		ok     bool
	}{
		{"1700000000:" + sid, 1700000000, true},
		{"0:" + sid, 0, true},
		{"999999999999:" + sid, 999999999999, true},
		{"1000000000000:" + sid, 0, false}, // 13 digits
		{"01700000000:" + sid, 0, false},
		{"+1700000000:" + sid, 0, false},
		{"-1700000000:" + sid, 0, false},
		{" 1700000000:" + sid, 0, false},
		{"1700000000 :" + sid, 0, false},
		{"1700000000:" + sid + " ", 0, false},
		{"1700000000" + sid, 0, false},
		{":" + sid, 0, false},
		{"1700000000:", 0, false},
		{"1700000000:" + sid[:21], 0, false},
		{"1700000000:" + sid + "A", 0, false},
		{"1700000000:" + sid[:21] + "=", 0, false},
		{"1700000000:" + sid[:21] + "B", 0, false}, // non-canonical last character
		{"1700000000:" + strings.Replace(sid, "m", "+", 1), 0, false},
		{"1700000000:" + strings.Replace(sid, "m", "/", 1), 0, false},
		{"1700000000:" + sid + ":x", 0, false},
		{"1.7e9:" + sid, 0, false},
		{"１７:" + sid, 0, false}, // full-width digits
		{strings.Repeat("9", 40) + ":" + sid, 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.in), func(t *testing.T) {
			t.Parallel()
			exp, got, err := ParseUsername(tc.in)
			if tc.ok {
				if err != nil || exp != tc.expiry || got != sid {
					t.Errorf("ParseUsername = %d, %q, %v; want %d, %q", exp, got, err, tc.expiry, sid)
				}
				return
			}
			if !errors.Is(err, ErrUsername) {
				t.Errorf("ParseUsername = %d, %q, %v; want ErrUsername", exp, got, err)
			}
		})
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1700000000:Zm9vYmFyYmF6cXV4MTIzNA", "0:AAAAAAAAAAAAAAAAAAAAAA",
		"-1:AAAAAAAAAAAAAAAAAAAAAA", "+1:AAAAAAAAAAAAAAAAAAAAAA", "99999999999999999999:x", "::", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		exp, sid, err := ParseUsername(in)
		if err != nil {
			if !errors.Is(err, ErrUsername) {
				t.Fatalf("error %v is not ErrUsername", err)
			}
			return
		}
		// Whatever parses is in canonical form: formatting it back gives the
		// input, the expiry is non-negative and the session id is valid.
		if exp < 0 || !sessionid.Valid(sid) {
			t.Fatalf("ParseUsername(%q) = %d, %q", in, exp, sid)
		}
		if back := strconv.FormatInt(exp, 10) + ":" + sid; back != in {
			t.Fatalf("ParseUsername(%q) is not canonical: re-formats as %q", in, back)
		}
	})
}
