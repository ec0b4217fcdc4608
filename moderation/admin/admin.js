// @ts-check
// The moderation page: it speaks only to the admin API of the listener it
// was loaded from, with the bearer token the moderator typed (kept in
// sessionStorage, never a cookie).

/** Strings the page shows, in one place. */
const S = Object.freeze({
  signedOut: 'Enter the admin token (the content of STRANGERS_ADMIN_TOKEN_FILE).',
  badToken: 'The token was refused.',
  noReports: 'No open reports.',
  ban: 'Ban',
  dismiss: 'Dismiss',
  lift: 'Lift',
  unshadow: 'Take out',
  reasonLabel: 'Reason shown to the banned user ',
  defaultReason: 'Breaking the house rules',
  noReason: 'Give a reason.',
  frameAlt: 'Still frame of the reported user, taken by the reporter',
  noFrame: 'No still frame.',
  done: 'Done.',
  failed: 'Failed: ',
});

const tokenKey = 'strangers.admin.token';

/** @param {string} id */
function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el;
}

const status = byId('status');
const main = byId('main');
const tokenInput = /** @type {HTMLInputElement} */ (byId('token'));
const durationSelect = /** @type {HTMLSelectElement} */ (byId('ban-duration'));

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(tokenKey) ?? ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`/api/v1/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'omit', cache: 'no-store' });
  if (res.status === 401) {
    sessionStorage.removeItem(tokenKey);
    main.hidden = true;
    throw new Error(S.badToken);
  }
  if (res.status === 204) return null;
  const data = await res.json();
  if (!res.ok) throw new Error(data.error ?? res.statusText);
  return data;
}

/**
 * @param {string} tag
 * @param {Record<string, string>} [attrs]
 * @param {(Node | string)[]} [children]
 */
function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}

/** @param {string} t */
const when = (t) => (t ? new Date(t).toLocaleString() : '');

/** @param {string} label @param {() => Promise<void>} action @param {string} [cls] */
function button(label, action, cls = '') {
  const b = /** @type {HTMLButtonElement} */ (h('button', { type: 'button', class: cls }, [label]));
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await action();
      status.textContent = S.done;
      await refresh();
    } catch (e) {
      status.textContent = S.failed + (e instanceof Error ? e.message : String(e));
      b.disabled = false;
    }
  });
  return b;
}

/** @param {any} r a report */
async function reportCard(r) {
  const full = await api('GET', `reports/${encodeURIComponent(r.id)}`);
  const chat = h('ol', { class: 'chat', 'aria-label': 'Last chat lines' },
    full.chat.map((/** @type {any} */ l) => h('li', { class: l.from }, [`${l.from}: ${l.text}`])));
  const frame = full.frame
    ? h('img', { class: 'frame', alt: S.frameAlt, src: `data:image/jpeg;base64,${full.frame}` })
    : h('p', {}, [S.noFrame]);
  const inputId = `reason-${r.id}`;
  const reasonLabel = h('label', { for: inputId }, [S.reasonLabel]);
  const reasonInput = /** @type {HTMLInputElement} */ (h('input', { id: inputId, type: 'text', maxlength: '200' }));
  reasonInput.value = r.reason ? `Reported for ${r.reason}` : S.defaultReason;
  const li = h('li', { 'data-report': r.id }, [
    h('p', {}, [h('strong', {}, [r.reason || 'no reason']), ` \u2014 ${when(r.time)}${r.ended ? ' (after the match ended)' : ' (during the call)'}`]),
    r.note ? h('p', {}, [`Note: ${r.note}`]) : '',
    h('p', { class: 'hint' }, [`reported client ${r.reported.client}, weight ${r.weight.toFixed(2)}`]),
    frame,
    chat,
    reasonLabel,
    reasonInput,
    button(S.ban, async () => {
      const reason = reasonInput.value.trim();
      if (!reason) throw new Error(S.noReason);
      await api('POST', `reports/${encodeURIComponent(r.id)}/act`, { reason, duration: durationSelect.value || undefined });
    }, 'danger'),
    ' ',
    button(S.dismiss, () => api('POST', `reports/${encodeURIComponent(r.id)}/dismiss`, {})),
  ]);
  return li;
}

async function refresh() {
  const [stats, reports, bans, pool, audit] = await Promise.all([
    api('GET', 'stats'), api('GET', 'reports?status=open'), api('GET', 'bans'), api('GET', 'pool'), api('GET', 'audit'),
  ]);
  main.hidden = false;
  byId('stats').replaceChildren(...Object.entries(stats).flatMap(([k, v]) => [h('dt', {}, [k]), h('dd', {}, [String(v)])]));
  const list = byId('reports');
  list.replaceChildren(...(reports.length ? await Promise.all(reports.map(reportCard)) : [h('li', {}, [S.noReports])]));
  const now = Date.now();
  byId('bans').replaceChildren(...bans.map((/** @type {any} */ b) => {
    const active = !b.lifted && new Date(b.until).getTime() > now;
    return h('tr', { 'data-ban': b.id }, [
      h('td', {}, [when(b.created)]), h('td', {}, [b.lifted ? `lifted ${when(b.lifted)}` : when(b.until)]),
      h('td', {}, [[b.client && `client ${b.client}`, b.addr && `address ${b.addr}`].filter(Boolean).join(', ')]),
      h('td', {}, [b.reason]), h('td', {}, [b.by]),
      h('td', {}, [active ? button(S.lift, () => api('DELETE', `bans/${encodeURIComponent(b.id)}`)) : '']),
    ]);
  }));
  byId('pool').replaceChildren(...pool.map((/** @type {any} */ p) => h('tr', {}, [
    h('td', {}, [when(p.since)]), h('td', {}, [when(p.until)]), h('td', {}, [p.client]), h('td', {}, [String(p.reporters)]),
    h('td', {}, [button(S.unshadow, () => api('DELETE', `pool/${encodeURIComponent(p.client)}`))]),
  ])));
  byId('audit').replaceChildren(...audit.map((/** @type {any} */ e) => h('tr', {}, [
    h('td', {}, [when(e.time)]), h('td', {}, [e.token]), h('td', {}, [e.action]), h('td', {}, [e.target]), h('td', {}, [e.detail ?? '']),
  ])));
}

byId('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(tokenKey, tokenInput.value.trim());
  tokenInput.value = '';
  try {
    await refresh();
    status.textContent = '';
  } catch (e) {
    status.textContent = e instanceof Error ? e.message : String(e);
  }
});

if (sessionStorage.getItem(tokenKey)) {
  refresh().catch((e) => { status.textContent = e instanceof Error ? e.message : String(e); });
} else {
  status.textContent = S.signedOut;
}
