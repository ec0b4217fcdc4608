// @ts-check
// The page's elements and how each piece of state is shown. No protocol or
// WebRTC here: app.js decides, this module renders. Text always goes in with
// textContent, never as HTML, and words come from the catalogs: setters take
// messages (i18n.msg), shown with i18n.show (showMsg here) so a change of language
// re-renders them.

import { msg, show as showMsg, showAttr } from './i18n.js';

/** @typedef {import('./i18n.js').Msg} Msg */

/**
 * @template {HTMLElement} E
 * @param {string} id
 * @param {new () => E} type
 * @returns {E}
 */
function byId(id, type) {
  const e = document.getElementById(id);
  if (!(e instanceof type)) throw new Error(`page: #${id} is missing`);
  return e;
}

export const el = {
  onlineCount: byId('online-count', HTMLElement),
  serverStatus: byId('server-status', HTMLElement),
  landing: byId('landing', HTMLElement),
  startForm: byId('start-form', HTMLFormElement),
  interestInput: byId('interest-input', HTMLInputElement),
  interestList: byId('interest-list', HTMLUListElement),
  hideIP: byId('hide-ip', HTMLInputElement),
  hideIPRow: byId('hide-ip-row', HTMLElement),
  autoNext: byId('auto-next', HTMLInputElement),
  startError: byId('start-error', HTMLElement),
  start: byId('start', HTMLButtonElement),
  chat: byId('chat', HTMLElement),
  remoteVideo: byId('remote-video', HTMLVideoElement),
  localVideo: byId('local-video', HTMLVideoElement),
  stage: byId('stage', HTMLElement),
  stageText: byId('stage-text', HTMLElement),
  waiting: byId('waiting', HTMLElement),
  waitingFallback: byId('waiting-fallback', HTMLElement),
  waitingCount: byId('waiting-count', HTMLElement),
  waitingElapsed: byId('waiting-elapsed', HTMLElement),
  waitingTip: byId('waiting-tip', HTMLElement),
  play: byId('play', HTMLButtonElement),
  connection: byId('connection', HTMLElement),
  connectionPath: byId('connection-path', HTMLElement),
  connectionRtt: byId('connection-rtt', HTMLElement),
  mute: byId('mute', HTMLButtonElement),
  cameraOff: byId('camera-off', HTMLButtonElement),
  cameraSelect: byId('camera-select', HTMLSelectElement),
  micSelect: byId('mic-select', HTMLSelectElement),
  network: byId('network', HTMLElement),
  common: byId('common', HTMLElement),
  chatLog: byId('chat-log', HTMLElement),
  typing: byId('typing', HTMLElement),
  chatForm: byId('chat-form', HTMLFormElement),
  chatInput: byId('chat-input', HTMLInputElement),
  send: byId('send', HTMLButtonElement),
  next: byId('next', HTMLButtonElement),
  stop: byId('stop', HTMLButtonElement),
  report: byId('report', HTMLButtonElement),
  keyHint: byId('key-hint', HTMLElement),
  reportDialog: byId('report-dialog', HTMLDialogElement),
  reportForm: byId('report-form', HTMLFormElement),
  preview: byId('preview', HTMLElement),
  previewVideo: byId('preview-video', HTMLVideoElement),
  previewOn: byId('preview-on', HTMLButtonElement),
  previewBox: byId('preview-box', HTMLElement),
  previewDevices: byId('preview-devices', HTMLElement),
  previewCamera: byId('preview-camera', HTMLSelectElement),
  previewMic: byId('preview-mic', HTMLSelectElement),
  textFallback: byId('text-fallback', HTMLButtonElement),
  remoteCameraOff: byId('remote-camera-off', HTMLElement),
  remoteMuted: byId('remote-muted', HTMLElement),
  language: byId('language', HTMLSelectElement),
};

/** Most messages kept in the log; older ones are dropped. */
const maxLogLines = 500;

/** @param {'landing' | 'chat'} view */
export function show(view) {
  el.landing.hidden = view !== 'landing';
  el.chat.hidden = view !== 'chat';
}

/** @param {'video' | 'text'} mode */
export function setMode(mode) {
  el.chat.dataset.mode = mode;
}

/** @param {number} n */
export function setOnline(n) {
  showMsg(el.onlineCount, msg('header.online', { count: n }));
}

/** @param {Msg | null} m null hides it */
export function setServerStatus(m) {
  showMsg(el.serverStatus, m);
  el.serverStatus.hidden = m === null;
}

