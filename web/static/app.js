// @ts-check
// The page's behaviour: landing → preflight → looking → talking → next…
// It follows the server: the phase changes when the server says waiting,
// matched or partner_left; buttons only send requests and tidy up locally.
import * as P from './protocol.js';
import { Signaling } from './signaling.js';
import { Call, probeReachability } from './rtc.js';
import * as ui from './ui.js';
import { msg, mountPicker } from './i18n.js';

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
      const inCall = state.phase === 'matched' && state.call;
      ui.setServerStatus(msg(inCall ? 'server.reconnectingInCall' : 'server.reconnecting'));
      break;
    }
    case 'open':
      ui.setServerStatus(null);
      if (s.fresh) sessionLost();
      break;
    case 'closed':
      ui.setServerStatus(s.reason);
      break;
  }
}

/**
 * The server gave us a new session: whatever the old one was doing is gone.
 */
function sessionLost() {
  state.hasFind = false;
  if (state.phase === 'matched') {
    endMatch();
    state.reportable = '';
    state.phase = 'ended';
    const text = msg('stage.sessionLost');
    ui.addMessage('system', msg('chat.thenNext', { text }));
    ui.setStage(text, 'notice');
  } else if (state.phase === 'waiting') {
    sendFind();
  }
}

/** @param {P.ServerMessage} m */
function onMessage(m) {
  switch (m.type) {
    case 'welcome':
      ui.setOnline(m.online);
      if (m.resumed) checkResumed(m);
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
      }
      break;
    case 'typing':
      if (m.match === state.match?.match) setRemoteTyping(Boolean(m.typing));
      break;
    case 'partner_left':
      if (m.match === state.match?.match) partnerLeft(m.reason);
      break;
    case 'ice':
      if (state.iceReply) state.iceReply(Array.isArray(m.iceServers) ? m.iceServers : []);
      state.iceReply = null;
      break;
    case 'error':
      onError(m);
      break;
  }
}

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

/** @param {P.ErrorMessage} m */
function onError(m) {
  switch (m.code) {
    case P.ErrorCode.badResume:
      break; // a fresh welcome follows; onSignalingStatus sorts it out
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
  if (state.phase === 'matched') endMatch();
  state.phase = 'waiting';
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
    if (state.interests.length > 0 && left > 0) {
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
  ui.clearLog();
  ui.addMessage('system', msg('chat.matched'));
  ui.setCommon(Array.isArray(m.interests) ? m.interests : []);
  ui.setMatched(true);
  el.report.disabled = false;

  if (m.mode === 'video' && state.mode === 'video') {
    ui.setStage(msg('stage.connecting'));
    ui.setConnection({ state: 'connecting' });
    const call = new Call({
      role: m.role,
      iceServers: Array.isArray(m.iceServers) ? m.iceServers : [],
      relayOnly: state.relayOnly,
      stream: state.stream,
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
    state.call = call;
    call.start().catch((e) => console.warn('offer:', e));
  } else {
    ui.setStage(null);
  }
  if (document.activeElement === document.body || document.activeElement === el.next) el.chatInput.focus();
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
  if (state.call) state.call.close();
  state.call = null;
  state.match = null;
  el.remoteVideo.srcObject = null;
  el.play.hidden = true;
  ui.setConnection(null);
  ui.setMatched(false);
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
  el.report.disabled = true;
  state.reportable = '';
  ui.setCommon([]);
  startCountdown(0);
}

function stop() {
  disarmEsc();
  if (state.phase !== 'idle') sig.send(P.stop());
  endMatch();
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
  sig.send(P.chat(match.match, text));
  ui.addMessage('you', text);
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

el.report.addEventListener('click', () => {
  if (state.reportable === '') return;
  el.reportDialog.showModal();
});

el.reportDialog.addEventListener('close', () => {
  if (el.reportDialog.returnValue !== 'report' || state.reportable === '') return;
  const reason = new FormData(el.reportForm).get('reason');
  sig.send(P.report(state.reportable, typeof reason === 'string' ? reason : 'other'));
  state.reportable = '';
  el.report.disabled = true;
  if (state.phase === 'matched') {
    endMatch();
    state.phase = 'ended';
  }
  const text = msg('stage.reported');
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
  addTypedInterests();
  ui.showStartError(null);
  const mode = currentMode();
  if (mode === 'video') {
    el.start.disabled = true;
    try {
      state.stream = await preflight();
    } catch (err) {
      ui.showStartError(err instanceof MediaError ? err.shown : msg('media.other', { error: String(err) }));
      return;
    } finally {
      el.start.disabled = false;
    }
    el.localVideo.srcObject = state.stream;
    el.localVideo.play().catch(() => {});
    applyTrackToggles();
    fillDevices().catch(() => {});
    checkReachability().catch(() => {});
  }
  state.mode = mode;
  state.relayOnly = mode === 'video' && el.hideIP.checked;
  ui.setMode(mode);
  ui.clearLog();
  ui.setCommon([]);
  ui.show('chat');
  state.phase = 'waiting';
  el.report.disabled = true;
  sendFind();
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
}

// ---- Camera, microphone, devices -------------------------------------------

function applyTrackToggles() {
  const muted = el.mute.getAttribute('aria-pressed') === 'true';
  const camOff = el.cameraOff.getAttribute('aria-pressed') === 'true';
  for (const t of state.stream?.getAudioTracks() ?? []) t.enabled = !muted;
  for (const t of state.stream?.getVideoTracks() ?? []) t.enabled = !camOff;
  el.localVideo.classList.toggle('off', camOff);
}

el.mute.addEventListener('click', () => {
  ui.setPressed(el.mute, el.mute.getAttribute('aria-pressed') !== 'true');
  applyTrackToggles();
});
el.cameraOff.addEventListener('click', () => {
  ui.setPressed(el.cameraOff, el.cameraOff.getAttribute('aria-pressed') !== 'true');
  applyTrackToggles();
});

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const current = (/** @type {'audio' | 'video'} */ kind) =>
    state.stream?.getTracks().find((t) => t.kind === kind)?.getSettings().deviceId ?? '';
  ui.fillDevices(el.cameraSelect, devices.filter((d) => d.kind === 'videoinput'), current('video'));
  ui.fillDevices(el.micSelect, devices.filter((d) => d.kind === 'audioinput'), current('audio'));
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
  await state.call?.replaceTrack(track);
}

el.cameraSelect.addEventListener('change', () => {
  switchDevice('video', el.cameraSelect.value).catch(() => ui.addMessage('system', msg('devices.cameraFailed')));
});
el.micSelect.addEventListener('change', () => {
  switchDevice('audio', el.micSelect.value).catch(() => ui.addMessage('system', msg('devices.micFailed')));
});
navigator.mediaDevices?.addEventListener('devicechange', () => {
  if (state.stream) fillDevices().catch(() => {});
});

// ---- Page life ---------------------------------------------------------------

window.addEventListener('pagehide', () => {
  // A normal close: the server ends our session and tells the partner now.
  sig.close();
  state.call?.close();
});

// Back from the back/forward cache the session is gone (closed on
// pagehide): start afresh.
window.addEventListener('pageshow', (e) => {
  if (e.persisted) location.reload();
});

mountPicker(el.language);
ui.show('landing');
sig.connect();
