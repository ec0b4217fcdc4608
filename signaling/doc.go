// Package signaling serves the WebSocket protocol at /ws: it pairs strangers
// at random and carries their WebRTC handshake, chat and typing between them.
//
// A [Hub] is an http.Handler. New starts its owner goroutine, which alone
// holds sessions, matches and the waiting pool, a few decode shards, which
// check and decode client frames (each connection's in order), and a pinger;
// each connection has a read goroutine, and a write goroutine while it has
// something to write.
// Shutdown ends all of them. The relay plugs in through [ICEProvider] (ICE
// servers with fresh TURN credentials per match) and [SessionObserver]
// (which sessions are live).
//
// # Protocol, version 1
//
// This section is the contract for third-party clients; the page's
// web/static/protocol.js mirrors it.
//
// Connect a WebSocket to /ws. Every frame is a text frame holding one JSON
// object with a "type" field; there is no batching. Spell field names as
// written here (the server's JSON decoder also accepts other letter cases;
// do not rely on it). The server decodes strictly: unknown
// fields, wrong field types, values over their bounds, nesting deeper than
// 4 and anything after the object are refused with an error message. It
// never forwards a client's bytes: what reaches a partner is the decoded
// message encoded again, and the partner is always implied by the match,
// never named by the sender.
//
// The first message must be hello. Messages from client to server:
//
//	{"type":"hello", "version":1, "resume"?:token, "clientKey"?:key}
//	{"type":"find", "mode":"video"|"text", "interests"?:[tag...], "relayOnly"?:bool, "interestsOnly"?:bool}
//	{"type":"next"}
//	{"type":"stop"}
//	{"type":"signal", "match":id, "sdp":RTCSessionDescriptionInit}      (exactly one of sdp
//	{"type":"signal", "match":id, "candidate":RTCIceCandidateInit}       and candidate)
//	{"type":"chat", "match":id, "text":string}
//	{"type":"typing", "match":id, "typing":bool}
//	{"type":"report", "match":id, "reason"?:string, "note"?:string, "frame"?:base64 JPEG}
//	{"type":"media", "match":id, "camera":bool, "mic":bool}
//	{"type":"ice"}
//
// Messages from server to client:
//
//	{"type":"welcome", "version":1, "session":id, "resume":token, "online":n,
//	 "resumed"?:true, "state":"idle"|"waiting"|"matched", "match"?:id, "limits":{...},
//	 "clientKey":key}
//	{"type":"waiting", "mode":mode, "fallbackIn"?:ms}
//	{"type":"matched", "match":id, "role":"offerer"|"answerer", "iceServers":[RTCIceServer...],
//	 "interests":[common tags], "mode":mode, "relayOnly"?:true}
//	{"type":"signal"|"chat"|"typing"|"media", ...}   as sent by the partner, re-encoded
//	{"type":"partner_left", "match":id, "reason":"next"|"stop"|"disconnected"|"reported"}
//	{"type":"stats", "online":n, "waiting":n, "waitingVideo":n, "waitingText":n}
//	{"type":"ice", "iceServers":[RTCIceServer...]}
//	{"type":"error", "code":code, "message":text}
//	{"type":"banned", "reason":text, "until":unix ms, "appeal"?:text}   then close 4003
//	{"type":"cooldown", "retryIn":ms}
//	{"type":"restarting", "retryIn":ms}
//
// # Sessions
//
// welcome names the session and carries a resume token. The session id is
// public: base64url (RFC 4648 §5, no padding) of 16 random bytes, 22
// characters of [A-Za-z0-9_-] in canonical form; TURN usernames are
// "<expiry>:<session id>" and the relay accepts no other form. The resume
// token is a secret (43 characters); keep it only in the page
// (sessionStorage, say).
// Match ids are also 22 random characters, distinct from session ids.
//
// If the connection drops, reconnect and send hello with "resume" within the
// resume grace (limits.resumeGraceMs, default 15 s): the session comes back
// as it was (idle, waiting with its original wait, or matched), welcome says
// "resumed":true with the current state and match, and the messages sent to
// the session while it was away follow (at most the send queue's bound;
// partner_left always), and so does whatever was still queued, unwritten,
// on the old connection. Messages the server had already written to the old
// connection before it noticed the drop are not sent again: reconcile from
// welcome's state and match. Meanwhile the partner is told nothing; only when the grace
// expires does it get partner_left "disconnected". A hello with a token that
// is unknown or expired gets error "bad_resume", then a welcome for a new
// session. A resume while the session is still attached to another
// connection moves it to the new one; the old one is closed with 4000.
//
// welcome also carries a client key: the browser's identity without an
// account (a random id signed by the server). Keep it (localStorage) and
// send it in every hello; a missing, forged or damaged key is answered with
// a fresh one. Reports, limits and bans refer to it and to the client
// address (IPv4 per address, IPv6 per /64), which the server keeps only as
// a keyed hash.
//
// A session ends at once when its connection closes with code 1000 (the
// client is done), or when it drops while idle; otherwise when the grace
// expires. Its partner, if any, then gets partner_left "disconnected".
//
// # Matching
//
// find queues the session (answered by waiting) in its mode: video users
// only meet video users, text users only text users. Interests are
// normalised: trimmed, lower-cased, blanks and duplicates dropped; at most 10
// tags of at most 32 characters (more is an error). A session with
// interests is first paired only with someone sharing a tag; after the
// interest wait (waiting.fallbackIn milliseconds, default 5 s) anyone in its
// mode will do, unless it sent "interestsOnly":true. A session without
// interests accepts anyone at once. The partner is drawn at random; a
// session is never paired with itself, or with anyone it reported or who
// reported it. Nor, at first, with its last few partners (both
// directions): only once it has waited the interest wait (the same 5 s by
// default, counted from its find or next) and nobody else is there, it may
// meet one of them again if that one has waited as long. A recent partner
// is better than nobody: with two people online, one next leaves both
// waiting for that long, then they meet again.
//
// When a pair is found both sides get matched with the same fresh match id.
// Exactly one side is the "offerer": it creates the offer; the "answerer"
// waits for it. iceServers holds this side's ICE servers with fresh TURN
// credentials; interests the tags both share (possibly none).
//
// next ends the current match (the partner gets partner_left "next") and
// queues the sender again at once with its last find; sent while idle it
// queues again, while waiting it does nothing. stop ends the match (partner
// gets "stop") or leaves the queue. A find while matched is refused
// ("bad_state"); send next or stop first. After partner_left the session is
// idle: send next or find to meet someone else.
//
// signal, chat, typing and media go to the partner of the named match if it
// is the sender's current match; otherwise they are dropped silently (a late ICE
// candidate of the previous match never reaches the next partner). An ICE
// restart is just a new offer. Bounds: sdp.sdp 32 KiB, candidate 1 KiB, chat
// text 1000 characters (non-empty).
//
// media tells the partner whether the sender's camera ("camera":true: a
// picture is being sent) and microphone ("mic":true: not muted) are on, so
// that its page can say "camera off" or show a muted sign instead of a
// black picture or silence. Send it right after matched (the partner
// assumes both on until told) and on every change. Both fields are booleans;
// a missing one counts as false.
//
// report ends the current match (the partner gets partner_left "reported")
// or flags the partner of the match that just ended; either way the two are
// never paired again. A report naming any other match gets "not_in_match".
// The reason (at most 200 characters) is counted, never logged.
//
// relayOnly ("hide my IP") is echoed in matched so the client can set
// iceTransportPolicy "relay". The server also enforces it on what such a
// sender relays: candidates other than relay candidates are dropped, a relay
// candidate's raddr/rport become 0.0.0.0 0, non-relay a=candidate lines are
// removed from its SDPs, the address of the o= line becomes 127.0.0.1 (or
// ::1), those of c= and a=rtcp lines 0.0.0.0 (or ::), and any other
// address-like token anywhere in the SDP, a candidate, sdpMid or
// usernameFragment is replaced (relayonly.go lists the rules). The partner
// never learns a relayOnly sender's address.
//
// stats is pushed at most every few seconds, only when the figures changed:
// sessions online, sessions waiting, and the waiting split by mode
// (waitingVideo, waitingText), for a waiting screen to show its own.
//
// ice asks for this session's ICE servers outside a match, for a
// connectivity preflight or a checker; the answer is an ice message with
// iceServers as in matched. Three may be asked in a row, then one per 10 s;
// per client address (IPv6 per /64), over all its sessions, ten in a row,
// then one per 6 s. Beyond either, the answer is error "rate_limited".
//
// # Moderation
//
// report names the current match or the one that just ended (after next,
// or the partner leaving); the two are never paired again. The server
// keeps the last 20 chat lines of each match as evidence; a report may add
// a note (limits.maxNoteLen characters) and a still frame of the partner's
// video (a JPEG of at most limits.maxFrameBytes bytes, base64; a larger one
// is refused with "too_large", one that is not a JPEG with "bad_message").
// Only one report per match is kept.
//
// A banned client (its client key or its address) is told banned, with the
// reason, the end of the ban (Unix milliseconds) and how to appeal, and the
// connection is closed with 4003: at once when the ban is made (its match
// ends; the partner gets partner_left "disconnected"; its TURN allocations
// stop working), and at every hello or find while the ban lasts. Do not
// reconnect after 4003.
//
// More than limits.nextRate finds and nexts a minute from one client key
// (0: no limit) are answered with cooldown instead of waiting: the client
// is idle (a match it was in has ended) and may find again after retryIn
// milliseconds; finding earlier gets another cooldown with the time left.
//
// Some clients are matched only among themselves (after enough reports);
// they are not told.
//
// # Errors and limits
//
// Error codes: "bad_message" (malformed, unknown field, wrong type, bad
// value), "unknown_type", "too_large" (a field over its bound), "not_hello"
// and "bad_version" (then the connection is closed with 1002), "bad_state",
// "bad_resume", "not_in_match", "rate_limited". An erroneous message is
// otherwise ignored; unknown types are tolerated, but after 20 malformed
// messages the connection is closed with 1008.
//
// Each connection has a token bucket (limits.rateLimit messages per second,
// bursts of limits.rateBurst, enough for a burst of ICE candidates). Every
// frame counts, WebSocket ping and pong frames included (a ping over the
// limit gets no pong). Excess messages are dropped and answered once with
// "rate_limited"; a client that keeps flooding is closed with 1008.
// Continuation frames of a fragmented message have a budget of their own,
// four times the message rate and burst; a client that streams them is
// closed with 1008 too. A message over limits.maxMessageSize (64 KiB by
// default) is closed with 1009. The server pings every 20 s and
// drops a connection silent (no pong, no message) for 30 s; a new
// connection has 10 s to send hello. A client that does not read what it is
// sent is dropped. Connections per IP address (per /64 for IPv6) are capped:
// over the cap the upgrade gets HTTP 429. The upgrade is refused with 403
// when the Origin header is not allowed (by default: the same host the
// request was sent to; requests without Origin, from non-browser clients,
// are allowed), and with 503 while the server shuts down.
//
// # Shutdown
//
// When the server shuts down (SIGTERM, usually to restart) every connection
// that has said hello gets restarting, with retryIn: how many milliseconds
// to wait before reconnecting (2 s unless configured otherwise); then every
// connection is closed with 1001. Sessions live in the server's memory and
// do not survive a restart: after it, hello's resume token gets
// "bad_resume" and a new session. A page says the server is restarting,
// keeps what the user types meanwhile marked as not sent, and after the
// restart looks for a new partner with its last find.
package signaling