/**
 * What is happening in the remote video's place (or above the chat in text
 * mode): looking, connecting, partner left. null hides it.
 * @param {Msg | null} m
 * @param {'info' | 'notice'} [kind]
 */
export function setStage(m, kind = 'info') {
  // Only a change is written (show compares): the line is a live region,
  // and rewriting it with the same words would have them read out again.
  showMsg(el.stageText, m);
  el.stage.hidden = m === null;
  el.stage.dataset.kind = kind;
}

/**
 * The waiting screen under the stage line: motion, how many wait, for how
 * long, a tip. None of it is a live region: it changes every second.
 * @param {boolean} on
 */
export function showWaiting(on) {
  el.waiting.hidden = !on;
}

/**
 * @param {number | null} n sessions waiting in our mode (null: not known yet)
 * @param {'video' | 'text' | ''} mode '' when the server does not say per mode
 */
export function setWaitingCount(n, mode) {
  el.waitingCount.hidden = n === null;
  if (n === null) return;
  const key = mode === 'video' ? 'waiting.countVideo' : mode === 'text' ? 'waiting.countText' : 'waiting.count';
  showMsg(el.waitingCount, msg(key, { count: n }));
}

/** @param {number} ms since we started looking */
export function setWaitingElapsed(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  showMsg(el.waitingElapsed, msg('waiting.elapsed', { time: `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}` }));
}

/** @param {Msg | null} m the interest fallback countdown; null hides it */
export function setWaitingFallback(m) {
  showMsg(el.waitingFallback, m);
  el.waitingFallback.hidden = m === null;
}

/** @param {Msg} m */
export function setWaitingTip(m) {
  showMsg(el.waitingTip, m);
}

/**
 * Next cannot be used while we wait (there is no one to skip). It stays
 * focusable (aria-disabled, not disabled), so the keyboard focus is not lost
 * when it was just pressed.
 * @param {boolean} available
 */
export function setNextAvailable(available) {
  if (available) el.next.removeAttribute('aria-disabled');
  else el.next.setAttribute('aria-disabled', 'true');
}

/** @param {Msg | null} m shown under the Start button; null hides it */
export function showStartError(m) {
  showMsg(el.startError, m);
  el.startError.hidden = m === null;
}

/**
 * @param {import('./rtc.js').CallStatus | null} s null: no call
 */
export function setConnection(s) {
  const c = el.connection;
  if (!s) {
    c.dataset.state = 'idle';
    showMsg(el.connectionPath, null);
    showMsg(el.connectionRtt, null);
    c.title = '';
    return;
  }
  /** @type {Msg} */
  let text;
  /** @type {Msg | null} */
  let rtt = null;
  /** @type {string} data-state: the call's state, or relayed/direct once connected */
  let state = s.state;
  switch (s.state) {
    case 'connecting':
      text = msg('connection.connecting');
      break;
    case 'reconnecting':
      text = msg('connection.reconnecting');
      break;
    case 'failed':
      text = msg('connection.failed', { reason: s.reason ?? '' });
      break;
    default: {
      const transport = (s.transport ?? '').toUpperCase();
      rtt = s.rttMs === undefined ? null : msg('connection.rtt', { ms: s.rttMs });
      if (s.path === 'relayed') {
        state = 'relayed';
        text = transport ? msg('connection.relayedOver', { transport }) : msg('connection.relayed');
      } else if (s.path === 'direct') {
        state = 'direct';
        text = transport ? msg('connection.directOver', { transport }) : msg('connection.direct');
      } else {
        text = msg('connection.connected');
      }
    }
  }
  c.dataset.state = state;
  // The path is a live region, announced when it changes; the round-trip
  // time, rewritten every second, is beside it and is not.
  showMsg(el.connectionPath, text);
  showMsg(el.connectionRtt, rtt);
}

/**
 * A line in the chat: what someone typed, or a message of ours.
 * @param {'you' | 'stranger' | 'system'} who
 * @param {string | Msg} text the words typed (you, stranger) or a message (system)
 * @returns {HTMLElement} the line, for markUnsent
 */
export function addMessage(who, text) {
  const p = document.createElement('p');
  p.className = `msg ${who}`;
  if (who !== 'system') {
    const name = document.createElement('strong');
    showMsg(name, msg(who === 'you' ? 'chat.you' : 'chat.stranger'));
    p.append(name);
  }
  if (typeof text === 'string') p.append(text);
  else {
    const span = document.createElement('span');
    showMsg(span, text);
    p.append(span);
  }
  const log = el.chatLog;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(p);
  while (log.childElementCount > maxLogLines) log.firstElementChild?.remove();
  if (atBottom || who === 'you') log.scrollTop = log.scrollHeight;
  return p;
}

