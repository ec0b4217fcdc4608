// @ts-check
// How the call is looked at: fullscreen and picture-in-picture for the
// stranger's video, and our own preview as a small picture the user can
// drag anywhere on a phone (it always stays on the screen) and flip
// (mirror) anywhere. It also registers the service worker. It only reads
// the page's elements; app.js does not need to know about any of it.

import { t } from './i18n.js';

/**
 * Names a button's state in its tooltip (its accessible name stays, with
 * aria-pressed), now and after every change of language.
 * @param {HTMLElement} button
 * @param {string} labelKey catalog key of its accessible name
 * @param {string} titleKey catalog key of its tooltip
 */
function setTitle(button, labelKey, titleKey) {
  button.setAttribute('data-i18n-attr', `aria-label:${labelKey} title:${titleKey}`);
  button.title = t(titleKey);
}

/** localStorage key of the mirror setting ('off' when not mirrored). */
const mirrorKey = 'strangers.mirror';

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

const chat = byId('chat', HTMLElement);
const remoteVideo = byId('remote-video', HTMLVideoElement);
const localBox = byId('local', HTMLElement);
/** The stranger's video box: the preview moves only over it, never over the buttons. */
const remoteBox = localBox.parentElement?.querySelector('.remote') ?? chat;
const localVideo = byId('local-video', HTMLVideoElement);
const fullscreenButton = byId('fullscreen', HTMLButtonElement);
const pipButton = byId('pip', HTMLButtonElement);
const mirrorButton = byId('mirror', HTMLButtonElement);

// ---- Fullscreen: the whole call view, so chat and buttons stay at hand --------

/**
 * iPhones have no fullscreen for elements, only for a video, in their own
 * player.
 * @type {HTMLVideoElement & { webkitEnterFullscreen?: () => void }}
 */
const appleVideo = remoteVideo;

fullscreenButton.hidden = !document.fullscreenEnabled && typeof appleVideo.webkitEnterFullscreen !== 'function';

fullscreenButton.addEventListener('click', () => {
  if (!document.fullscreenEnabled) {
    if (remoteVideo.readyState >= HTMLMediaElement.HAVE_METADATA) appleVideo.webkitEnterFullscreen?.();
  } else if (document.fullscreenElement) {
    document.exitFullscreen().catch(() => {});
  } else {
    chat.requestFullscreen({ navigationUI: 'hide' }).catch(() => {});
  }
});

document.addEventListener('fullscreenchange', () => {
  const on = document.fullscreenElement === chat;
  fullscreenButton.setAttribute('aria-pressed', String(on));
  setTitle(fullscreenButton, 'video.fullscreen', on ? 'video.exitFullscreen' : 'video.fullscreen');
});

// ---- Picture in picture: the stranger's video over other apps -----------------

pipButton.hidden = !document.pictureInPictureEnabled || remoteVideo.disablePictureInPicture;

function pipAvailable() {
  pipButton.disabled = remoteVideo.srcObject === null || remoteVideo.readyState < HTMLMediaElement.HAVE_METADATA;
}

for (const ev of ['loadedmetadata', 'emptied', 'playing']) remoteVideo.addEventListener(ev, pipAvailable);

pipButton.addEventListener('click', () => {
  if (document.pictureInPictureElement) document.exitPictureInPicture().catch(() => {});
  else remoteVideo.requestPictureInPicture().catch(() => {});
});

/** @param {boolean} on */
function pipChanged(on) {
  pipButton.setAttribute('aria-pressed', String(on));
  setTitle(pipButton, 'video.pip', on ? 'video.exitPip' : 'video.pip');
}
remoteVideo.addEventListener('enterpictureinpicture', () => pipChanged(true));
remoteVideo.addEventListener('leavepictureinpicture', () => pipChanged(false));

// The call ended: its picture-in-picture window goes with it.
new MutationObserver(() => {
  if (remoteVideo.srcObject === null && document.pictureInPictureElement === remoteVideo) {
    document.exitPictureInPicture().catch(() => {});
  }
  pipAvailable();
}).observe(chat, { attributes: true, attributeFilter: ['hidden', 'data-mode'] });

