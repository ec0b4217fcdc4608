package relay

import "errors"

// Errors returned by the relay. Wrapped errors keep these as their cause, so
// callers test them with errors.Is.
var (
	// ErrConfig reports an invalid Config field; the message names the field.
	ErrConfig = errors.New("relay: invalid config")
	// ErrNoSecret reports an empty Config.Secret.
	ErrNoSecret = errors.New("relay: shared secret is required")
	// ErrSessionID reports a session id that is not of the form the
	// matchmaker mints (22 characters of unpadded base64url).
	ErrSessionID = errors.New("relay: malformed session id")
	// ErrUsername reports a TURN username that does not parse strictly as
	// "<expiry>:<session id>".
	ErrUsername = errors.New("relay: malformed username")
	// ErrICEServers reports an invalid STRANGERS_ICE_SERVERS value.
	ErrICEServers = errors.New("relay: invalid ICE server list")
	// ErrListen reports that a client-facing socket could not be opened.
	ErrListen = errors.New("relay: cannot listen")
	// ErrClosed is returned by operations on a closed Server.
	ErrClosed = errors.New("relay: server closed")
	// ErrCloseTimeout reports that Close gave up waiting for connections and
	// allocations to wind down.
	ErrCloseTimeout = errors.New("relay: timed out waiting for shutdown")
	// ErrPeerDenied is returned by a relay socket asked to send to a port of
	// our own public address outside the relay range.
	ErrPeerDenied = errors.New("relay: peer address denied")
	// ErrTCPRelay reports a request for an RFC 6062 TCP relay, which the
	// relay does not offer.
	ErrTCPRelay = errors.New("relay: TCP relays are not supported")
	// ErrFrame reports a TURN-over-TCP stream that is not a sequence of
	// STUN or ChannelData frames.
	ErrFrame = errors.New("relay: invalid TURN frame on stream")
)