/**
 * Marks one of our lines as not sent (it was typed while the server could
 * not be reached), or clears the mark once it went. The mark is text, so
 * screen readers say it too.
 * @param {HTMLElement} line from addMessage
 * @param {boolean} unsent
 */
export function markUnsent(line, unsent) {
  line.classList.toggle('unsent', unsent);
  const mark = line.querySelector('.unsent-mark');
  if (!unsent) {
    mark?.remove();
    return;
  }
  if (mark) return;
  const m = document.createElement('span');
  m.className = 'unsent-mark';
  showMsg(m, msg('chat.notSent'));
  line.append(' ', m);
}

export function clearLog() {
  el.chatLog.replaceChildren();
}

/** @param {boolean} on */
export function setTyping(on) {
  showMsg(el.typing, on ? msg('chat.typing') : null);
}

/** @param {Msg | null} m a warning about this network; null hides it */
export function setNetworkHint(m) {
  showMsg(el.network, m);
  el.network.hidden = m === null;
}

/** @param {string[]} tags common interests; none hides the line */
export function setCommon(tags) {
  el.common.hidden = tags.length === 0;
  showMsg(el.common, tags.length === 0 ? null : msg('chat.common', { interests: tags }));
}

/**
 * The key hint under the buttons.
 * @param {Msg} m
 */
export function setKeyHint(m) {
  showMsg(el.keyHint, m);
}

/**
 * Enables chat input and Report while matched.
 * @param {boolean} matched
 */
export function setMatched(matched) {
  el.chatInput.disabled = !matched;
  el.send.disabled = !matched;
  el.report.disabled = !matched;
}

/**
 * @param {string[]} tags
 * @param {(tag: string) => void} onRemove
 */
export function renderInterests(tags, onRemove) {
  const items = tags.map((tag) => {
    const li = document.createElement('li');
    li.append(tag);
    const rm = document.createElement('button');
    rm.type = 'button';
    rm.className = 'remove';
    rm.textContent = '\u00d7';
    showAttr(rm, 'aria-label', msg('interests.remove', { tag }));
    rm.addEventListener('click', () => onRemove(tag));
    li.append(rm);
    return li;
  });
  el.interestList.replaceChildren(...items);
}

/**
 * @param {HTMLSelectElement} select
 * @param {MediaDeviceInfo[]} devices of one kind
 * @param {string} currentId
 */
export function fillDevices(select, devices, currentId) {
  const options = devices.map((d, i) => {
    const o = document.createElement('option');
    o.value = d.deviceId;
    if (d.label) o.textContent = d.label;
    else showMsg(o, msg('devices.unnamed', { number: i + 1 }));
    o.selected = d.deviceId === currentId;
    return o;
  });
  select.replaceChildren(...options);
  select.disabled = devices.length < 2;
}

/**
 * The microphone and camera buttons say what pressing them will do; the
 * state they change shows in their look (data-off) and in the label.
 * @param {boolean} micOff
 * @param {boolean} cameraOff
 */
export function setMediaButtons(micOff, cameraOff) {
  showMsg(el.mute, msg(micOff ? 'button.unmute' : 'button.mute'));
  el.mute.dataset.off = String(micOff);
  showMsg(el.cameraOff, msg(cameraOff ? 'button.cameraOn' : 'button.cameraOff'));
  el.cameraOff.dataset.off = String(cameraOff);
}

/**
 * What the stranger told us of their camera and microphone: a notice over
 * their video when the camera is off, a muted sign when the microphone is.
 * @param {boolean} camera on
 * @param {boolean} mic on
 */
export function setRemoteMedia(camera, mic) {
  el.remoteCameraOff.hidden = camera;
  el.remoteMuted.hidden = mic;
}

/**
 * The camera preview on the landing page: the stream once the user allowed
 * the camera (with the device pickers), else the button that asks.
 * @param {MediaStream | null} stream
 */
export function setPreview(stream) {
  const v = el.previewVideo;
  if (v.srcObject !== stream) v.srcObject = stream;
  if (stream) v.play().catch(() => {});
  v.classList.toggle('off', !stream || stream.getVideoTracks().length === 0);
  el.previewOn.hidden = stream !== null;
  el.previewBox.hidden = stream === null;
  el.previewDevices.hidden = stream === null;
}

/**
 * A camera problem under Start, with the one-tap way on in text only.
 * @param {Msg | null} text null hides both
 */
export function showCameraError(text) {
  showStartError(text);
  el.textFallback.hidden = text === null;
}
