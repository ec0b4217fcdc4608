// Package plane is the relay's data plane: what happens to each datagram
// between a TURN client and a peer once pion's control plane has set up
// the allocation, its permissions and its channels.
//
// One Relay per allocation holds its binding table, the only copy of its
// permissions and channels (the relay's per-allocation caps count it),
// its per-direction bitrate buckets and its traffic counters. The control
// plane's events write the table; the packet path reads it without a
// lock (tables are immutable and swapped whole). Admission (admit.go) is
// the one per-datagram step every relayed datagram passes, on this
// package's path or on pion's: the counters, the permission check, the
// own-address guard and the bitrate cap.
//
// FromClient relays a ChannelData message from the client to the peer
// bound to its channel; FromPeer relays a peer's datagram to the client
// as ChannelData when a channel is bound to the peer, and otherwise
// admits it for pion (which sends a Data indication). When a channel's
// peer is another Relay of this process (two relayed clients talking to
// each other) the data is handed over in process to the other
// allocation's client, with that allocation's checks applied as if its
// socket had read it. Everything else (STUN, Data indications, unknown or
// expired channels, closed relay sockets, oversized datagrams) is left to
// pion. This package does not import pion.
//
// # What it assumes of pion's control plane (pion/turn v4)
//
// A pion upgrade must keep them or change this package; the relay's
// end-to-end tests, which run every case on this package's path and on
// pion's alone (Config.NoFastPath), are where a broken one shows.
//
//   - Channels: pion removes a channel (expiry, allocation deletion) only
//     after reporting it (OnChannelDeleted), so a channel in a binding
//     table exists in pion and a datagram this package relays on it is one
//     pion would relay. pion keeps relaying over a channel whose
//     permission expired; admission does not.
//   - Permissions: pion reports a permission when it creates one
//     (CreatePermission, or ChannelBind for a new peer IP) and when it
//     deletes one (expiry); refreshes, by either request, extend it inside
//     pion without an event. Permissions are keyed by peer IP only.
//   - One request per client transport at a time: pion reads each
//     client-facing UDP socket, and each stream connection, in one
//     goroutine and handles a request before reading the next, so
//     per-transport state noted when a request is read (the socket
//     serving an Allocate, the secret it was made with) is still current
//     while pion's handlers run.
//   - OnAllocationCreated runs inside the handling of the Allocate
//     request, before that transport's next read: the client-facing side
//     that read the Allocate is the one serving the allocation, and it
//     learns of the allocation before it reads the client's next message.
//   - Padding: pion sends ChannelData padded to a multiple of 4 bytes on
//     every transport (RFC 8656 requires it only on streams); Pad pads the
//     same way so clients see no difference between the paths.
//   - Inbound MTU: pion reads client-facing sockets with a buffer of
//     InboundMTU bytes and drops a datagram that fills it; this package
//     leaves such datagrams to pion (which drops them) rather than relay
//     what pion would not.
//   - Relay sockets: pion reads each relay socket in one goroutine, one
//     datagram per ReadFrom, and sends to peers only through the socket's
//     WriteTo, so a wrapper there sees every datagram of pion's path; it
//     deletes the allocation when a read fails, which is how closing a
//     relay socket ends an allocation.
package plane
