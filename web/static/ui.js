// @ts-check
// The page's elements and how each piece of state is shown. No protocol or
// WebRTC here: app.js decides, this module renders. Text always goes in with
// textContent, never as HTML.

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
};

/**
 * The words this module writes for the camera, microphone and chat
 * delivery controls (the rest of the page's words are in index.html and
 * app.js).
 */
const words = Object.freeze({
  muteMic: 'Mute mic',
  unmuteMic: 'Unmute mic',
  cameraOff: 'Camera off',
  cameraOn: 'Camera on',
  notSent: 'not sent',
});

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
  el.onlineCount.textContent = `${n} ${n === 1 ? 'stranger' : 'strangers'}`;
}

/** @param {string} text empty hides it */
export function setServerStatus(text) {
  el.serverStatus.textContent = text;
  el.serverStatus.hidden = text === '';
}

/**
 * What is happening in the remote video's place (or above the chat in text
 * mode): looking, connecting, partner left. Empty hides it.
 * @param {string} text
 * @param {'info' | 'notice'} [kind]
 */
export function setStage(text, kind = 'info') {
  // Only a change is written: the line is a live region, and rewriting it
  // with the same words would have them read out again.
  setText(el.stageText, text);
  el.stage.hidden = text === '';
  el.stage.dataset.kind = kind;
}

/**
 * Sets an element's text only if it differs.
 * @param {HTMLElement} e
 * @param {string} text
 */
function setText(e, text) {
  if (e.textContent !== text) e.textContent = text;
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
  const what = mode === 'video' ? ' for video chat' : mode === 'text' ? ' for text chat' : '';
  setText(el.waitingCount, `${n} waiting${what} \u00b7`);
}

/** @param {number} ms since we started looking */
export function setWaitingElapsed(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  setText(el.waitingElapsed, `waited ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`);
}

/** @param {string} text the interest fallback countdown; empty hides it */
export function setWaitingFallback(text) {
  setText(el.waitingFallback, text);
  el.waitingFallback.hidden = text === '';
}

/** @param {string} text */
export function setWaitingTip(text) {
  setText(el.waitingTip, text);
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

/** @param {string} text shown under the Start button; empty hides it */
export function showStartError(text) {
  el.startError.textContent = text;
  el.startError.hidden = text === '';
}

/**
 * @param {import('./rtc.js').CallStatus | null} s null: no call
 */
export function setConnection(s) {
  const c = el.connection;
  if (!s) {
    c.dataset.state = 'idle';
    setText(el.connectionPath, '');
    setText(el.connectionRtt, '');
    c.title = '';
    return;
  }
  let text;
  let rtt = '';
  /** @type {string} data-state: the call's state, or relayed/direct once connected */
  let state = s.state;
  switch (s.state) {
    case 'connecting':
      text = 'Connecting\u2026';
      break;
    case 'reconnecting':
      text = 'Connection interrupted, recovering\u2026';
      break;
    case 'failed':
      text = `Could not connect. ${s.reason ?? ''}`;
      break;
    default: {
      const transport = (s.transport ?? '').toUpperCase();
      rtt = s.rttMs === undefined ? '' : ` \u00b7 ${s.rttMs} ms`;
      if (s.path === 'relayed') {
        state = 'relayed';
        text = `Relayed${transport ? ` (TURN over ${transport})` : ''}`;
      } else if (s.path === 'direct') {
        state = 'direct';
        text = `Direct${transport ? ` (${transport})` : ''}`;
      } else {
        text = 'Connected';
      }
    }
  }
  c.dataset.state = state;
  // The path is a live region, announced when it changes; the round-trip
  // time, rewritten every second, is beside it and is not.
  setText(el.connectionPath, text);
  setText(el.connectionRtt, rtt);
}

/**
 * @param {'you' | 'stranger' | 'system'} who
 * @param {string} text
 * @returns {HTMLElement} the line, for markUnsent
 */
export function addMessage(who, text) {
  const p = document.createElement('p');
  p.className = `msg ${who}`;
  if (who !== 'system') {
    const name = document.createElement('strong');
    name.textContent = who === 'you' ? 'You: ' : 'Stranger: ';
    p.append(name);
  }
  p.append(text);
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
  m.textContent = ` (${words.notSent})`;
  line.append(m);
}

export function clearLog() {
  el.chatLog.replaceChildren();
}

/** @param {boolean} on */
export function setTyping(on) {
  el.typing.textContent = on ? 'Stranger is typing\u2026' : '';
}

/** @param {string} text a warning about this network; empty hides it */
export function setNetworkHint(text) {
  el.network.textContent = text;
  el.network.hidden = text === '';
}

/** @param {string[]} tags common interests; none hides the line */
export function setCommon(tags) {
  el.common.hidden = tags.length === 0;
  el.common.textContent = tags.length === 0 ? '' : `You both like ${listText(tags)}.`;
}

/** @param {string[]} items @returns {string} */
export function listText(items) {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
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
    rm.setAttribute('aria-label', `Remove ${tag}`);
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
    o.textContent = d.label || `Device ${i + 1}`;
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
  setText(el.mute, micOff ? words.unmuteMic : words.muteMic);
  el.mute.dataset.off = String(micOff);
  setText(el.cameraOff, cameraOff ? words.cameraOn : words.cameraOff);
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
 * @param {string} text empty hides both
 */
export function showCameraError(text) {
  showStartError(text);
  el.textFallback.hidden = text === '';
}
