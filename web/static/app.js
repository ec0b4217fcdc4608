// @ts-check
// The page's behaviour: landing → preflight → looking → talking → next…
// It follows the server: the phase changes when the server says waiting,
// matched or partner_left; buttons only send requests and tidy up locally.
import * as P from './protocol.js';
import { Signaling } from './signaling.js';
import { Call, probeReachability } from './rtc.js';
import * as ui from './ui.js';
import { msg, mountPicker } from './i18n.js';
import * as mod from './moderation.js';
import * as cues from './cues.js';
import './view.js';

const { el } = ui;

/** How long the stranger's typing indicator lasts without news. */
const remoteTypingMs = 8000;
/** How long after the last keystroke we say we stopped typing. */
const typingIdleMs = 3000;
/** How long the first Esc waits for the second. */
const escConfirmMs = 3000;

/** One is shown, at random, on the waiting screen. */
const tips = [msg('tip.escTwice'), msg('tip.interests'), msg('tip.beKind'), msg('tip.fewOnline'), msg('tip.hideIP')];

/**
 * @typedef {'idle' | 'waiting' | 'matched' | 'ended'} Phase
 * idle: on the landing page; waiting: queued; matched: talking to someone;
 * ended: the stranger left (or was reported), the chat stays on screen.
 */

const state = {
  /** @type {Phase} */
  phase: 'idle',
  /** @type {P.Mode} */
  mode: 'video',
  /** @type {string[]} */
  interests: [],
  relayOnly: false,
  /** Whether the server has our last find (a fresh session after a lost one has not). */
  hasFind: false,
  /** @type {P.Matched | null} */
  match: null,
  /** The match a report may still name (the current or the one that just ended). */
  reportable: '',
  /** @type {Call | null} */
  call: null,
  /** The next call, made ready while we wait (see warmUp). */
  /** @type {Call | null} */
  warm: null,
  /** The last ICE servers the server gave us, and until when (performance.now()) we use them. */
  /** @type {{servers: P.ICEServer[], until: number} | null} */
  ice: null,
  /** When we last asked for ICE servers (performance.now()), to ask again only when that went unanswered. */
  iceAskedAt: -Infinity,
  /** @type {MediaStream | null} */
  stream: null,
  typingSent: false,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  typingTimer: undefined,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  remoteTypingTimer: undefined,
  /** @type {ReturnType<typeof setInterval> | undefined} */
  countdownTimer: undefined,
  /** When we started looking (performance.now()), for the waiting screen. */
  waitSince: 0,
  /** @type {P.Stats | null} the last stats */
  stats: null,
  escArmed: false,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  escTimer: undefined,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  resumeCheck: undefined,
  /** Resolves the pending ice request (the reachability probe). */
  /** @type {((servers: P.ICEServer[]) => void) | null} */
  iceReply: null,
  probed: false,
  /** A still of the stranger's video for a report (taken when the match ended or Report was pressed). */
  /** @type {mod.Still | null} */
  frame: null,
  /** Cancels a skip cooldown's countdown. */
  /** @type {(() => void) | null} */
  cancelCooldown: null,
  /** A find again after an unavailable error, and the wait before it. */
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  retryTimer: undefined,
  retryDelay: 0,
  /** Our microphone and camera switched off by the user. */
  micOff: false,
  cameraOff: false,
  /**
   * Chat lines typed while the server could not be reached, with the
   * match they were typed in; sent if the session resumes in that match,
   * else they stay marked as not sent.
   * @type {{match: string, text: string, line: HTMLElement}[]}
   */
  unsent: [],
};

const sig = new Signaling({
  url: `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`,
  onMessage,
  onStatus: onSignalingStatus,
});

// ---- Signaling -----------------------------------------------------------

/** @param {import('./signaling.js').Status} s */
function onSignalingStatus(s) {
  switch (s.state) {
    case 'connecting':
      break;
    case 'reconnecting': {
      if (s.restarting) {
        ui.setServerStatus(msg('server.restarting'));
        break;
      }
      const inCall = state.phase === 'matched' && state.call;
      ui.setServerStatus(msg(inCall ? 'server.reconnectingInCall' : 'server.reconnecting'));
      break;
    }
    case 'open':
      ui.setServerStatus(null);
      if (s.fresh) sessionLost(s.restarted);
      break;
    case 'closed':
      ui.setServerStatus(s.reason);
      break;
  }
}

