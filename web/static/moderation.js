// @ts-check
// Moderation on the page: the rules and 18+ gate before the first Start,
// the still frame a report may carry, the banned screen and the skip
// cooldown. Its words are in the catalogs; text goes in with textContent only.
import * as P from './protocol.js';
import { msg, show } from './i18n.js';

/** Where the browser remembers that the rules were accepted. */
const rulesItem = 'strangers.rulesAccepted';

/** @param {string} id */
function byId(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`page: #${id} is missing`);
  return e;
}

/**
 * Renders a small, safe subset of Markdown: "#" headings, "-" or "*" list
 * items, paragraphs, **bold**. Everything else is text; nothing is parsed
 * as HTML.
 * @param {string} text
 * @param {HTMLElement} into
 */
export function renderRules(text, into) {
  into.replaceChildren();
  /** @type {HTMLUListElement | null} */
  let list = null;
  /** @param {HTMLElement} e @param {string} s */
  const inline = (e, s) => {
    const parts = s.split('**');
    parts.forEach((part, i) => {
      if (part === '') return;
      if (i % 2 === 1 && i < parts.length - 1) {
        const b = document.createElement('strong');
        b.textContent = part;
        e.append(b);
      } else {
        e.append(part);
      }
    });
  };
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const item = /^[-*]\s+(.*)$/.exec(line);
    if (item) {
      if (!list) {
        list = document.createElement('ul');
        into.append(list);
      }
      const li = document.createElement('li');
      inline(li, item[1] ?? '');
      list.append(li);
      continue;
    }
    list = null;
    if (line === '') continue;
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const e = document.createElement(heading ? 'h3' : 'p');
    inline(e, heading ? (heading[2] ?? '') : line);
    into.append(e);
  }
}

/** @returns {boolean} */
function accepted() {
  try {
    return localStorage.getItem(rulesItem) === '1';
  } catch {
    return false;
  }
}

/**
 * Shows the instance's rules and the 18+ confirmation, once per browser.
 * Resolves true once they are accepted (now or before), false if the
 * dialog was cancelled.
 * @returns {Promise<boolean>}
 */
export async function rulesGate() {
  if (accepted()) return true;
  const dialog = /** @type {HTMLDialogElement} */ (byId('rules-dialog'));
  const body = byId('rules-text');
  const age = /** @type {HTMLInputElement} */ (byId('rules-age'));
  const error = byId('rules-error');
  let text = '';
  try {
    const res = await fetch('/rules', { cache: 'no-cache' });
    if (res.ok) text = await res.text();
  } catch {
    // shown below
  }
  if (text) renderRules(text, body);
  else show(body, msg('rules.fallback'));
  age.checked = false;
  error.hidden = true;
  dialog.showModal();
  return new Promise((resolve) => {
    /** @param {Event} e */
    const onSubmit = (e) => {
      const submitter = /** @type {SubmitEvent} */ (e).submitter;
      if (submitter instanceof HTMLButtonElement && submitter.value === 'accept' && !age.checked) {
        e.preventDefault();
        show(error, msg('rules.needAge'));
        error.hidden = false;
        age.focus();
      }
    };
    const form = /** @type {HTMLFormElement} */ (byId('rules-form'));
    form.addEventListener('submit', onSubmit);
    dialog.addEventListener('close', () => {
      form.removeEventListener('submit', onSubmit);
      const ok = dialog.returnValue === 'accept' && age.checked;
      if (ok) {
        try {
          localStorage.setItem(rulesItem, '1');
        } catch {
          // storage disabled: asked again next time
        }
      }
      resolve(ok);
    }, { once: true });
  });
}

/**
 * A still of the stranger's video, drawn when it was taken and encoded
 * only if a report asks for it (so Next costs no JPEG encoding).
 * @typedef {{ encoded: () => Promise<string | null> }} Still
 */

/**
 * Takes a still of a playing video now; encoded() gives it as JPEG,
 * base64, scaled and compressed until it fits maxBytes, or null when
 * nothing fits. Returns null when there is no frame.
 * @param {HTMLVideoElement} video
 * @param {number} maxBytes
 * @returns {Still | null}
 */
export function captureFrame(video, maxBytes) {
  const w = video.videoWidth;
  const h = video.videoHeight;
  if (!w || !h || maxBytes <= 0) return null;
  const scale = Math.min(1, 480 / w);
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(w * scale);
  canvas.height = Math.round(h * scale);
  const ctx = canvas.getContext('2d');
  if (!ctx) return null;
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height); // now, before the call may close
  /** @param {number} q @returns {Promise<Blob | null>} */
  const encode = (q) => new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', q));
  /** @type {Promise<string | null> | null} */
  let done = null;
  const run = async () => {
    for (const q of [0.8, 0.6, 0.4, 0.25]) {
      const blob = await encode(q);
      if (blob && blob.size <= maxBytes) {
        const bytes = new Uint8Array(await blob.arrayBuffer());
        let bin = '';
        for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return btoa(bin);
      }
    }
    return null;
  };
  return { encoded: () => (done ??= run()) };
}

/**
 * Replaces the page with the banned screen: why, until when, how to appeal.
 * @param {P.Banned} m
 */
export function showBanned(m) {
  for (const id of ['landing', 'chat']) byId(id).hidden = true;
  const until = new Date(typeof m.until === 'number' ? m.until : 0);
  show(byId('banned-reason'), msg('banned.reason', { reason: String(m.reason ?? '') }));
  show(byId('banned-until'), msg('banned.until', { time: until.toLocaleString() }));
  byId('banned-until').dataset.until = String(m.until);
  show(byId('banned-appeal'), m.appeal ? msg('banned.appeal', { contact: m.appeal }) : msg('banned.noAppeal'));
  const section = byId('banned');
  section.hidden = false;
  section.focus();
}

/**
 * Counts a cooldown down in place of the stage text, then calls done.
 * Returns a function that cancels it.
 * @param {number} ms
 * @param {(text: import('./i18n.js').Msg) => void} shown
 * @param {() => void} done
 * @returns {() => void}
 */
export function countDown(ms, shown, done) {
  const end = performance.now() + ms;
  const tick = () => {
    const left = Math.ceil((end - performance.now()) / 1000);
    if (left <= 0) {
      clearInterval(timer);
      done();
      return;
    }
    shown(msg('stage.cooldown', { seconds: left }));
  };
  const timer = setInterval(tick, 250);
  tick();
  return () => clearInterval(timer);
}
