// @ts-check
// The signaling protocol spoken over /ws, mirrored from signaling/protocol.go.
// JSON text frames with a flat envelope: {"type": "...", ...}. Field and type
// names are the public contract; keep them in step with the Go side.

/** The only protocol version this page speaks (hello.version). */
export const PROTOCOL_VERSION = 1;

/** Bounds the server enforces; welcome.limits may say otherwise. */
export const MAX_INTERESTS = 10;
export const MAX_INTEREST_LEN = 32;
export const MAX_CHAT_LEN = 1000;
export const MAX_REASON_LEN = 200;
export const MAX_NOTE_LEN = 500;
export const MAX_FRAME_BYTES = 40960;

/** Message types. */
export const T = Object.freeze({
  // client → server
  hello: 'hello',
  find: 'find',
  next: 'next',
  stop: 'stop',
  report: 'report',
  // both directions
  signal: 'signal',
  chat: 'chat',
  typing: 'typing',
  media: 'media',
  ice: 'ice',
  // server → client
  welcome: 'welcome',
  waiting: 'waiting',
  matched: 'matched',
  partnerLeft: 'partner_left',
  stats: 'stats',
  error: 'error',
  banned: 'banned',
  cooldown: 'cooldown',
  restarting: 'restarting',
});

/** Stable error codes (error.code). */
export const ErrorCode = Object.freeze({
  badMessage: 'bad_message',
  unknownType: 'unknown_type',
  tooLarge: 'too_large',
  notHello: 'not_hello',
  badVersion: 'bad_version',
  badState: 'bad_state',
  badResume: 'bad_resume',
  notInMatch: 'not_in_match',
  rateLimited: 'rate_limited',
  unavailable: 'unavailable',
});

/** Close codes the server sends besides RFC 6455's. */
export const CLOSE_RESUMED = 4000;
/** The client is banned (a banned message came first): do not reconnect. */
export const CLOSE_BANNED = 4003;

/**
 * @typedef {'video' | 'text'} Mode
 * @typedef {'offerer' | 'answerer'} Role
 * @typedef {'next' | 'stop' | 'disconnected' | 'reported'} LeftReason
 * @typedef {'idle' | 'waiting' | 'matched'} State
 *
 * @typedef {object} ICEServer mirrors RTCIceServer
 * @property {string[]} urls
 * @property {string} [username]
 * @property {string} [credential]
 *
 * @typedef {object} SessionDescription mirrors RTCSessionDescriptionInit
 * @property {'offer' | 'answer' | 'pranswer' | 'rollback'} type
 * @property {string} sdp
 *
 * @typedef {object} ICECandidate mirrors RTCIceCandidateInit; an empty candidate ends the candidates
 * @property {string} candidate
 * @property {string | null} [sdpMid]
 * @property {number | null} [sdpMLineIndex]
 * @property {string | null} [usernameFragment]
 *
 * @typedef {object} Limits
 * @property {number} maxMessageSize bytes per frame
 * @property {number} rateLimit messages per second, sustained
 * @property {number} rateBurst messages in a burst
 * @property {number} maxInterests
 * @property {number} maxInterestLen
 * @property {number} maxChatLen
 * @property {number} interestWaitMs wait before interests give way to anyone
 * @property {number} resumeGraceMs how long a dropped session can be resumed
 * @property {number} [maxNoteLen] characters of a report note
 * @property {number} [maxFrameBytes] bytes of a report's still frame (JPEG); 0: none fits
 * @property {number} [nextRate] finds and nexts a minute before a cooldown
 */

/**
 * Client → server.
 * @typedef {{type: 'hello', version: number, resume?: string, clientKey?: string}} Hello must come first; clientKey: from an earlier welcome
 * @typedef {{type: 'find', mode: Mode, interests?: string[], relayOnly?: boolean, interestsOnly?: boolean}} Find
 * @typedef {{type: 'next'}} Next ends the match, if any, and queues again with the last find
 * @typedef {{type: 'stop'}} Stop ends the match or leaves the queue
 * @typedef {{type: 'report', match: string, reason?: string, note?: string, frame?: string}} Report the current or just-ended match; frame: base64 JPEG of the stranger's video
 * @typedef {{type: 'signal', match: string, sdp?: SessionDescription, candidate?: ICECandidate}} Signal exactly one of sdp and candidate
 * @typedef {{type: 'chat', match: string, text: string}} Chat
 * @typedef {{type: 'typing', match: string, typing: boolean}} Typing
 * @typedef {{type: 'media', match: string, camera: boolean, mic: boolean}} Media camera: a picture is sent; mic: not muted
 * @typedef {{type: 'ice'}} ICERequest ICE servers outside a match (a connectivity preflight); rate limited
 * @typedef {Hello | Find | Next | Stop | Report | Signal | Chat | Typing | Media | ICERequest} ClientMessage
 */