/**
 * The server gave us a new session (it restarted, or the old one outlived
 * its grace): whatever the old one was doing is gone. Someone who was
 * talking looks for someone new, as someone waiting goes on waiting.
 * @param {boolean} restarted the server had said it was restarting
 */
function sessionLost(restarted) {
  state.hasFind = false;
  // Our TURN credentials named the old session.
  state.ice = null;
  dropWarm();
  if (state.phase === 'matched') {
    endMatch();
    const text = msg(restarted ? 'stage.restarted' : 'stage.sessionLost');
    ui.addMessage('system', msg('chat.thenLooking', { text }));
    lookAgain();
  } else if (state.phase === 'waiting') {
    sendFind();
    warmUp();
  }
}

/** Queues again with the last find, from a chat that ended. */
function lookAgain() {
  state.phase = 'waiting';
  el.report.disabled = true;
  state.reportable = '';
  ui.setCommon([]);
  sendFind();
  startCountdown(0);
}

/** @param {P.ServerMessage} m */
function onMessage(m) {
  switch (m.type) {
    case 'welcome':
      ui.setOnline(m.online);
      if (m.resumed) checkResumed(m);
      sendUnsent(m);
      break;
    case 'restarting':
      ui.setServerStatus(msg('server.restarting'));
      break;
    case 'media':
      if (m.match === state.match?.match) ui.setRemoteMedia(m.camera !== false, m.mic !== false);
      break;
    case 'stats':
      ui.setOnline(m.online);
      state.stats = m;
      showWaitingCount();
      break;
    case 'waiting':
      onWaiting(m);
      break;
    case 'matched':
      onMatched(m);
      break;
    case 'signal':
      if (state.call && m.match === state.match?.match) {
        state.call.handleSignal({ sdp: m.sdp, candidate: m.candidate }).catch((e) => console.warn('signal:', e));
      }
      break;
    case 'chat':
      if (m.match === state.match?.match && typeof m.text === 'string') {
        ui.addMessage('stranger', m.text);
        setRemoteTyping(false);
        cues.message();
      }
      break;
    case 'typing':
      if (m.match === state.match?.match) setRemoteTyping(Boolean(m.typing));
      break;
    case 'partner_left':
      if (m.match === state.match?.match) partnerLeft(m.reason);
      break;
    case 'ice': {
      const servers = Array.isArray(m.iceServers) ? m.iceServers : [];
      rememberICE(servers);
      if (state.iceReply) state.iceReply(servers);
      state.iceReply = null;
      warmUp();
      break;
    }
    case 'error':
      onError(m);
      break;
    case 'banned':
      endMatch();
      stopCountdown();
      stopStream();
      state.phase = 'idle';
      mod.showBanned(m);
      break;
    case 'cooldown':
      onCooldown(m);
      break;
  }
}

/**
 * Too many Nexts: the server did not queue us. Count down, then look again.
 * @param {P.Cooldown} m
 */
function onCooldown(m) {
  if (state.phase === 'idle') return;
  if (state.phase === 'matched') endMatch();
  stopCountdown();
  state.phase = 'waiting';
  state.cancelCooldown?.();
  state.cancelCooldown = mod.countDown(Math.max(0, Number(m.retryIn) || 0), (text) => ui.setStage(text, 'notice'), () => {
    state.cancelCooldown = null;
    if (state.phase !== 'waiting') return;
    sendFind();
    startCountdown(0);
  });
}

/** The largest still frame a report may carry. */
const maxFrame = () => sig.limits?.maxFrameBytes ?? P.MAX_FRAME_BYTES;

/**
 * Once per page, while the first call is being set up: can our relay be
 * reached from this network? If not, say so now rather than after a call
 * fails to connect. It never blocks anything.
 */
async function checkReachability() {
  if (state.probed) return;
  state.probed = true;
  /** @type {P.ICEServer[]} */
  const servers = await new Promise((resolve) => {
    state.iceReply = resolve;
    state.iceAskedAt = performance.now();
    sig.send(P.iceRequest());
    setTimeout(() => resolve([]), 10000);
  });
  if (servers.length === 0) return;
  const r = await probeReachability(servers);
  if (r.relay) return;
  ui.setNetworkHint(msg(el.hideIP.checked ? 'network.relayBlockedHideIP' : 'network.relayBlocked'));
}

/**
 * After a resume the server says where we stand; messages sent to us
 * meanwhile (a partner_left, say) follow the welcome. If the server lost our
 * match and none of them explains it, end it here.
 * @param {P.Welcome} m
 */
