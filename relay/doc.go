// Package relay embeds a TURN/STUN server (pion/turn) that hands every
// session short-lived credentials, relays only to safe peers and enforces
// quotas. It knows nothing of WebSockets or matches, only sessions.
package relay
