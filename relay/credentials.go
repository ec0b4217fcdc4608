package relay

import (
	"crypto/hmac"
	"crypto/sha1" // HMAC-SHA1 is what the TURN REST scheme (and coturn) specify.
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/strangers-chat/strangers/internal/sessionid"
)

const (
	// maxExpiryDigits bounds the expiry field; 12 digits reach year 33658.
	maxExpiryDigits = 12
	// maxUsernameLen is the longest username that can parse.
	maxUsernameLen = maxExpiryDigits + 1 + sessionid.Len
)

// Credentials mints TURN REST credentials for a session, as coturn's
// use-auth-secret expects them: username "<expiry unix seconds>:<sessionID>"
// and password base64(HMAC-SHA1(secret, username)).
func Credentials(secret []byte, sessionID string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + sessionID
	return username, Password(secret, username)
}

// Password returns base64(HMAC-SHA1(secret, username)), the TURN REST
// password for username.
func Password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username)) // hash writes never fail.
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ParseUsername parses a TURN REST username strictly: one to twelve ASCII
// digits (no sign, no leading zero), a colon, and a session id accepted by
// sessionid.Valid. It never allocates more than the returned session id.
func ParseUsername(username string) (expiry int64, sessionID string, err error) {
	if len(username) > maxUsernameLen {
		return 0, "", fmt.Errorf("%w: too long", ErrUsername)
	}
	colon := -1
	for i := range len(username) {
		c := username[i]
		if c == ':' {
			colon = i
			break
		}
		if c < '0' || c > '9' {
			return 0, "", fmt.Errorf("%w: expiry is not decimal digits", ErrUsername)
		}
		if i >= maxExpiryDigits {
			return 0, "", fmt.Errorf("%w: expiry too long", ErrUsername)
		}
		expiry = expiry*10 + int64(c-'0')
	}
	switch {
	case colon < 0:
		return 0, "", fmt.Errorf("%w: no colon", ErrUsername)
	case colon == 0:
		return 0, "", fmt.Errorf("%w: empty expiry", ErrUsername)
	case colon > 1 && username[0] == '0':
		return 0, "", fmt.Errorf("%w: leading zero in expiry", ErrUsername)
	}
	sessionID = username[colon+1:]
	if !sessionid.Valid(sessionID) {
		return 0, "", fmt.Errorf("%w: bad session id", ErrUsername)
	}
	return expiry, sessionID, nil
}