function checkResumed(m) {
  const phase = state.phase;
  const match = state.match?.match;
  clearTimeout(state.resumeCheck);
  state.resumeCheck = setTimeout(() => {
    if (state.phase !== phase || state.match?.match !== match) return; // explained meanwhile
    if (phase === 'matched' && (m.state !== 'matched' || m.match !== match)) partnerLeft('disconnected');
    else if (phase === 'waiting' && m.state === 'idle') sendFind();
  }, 1000);
}

/**
 * After a welcome, sends the chat lines typed while we were away if the
 * session came back in the match they were typed in; otherwise they can
 * never be delivered and keep their mark.
 * @param {P.Welcome} m
 */
function sendUnsent(m) {
  const lines = state.unsent;
  state.unsent = [];
  const back = m.resumed && m.state === 'matched' && state.phase === 'matched' && m.match === state.match?.match;
  if (!back) return;
  for (const u of lines) {
    if (u.match === m.match && sig.trySend(P.chat(u.match, u.text))) ui.markUnsent(u.line, false);
  }
}

/** @param {P.ErrorMessage} m */
function onError(m) {
  switch (m.code) {
    case P.ErrorCode.badResume:
      break; // a fresh welcome follows; onSignalingStatus sorts it out
    case P.ErrorCode.unavailable:
      // Matching is down for a moment (the server's shared backend): say so
      // and look again, a little later each time.
      if (state.phase !== 'waiting') break;
      ui.setStage(msg('stage.unavailable'), 'notice');
      clearTimeout(state.retryTimer);
      state.retryDelay = Math.min(10000, (state.retryDelay || 1000) * 2);
      state.retryTimer = setTimeout(() => {
        if (state.phase === 'waiting') sendFind();
      }, state.retryDelay * (0.75 + Math.random() / 2));
      break;
    case P.ErrorCode.badState:
      // e.g. a next the server could not honour: ask again from scratch.
      if (state.phase === 'waiting') sendFind();
      else console.warn(`server: ${m.code}: ${m.message}`);
      break;
    default:
      console.warn(`server: ${m.code}: ${m.message}`);
  }
}

// ---- Looking for a stranger ---------------------------------------------

function sendFind() {
  sig.send(P.find(state.mode, state.interests, state.relayOnly));
  state.hasFind = true;
}

/** @param {P.Waiting} m */
function onWaiting(m) {
  if (state.phase === 'idle') return; // a late answer to a find we took back
  state.retryDelay = 0; // the find went through
  if (state.phase === 'matched') endMatch();
  state.phase = 'waiting';
  warmUp();
  startCountdown(typeof m.fallbackIn === 'number' ? m.fallbackIn : 0);
}

/**
 * Shows the waiting screen, or brings it up to date when the server
 * confirms we wait: what we look for, the interest fallback countdown, how
 * many wait in our mode and for how long, and a tip.
 * @param {number} fallbackInMs
 */
function startCountdown(fallbackInMs) {
  const fresh = state.countdownTimer === undefined;
  stopCountdown();
  if (fresh) {
    state.waitSince = performance.now();
    ui.setWaitingTip(tips[Math.floor(Math.random() * tips.length)] ?? msg('tip.escTwice'));
  }
  const deadline = performance.now() + fallbackInMs;
  const tick = () => {
    const left = Math.ceil((deadline - performance.now()) / 1000);
    if (state.retryDelay > 0) {
      ui.setStage(msg('stage.unavailable'), 'notice');
    } else if (state.interests.length > 0 && left > 0) {
      ui.setStage(msg('stage.lookingInterests', { interests: state.interests }));
      ui.setWaitingFallback(msg('waiting.fallback', { seconds: left }));
    } else {
      ui.setStage(msg('stage.looking'));
      ui.setWaitingFallback(null);
    }
    ui.setWaitingElapsed(performance.now() - state.waitSince);
  };
  tick();
  showWaitingCount();
  ui.showWaiting(true);
  ui.setNextAvailable(false);
  state.countdownTimer = setInterval(tick, 250);
}

function stopCountdown() {
  clearInterval(state.countdownTimer);
  state.countdownTimer = undefined;
  ui.showWaiting(false);
  ui.setNextAvailable(true);
}