/**
 * Server → client.
 * @typedef {{type: 'welcome', version: number, session: string, resume: string, online: number, resumed?: boolean, state: State, match?: string, limits: Limits, clientKey: string}} Welcome clientKey: keep it and send it in every hello
 * @typedef {{type: 'waiting', mode: Mode, fallbackIn?: number}} Waiting fallbackIn: ms until anyone will do (0: already, or never)
 * @typedef {{type: 'matched', match: string, role: Role, iceServers: ICEServer[], interests: string[], mode: Mode, relayOnly?: boolean}} Matched
 * @typedef {{type: 'partner_left', match: string, reason: LeftReason}} PartnerLeft
 * @typedef {{type: 'stats', online: number, waiting: number, waitingVideo: number, waitingText: number}} Stats waiting: in all modes; waitingVideo and waitingText: by mode
 * @typedef {{type: 'error', code: string, message: string}} ErrorMessage
 * @typedef {{type: 'ice', iceServers: ICEServer[]}} ICEReply
 * @typedef {{type: 'banned', reason: string, until: number, appeal?: string}} Banned until: Unix ms; the connection closes with CLOSE_BANNED
 * @typedef {{type: 'cooldown', retryIn: number}} Cooldown too many nexts: not queued; find again after retryIn ms
 * @typedef {{type: 'restarting', retryIn: number}} Restarting the server shuts down (to restart): reconnect after retryIn ms; the session will be gone
 * @typedef {Welcome | Waiting | Matched | Signal | Chat | Typing | Media | PartnerLeft | Stats | ErrorMessage | ICEReply | Banned | Cooldown | Restarting} ServerMessage
 */

/** @param {string} [resume] @param {string} [clientKey] @returns {Hello} */
export function hello(resume, clientKey) {
  /** @type {Hello} */
  const m = { type: 'hello', version: PROTOCOL_VERSION };
  if (resume) m.resume = resume;
  if (clientKey) m.clientKey = clientKey;
  return m;
}

/**
 * @param {Mode} mode
 * @param {string[]} interests
 * @param {boolean} relayOnly
 * @returns {Find}
 */
export function find(mode, interests, relayOnly) {
  /** @type {Find} */
  const m = { type: 'find', mode };
  if (interests.length > 0) m.interests = interests;
  if (relayOnly) m.relayOnly = true;
  return m;
}

/** @returns {Next} */
export const next = () => ({ type: 'next' });
/** @returns {Stop} */
export const stop = () => ({ type: 'stop' });

/**
 * @param {string} match
 * @param {string} reason
 * @param {string} [note]
 * @param {string} [frame] base64 JPEG
 * @returns {Report}
 */
export function report(match, reason, note, frame) {
  /** @type {Report} */
  const m = { type: 'report', match };
  if (reason) m.reason = reason.slice(0, MAX_REASON_LEN);
  if (note) m.note = Array.from(note).slice(0, MAX_NOTE_LEN).join('');
  if (frame) m.frame = frame;
  return m;
}

/** @param {string} match @param {RTCSessionDescriptionInit} d @returns {Signal} */
export function signalSDP(match, d) {
  return { type: 'signal', match, sdp: { type: /** @type {SessionDescription['type']} */ (d.type), sdp: d.sdp ?? '' } };
}

/** @param {string} match @param {RTCIceCandidateInit} c @returns {Signal} */
export function signalCandidate(match, c) {
  /** @type {ICECandidate} */
  const cand = { candidate: c.candidate ?? '' };
  if (c.sdpMid != null) cand.sdpMid = c.sdpMid;
  if (c.sdpMLineIndex != null) cand.sdpMLineIndex = c.sdpMLineIndex;
  if (c.usernameFragment != null) cand.usernameFragment = c.usernameFragment;
  return { type: 'signal', match, candidate: cand };
}

/** @returns {ICERequest} */
export const iceRequest = () => ({ type: 'ice' });

/** @param {string} match @param {string} text @returns {Chat} */
export const chat = (match, text) => ({ type: 'chat', match, text });
/** @param {string} match @param {boolean} typing @returns {Typing} */
export const typing = (match, typing) => ({ type: 'typing', match, typing });
/** @param {string} match @param {boolean} camera @param {boolean} mic @returns {Media} */
export const media = (match, camera, mic) => ({ type: 'media', match, camera, mic });

/**
 * Normalises interest tags as the server does: trimmed, lower-cased, blanks
 * and duplicates dropped, at most max tags of at most maxLen characters.
 * @param {string[]} raw
 * @param {number} [max]
 * @param {number} [maxLen]
 * @returns {string[]}
 */
export function normalizeInterests(raw, max = MAX_INTERESTS, maxLen = MAX_INTEREST_LEN) {
  /** @type {string[]} */
  const out = [];
  for (const r of raw) {
    // eslint-disable-next-line no-control-regex
    const t = Array.from(r.trim().toLowerCase().replace(/[\u0000-\u001f\u007f-\u009f]/g, '')).slice(0, maxLen).join('').trim();
    if (t === '' || out.includes(t)) continue;
    if (out.length === max) break;
    out.push(t);
  }
  return out;
}

/**
 * Parses a frame from the server. It returns null for anything that is not
 * an object with a string type; the fields are checked where they are used.
 * @param {unknown} data
 * @returns {ServerMessage | null}
 */
export function parse(data) {
  if (typeof data !== 'string') return null;
  let m;
  try {
    m = JSON.parse(data);
  } catch {
    return null;
  }
  if (m === null || typeof m !== 'object' || Array.isArray(m) || typeof m.type !== 'string') return null;
  return /** @type {ServerMessage} */ (m);
}
