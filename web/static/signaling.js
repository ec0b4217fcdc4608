// @ts-check
// The WebSocket client: hello first, then messages both ways. When the
// connection drops it reconnects with exponential backoff and jitter and
// presents its resume token, so the session (queue place or match) survives;
// the media of a call never depended on the socket anyway.
import * as P from './protocol.js';
import { msg } from './i18n.js';

/**
 * @typedef {{state: 'connecting'}
 *   | {state: 'open', resumed: boolean, fresh: boolean, restarted: boolean}
 *   | {state: 'reconnecting', attempt: number, delayMs: number, restarting: boolean}
 *   | {state: 'closed', reason: import('./i18n.js').Msg}} Status
 * open.resumed: the server gave the old session back; open.fresh: a new
 * session replaced one that was lost (what it was doing is gone);
 * open.restarted: the server had said it was restarting.
 * reconnecting.restarting: the server said it is restarting (a restarting
 * message, or close 1001).
 */

/** First reconnect delay; it doubles up to maxDelayMs (with jitter). */
const baseDelayMs = 300;
const maxDelayMs = 8000;
/** A connection that has not been welcomed by then is dropped and retried. */
const connectTimeoutMs = 10000;
/** Messages kept while the socket is down; beyond that the oldest go. */
const maxQueue = 200;
/** The close code of a client that is done with its session. */
const closeNormal = 1000;
/** Where the browser keeps the client key the server signed (no account, no fingerprint). */
const clientKeyItem = 'strangers.clientKey';

/** @returns {string} */
function loadClientKey() {
  try {
    return localStorage.getItem(clientKeyItem) ?? '';
  } catch {
    return ''; // storage disabled: the server issues a key per connection
  }
}

/** @param {string} key */
function saveClientKey(key) {
  try {
    localStorage.setItem(clientKeyItem, key);
  } catch {
    // storage disabled
  }
}
/** The close code of a server that shuts down. */
const closeGoingAway = 1001;
/** When a restarting server gives no hint, the first retry after it. */
const defaultRestartMs = 2000;

export class Signaling {
  /**
   * @param {object} opts
   * @param {string} opts.url ws: or wss: URL of /ws
   * @param {(m: P.ServerMessage) => void} opts.onMessage every message, welcome included
   * @param {(s: Status) => void} opts.onStatus connection state changes
   */
  constructor({ url, onMessage, onStatus }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.welcomed = false;
    /** @type {string} */
    this.resumeToken = '';
    /** @type {string} */
    this.session = '';
    /** @type {P.Limits | null} */
    this.limits = null;
    this.attempt = 0;
    this.closed = false;
    /** The server said it is restarting; cleared by the next welcome. */
    this.restarting = false;
    /** Its retry hint (ms), for the first reconnect after it. */
    this.restartMs = 0;
    /** @type {P.ClientMessage[]} */
    this.queue = [];
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.connectTimer = undefined;
    this.onOnline = () => {
      if (!this.closed && !this.welcomed && this.retryTimer !== undefined) {
        clearTimeout(this.retryTimer);
        this.retryTimer = undefined;
        this.connect();
      }
    };
    window.addEventListener('online', this.onOnline);
  }