/** How many wait in our mode, from the last stats. */
function showWaitingCount() {
  const st = state.stats;
  if (!st) {
    ui.setWaitingCount(null, '');
    return;
  }
  // Stats come every few seconds: the last may be from before we queued.
  // We wait, so at least one does.
  const n = state.mode === 'video' ? st.waitingVideo : st.waitingText;
  if (typeof n === 'number') ui.setWaitingCount(Math.max(1, n), state.mode);
  else ui.setWaitingCount(typeof st.waiting === 'number' ? Math.max(1, st.waiting) : null, '');
}

// ---- Talking -------------------------------------------------------------

/** @param {P.Matched} m */
function onMatched(m) {
  if (state.phase === 'idle') return;
  endMatch();
  stopCountdown();
  state.phase = 'matched';
  state.match = m;
  state.reportable = m.match;
  state.frame = null;
  const iceServers = Array.isArray(m.iceServers) ? m.iceServers : [];
  rememberICE(iceServers);

  // The call first, the page after: the offer leaves before any DOM work.
  if (m.mode === 'video' && state.mode === 'video') {
    startCall(m, iceServers);
    sendMedia(); // the stranger knows from the start if our camera or mic is off
    ui.setStage(msg('stage.connecting'));
    ui.setConnection({ state: 'connecting' });
  } else {
    dropWarm();
    ui.setStage(null);
  }
  ui.clearLog();
  ui.addMessage('system', msg('chat.matched'));
  ui.setCommon(Array.isArray(m.interests) ? m.interests : []);
  ui.setMatched(true);
  el.report.disabled = false;
  cues.matched();
  if (document.activeElement === document.body || document.activeElement === el.next) el.chatInput.focus();
}

/**
 * Starts the call of match m, on the warm peer connection when it fits.
 * @param {P.Matched} m
 * @param {P.ICEServer[]} iceServers
 */
function startCall(m, iceServers) {
  let call = state.warm;
  state.warm = null;
  if (!call || call.relayOnly !== state.relayOnly || !call.fits(iceServers) || performance.now() >= warmUntil(call)) {
    call?.close();
    call = new Call({ iceServers, relayOnly: state.relayOnly, stream: state.stream });
  }
  state.call = call;
  call.start({
    role: m.role,
    send: (s) => sig.send(s.sdp ? P.signalSDP(m.match, s.sdp) : P.signalCandidate(m.match, s.candidate ?? {})),
    onRemoteStream: (stream) => {
      if (state.call === call) showRemote(stream);
    },
    onStatus: (s) => {
      if (state.call !== call) return;
      ui.setConnection(s);
      if (s.state === 'failed') ui.setStage(msg('stage.couldNotConnect'), 'notice');
    },
  });
}

// ---- Warming the next call ------------------------------------------------

/**
 * How long ICE servers are used after they came: half what their TURN
 * credentials (expiry:session) seem to have left by our clock, between a
 * minute and half an hour; half an hour when they carry no expiry. A warm
 * call older than that is not used.
 * @param {P.ICEServer[]} servers
 */
function iceLifetimeMs(servers) {
  const user = servers.find((s) => typeof s.username === 'string' && /^\d+:/.test(s.username))?.username;
  if (!user) return 30 * 60e3;
  const left = Number(user.split(':')[0]) * 1000 - Date.now();
  return Math.min(30 * 60e3, Math.max(60e3, left / 2));
}

/** @param {P.ICEServer[]} servers */
function rememberICE(servers) {
  if (servers.length === 0) return;
  state.ice = { servers, until: performance.now() + iceLifetimeMs(servers) };
}

/** @type {WeakMap<Call, number>} when each warm call's credentials stop being usable */
const warmUntilByCall = new WeakMap();

/** @param {Call} call */
function warmUntil(call) {
  return warmUntilByCall.get(call) ?? 0;
}

/**
 * While waiting for a stranger (video), makes the next call ready: a peer
 * connection with the camera attached and candidates gathered, on the ICE
 * servers we already have while their credentials are good. Without any,
 * it asks the server once (ice is rate limited) and warms up on the reply.
 */
function warmUp() {
  if (state.phase !== 'waiting' || state.mode !== 'video' || !state.stream) return;
  const now = performance.now();
  if (state.warm && !state.warm.closed && state.warm.relayOnly === state.relayOnly && now < warmUntil(state.warm)) return;
  dropWarm();
  if (!state.ice || now >= state.ice.until) {
    state.ice = null;
    if (now - state.iceAskedAt > 10000) {
      state.iceAskedAt = now;
      sig.send(P.iceRequest());
    }
    return;
  }
  const call = new Call({ iceServers: state.ice.servers, relayOnly: state.relayOnly, stream: state.stream });
  warmUntilByCall.set(call, state.ice.until);
  state.warm = call;
}

