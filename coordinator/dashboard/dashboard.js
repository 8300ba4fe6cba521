// The ttc dashboard's page script (served as a file: the page's CSP allows no inline script).
// It polls the coordinator's JSON API (same origin, the read-token cookie) and draws with
// hand-written SVG: no library, nothing from the network. Data is only ever set as text.
'use strict';
(() => {
  const POLL_MS = 1500;
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);
  let xAxis = 'step';
  let selected = null; // run id chosen by the user (#run=…); null: follow the live run
  let overview = null;

  // ---- formatting -----------------------------------------------------------------------------
  const num = (v, d = 4) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : Number(v).toFixed(d));
  const big = (v) => {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a >= 1e15) return `${(v / 1e15).toFixed(2)}P`;
    if (a >= 1e12) return `${(v / 1e12).toFixed(2)}T`;
    if (a >= 1e9) return `${(v / 1e9).toFixed(2)}G`;
    if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
    if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
    if (Number.isInteger(v)) return String(v);
    return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(1) : v.toPrecision(2);
  };
  const duration = (s) => {
    if (s === null || s === undefined || !Number.isFinite(s)) return '–';
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${r} s` : `${r} s`;
  };
  const pct = (f) => (f === null || f === undefined || !Number.isFinite(f) ? '–' : `${(f * 100).toFixed(1)} %`);

  function el(tag, attrs = {}, text) {
    const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const setText = (id, text, value) => {
    const e = $(id);
    e.textContent = text;
    if (value !== undefined) e.dataset.value = value === null ? '' : String(value);
  };
  const badge = (e, state) => {
    state = state || 'unknown';
    e.textContent = state;
    e.className = `badge state-${state}`;
    e.dataset.state = state;
  };

  // ---- fetching -------------------------------------------------------------------------------
  async function api(path) {
    const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
    if (res.status === 401) throw new Error('unauthorized: open this page as /dashboard?token=<token> (`ttc token --url …` prints the link)');
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return res.json();
  }

  async function poll() {
    try {
      overview = await api('/api/overview');
      renderOverview(overview);
      const id = currentRun();
      if (id) await showRun(id);
      else { $('run-panel').hidden = true; $('sweep-panel').hidden = true; }
      const c = $('conn-status');
      c.textContent = `updated ${new Date().toLocaleTimeString()}`;
      c.className = 'conn';
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    } catch (e) {
      const c = $('conn-status');
      c.textContent = e instanceof Error ? e.message : String(e);
      c.className = 'conn bad';
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  /** The run to show: the user's choice, else the live one, else the newest. */
  function currentRun() {
    if (selected) return selected;
    const runs = overview ? overview.runs : [];
    const live = runs.find((r) => r.state === 'running');
    return (live || runs[runs.length - 1] || {}).id || null;
  }

  function readHash() {
    const m = /^#run=(.+)$/.exec(location.hash);
    selected = m ? decodeURIComponent(m[1]) : null;
  }
  function choose(id) {
    location.hash = `run=${encodeURIComponent(id)}`;
  }

  // ---- the run list ---------------------------------------------------------------------------
  function renderOverview(o) {
    $('server-kind').textContent = o.kind === 'server' ? 'run server' : 'coordinator';
    const ws = $('workers');
    ws.replaceChildren(...o.workers.map((w) => el('span', { class: 'worker', title: `${w.remote} ${w.backend || ''}` }, `${w.name}${w.rank !== null ? ` · rank ${w.rank}` : ''}`)));
    if (o.workers.length === 0) ws.append(el('span', { class: 'worker' }, 'no workers connected'));
    const body = $('runs').tBodies[0];
    const current = currentRun();
    body.replaceChildren(...o.runs.slice().reverse().map((r) => {
      const tr = el('tr', { 'data-run': r.id, class: r.id === current || (current && current.startsWith(`${r.id}/`)) ? 'selected' : '' });
      tr.addEventListener('click', () => choose(r.id));
      const state = el('span');
      badge(state, r.state);
      const budget = el('span', { class: 'mini-bar' });
      const fill = el('span');
      fill.style.width = `${Math.round((r.budgetFraction || 0) * 100)}%`;
      budget.append(fill);
      const report = el('td');
      if (r.report) {
        const a = el('a', { href: `/report/${encodeURIComponent(r.id)}`, target: '_blank', rel: 'noopener' }, 'report');
        a.addEventListener('click', (e) => e.stopPropagation());
        report.append(a);
      }
      const stage = r.stage ? `${r.stage}${r.stageTotal ? ` (${r.stageDone || 0}/${r.stageTotal})` : ''}` : r.phase || r.error || '';
      tr.append(
        el('td', { class: 'id' }, r.id), el('td', {}, r.kind), td(state), el('td', { title: stage }, stage.length > 60 ? `${stage.slice(0, 57)}…` : stage),
        el('td', {}, r.step !== undefined ? `${r.step} / ${r.totalSteps}` : ''), el('td', {}, r.trainLoss !== undefined ? num(r.trainLoss) : ''),
        td(budget), el('td', {}, r.live ? duration(r.etaSeconds) : ''), report,
      );
      return tr;
    }));
    $('runs-empty').hidden = o.runs.length > 0;
  }
  const td = (child) => { const c = el('td'); c.append(child); return c; };

  // ---- one run --------------------------------------------------------------------------------
  async function showRun(id) {
    const [top, member] = id.split('/');
    const d = await api(`/api/runs/${encodeURIComponent(top)}${member ? `/${encodeURIComponent(member)}` : ''}`);
    if (!d) { $('run-panel').hidden = true; $('sweep-panel').hidden = true; return; }
    if (d.kind === 'sweep') {
      renderSweep(d);
      const m = d.liveMember;
      if (m) renderTraining(await api(`/api/runs/${encodeURIComponent(top)}/${encodeURIComponent(m)}`));
      else $('run-panel').hidden = true;
      return;
    }
    $('sweep-panel').hidden = !member;
    if (member) {
      const sweep = await api(`/api/runs/${encodeURIComponent(top)}`);
      if (sweep) renderSweep(sweep);
    }
    renderTraining(d);
  }

  function renderSweep(d) {
    $('sweep-panel').hidden = false;
    $('sweep-title').textContent = d.id;
    badge($('sweep-state'), d.state);
    $('sweep-stage').textContent = d.stage ? `${d.stage}${d.stageTotal ? ` — ${d.stageDone || 0} of ${d.stageTotal}` : ''}` : d.error || '';
    $('sweep-progress').style.width = `${d.stageTotal ? Math.round(((d.stageDone || 0) / d.stageTotal) * 100) : d.state === 'done' ? 100 : 0}%`;
    $('sweep-result').textContent = d.result || '';
    link($('sweep-report'), d.report);
    $('members').tBodies[0].replaceChildren(...d.members.map((m) => {
      const tr = el('tr', { 'data-member': m.id, class: selected === `${d.id}/${m.id}` ? 'selected' : '' });
      tr.addEventListener('click', () => choose(`${d.id}/${m.id}`));
      const s = el('span');
      badge(s, m.state);
      tr.append(el('td', { class: 'id' }, m.id), td(s), el('td', {}, m.step === null ? '' : `${m.step} / ${m.totalSteps}`), el('td', {}, num(m.valLoss)));
      return tr;
    }));
  }

  function link(a, href) {
    a.hidden = !href;
    if (href) a.setAttribute('href', href);
  }

  function renderTraining(d) {
    if (!d) return;
    $('run-panel').hidden = false;
    $('run-title').textContent = d.id;
    badge($('run-state'), d.state);
    const v = d.view, s = d.summary, h = d.history;
    const last = h[h.length - 1];
    const lastVal = h.slice().reverse().find((r) => r.valLoss !== null);
    $('run-phase').textContent = v ? `phase: ${v.phase}${v.formation ? ` · ring formation ${v.formation}` : ''}` : s ? (s.completed ? 'finished' : 'stopped (resumable)') : '';
    $('run-result').textContent = d.result || d.error || '';
    link($('run-report'), d.report);
    const step = v ? v.step : s ? s.steps : last ? last.step : 0;
    const total = v ? v.totalSteps : s ? s.totalSteps : null;
    setText('stat-step', total ? `${step} / ${total}` : String(step), step);
    const loss = v ? v.trainLoss : last ? last.trainLoss : null;
    setText('stat-loss', num(loss), loss);
    const val = v && v.valLoss !== null ? v.valLoss : s && s.finalValLoss !== undefined ? s.finalValLoss : lastVal ? lastVal.valLoss : null;
    setText('stat-val', num(val), val);
    const tps = v ? v.tokensPerSecond : last ? last.tokensPerSecond : null;
    setText('stat-tps', big(tps), tps);
    const frac = v ? v.budgetFraction : s && s.completed ? 1 : null;
    setText('stat-budget', pct(frac), frac);
    $('budget-bar').style.width = `${Math.round((frac || 0) * 100)}%`;
    const eta = v && d.state === 'running' ? v.etaSeconds : d.state === 'done' ? 0 : null;
    setText('stat-eta', d.state === 'done' ? 'done' : duration(eta), eta);
    const flops = v ? v.flopsUsed : s ? s.flopsUsed : last ? last.flops : null;
    setText('stat-flops', big(flops), flops);
    setText('stat-ckpt', v ? String(v.lastCheckpointStep) : '–', v ? v.lastCheckpointStep : null);

    const xOf = (r) => (xAxis === 'flops' ? r.flops : xAxis === 'seconds' ? r.seconds : r.step);
    const reformAt = d.events.filter((e, i) => e.kind === 'formed' && i > 0 && e.fromStep !== undefined).map((e) => e.fromStep);
    lineChart($('loss-chart'), [
      { cls: 'train', name: 'train loss', points: h.filter((r) => r.trainLoss !== null).map((r) => [xOf(r), r.trainLoss]) },
      { cls: 'val', name: 'validation loss', dots: true, points: h.filter((r) => r.valLoss !== null).map((r) => [xOf(r), r.valLoss]) },
    ], { x: xAxis === 'flops' ? 'FLOPs' : xAxis === 'seconds' ? 'training seconds' : 'step', marks: xAxis === 'step' ? reformAt : [] });
    lineChart($('tps-chart'), [{ cls: 'tps', name: 'tokens/s', points: h.filter((r) => r.tokensPerSecond !== null).map((r) => [xOf(r), r.tokensPerSecond]) }],
      { x: xAxis === 'flops' ? 'FLOPs' : xAxis === 'seconds' ? 'training seconds' : 'step', zero: true });
    timeline($('timeline'), d.splits);
    $('timeline-empty').hidden = d.splits.length > 0;
    renderEvents(d);
  }

  function renderEvents(d) {
    const items = d.events.map((e) => {
      const li = el('li', { class: e.kind });
      li.append(el('time', {}, new Date(e.at).toLocaleTimeString()));
      li.append(document.createTextNode(e.kind === 'formed'
        ? `ring formation ${e.formation}: ${e.workers.length} worker(s) (${e.workers.join(', ')}), from step ${e.fromStep}`
        : `failure: ${e.reason}`));
      return li;
    });
    // failures from before this coordinator (failures.json) that it has no event for
    const seen = new Set(d.events.filter((e) => e.kind === 'failure').map((e) => e.reason));
    for (const f of d.failures) if (!seen.has(f)) items.unshift(el('li', { class: 'failure' }, `earlier failure: ${f}`));
    if (items.length === 0) items.push(el('li', { class: 'muted' }, d.splits.length ? 'no failures' : 'none recorded'));
    $('events').replaceChildren(...items);
  }

  // ---- charts ---------------------------------------------------------------------------------
  function ticks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(raw)), f = raw / mag;
    const step = (f >= 5 ? 10 : f >= 2 ? 5 : f >= 1 ? 2 : 1) * mag;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
    return out;
  }

  function lineChart(svg, series, o) {
    const [, , W, H] = svg.getAttribute('viewBox').split(' ').map(Number);
    const m = { l: 56, r: 12, t: 10, b: 34 };
    const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const nodes = [];
    if (pts.length === 0) {
      nodes.push(el('svg:text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no steps yet'));
      svg.replaceChildren(...nodes);
      return;
    }
    let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
    let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
    if (o.zero) y0 = 0;
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 += 0.5; y0 -= o.zero ? 0 : 0.5; }
    const pad = (y1 - y0) * 0.05;
    y1 += pad; if (!o.zero) y0 -= pad;
    const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
    const sy = (y) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
    for (const t of ticks(y0, y1, 5)) {
      nodes.push(el('svg:line', { class: 'grid', x1: m.l, x2: W - m.r, y1: sy(t), y2: sy(t) }));
      nodes.push(el('svg:text', { x: m.l - 6, y: sy(t) + 4, 'text-anchor': 'end' }, big(t)));
    }
    for (const t of ticks(x0, x1, 7)) nodes.push(el('svg:text', { x: sx(t), y: H - m.b + 16, 'text-anchor': 'middle' }, big(t)));
    nodes.push(el('svg:path', { class: 'axis', d: `M${m.l},${m.t}V${H - m.b}H${W - m.r}`, fill: 'none' }));
    nodes.push(el('svg:text', { x: (m.l + W - m.r) / 2, y: H - 4, 'text-anchor': 'middle' }, o.x));
    for (const x of o.marks || []) if (x >= x0 && x <= x1) nodes.push(el('svg:line', { class: 'reform', x1: sx(x), x2: sx(x), y1: m.t, y2: H - m.b }));
    let ly = m.t + 12;
    for (const s of series) {
      const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
      if (p.length === 0) continue;
      nodes.push(el('svg:polyline', { class: s.cls, 'data-series': s.name, 'data-points': p.length, points: p.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ') }));
      if (s.dots) for (const [x, y] of p) nodes.push(el('svg:circle', { class: `${s.cls}-dot`, cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2.5 }));
      nodes.push(el('svg:text', { x: W - m.r - 4, y: ly, 'text-anchor': 'end', class: `${s.cls}-label` }, `${s.name}: ${num(p[p.length - 1][1], s.cls === 'tps' ? 0 : 4)}`));
      ly += 14;
    }
    svg.replaceChildren(...nodes);
  }

  const SEGMENTS = [['computeMs', 'seg-compute', 'compute'], ['readBackMs', 'seg-readback', 'read-back'], ['allReduceMs', 'seg-allreduce', 'all-reduce'], ['updateMs', 'seg-update', 'update']];

  /** Per worker, the last steps one after the other: each step's slot is as long as its slowest worker. */
  function timeline(svg, splits) {
    const recent = splits.slice(-10);
    const names = [];
    for (const s of recent) for (const r of s.ranks) if (!names.includes(r.name)) names.push(r.name);
    const rowH = 22, top = 18, left = 90, W = 960;
    const H = Math.max(60, top + names.length * rowH + 22);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const nodes = [];
    if (recent.length === 0) { svg.replaceChildren(); return; }
    const total = (r) => r.computeMs + r.readBackMs + r.allReduceMs + r.updateMs;
    const slots = recent.map((s) => Math.max(...s.ranks.map(total), 1e-3));
    const gap = 0.02 * slots.reduce((a, b) => a + b, 0) / recent.length;
    const span = slots.reduce((a, b) => a + b, 0) + gap * (recent.length - 1);
    const sx = (ms) => (ms / span) * (W - left - 8);
    names.forEach((n, i) => nodes.push(el('svg:text', { x: left - 6, y: top + i * rowH + 15, 'text-anchor': 'end' }, n.length > 14 ? `${n.slice(0, 13)}…` : n)));
    let t = 0;
    recent.forEach((s, k) => {
      const x = left + sx(t);
      const label = sx(slots[k]) > 58 ? `step ${s.step}` : sx(slots[k]) > 22 ? String(s.step) : '';
      if (label) nodes.push(el('svg:text', { x: x + 2, y: 12 }, label));
      for (const r of s.ranks) {
        const row = names.indexOf(r.name);
        let at = x;
        for (const [key, cls, label] of SEGMENTS) {
          const w = sx(r[key]);
          if (w <= 0) continue;
          const rect = el('svg:rect', { class: `seg ${cls}`, x: at.toFixed(2), y: top + row * rowH + 3, width: Math.max(0.5, w).toFixed(2), height: rowH - 6, 'data-step': s.step, 'data-worker': r.name });
          rect.append(el('svg:title', {}, `${r.name} (rank ${r.rank}), step ${s.step}: ${label} ${r[key].toFixed(1)} ms`));
          nodes.push(rect);
          at += w;
        }
      }
      t += slots[k] + gap;
    });
    nodes.push(el('svg:text', { x: left, y: H - 4 }, `${recent.length} steps, ${(span / 1000).toFixed(2)} s of worker time; each step's slot lasts as long as its slowest worker`));
    svg.replaceChildren(...nodes);
  }

  // ---- start ----------------------------------------------------------------------------------
  for (const b of document.querySelectorAll('.axis-choice button')) {
    b.addEventListener('click', () => {
      xAxis = b.dataset.x;
      for (const o of document.querySelectorAll('.axis-choice button')) o.classList.toggle('on', o === b);
      const id = currentRun();
      if (id) showRun(id).catch(() => {});
    });
  }
  window.addEventListener('hashchange', () => {
    readHash();
    if (overview) renderOverview(overview);
    const id = currentRun();
    if (id) showRun(id).catch(() => {});
  });
  readHash();
  poll();
})();
