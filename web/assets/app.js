// Bridgehead console. One module, no framework, no build step. It reads GET /v1/status every
// second (and /v1/peer/status when the stamp has a peer), draws tiles and two charts, sends
// test messages and manages dead letters. Every string from the server goes into the page as
// text (textContent), never as HTML.
'use strict';

const POLL_MS = 1000;
const HISTORY_S = 300; // the charts' window
const KEY_STORAGE = 'bridgehead.apiKey';
// A backlog with no delivery for this long is shown as stalled (?stallSeconds=N overrides).
const STALL_MS = (Number(new URLSearchParams(location.search).get('stallSeconds')) || 30) * 1000;
// An unreachable peer is asked again after 1, 2, 4 … up to this many seconds, not every second.
const PEER_BACKOFF_MAX_S = 30;
const $ = (sel, root = document) => root.querySelector(sel);

// ---------- the API ----------

// ApiError is a failed request: a problem+json answer, another HTTP error or no answer at all.
class ApiError extends Error {
  constructor(status, title, detail, errors) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.errors = errors || [];
  }

  // describe says what went wrong in words for the page; admin says the route needs the admin role.
  describe(admin = false) {
    if (this.status === 401) return `${this.title}: ${this.detail || 'credentials needed'} (set or check the API key at the top of the page)`;
    if (this.status === 403) return admin ? `Forbidden: admin role required. ${this.detail || ''}`.trim() : `Forbidden: ${this.detail || this.title}`;
    let s = this.message;
    const fields = this.errors.map((e) => (e.field ? `${e.field}: ${e.detail}` : e.detail)).filter(Boolean);
    if (fields.length) s += ` (${fields.join('; ')})`;
    return s;
  }
}

// api calls the stamp's API and returns the decoded JSON answer, or throws an ApiError.
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers['X-Api-Key'] = key;
  const init = { method, headers, cache: 'no-store', signal: AbortSignal.timeout(10000) };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'No answer', `the stamp did not answer (${e.message || e})`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: an error page from a proxy, say; the status says enough
  }
  if (!res.ok) {
    const p = data && typeof data === 'object' ? data : {};
    throw new ApiError(res.status, p.title || `${res.status} ${res.statusText}`, p.detail || '', p.errors);
  }
  return data;
}

// ---------- formatting ----------

const numFmt = new Intl.NumberFormat('en');
const fmtNum = (n) => (n == null ? '–' : numFmt.format(n));

function fmtBytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