/** Closes the warm call, if any: nothing was sent on it. */
function dropWarm() {
  state.warm?.close();
  state.warm = null;
}

/** @param {MediaStream} stream */
function showRemote(stream) {
  const v = el.remoteVideo;
  if (v.srcObject !== stream) {
    v.srcObject = stream;
    v.muted = false;
  }
  v.play().catch((err) => {
    // Autoplay with sound refused (mobile browsers without a recent tap):
    // play muted and offer a button for the sound. (Other rejections mean
    // the call ended meanwhile.)
    if (!(err instanceof DOMException) || err.name !== 'NotAllowedError' || v.srcObject !== stream) return;
    v.muted = true;
    el.play.hidden = false;
    v.play().catch(() => {});
  });
}

el.play.addEventListener('click', () => {
  el.remoteVideo.muted = false;
  el.remoteVideo.play().catch(() => {});
  el.play.hidden = true;
});

el.remoteVideo.addEventListener('playing', () => {
  if (state.phase === 'matched' && state.call) ui.setStage(null);
});

/** Ends the current call and match locally (the server knows already). */
function endMatch() {
  const focused = document.activeElement;
  // Keep a still of the stranger for a report made after the match ended.
  if (state.call && el.remoteVideo.videoWidth > 0) state.frame = mod.captureFrame(el.remoteVideo, maxFrame());
  if (state.call) state.call.close();
  state.call = null;
  state.match = null;
  el.remoteVideo.srcObject = null;
  el.play.hidden = true;
  ui.setConnection(null);
  ui.setMatched(false);
  ui.setRemoteMedia(true, true);
  state.unsent = []; // what was not sent stays marked so
  setRemoteTyping(false);
  clearTimeout(state.typingTimer);
  state.typingSent = false;
  disarmEsc();
  keepFocus(focused);
}

/**
 * If the control that had the keyboard focus was just disabled (the message
 * box, Send or Report when a chat ends), the focus would fall to the page
 * body: it goes to Next instead, the control that matters now.
 * @param {Element | null} was what had the focus
 */
function keepFocus(was) {
  if (el.chat.hidden) return;
  const now = document.activeElement;
  const lost = now === null || now === document.body || (now === was && 'disabled' in now && now.disabled === true);
  if (lost) el.next.focus();
}

/** @param {P.LeftReason} reason */
function partnerLeft(reason) {
  endMatch();
  state.phase = 'ended';
  el.report.disabled = state.reportable === '' || reason === 'reported';
  const text = msg(reason === 'disconnected' ? 'stage.leftDropped' : 'stage.left');
  ui.setStage(text, 'notice');
  if (el.autoNext.checked) {
    ui.addMessage('system', msg('chat.thenFinding', { text }));
    next();
  } else {
    ui.addMessage('system', msg('chat.thenNext', { text }));
  }
}

/** @param {boolean} on */
function setRemoteTyping(on) {
  clearTimeout(state.remoteTypingTimer);
  ui.setTyping(on);
  if (on) state.remoteTypingTimer = setTimeout(() => ui.setTyping(false), remoteTypingMs);
}

// ---- Buttons and keys ------------------------------------------------------

function next() {
  disarmEsc();
  switch (state.phase) {
    case 'matched':
      sig.send(P.next());
      endMatch();
      ui.addMessage('system', msg('chat.skipped'));
      break;
    case 'ended':
      if (state.hasFind) sig.send(P.next());
      else sendFind();
      break;
    default:
      return;
  }
  state.phase = 'waiting';
  warmUp();
  // The match that just ended may still be reported.
  el.report.disabled = state.reportable === '';
  ui.setCommon([]);
  startCountdown(0);
}

function stop() {
  disarmEsc();
  if (state.phase !== 'idle') sig.send(P.stop());
  state.cancelCooldown?.();
  state.cancelCooldown = null;
  clearTimeout(state.retryTimer);
  state.retryDelay = 0;
  endMatch();
  dropWarm();
  stopCountdown();
  state.phase = 'idle';
  state.hasFind = false;
  state.reportable = '';
  stopStream();
  ui.setStage(null);
  ui.show('landing');
  el.start.focus();
}

