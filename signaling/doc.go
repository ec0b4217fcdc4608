// Package signaling serves the WebSocket protocol at /ws: it pairs strangers
// at random and carries their WebRTC handshake, chat and typing between them.
package signaling