  /** Opens the connection (again). */
  connect() {
    if (this.closed) return;
    this.onStatus({ state: 'connecting' });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.onStatus({ state: 'closed', reason: msg('server.cannotOpen', { url: this.url, error: String(e) }) });
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && !this.welcomed) ws.close();
      this.dropped(ws, 0);
    }, connectTimeoutMs);
    ws.onopen = () => ws.send(JSON.stringify(P.hello(this.resumeToken, loadClientKey())));
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      const m = P.parse(ev.data);
      if (m === null) return;
      if (m.type === 'welcome') this.welcome(m);
      else if (m.type === 'error' && m.code === P.ErrorCode.badResume) this.resumeToken = '';
      else if (m.type === 'restarting') this.serverRestarting(m);
      this.onMessage(m);
    };
    ws.onclose = (ev) => this.dropped(ws, ev.code);
  }

  /**
   * The server is about to close the connection to restart: nothing more
   * goes out on it (what is sent now is queued, or refused by trySend),
   * and the first reconnect waits for the server's hint.
   * @param {P.Restarting} m
   */
  serverRestarting(m) {
    this.restarting = true;
    this.welcomed = false;
    this.restartMs = typeof m.retryIn === 'number' && m.retryIn > 0 ? Math.min(m.retryIn, maxDelayMs) : defaultRestartMs;
  }

  /** @param {P.Welcome} m */
  welcome(m) {
    clearTimeout(this.connectTimer);
    const hadSession = this.session !== '';
    const resumed = Boolean(m.resumed) && m.session === this.session;
    this.welcomed = true;
    this.attempt = 0;
    this.session = m.session;
    this.resumeToken = m.resume;
    this.limits = m.limits ?? null;
    if (m.clientKey) saveClientKey(m.clientKey);
    const queued = this.queue;
    this.queue = [];
    // What was queued for a session that is gone would be out of place.
    if (resumed || !hadSession) for (const q of queued) this.send(q);
    const restarted = this.restarting;
    this.restarting = false;
    this.restartMs = 0;
    this.onStatus({ state: 'open', resumed, fresh: hadSession && !resumed, restarted });
  }

  /**
   * @param {WebSocket} ws
   * @param {number} code
   */
  dropped(ws, code) {
    if (this.ws !== ws) return;
    clearTimeout(this.connectTimer);
    this.ws = null;
    this.welcomed = false;
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (this.closed) return;
    if (code === 1002) {
      // No hello first or the wrong version: retrying cannot help.
      this.closed = true;
      this.onStatus({ state: 'closed', reason: msg('server.protocol') });
      return;
    }
    if (code === P.CLOSE_BANNED) {
      // The banned message said why and until when; reconnecting cannot help.
      this.closed = true;
      this.onStatus({ state: 'closed', reason: msg('banned.title') });
      return;
    }
    if (code === P.CLOSE_RESUMED) {
      // Another connection (another tab with our token) took the session.
      this.resumeToken = '';
    }
    let delayMs;
    if (code === closeGoingAway && !this.restarting) {
      // A server too old to say restarting, or whose message was lost.
      this.restarting = true;
      this.restartMs = defaultRestartMs;
    }
    if (this.restarting && this.restartMs > 0) {
      // The server's hint, spread out so that its clients do not all
      // come back at once; later attempts back off from the start.
      delayMs = Math.round(this.restartMs * (1 + Math.random() / 2));
      this.restartMs = 0;
      this.attempt = 0;
    } else {
      delayMs = Math.round(Math.min(maxDelayMs, baseDelayMs * 2 ** this.attempt) * (0.5 + Math.random() / 2));
      this.attempt++;
    }
    this.onStatus({ state: 'reconnecting', attempt: this.attempt, delayMs, restarting: this.restarting });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delayMs);
  }

  /** Whether messages go out now rather than being queued. */
  get open() {
    return this.welcomed && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Sends a message, or queues it until the connection is back.
   * @param {P.ClientMessage} m
   */
  send(m) {
    if (this.closed) return;
    if (this.open && this.ws) {
      this.ws.send(JSON.stringify(m));
      return;
    }
    if (this.queue.length >= maxQueue) this.queue.shift();
    this.queue.push(m);
  }

  /**
   * Sends a message only if the connection is up now; never queues it.
   * For what the user must see as not sent otherwise (a chat line).
   * @param {P.ClientMessage} m
   * @returns {boolean} whether it went out
   */
  trySend(m) {
    if (this.closed || !this.open || !this.ws) return false;
    this.ws.send(JSON.stringify(m));
    return true;
  }

  /** Drops whatever is queued (it belongs to a match that ended). */
  clearQueue() {
    this.queue = [];
  }

  /** Ends the session for good (a normal close: the server forgets us). */
  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    window.removeEventListener('online', this.onOnline);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close(closeNormal, 'bye');
    }
  }
}
