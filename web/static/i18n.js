// @ts-check
// The page's words in the visitor's language. Every user-visible string is
// in a catalog, locales/<lang>.js; English (locales/en.js) is the reference
// and the fallback for anything missing.
//
// Elements say which message they show: data-i18n="key" for their text,
// data-i18n-attr="aria-label:key placeholder:key2" for attributes, and
// data-i18n-vars='{"count":2}' (JSON) for placeholder values. Text set from
// code goes through show(), which marks the element the same way, so a
// change of language re-renders the whole page at once, dynamic text
// included.
//
// The language is, in order: the one picked on the page (remembered in
// localStorage), the first of the browser's languages (navigator.languages,
// what it sends as Accept-Language) that we have, English.

import en from './locales/en.js';

/**
 * A catalog maps keys to a text or, for texts with a count, to plural
 * forms by Intl.PluralRules category ("other" is always there). Texts have
 * {name} placeholders.
 * @typedef {{zero?: string, one?: string, two?: string, few?: string, many?: string, other: string}} PluralForms
 * @typedef {Record<string, string | PluralForms>} Catalog
 */

/**
 * A message to show: a key and its placeholders' values. A list is joined
 * the language's way ("a, b and c"); a message inside is translated too.
 * The plural form follows the value named count.
 * @typedef {{key: string, vars?: Vars}} Msg
 * @typedef {{[name: string]: string | number | string[] | Msg}} Vars
 */

/**
 * The catalogs we ship and how to load each: only the chosen one is
 * fetched (English is always there, as the fallback).
 * @type {Record<string, () => Promise<{default: Catalog}>>}
 */
const catalogs = {
  en: async () => ({ default: en }),
  es: () => import('./locales/es.js'),
  'pt-BR': () => import('./locales/pt-BR.js'),
  fr: () => import('./locales/fr.js'),
  de: () => import('./locales/de.js'),
  ru: () => import('./locales/ru.js'),
  tr: () => import('./locales/tr.js'),
  ar: () => import('./locales/ar.js'),
};

/** Languages written right to left. */
const rtl = new Set(['ar', 'fa', 'he', 'ur']);

/** Where the language picked on the page is remembered. */
const storageKey = 'strangers-language';

let lang = 'en';
/** @type {Catalog} */
let catalog = en;
let plurals = new Intl.PluralRules('en');
let lists = new Intl.ListFormat('en', { type: 'conjunction' });
/** Counts calls of setLanguage: only the latest one applies. */
let generation = 0;

/** @returns {string[]} the languages we have, as BCP 47 tags */
export function supported() {
  return Object.keys(catalogs);
}

/** @returns {string} the current language */
export function language() {
  return lang;
}

/**
 * The supported language that best serves tag: the same tag, or the same
 * language in another region ("es-MX" → "es", "pt-PT" → "pt-BR").
 * @param {string | null | undefined} tag
 * @returns {string | null}
 */
export function match(tag) {
  if (!tag) return null;
  const want = tag.split(';')[0].trim().toLowerCase(); // "de;q=0.8" → "de"
  const codes = supported();
  const exact = codes.find((c) => c.toLowerCase() === want);
  if (exact) return exact;
  const base = want.split('-')[0];
  return codes.find((c) => c.toLowerCase().split('-')[0] === base) ?? null;
}

/** @returns {string | null} the language picked on the page before */
function remembered() {
  try {
    return localStorage.getItem(storageKey);
  } catch {
    return null; // storage disabled
  }
}

/** @returns {string} the language to start with */
export function initialLanguage() {
  for (const tag of [remembered(), ...(navigator.languages ?? [navigator.language])]) {
    const m = match(tag);
    if (m) return m;
  }
  return 'en';
}

/**
 * The text of a message in the current language.
 * @param {string} key
 * @param {Vars} [vars]
 * @returns {string}
 */
export function t(key, vars) {
  const entry = catalog[key] ?? en[key];
  if (entry === undefined) return key;
  let text;
  if (typeof entry === 'string') text = entry;
  else {
    const n = Number(vars?.count ?? 0);
    text = entry[plurals.select(n)] ?? entry.other;
  }
  return text.replace(/\{(\w+)\}/g, (whole, /** @type {string} */ name) => {
    const v = vars?.[name];
    if (v === undefined) return whole;
    if (typeof v === 'string') return v;
    if (typeof v === 'number') return String(v);
    if (Array.isArray(v)) return lists.format(v);
    return t(v.key, v.vars);
  });
}

/**
 * A message, to show later (or to pass as another message's value).
 * @param {string} key
 * @param {Vars} [vars]
 * @returns {Msg}
 */
export function msg(key, vars) {
  return vars ? { key, vars } : { key };
}

