// Package relay embeds a TURN/STUN server (pion/turn v4) that hands every
// session short-lived credentials, relays only to safe peers and enforces
// quotas. It knows nothing of WebSockets or matches, only sessions.
//
// # Credentials
//
// Credentials follow the TURN REST scheme coturn implements with
// use-auth-secret: username "<expiry unix seconds>:<session id>", password
// base64(HMAC-SHA1(secret, username)). An external coturn configured with the
// same static-auth-secret accepts them unchanged. A credential authenticates
// only if the realm matches, the username parses strictly, the expiry is at
// most CredentialTTL (plus a minute) ahead, and the session is live
// (SessionStarted, or SessionEnded less than SessionGrace ago). Expiry is
// enforced when an allocation is created; refreshes, permissions and channel
// binds of a live allocation keep working after it, so a call may outlast
// the credential. pion v4 does not tell the auth handler which method it is
// authenticating, so "refresh" is recognised as a request from the client
// transport address of a live allocation made with the same username.
// A session in its grace (SessionEnded, not yet expired) keeps its
// allocations but creates no new one.
//
// Credentials are minted with Secret; ones made with any of OldSecrets are
// accepted too (until they expire), so the secret can be rotated without
// cutting calls. pion checks MESSAGE-INTEGRITY against the one key the auth
// handler returns, so the socket wrappers find which secret a request was
// made with before pion handles it.
//
// # Peer policy and limits
//
// Peers are judged after unwrapping every IPv4-in-IPv6 encoding
// (CanonicalPeer). Loopback, private, CGNAT, link-local, benchmarking,
// documentation, multicast and reserved ranges are denied, as are their
// IPv6 counterparts; AllowPeers lifts the deny, and our own PublicIP is
// always allowed so two relayed browsers can reach each other. Relay
// sockets drop datagrams to any address of this host (PublicIP, BindIP,
// the listeners' addresses and every interface address, re-read every few
// seconds) unless they go to a port of one of our open relay sockets, so
// no address of the host opens its UDP services to the relay. Addresses
// AllowPeers covers are not guarded: the operator opened them.
//
// What pion v4 lets us enforce, and where:
//   - allocations per session, per client address (IPv4 address, IPv6
//     /64) and in total: reserved in the QuotaHandler (486 when exceeded),
//     released on deletion;
//   - distinct peer IPs per allocation: in the PermissionHandler, which
//     sees only the peer IP (CreatePermission fails, ChannelBind gets 401,
//     as pion answers any permission refusal);
//   - channels per allocation and the channel-number range: by screening
//     ChannelBind requests on the client-facing sockets before pion
//     (508 over the cap, 400 out of range);
//   - session revocation: after the grace, authentication fails and the
//     relay sockets of the session's allocations are closed, which makes
//     pion delete them;
//   - TURN over TCP (pion v4 sets no deadlines): per-IP connection cap,
//     first-message deadline, idle timeout, write deadline, frames over
//     1600 bytes or garbage close the connection;
//   - responses to unauthenticated requests (401, 438, 400 for bad
//     credentials, Binding responses): screened as the socket wrappers
//     write them, at most three times the request's size (error reason
//     phrases are dropped) and rate limited per client address (per
//     connection on TCP), else not sent. Failed authentications never
//     refuse later requests, so nobody can lock an address out.
//
// v4 relays are IPv4 UDP only; RFC 6062 TCP relays are refused.
//
// # Control plane and data plane
//
// pion is the control plane: it parses and answers STUN and TURN requests
// (authentication through our AuthHandler, Allocate through our
// QuotaHandler, CreatePermission and ChannelBind through our
// PermissionHandler), owns the allocations' lifetimes, and reports what
// it did through the event handlers (hooks.go). The registry (registry.go)
// keeps sessions, allocations and relay sockets; each allocation's
// binding table, the only copy of its permissions and channels, is in its
// data plane (internal/plane), which the events write.
//
// We are the data plane: every client message passes one interception
// step (intercept.go) before pion may see it, every datagram a relay
// socket reads or pion writes to a peer passes the relay socket wrapper
// (relayconn.go), and internal/plane decides per datagram. ChannelData
// from a client, and a peer's datagram on a bound channel, are relayed by
// internal/plane itself; everything else (STUN, Data indications,
// unknown or expired channels, oversized datagrams) goes to pion, whose
// relaying passes the same admission. internal/sockio does the socket
// I/O, chosen once per socket. What the data plane assumes of pion is
// listed in internal/plane's package comment.
//
//	client ──UDP/TCP/TLS──► client-facing socket ──► intercept ─┬─► pion (control plane):
//	                         (sockio: recvmmsg)                 │   STUN/TURN requests, Send and
//	                                                            │   Data indications, allocations,
//	                                                            │   permissions, channels, events
//	                                                            │        │ events: hooks.go
//	                                                            │        ▼ write the binding table
//	                                                            └─► plane.FromClient ──admission──► relay socket ──► peer
//	client ◄── ChannelData ◄── plane.FromPeer ◄──admission──────────────────────── relay socket ◄── peer
//	                           (or, with no channel, admitted for pion's Data indication)
//	two allocations of ours: plane hands the data over in process (no kernel round trip)
//
// # Admission
//
// Every datagram between a client and a peer passes one per-datagram
// admission step of its allocation (internal/plane/admit.go) on whichever
// path carries it, ours or pion's: it is counted, and dropped without a
// live permission for the peer's IP, in both directions and also over a
// bound channel (pion would relay over a channel whose permission
// expired), when it goes to a guarded address of this host, and above
// Config.MaxBitrate in its direction (a token bucket per direction, a
// second's worth of burst). Config.NoFastPath (STRANGERS_TURN_FAST_PATH=
// false) sends every datagram through pion; admission applies all the
// same, in the relay socket wrapper pion reads and writes, and the
// relay's end-to-end tests run both ways.
//
// # Throughput
//
// pion reads each socket in one goroutine, one datagram per ReadFrom. The
// client-facing UDP port is served by several SO_REUSEPORT sockets (one
// per core), every UDP socket, client-facing or relay, asks for a 4 MiB
// receive buffer (SO_RCVBUFFORCE past net.core.rmem_max when
// privileged), and on Linux every UDP socket,
// client-facing or relay, is read with recvmmsg: one system call fetches
// what is queued and later ReadFrom calls are served from that batch,
// which is borrowed from a pool only while it holds datagrams. The socket
// wrappers see each datagram of a batch where it lies (sockio.Handler),
// before pion: what the data plane relays never returns to pion's read
// loop, and a batch that was all relayed and drained the socket's queue
// waits for the poller without another recvmmsg. Reads,
// relay writes and the counters allocate nothing per datagram. On Linux
// a frame for an idle TURN-over-TCP connection (not TLS) is written at
// once with one non-blocking write; otherwise, and for frames produced
// while a write is in progress, frames are queued and written together by
// the connection's writer goroutine, so under load they share TCP writes.
// What one reader relays to a stream connection (a relay socket's batch
// for its TCP client, or frames handed over from another client's read)
// is joined in the reader's plane.IO and written with one write when the
// batch is handled.
//
// ChannelData, the bulk of relayed traffic, skips pion: relayed straight
// to the other side (padded to 4 bytes, as pion does) once admission lets
// it pass, else dropped, as pion's path would. On Linux the data plane
// sends on the non-blocking sockets with raw system calls, to
// destinations converted once per allocation or channel; elsewhere with
// WriteTo. What one batch of reads relays is queued by the socket's
// reader (in its plane.IO) and leaves once the batch is handled, or
// before pion gets a datagram, with one sendmmsg per outgoing socket in
// the order queued: a client-facing socket's batch goes out per relay
// socket, a relay socket's batch to its client in one call. A stream
// connection's reader does the same with the frames of one read (all for
// its allocation's relay socket); datagrams too large for the queue are
// sent at once. A client-facing socket finds a client's allocation in a map
// sharded 256 ways, each shard copied on write, so lookups take no lock
// and creating or deleting one of thousands of allocations copies a
// shard, not the map.
//
// When both sides of a call are relayed by this server (two browsers that
// hide their addresses), the peer of a channel is another relay address
// of ours. The data plane then hands the data to the other allocation in
// process, as if its relay socket had read it from our public address and
// the sender's relay port, and sends it to the receiving client: one
// datagram per relayed message instead of two, with the receiving
// allocation's checks applied as for a datagram from its socket (what it
// leaves to pion goes through the kernel). Config.NoLocalHandover turns
// this off, for measurements.
//
// # Metrics
//
// On Config.Registerer, none labelled per user: strangers_relay_
// allocations_active, allocations_created_total, allocations_failed_total
// {reason}, auth_failures_total{reason}, peer_denied_total,
// quota_hits_total{kind}, responses_dropped_total{reason},
// bytes_total{direction}, packets_total{direction},
// dropped_packets_total{direction, reason}, handed_over_packets_total,
// stream_conns_closed_total{reason}.
package relay