el.next.addEventListener('click', next);
el.stop.addEventListener('click', stop);

function disarmEsc() {
  state.escArmed = false;
  clearTimeout(state.escTimer);
  ui.setKeyHint(msg('keys.escTwice'));
}

document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape' || e.defaultPrevented || el.reportDialog.open || el.chat.hidden) return;
  if (state.phase === 'ended') {
    next();
    return;
  }
  if (state.phase !== 'matched') return;
  if (state.escArmed) {
    next();
    return;
  }
  state.escArmed = true;
  ui.setKeyHint(msg('keys.escAgain'));
  state.escTimer = setTimeout(disarmEsc, escConfirmMs);
});

// ---- Chat ------------------------------------------------------------------

el.chatForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const match = state.match;
  const max = sig.limits?.maxChatLen ?? P.MAX_CHAT_LEN;
  const text = Array.from(el.chatInput.value.trim()).slice(0, max).join('');
  if (!match || text === '') return;
  const line = ui.addMessage('you', text);
  if (!sig.trySend(P.chat(match.match, text))) {
    // The server cannot be reached: say so, and send it if the session
    // comes back in this match.
    ui.markUnsent(line, true);
    state.unsent.push({ match: match.match, text, line });
  }
  el.chatInput.value = '';
  clearTimeout(state.typingTimer);
  state.typingSent = false; // the chat itself ends the stranger's indicator
});

el.chatInput.addEventListener('input', () => {
  const match = state.match;
  if (!match) return;
  if (!state.typingSent && el.chatInput.value !== '') {
    sig.send(P.typing(match.match, true));
    state.typingSent = true;
  }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => {
    if (state.typingSent && state.match === match) sig.send(P.typing(match.match, false));
    state.typingSent = false;
  }, el.chatInput.value === '' ? 0 : typingIdleMs);
});

// ---- Report ----------------------------------------------------------------

el.report.addEventListener('click', async () => {
  if (state.reportable === '') return;
  if (state.phase === 'matched' && el.remoteVideo.videoWidth > 0) state.frame = mod.captureFrame(el.remoteVideo, maxFrame());
  const frameBox = /** @type {HTMLInputElement} */ (document.getElementById('report-frame'));
  const haveFrame = state.frame != null && (await state.frame.encoded()) != null;
  frameBox.disabled = !haveFrame;
  frameBox.checked = haveFrame;
  el.reportForm.reset();
  frameBox.checked = haveFrame;
  el.reportDialog.showModal();
});

el.reportDialog.addEventListener('close', async () => {
  if (el.reportDialog.returnValue !== 'report' || state.reportable === '') return;
  const form = new FormData(el.reportForm);
  const reason = form.get('reason');
  const note = /** @type {HTMLTextAreaElement} */ (document.getElementById('report-note')).value.trim();
  const withFrame = /** @type {HTMLInputElement} */ (document.getElementById('report-frame')).checked;
  const match = state.reportable;
  state.reportable = '';
  el.report.disabled = true;
  const frame = withFrame && state.frame ? await state.frame.encoded() : null;
  state.frame = null;
  sig.send(P.report(match, typeof reason === 'string' ? reason : '', note, frame ?? undefined));
  if (state.phase === 'matched' && state.match?.match === match) {
    endMatch();
    state.frame = null;
    state.phase = 'ended';
  }
  const text = msg('stage.reported');
  if (state.phase === 'waiting') {
    ui.addMessage('system', text);
    return;
  }
  ui.setStage(text, 'notice');
  ui.addMessage('system', msg('chat.thenNext', { text }));
  el.next.focus();
});

// ---- Start: settings and preflight ----------------------------------------

function currentMode() {
  const v = new FormData(el.startForm).get('mode');
  return v === 'text' ? 'text' : 'video';
}

function modeChanged() {
  const text = currentMode() === 'text';
  el.hideIP.disabled = text;
  el.hideIPRow.classList.toggle('disabled', text);
  el.preview.hidden = text;
  // Text only needs no camera: a preview that was on goes off.
  if (text && state.phase === 'idle') stopStream();
}

for (const radio of el.startForm.querySelectorAll('input[name=mode]')) radio.addEventListener('change', modeChanged);
modeChanged();

function renderInterests() {
  ui.renderInterests(state.interests, (tag) => {
    state.interests = state.interests.filter((t) => t !== tag);
    renderInterests();
    el.interestInput.focus();
  });
}

