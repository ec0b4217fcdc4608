// @ts-check
// What draws the user back to a tab in the background: the title says a
// stranger was found and counts unread messages, and a short sound plays
// (made with WebAudio, no audio file) unless the user muted it with the
// sound button in the header. Nothing happens while the tab is visible;
// coming back to it restores the title.

import { t } from './i18n.js';


/** localStorage key of the mute setting ('off' when muted). */
const storageKey = 'strangers.sound';

/** @typedef {'match' | 'message'} Cue */

/**
 * The two cues: notes (Hz) played in turn, each this long (s). A match
 * rises, a message is one short blip.
 * @type {Record<Cue, { notes: number[], step: number }>}
 */
const tunes = {
  match: { notes: [660, 880], step: 0.12 },
  message: { notes: [740], step: 0.09 },
};

const state = {
  /** @type {AudioContext | null} made on the first user gesture that allows sound */
  audio: null,
  found: false,
  unread: 0,
  /** Cues still sounding; the context is suspended when none is. */
  playing: 0,
  /** The page's own title, kept while ours shows; null when ours does not. */
  /** @type {string | null} */
  saved: null,
};

const button = document.getElementById('sound');

/** @returns {boolean} */
function soundOn() {
  try {
    return localStorage.getItem(storageKey) !== 'off';
  } catch {
    return true; // storage blocked: sound stays on, unremembered
  }
}

/** @param {boolean} on */
function setSoundOn(on) {
  try {
    if (on) localStorage.removeItem(storageKey);
    else localStorage.setItem(storageKey, 'off');
  } catch {}
  button?.setAttribute('aria-pressed', String(on));
}

button?.addEventListener('click', () => {
  const on = button.getAttribute('aria-pressed') !== 'true';
  setSoundOn(on);
  if (on) unlock();
});
button?.setAttribute('aria-pressed', String(soundOn()));

/**
 * Makes the audio context. Browsers allow sound only after a user gesture,
 * so this runs on one: Start, or turning sound on. The context is
 * suspended between cues (a running one keeps the audio device busy, which
 * costs a phone's battery); once allowed, it may resume without a gesture.
 */
export function unlock() {
  const AC = window.AudioContext;
  if (!AC) return;
  try {
    const ctx = (state.audio ??= new AC());
    ctx.resume().then(() => (state.playing === 0 ? ctx.suspend() : undefined)).catch(() => {});
  } catch {
    state.audio = null;
  }
}

/** @returns {boolean} */
function hidden() {
  return document.visibilityState === 'hidden';
}

function renderTitle() {
  if (!state.found && state.unread === 0) {
    if (state.saved !== null) document.title = state.saved;
    state.saved = null;
    return;
  }
  state.saved ??= document.title;
  const base = state.found ? t('title.found') : state.saved;
  const title = state.unread > 0 ? t('title.unread', { count: state.unread, title: base }) : base;
  if (document.title !== title) document.title = title;
}

/** @param {Cue} cue */
function play(cue) {
  const ctx = state.audio;
  if (!ctx || !soundOn()) return;
  state.playing++;
  ctx
    .resume()
    .then(() => {
      const seconds = schedule(ctx, cue);
      // Tells whoever listens (tests, say) that a cue is playing.
      window.dispatchEvent(new CustomEvent('strangers:cue', { detail: cue }));
      return new Promise((resolve) => setTimeout(resolve, seconds * 1000 + 100));
    })
    .catch(() => {})
    .finally(() => {
      state.playing--;
      if (state.playing === 0) ctx.suspend().catch(() => {});
    });
}

/**
 * Schedules a cue's notes on a running context.
 * @param {AudioContext} ctx
 * @param {Cue} cue
 * @returns {number} how long it lasts, in seconds
 */
function schedule(ctx, cue) {
  const { notes, step } = tunes[cue];
  const t0 = ctx.currentTime + 0.01;
  notes.forEach((hz, i) => {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    const at = t0 + i * step;
    osc.type = 'sine';
    osc.frequency.value = hz;
    // A soft attack and decay: no click, not loud.
    gain.gain.setValueAtTime(0, at);
    gain.gain.linearRampToValueAtTime(0.15, at + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.001, at + step);
    osc.connect(gain).connect(ctx.destination);
    osc.start(at);
    osc.stop(at + step + 0.02);
  });
  return 0.01 + notes.length * step + 0.02;
}

/** A stranger was found. */
export function matched() {
  if (!hidden()) return;
  state.found = true;
  state.unread = 0;
  renderTitle();
  play('match');
}

/** The stranger wrote. */
export function message() {
  if (!hidden()) return;
  state.unread++;
  renderTitle();
  play('message');
}

document.addEventListener('visibilitychange', () => {
  if (hidden()) return;
  state.found = false;
  state.unread = 0;
  renderTitle();
});

// Start is a user gesture: the moment to get permission to play sound.
document.getElementById('start-form')?.addEventListener('submit', unlock);