function fmtAge(s) {
  if (s == null) return '–';
  s = Math.floor(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const fmtRate = (r) => (r == null ? '–' : r < 10 ? r.toFixed(1) : numFmt.format(Math.round(r)));

function fmtSeconds(s) {
  if (!s) return '–';
  if (s < 0.001) return `${(s * 1000).toFixed(2)} ms`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms`;
  return `${s.toFixed(2)} s`;
}

const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '–');

// set writes text into the element, and optionally its raw value into data-v (for tests and tools).
function set(el, text, value) {
  el.textContent = text;
  if (value !== undefined) el.dataset.v = String(value);
}

// ---------- a stamp's panel (this stamp, and the peer) ----------

class Panel {
  constructor(section, which) {
    this.section = section;
    section.append($('#stamp-tpl').content.cloneNode(true));
    this.f = {};
    for (const el of section.querySelectorAll('[data-f]')) this.f[el.dataset.f] = el;
    set(this.f.which, which);
    this.prev = null; // the previous sample, for rates
  }

  // update fills the panel from a /v1/status body and returns the rates it computed.
  update(st) {
    const f = this.f;
    f.problem.hidden = true;
    this.section.classList.remove('stale');
    set(f.stamp, st.stamp || '(unnamed)');
    set(f.role, `role ${st.role}`);
    set(f.version, st.version || 'dev');
    set(f.uptime, fmtAge(st.uptimeSeconds));
    set(f.ready, st.ready ? 'ready' : 'not ready', st.ready);
    f.ready.classList.toggle('bad', !st.ready);
    f.ready.classList.remove('unknown');
    f.ready.title = '';
    f.notready.hidden = st.ready || !st.notReady;
    set(f.notready, st.notReady || '');

    const fwd = st.forward;
    const accepted = st.ingest ? st.ingest.acceptedTotal : null;
    const delivered = fwd ? fwd.deliveredTotal : null;
    const rates = { ingest: null, delivered: null };
    const p = this.prev;
    const dt = p ? st.uptimeSeconds - p.uptime : 0;
    // A restart (uptime went back) or a counter that went back starts the rates afresh.
    if (p && dt > 0) {
      if (accepted != null && p.accepted != null && accepted >= p.accepted) rates.ingest = (accepted - p.accepted) / dt;
      if (delivered != null && p.delivered != null && delivered >= p.delivered) rates.delivered = (delivered - p.delivered) / dt;
    }
    this.prev = { uptime: st.uptimeSeconds, accepted, delivered };
    this.stalled(st, delivered);

    set(f['ingest-rate'], st.role === 'forwarder' ? 'n/a' : fmtRate(rates.ingest), rates.ingest ?? '');
    set(f['accepted-total'], fmtNum(accepted), accepted ?? '');
    if (fwd) {
      set(f['deliver-rate'], fmtRate(rates.delivered), rates.delivered ?? '');
      const expired = fwd.expiredTotal ? ` · ${fmtNum(fwd.expiredTotal)} expired, dead-lettered` : '';
      set(f['deliver-sub'], `msg/s · ${fmtNum(delivered)} to ${fwd.sink || 'the sink'}${expired}`);
      set(f.breaker, fwd.breaker, fwd.breaker);
      f.breaker.className = `breaker-${fwd.breaker}`;
      const err = fwd.lastError
        ? `${fwd.lastError}${fwd.lastErrorAt ? ` (${fmtTime(fwd.lastErrorAt)})` : ''}`
        : `no error · ${fmtNum(fwd.retriedTotal)} retried`;
      set(f['breaker-sub'], err);
      f['breaker-sub'].title = err;
      const lat = fwd.sendLatencySeconds || {};
      set(f.latency, fmtSeconds(lat.p50), lat.p50 ?? '');
      set(f['latency-sub'], `p50 (p99 ${fmtSeconds(lat.p99)})`);
    } else {
      set(f['deliver-rate'], 'n/a', '');
      set(f['deliver-sub'], 'no forwarder here');
      set(f.breaker, 'n/a', '');
      f.breaker.className = '';
      set(f['breaker-sub'], 'no forwarder here');
      f['breaker-sub'].title = '';
      set(f.latency, 'n/a', '');
      set(f['latency-sub'], 'no forwarder here');
    }

    const sp = st.spool || {};
    for (const state of ['ready', 'claimed', 'dead', 'quarantine']) {
      const s = sp[state] || {};
      set(f[`${state}-messages`], fmtNum(s.messages), s.messages ?? '');
      set(f[`${state}-sub`], `${fmtNum(s.segments)} segment${s.segments === 1 ? '' : 's'} · ${fmtBytes(s.bytes)}`);
    }
    f['dead-messages'].classList.toggle('bad', (sp.dead || {}).messages > 0);
    f['quarantine-messages'].classList.toggle('bad', (sp.quarantine || {}).messages > 0);
    set(f.oldest, sp.oldestAgeSeconds ? fmtAge(sp.oldestAgeSeconds) : 'none', sp.oldestAgeSeconds ?? '');
    // What waits, by priority (0 highest): alarms apart from telemetry.
    const prios = sp.priorities || [];
    f.priorities.hidden = prios.length === 0;
    set(f.priorities, prios.length === 0 ? '' : 'Waiting by priority: ' + prios.map((p) =>
      `${p.priority}${p.priority === 0 ? ' (highest)' : ''}: ${fmtNum(p.messages)} message${p.messages === 1 ? '' : 's'}, oldest ${fmtAge(p.oldestAgeSeconds)}`,
    ).join(' · '), prios.map((p) => `${p.priority}:${p.messages}`).join(','));
    return rates;
  }

  // stalled shows, in red, how long a backlog has waited without a single delivery: a down sink
  // leaves the stamp ready (it still takes messages), and this is what says delivery stopped.
  stalled(st, delivered) {
    const el = this.f.stalled;
    const sp = st.spool || {};
    const backlog = ['open', 'recovering', 'ready', 'claimed'].some((s) => ((sp[s] || {}).segments || 0) > 0);
    const now = Date.now();
    if (!st.forward || !backlog || this.progressAt === undefined || delivered > this.lastDelivered) {
      this.progressAt = now;
    }
    this.lastDelivered = delivered;
    const waited = now - this.progressAt;
    el.hidden = !(st.forward && backlog && waited >= STALL_MS);
    set(el, el.hidden ? '' : `nothing delivered for ${fmtAge(waited / 1000)} while messages wait` +
      (st.forward.lastError ? `: ${st.forward.lastError}` : ''), el.hidden ? '' : Math.floor(waited / 1000));
  }

  // fail shows why the status could not be read, marks the figures as stale and the readiness
  // as unknown (grey, the reason on hover): a stamp that cannot be asked is not known to be ready.
  fail(text) {
    set(this.f.problem, text);
    this.f.problem.hidden = false;
    this.section.classList.add('stale');
    set(this.f.ready, 'unreachable', 'unreachable');
    this.f.ready.classList.remove('bad');
    this.f.ready.classList.add('unknown');
    this.f.ready.title = text;
    this.f.stalled.hidden = true;
    this.prev = null;
  }
}

// ---------- charts ----------

// history holds the samples of the last HISTORY_S seconds: {t (ms), ingest, delivered, ready, claimed, dead}.
const history = [];
let charts = null;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function makeCharts() {
  const Chart = window.Chart;
  if (!Chart) return null; // the library did not load: tiles still work
  Chart.defaults.color = cssVar('--muted');
  Chart.defaults.borderColor = cssVar('--grid');
  Chart.defaults.font.family = cssVar('--font');
  const options = (yTitle) => ({
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    parsing: false,
    normalized: true,
    interaction: { mode: 'nearest', axis: 'x', intersect: false },
    elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 2, tension: 0.2 } },
    scales: {
      x: {
        type: 'linear',
        min: -60,
        max: 0,
        ticks: { stepSize: 10, callback: (v) => (v === 0 ? 'now' : v % 60 === 0 ? `${v / 60} min` : `${v} s`) },
      },
      y: { beginAtZero: true, suggestedMax: 1, title: { display: false, text: yTitle }, ticks: { precision: 0 } },
    },
    plugins: {
      legend: {
        position: 'top',
        align: 'end',
        labels: {
          boxWidth: 12,
          boxHeight: 2,
          filter: (item, data) => !data.datasets[item.datasetIndex].hidden, // no "delivered" without a forwarder
          sort: (a, b) => a.datasetIndex - b.datasetIndex,
        },
      },
    },
  });
  // A dataset of lower order is drawn on top.
  const series = (label, color, order = 1, dash = []) => ({ label, data: [], borderColor: color, backgroundColor: color, order, borderDash: dash });
  return {
    rates: new Chart($('#chart-rates'), {
      type: 'line',
      // Delivered is dashed: when the sink keeps up it runs on top of ingest.
      data: { datasets: [series('ingest', cssVar('--c-ingest')), series('delivered', cssVar('--c-delivered'), 0, [6, 4])] },
      options: options('msg/s'),
    }),
    depth: new Chart($('#chart-depth'), {
      type: 'line',
      data: {
        datasets: [
          series('ready', cssVar('--c-ready')),
          series('claimed', cssVar('--c-claimed')),
          series('dead', cssVar('--c-dead')),
        ],
      },
      options: options('messages'),
    }),
  };
}

function record(st, rates) {
  const now = Date.now();
  const sp = st.spool || {};
  history.push({
    t: now,
    ingest: rates.ingest,
    delivered: rates.delivered,
    ready: (sp.ready || {}).messages,
    claimed: (sp.claimed || {}).messages,
    dead: (sp.dead || {}).messages,
  });
  while (history.length && history[0].t < now - HISTORY_S * 1000) history.shift();
  if (!charts) charts = makeCharts();
  if (!charts) return;
  // The window grows from one minute after the page opened to HISTORY_S, so a fresh page is
  // not mostly empty chart.
  const span = Math.min(HISTORY_S, Math.max(60, Math.ceil((now - history[0].t) / 60000) * 60));
  for (const c of [charts.rates, charts.depth]) {
    c.options.scales.x.min = -span;
    c.options.scales.x.ticks.stepSize = span <= 60 ? 10 : span <= 180 ? 30 : 60;
  }
  const points = (k) => history.filter((h) => h[k] != null).map((h) => ({ x: (h.t - now) / 1000, y: h[k] }));
  charts.rates.data.datasets[0].data = points('ingest');
  charts.rates.data.datasets[1].data = points('delivered');
  charts.rates.data.datasets[1].hidden = !st.forward;
  charts.depth.data.datasets[0].data = points('ready');
  charts.depth.data.datasets[1].data = points('claimed');
  charts.depth.data.datasets[2].data = points('dead');
  charts.rates.update('none');
  charts.depth.update('none');
}

// ---------- polling ----------

const local = new Panel($('#local'), 'this stamp');
let peer = null;
let peerBusy = false;
let peerFailures = 0; // in a row: the backoff before the next ask
let peerNextAt = 0; // Date.now() before which the peer is not asked
let deadSignature = null; // what the dead-letter list was loaded for

function setConn(text, cls) {
  const el = $('#conn');
  el.textContent = text;
  el.className = `badge ${cls}`;
}

function banner(text) {
  const el = $('#banner');
  el.textContent = text || '';
  el.hidden = !text;
}

async function tick() {
  const started = performance.now();
  try {
    const st = await api('GET', '/v1/status');
    const rates = local.update(st);
    setConn('live', 'ok');
    banner('');
    record(st, rates);
    if (st.peerUrl) pollPeer(st.peerUrl);
    else if (peer) peer.section.hidden = true;
    // Reload the dead letters when their count changes, and every 30 s in any case.
    const d = st.spool && st.spool.dead ? st.spool.dead : {};
    const sig = `${d.segments}/${d.messages}/${Math.floor(Date.now() / 30000)}`;
    if (sig !== deadSignature) loadDeadLetters(sig);
  } catch (e) {
    const auth = e.status === 401 || e.status === 403;
    setConn(auth ? 'not authorised' : 'status unavailable', 'bad');
    banner(auth ? e.describe() : '');
    local.fail(e.describe());
  }
  setTimeout(tick, Math.max(0, POLL_MS - (performance.now() - started)));
}

async function pollPeer(url) {
  if (peerBusy || Date.now() < peerNextAt) return; // a slow or failing peer: skip beats rather than pile up errors
  peerBusy = true;
  if (!peer) peer = new Panel($('#peer'), 'peer');
  peer.section.hidden = false;
  peer.section.title = url;
  try {
    peer.update(await api('GET', '/v1/peer/status'));
    peerFailures = 0;
    peerNextAt = 0;
  } catch (e) {
    if (e.status === 404) peer.section.hidden = true;
    else peer.fail(e.status === 502 ? `unreachable: ${e.detail || e.title}` : e.describe());
    peerFailures++;
    peerNextAt = Date.now() + Math.min(PEER_BACKOFF_MAX_S, 2 ** (peerFailures - 1)) * 1000;
  } finally {
    peerBusy = false;
  }
}

// ---------- dead letters ----------

function deadMessage(text, isError) {
  const el = $('#dead-msg');
  el.textContent = text || '';
  el.classList.toggle('error', !!isError);
}

async function loadDeadLetters(sig) {
  deadSignature = sig;
  let list;
  try {
    list = (await api('GET', '/v1/dead-letters')).deadLetters || [];
  } catch (e) {
    // Refused: ask again when something changes (the key, the count, 30 s). Failed: next tick.
    if (e.status !== 401 && e.status !== 403) deadSignature = null;
    deadMessage(e.describe(true), true);
    return;
  }
  if ($('#dead-msg').classList.contains('error')) deadMessage(''); // an earlier refusal no longer holds
  const tbody = $('#dead-table tbody');
  const rows = list.map((d) => {
    const tr = document.createElement('tr');
    tr.dataset.id = d.id;
    for (const [label, text, cls] of [
      ['created', fmtTime(d.created), 'time'],
      ['msgs', fmtNum(d.messages), 'num'],
      ['bytes', fmtBytes(d.bytes), 'num'],
      ['reason', d.reason || '', 'reason'],
    ]) {
      tr.append(cell(label, text, cls));
    }
    const td = document.createElement('td');
    td.className = 'actions';
    td.append(button('Show', 'show', 'link'), button('Requeue', 'requeue', ''));
    tr.append(td);
    tr.title = d.id;
    return tr;
  });
  tbody.replaceChildren(...rows);
  $('#dead-table').hidden = list.length === 0;
  $('#dead-empty').hidden = list.length !== 0;
  set($('#dead-count'), list.length ? `(${list.length})` : '', list.length);
  $('#requeue-all').disabled = list.length === 0;
}

// cell is a table cell; its label heads it where narrow screens stack a row's cells.
function cell(label, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  td.dataset.label = label;
  if (cls) td.className = cls;
  return td;
}

function button(text, action, cls) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.dataset.action = action;
  if (cls) b.className = cls;
  return b;
}

async function showDeadLetter(id) {
  const box = $('#dead-detail');
  try {
    const d = await api('GET', `/v1/dead-letters/${encodeURIComponent(id)}`);
    set($('#detail-id'), d.id);
    set($('#detail-reason'), `${d.reason || 'no reason recorded'} · dead-lettered ${fmtTime(d.created)}`);
    $('#detail-damaged').hidden = !d.damaged;
    set($('#detail-damaged'), d.damaged ? `damaged: ${d.damaged}` : '');
    const rows = (d.messages || []).map((m) => {
      const tr = document.createElement('tr');
      const props = m.properties ? Object.entries(m.properties).map(([k, v]) => `${k}=${v}`).join(', ') : '';
      for (const [label, text, cls] of [
        ['correlationId', m.correlationId, 'id'],
        ['senderId', m.senderId, ''],
        ['value', m.value, 'value'],
        ['received', fmtTime(m.receivedAt) + (m.expiresAt ? ` · expires ${fmtTime(m.expiresAt)}` : ''), 'time'],
        ['stamp', m.stamp || '', ''],
        ['properties', props, ''],
      ]) {
        tr.append(cell(label, text, cls));
      }
      return tr;
    });
    $('#detail-table tbody').replaceChildren(...rows);
    box.hidden = false;
    deadMessage('');
  } catch (e) {
    deadMessage(e.describe(true), true);
  }
}

async function requeue(path, btn) {
  btn.disabled = true;
  try {
    const r = await api('POST', path);
    const n = r && r.requeued != null ? r.requeued : 0;
    deadMessage(`Requeued ${n} segment${n === 1 ? '' : 's'}: back in ready/ for delivery.`);
    $('#dead-detail').hidden = true;
  } catch (e) {
    deadMessage(e.describe(true), true);
  } finally {
    btn.disabled = false;
    loadDeadLetters(deadSignature);
  }
}

$('#dead-table tbody').addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr[data-id]');
  if (!tr) return;
  const b = ev.target.closest('button');
  if (b && b.dataset.action === 'requeue') requeue(`/v1/dead-letters/${encodeURIComponent(tr.dataset.id)}/requeue`, b);
  else showDeadLetter(tr.dataset.id);
});
// Requeue all takes two clicks: the first arms the button for a few seconds and says what the
// second will do (every dead segment is delivered again, poison included).
const requeueAllLabel = $('#requeue-all').textContent;
let requeueAllArmed = null;
function disarmRequeueAll() {
  clearTimeout(requeueAllArmed);
  requeueAllArmed = null;
  const btn = $('#requeue-all');
  btn.textContent = requeueAllLabel;
  btn.classList.remove('armed');
}
$('#requeue-all').addEventListener('click', (ev) => {
  const btn = ev.currentTarget;
  if (requeueAllArmed === null) {
    const n = $('#dead-table tbody').rows.length;
    btn.textContent = `Confirm: requeue ${n}`;
    btn.classList.add('armed');
    deadMessage(`Click again within 5 s to send all ${n} dead segment${n === 1 ? '' : 's'} back to ready/ for delivery.`);
    requeueAllArmed = setTimeout(() => {
      disarmRequeueAll();
      deadMessage('');
    }, 5000);
    return;
  }
  disarmRequeueAll();
  requeue('/v1/dead-letters/requeue-all', btn);
});
$('#detail-close').addEventListener('click', () => {
  $('#dead-detail').hidden = true;
});

// ---------- sending a test message ----------

$('#send-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const out = $('#send-result');
  const btn = $('#send-button');
  btn.disabled = true;
  out.className = 'result';
  out.textContent = 'sending…';
  try {
    const r = await api('POST', '/v1/messages', { senderId: $('#send-sender').value, value: $('#send-value').value });
    const m = (r.messages || [])[0] || {};
    const code = document.createElement('code');
    code.id = 'send-cid';
    code.textContent = m.correlationId || '?';
    out.replaceChildren('Accepted, durable in the spool: correlationId ', code, ` at ${r.serverTimestamp}`);
    out.classList.add('ok');
  } catch (e) {
    out.textContent = e.describe();
    out.classList.add('error');
  } finally {
    btn.disabled = false;
  }
});

// ---------- the API key ----------

const keyInput = $('#api-key');
keyInput.value = sessionStorage.getItem(KEY_STORAGE) || '';
function saveKey() {
  const v = keyInput.value.trim();
  if (v) sessionStorage.setItem(KEY_STORAGE, v);
  else sessionStorage.removeItem(KEY_STORAGE);
  deadSignature = null; // reload what the key may now unlock
}
keyInput.addEventListener('change', saveKey);
$('#key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  saveKey();
});
$('#key-clear').addEventListener('click', () => {
  keyInput.value = '';
  saveKey();
});

tick();