/** Turns what is typed in the interest box into tags. */
function addTypedInterests() {
  const typed = el.interestInput.value.split(',');
  if (typed.every((t) => t.trim() === '')) return false;
  const max = sig.limits?.maxInterests ?? P.MAX_INTERESTS;
  state.interests = P.normalizeInterests([...state.interests, ...typed], max, sig.limits?.maxInterestLen);
  el.interestInput.value = '';
  renderInterests();
  return true;
}

el.interestInput.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && addTypedInterests()) e.preventDefault();
  else if (e.key === 'Backspace' && el.interestInput.value === '' && state.interests.length > 0) {
    state.interests = state.interests.slice(0, -1);
    renderInterests();
  }
});
el.interestInput.addEventListener('input', () => {
  if (el.interestInput.value.includes(',')) addTypedInterests();
});
el.interestInput.addEventListener('blur', () => addTypedInterests());

el.startForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  if (el.start.disabled) return;
  if (!(await mod.rulesGate())) return;
  addTypedInterests();
  ui.showStartError(null);
  const mode = currentMode();
  if (mode === 'video') {
    // The camera the preview already opened is used as it is: it is asked
    // for once, and kept across Next until Stop.
    if (!liveStream()) {
      el.start.disabled = true;
      try {
        await openCamera();
      } catch {
        return; // the error and the way on in text only stay on screen
      } finally {
        el.start.disabled = false;
      }
    }
    el.localVideo.srcObject = state.stream;
    el.localVideo.play().catch(() => {});
    applyTrackToggles();
    checkReachability().catch(() => {});
  } else {
    stopStream();
  }
  ui.showCameraError(null);
  state.mode = mode;
  state.relayOnly = mode === 'video' && el.hideIP.checked;
  ui.setMode(mode);
  ui.clearLog();
  ui.setCommon([]);
  ui.show('chat');
  state.phase = 'waiting';
  el.report.disabled = true;
  sendFind();
  warmUp();
  startCountdown(0);
  el.chatLog.focus();
});

/** Why the camera and microphone could not be had, for the user. */
class MediaError extends Error {
  /** @param {import('./i18n.js').Msg} shown the explanation */
  constructor(shown) {
    super(shown.key);
    this.shown = shown;
  }
}

/** Whether the camera and microphone we hold still work. */
function liveStream() {
  const tracks = state.stream?.getTracks() ?? [];
  return tracks.length > 0 && tracks.some((t) => t.readyState === 'live');
}

/**
 * Opens the camera and microphone (the browser asks the user the first
 * time) and shows them in the start page's preview with the device
 * pickers. On failure the reason stays under Start, beside the button that
 * goes on in text only, and the promise rejects.
 */
async function openCamera() {
  ui.showCameraError(null);
  let stream;
  try {
    stream = await preflight();
  } catch (err) {
    ui.showCameraError(err instanceof MediaError ? err.shown : msg('media.other', { error: String(err) }));
    throw err;
  }
  if (state.phase !== 'idle' && state.stream) {
    for (const t of stream.getTracks()) t.stop(); // raced with a Start
    return;
  }
  for (const t of state.stream?.getTracks() ?? []) t.stop();
  state.stream = stream;
  applyTrackToggles();
  ui.setPreview(stream);
  fillDevices().catch(() => {});
}

el.previewOn.addEventListener('click', () => {
  el.previewOn.disabled = true;
  openCamera()
    .catch(() => {})
    .finally(() => {
      el.previewOn.disabled = false;
    });
});

// One tap on from a camera that cannot be used: text only, and Start.
el.textFallback.addEventListener('click', () => {
  const text = el.startForm.querySelector('input[name=mode][value=text]');
  if (text instanceof HTMLInputElement) text.checked = true;
  modeChanged();
  el.startForm.requestSubmit();
});

/**
 * Asks for the camera and microphone; falls back to whichever one exists.
 * @returns {Promise<MediaStream>}
 */
async function preflight() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) throw new MediaError(msg('media.insecure'));
  const attempts = [{ video: true, audio: true }, { video: true }, { audio: true }];
  for (const constraints of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      const name = err instanceof DOMException ? err.name : '';
      if (name === 'NotFoundError' || name === 'OverconstrainedError') continue;
      if (name === 'NotAllowedError' || name === 'SecurityError') throw new MediaError(msg('media.denied'));
      if (name === 'NotReadableError' || name === 'AbortError') throw new MediaError(msg('media.busy'));
      throw new MediaError(msg('media.other', { error: name || String(err) }));
    }
  }
  throw new MediaError(msg('media.missing'));
}