/**
 * Sets an attribute only if it differs (live regions and observers should
 * not see a rewrite that changes nothing).
 * @param {Element} e
 * @param {string} name
 * @param {string | null} value null removes it
 */
function setAttr(e, name, value) {
  if (value === null) e.removeAttribute(name);
  else if (e.getAttribute(name) !== value) e.setAttribute(name, value);
}

/**
 * Shows a message as the element's text, now and after every change of
 * language; null empties the element. The text is only written when it
 * changes.
 * @param {Element} e
 * @param {Msg | null} m
 */
export function show(e, m) {
  setAttr(e, 'data-i18n', m ? m.key : null);
  setAttr(e, 'data-i18n-vars', m?.vars ? JSON.stringify(m.vars) : null);
  const text = m ? t(m.key, m.vars) : '';
  if (e.textContent !== text) e.textContent = text;
}

/**
 * Shows a message in one of the element's attributes (aria-label, title…),
 * now and after every change of language.
 * @param {Element} e
 * @param {string} attr
 * @param {Msg} m
 */
export function showAttr(e, attr, m) {
  setAttr(e, 'data-i18n-attr', `${attr}:${m.key}`);
  setAttr(e, 'data-i18n-vars', m.vars ? JSON.stringify(m.vars) : null);
  setAttr(e, attr, t(m.key, m.vars));
}

/** @param {string | null} json @returns {Vars | undefined} */
function parseVars(json) {
  if (!json) return undefined;
  try {
    const v = JSON.parse(json);
    return v !== null && typeof v === 'object' ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Translates root and everything in it marked with data-i18n or
 * data-i18n-attr.
 * @param {Element} root
 */
export function applyTranslations(root) {
  const marked = [root, ...root.querySelectorAll('[data-i18n], [data-i18n-attr]')];
  for (const e of marked) {
    const key = e.getAttribute('data-i18n');
    const attrs = e.getAttribute('data-i18n-attr');
    if (!key && !attrs) continue;
    const vars = parseVars(e.getAttribute('data-i18n-vars'));
    if (key) {
      const text = t(key, vars);
      if (e.textContent !== text) e.textContent = text;
    }
    for (const pair of (attrs ?? '').split(/\s+/)) {
      const at = pair.indexOf(':');
      if (at > 0) setAttr(e, pair.slice(0, at), t(pair.slice(at + 1), vars));
    }
  }
}

/**
 * Switches the page to a language (the closest we have; English if none):
 * loads its catalog, sets <html lang> and dir, and translates the page.
 * @param {string} tag
 * @param {boolean} [remember] keep it for the next visit (picked on the page)
 */
export async function setLanguage(tag, remember = false) {
  const code = match(tag) ?? 'en';
  const mine = ++generation;
  if (remember) {
    try {
      localStorage.setItem(storageKey, code);
    } catch {
      // storage disabled: it lasts for this page only
    }
  }
  /** @type {Catalog} */
  let next = en;
  let loaded = code;
  try {
    next = (await (catalogs[code] ?? catalogs.en)()).default;
  } catch (err) {
    console.warn(`language ${code}:`, err);
    loaded = 'en';
  }
  if (mine !== generation) return; // a later choice won
  lang = loaded;
  catalog = next;
  plurals = new Intl.PluralRules(loaded);
  lists = new Intl.ListFormat(loaded, { type: 'conjunction' });
  const html = document.documentElement;
  html.lang = loaded;
  html.dir = rtl.has(loaded.split('-')[0]) ? 'rtl' : 'ltr';
  applyTranslations(html);
  const picker = document.getElementById('language');
  if (picker instanceof HTMLSelectElement) picker.value = loaded;
}

/**
 * A language's name in itself ("Deutsch", "Français"): the picker lists
 * them so, and no catalog needs to name the others.
 * @param {string} code
 * @returns {string}
 */
function nameOf(code) {
  let name = code;
  try {
    name = new Intl.DisplayNames([code], { type: 'language' }).of(code) ?? code;
  } catch {
    // no display names in this browser: the tag will do
  }
  return name.charAt(0).toLocaleUpperCase(code) + name.slice(1);
}

/**
 * Fills the language picker and makes it switch the page at once (and
 * remember the choice).
 * @param {HTMLSelectElement} select
 */
export function mountPicker(select) {
  const options = supported().map((code) => {
    const o = document.createElement('option');
    o.value = code;
    o.lang = code;
    o.textContent = nameOf(code);
    return o;
  });
  select.replaceChildren(...options);
  select.value = lang;
  select.addEventListener('change', () => {
    setLanguage(select.value, true).catch(() => {});
  });
}

await setLanguage(initialLanguage());
