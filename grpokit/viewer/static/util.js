'use strict';
// grpokit view: shared state and helpers. Model-written text only ever reaches the page
// through textContent (el's `text`, text nodes) or attributes set with setAttribute.
const D = JSON.parse(document.getElementById('run-data').textContent);
const VOCAB = D.vocab || {};
const STEPS = D.steps;
const G = D.meta.group_size || 1;
const S = {
  view: 'overview', step: null, prompt: null, detail: null, colourBy: 'logprob', promptPage: 0,
  cmp: { prompt: null, a: null, b: null, rank: 1 },
  f: { truncated: false, equal: 'any', comp: '', op: '<', value: '', none: false, search: '' },
};

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    node.appendChild(typeof kid === 'string' || typeof kid === 'number' ? document.createTextNode(String(kid)) : kid);
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

// rewards, advantages: 4 decimals (integers as they are); None for a missing reward
function fmt(x, digits = 4) {
  if (x === null || x === undefined) return 'None';
  if (typeof x !== 'number') return String(x);
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

// metrics: 6 significant digits
function fmtMetric(x) {
  if (x === null || x === undefined) return '-';
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6)));
}

function promptText(p) {
  if (p === null || p === undefined) return '(prompt not recorded)';
  if (typeof p === 'string') return p;
  if (Array.isArray(p)) return p.map((m) => (m && m.role ? m.role + ': ' + m.content : JSON.stringify(m))).join('\n');
  return JSON.stringify(p);
}

function tokenText(id) {
  return D.vocab ? (VOCAB[String(id)] !== undefined ? VOCAB[String(id)] : '\u27e8' + id + '\u27e9') : '\u27e8' + id + '\u27e9 ';
}

// the step's rollouts record: embedded, fetched from the server (--serve), or null
async function getStep(step) {
  const key = String(step);
  if (STEPS[key]) return STEPS[key];
  if (!D.meta.lazy || !D.meta.rollout_steps.includes(step)) return null;
  const response = await fetch('step/' + step + '.json');
  if (!response.ok) throw new Error('step ' + step + ': HTTP ' + response.status);
  const body = await response.json();
  Object.assign(VOCAB, body.vocab || {});
  STEPS[key] = body.step;
  return body.step;
}

function availableSteps() { return D.meta.lazy ? D.meta.rollout_steps : D.meta.embedded_steps; }

// one completion of a record, by row b (prompt b / G, completion b % G)
function completion(rec, b) {
  const gs = rec.group_size || G;
  const comps = {};
  for (const [name, values] of Object.entries(rec.components || {})) comps[name] = values[b];
  return {
    step: rec.step, b, p: Math.floor(b / gs), j: b % gs, prompt: rec.indices[Math.floor(b / gs)],
    text: rec.texts[b], ids: rec.completion_ids[b], reward: rec.rewards[b], comps,
    adv: rec.advantages ? rec.advantages[b] : null, len: rec.lengths ? rec.lengths[b] : rec.completion_ids[b].length,
    ended: rec.ended ? rec.ended[b] : null, logprobs: rec.logprobs ? rec.logprobs[b] : null,
    entropies: rec.entropies ? rec.entropies[b] : null,
  };
}

function groupRows(rec, p) {
  const gs = rec.group_size || G;
  const rows = [];
  for (let b = p * gs; b < (p + 1) * gs && b < rec.texts.length; b++) rows.push(b);
  return rows;
}

function groupEqual(rec, p) {
  const vals = groupRows(rec, p).map((b) => rec.rewards[b]);
  return vals.every((v) => v !== null) && Math.max(...vals) - Math.min(...vals) === 0;
}

function passesFilters(c, equal) {
  const f = S.f;
  if (f.truncated && c.ended !== false) return false;
  if (f.equal === 'only' && !equal) return false;
  if (f.equal === 'hide' && equal) return false;
  if (f.none && c.reward !== null && !Object.values(c.comps).some((v) => v === null)) return false;
  if (f.comp && f.value !== '' && !Number.isNaN(Number(f.value))) {
    const v = c.comps[f.comp];
    if (v === null || v === undefined) return false;
    if (f.op === '<' ? !(v < Number(f.value)) : !(v > Number(f.value))) return false;
  }
  if (f.search && !String(c.text).toLowerCase().includes(f.search.toLowerCase())) return false;
  return true;
}

// prompt index -> rows of D.groups (built on first use: a large run has many)
let PROMPT_ROWS = null;
function promptRows(index) {
  if (PROMPT_ROWS === null) {
    PROMPT_ROWS = new Map();
    D.groups.prompt.forEach((p, i) => {
      if (!PROMPT_ROWS.has(p)) PROMPT_ROWS.set(p, []);
      PROMPT_ROWS.get(p).push(i);
    });
  }
  return PROMPT_ROWS.get(index) || [];
}

function metricRow(step) {
  const i = D.metrics.step ? D.metrics.step.indexOf(step) : -1;
  if (i < 0) return null;
  const row = {};
  for (const [key, values] of Object.entries(D.metrics)) if (key !== 'step' && values[i] !== null) row[key] = values[i];
  return row;
}