function stopStream() {
  for (const t of state.stream?.getTracks() ?? []) t.stop();
  state.stream = null;
  el.localVideo.srcObject = null;
  ui.setPreview(null);
}

// ---- Camera, microphone, devices -------------------------------------------

/**
 * Switched-off tracks stay live but disabled: the browser then sends
 * nothing worth seeing or hearing (black frames and silence, at a trickle),
 * and the stranger is told (media) so their page says so instead.
 */
function applyTrackToggles() {
  for (const t of state.stream?.getAudioTracks() ?? []) t.enabled = !state.micOff;
  for (const t of state.stream?.getVideoTracks() ?? []) t.enabled = !state.cameraOff;
  el.localVideo.classList.toggle('off', state.cameraOff);
  ui.setMediaButtons(state.micOff, state.cameraOff);
}

/** Tells the stranger whether our camera and microphone are on. */
function sendMedia() {
  const m = state.match;
  if (state.phase !== 'matched' || !m || m.mode !== 'video' || state.mode !== 'video') return;
  const on = (/** @type {MediaStreamTrack[]} */ tracks) => tracks.some((t) => t.readyState === 'live' && t.enabled);
  sig.send(P.media(m.match, on(state.stream?.getVideoTracks() ?? []), on(state.stream?.getAudioTracks() ?? [])));
}

el.mute.addEventListener('click', () => {
  state.micOff = !state.micOff;
  applyTrackToggles();
  sendMedia();
});
el.cameraOff.addEventListener('click', () => {
  state.cameraOff = !state.cameraOff;
  applyTrackToggles();
  sendMedia();
});

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const current = (/** @type {'audio' | 'video'} */ kind) =>
    state.stream?.getTracks().find((t) => t.kind === kind)?.getSettings().deviceId ?? '';
  const cameras = devices.filter((d) => d.kind === 'videoinput');
  const mics = devices.filter((d) => d.kind === 'audioinput');
  for (const select of [el.cameraSelect, el.previewCamera]) ui.fillDevices(select, cameras, current('video'));
  for (const select of [el.micSelect, el.previewMic]) ui.fillDevices(select, mics, current('audio'));
}

/**
 * @param {'audio' | 'video'} kind
 * @param {string} deviceId
 */
async function switchDevice(kind, deviceId) {
  const stream = state.stream;
  if (!stream || deviceId === '') return;
  const got = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
  const track = got.getTracks()[0];
  if (!track || state.stream !== stream) {
    for (const t of got.getTracks()) t.stop();
    return;
  }
  for (const old of stream.getTracks().filter((t) => t.kind === kind)) {
    stream.removeTrack(old);
    old.stop();
  }
  stream.addTrack(track);
  applyTrackToggles();
  ui.setPreview(stream);
  await state.call?.replaceTrack(track);
  await state.warm?.replaceTrack(track);
  // Both pickers (start page and call) show the device in use.
  fillDevices().catch(() => {});
  sendMedia();
}

/**
 * @param {HTMLSelectElement} select
 * @param {'audio' | 'video'} kind
 */
function devicePicker(select, kind) {
  select.addEventListener('change', () => {
    switchDevice(kind, select.value).catch(() => {
      const text = msg(kind === 'video' ? 'devices.cameraFailed' : 'devices.micFailed');
      if (state.phase === 'idle') ui.showStartError(text);
      else ui.addMessage('system', text);
    });
  });
}
devicePicker(el.cameraSelect, 'video');
devicePicker(el.micSelect, 'audio');
devicePicker(el.previewCamera, 'video');
devicePicker(el.previewMic, 'audio');
navigator.mediaDevices?.addEventListener('devicechange', () => {
  if (state.stream) fillDevices().catch(() => {});
});

// ---- Page life ---------------------------------------------------------------

window.addEventListener('pagehide', () => {
  // A normal close: the server ends our session and tells the partner now.
  sig.close();
  state.call?.close();
  dropWarm();
});

// Back from the back/forward cache the session is gone (closed on
// pagehide): start afresh.
window.addEventListener('pageshow', (e) => {
  if (e.persisted) location.reload();
});

mountPicker(el.language);
ui.show('landing');
sig.connect();
// Start comes disabled in the HTML: pressed before this script ran, it
// would submit the form and reload the page.
el.start.disabled = false;