// ---- Our preview: mirrored or not, and movable on a phone --------------------

/** @param {boolean} on */
function setMirror(on) {
  localVideo.classList.toggle('mirror', on);
  mirrorButton.setAttribute('aria-pressed', String(on));
}

mirrorButton.addEventListener('click', () => {
  const on = mirrorButton.getAttribute('aria-pressed') !== 'true';
  setMirror(on);
  try {
    if (on) localStorage.removeItem(mirrorKey);
    else localStorage.setItem(mirrorKey, 'off');
  } catch {}
});

try {
  setMirror(localStorage.getItem(mirrorKey) !== 'off');
} catch {}

/**
 * Where the user put the preview: its top-left corner relative to the call
 * view, or null for the stylesheet's corner.
 * @type {{ x: number, y: number } | null}
 */
let placed = null;

/** The preview floats (phone layouts) rather than sitting in the column. */
function floating() {
  return getComputedStyle(localBox).position === 'absolute';
}

/**
 * Puts the preview at (x, y) in the call view's coordinates, moved back as
 * little as needed to lie wholly inside both the stranger's video and the
 * screen.
 * @param {number} x
 * @param {number} y
 */
function place(x, y) {
  const view = chat.getBoundingClientRect();
  const area = remoteBox.getBoundingClientRect();
  const box = localBox.getBoundingClientRect();
  const vv = window.visualViewport;
  const screenW = vv ? vv.width : window.innerWidth;
  const screenH = vv ? vv.height : window.innerHeight;
  const margin = 4;
  const left = Math.max(area.left, 0) + margin;
  const top = Math.max(area.top, 0) + margin;
  const right = Math.min(area.right, screenW) - margin - box.width;
  const bottom = Math.min(area.bottom, screenH) - margin - box.height;
  const px = Math.max(left, Math.min(view.left + x, right));
  const py = Math.max(top, Math.min(view.top + y, bottom));
  placed = { x: px - view.left, y: py - view.top };
  localBox.style.setProperty('left', `${placed.x}px`);
  localBox.style.setProperty('top', `${placed.y}px`);
  localBox.style.setProperty('right', 'auto');
  localBox.style.setProperty('bottom', 'auto');
}

/** Back to the stylesheet's corner. */
function unplace() {
  placed = null;
  for (const p of ['left', 'top', 'right', 'bottom']) localBox.style.removeProperty(p);
}

/** After a resize or rotation: still wholly on the screen. */
function keepInside() {
  if (chat.hidden) return;
  if (!floating()) {
    unplace();
    return;
  }
  if (placed) place(placed.x, placed.y);
}

/** @type {{ id: number, dx: number, dy: number } | null} */
let drag = null;

localBox.addEventListener('pointerdown', (e) => {
  if (!floating() || !e.isPrimary) return;
  const box = localBox.getBoundingClientRect();
  drag = { id: e.pointerId, dx: e.clientX - box.left, dy: e.clientY - box.top };
  localBox.setPointerCapture(e.pointerId);
  localBox.classList.add('dragging');
  e.preventDefault();
});

localBox.addEventListener('pointermove', (e) => {
  if (!drag || e.pointerId !== drag.id) return;
  const view = chat.getBoundingClientRect();
  place(e.clientX - drag.dx - view.left, e.clientY - drag.dy - view.top);
});

/** @param {PointerEvent} e */
function endDrag(e) {
  if (!drag || e.pointerId !== drag.id) return;
  drag = null;
  localBox.classList.remove('dragging');
}
localBox.addEventListener('pointerup', endDrag);
localBox.addEventListener('pointercancel', endDrag);

window.addEventListener('resize', keepInside);
window.visualViewport?.addEventListener('resize', keepInside);
new ResizeObserver(keepInside).observe(chat);

// ---- Installable: the service worker for the static files ---------------------

if ('serviceWorker' in navigator && window.isSecureContext) {
  navigator.serviceWorker.register('sw.js').catch((err) => console.warn('service worker:', err));
}
