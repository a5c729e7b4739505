// A step: its metrics, its groups (completions side by side, sorted by advantage), filters,
// search; and one completion's tokens coloured by a chosen value.

function completionCard(c, selected) {
  const sign = c.adv === null ? '' : c.adv > 0 ? 'pos' : c.adv < 0 ? 'neg' : '';
  const nums = el('div', { class: 'nums' },
    el('span', {}, 'adv ', el('b', { class: 'v-adv ' + sign, text: fmt(c.adv) })),
    el('span', {}, 'reward ', el('b', { class: 'v-reward', text: fmt(c.reward) })),
    Object.entries(c.comps).map(([name, v]) => el('span', { class: 'muted' }, name + ' ',
      el('b', { class: 'v-comp', 'data-name': name, text: fmt(v) }))),
    el('span', {}, 'len ', el('b', { class: 'v-len', text: String(c.len) })),
    el('span', { class: 'v-ended' + (c.ended === false ? ' trunc' : ''), text: c.ended === false ? 'truncated' : c.ended ? 'ended' : '?' }));
  return el('div', {
    class: 'card' + (selected ? ' selected' : ''), 'data-step': c.step, 'data-row': c.b,
    onclick: () => showDetail(c.step, c.b),
  }, nums, el('pre', { class: 'text', text: c.text }));
}

// a group of record `rec`: header and the completions that pass the filters; null when none do
function groupBox(rec, p, counts) {
  const equal = groupEqual(rec, p);
  const all = groupRows(rec, p).map((b) => completion(rec, b));
  const shown = all.filter((c) => passesFilters(c, equal)).sort((a, b) => (b.adv ?? -Infinity) - (a.adv ?? -Infinity));
  counts.total += all.length;
  counts.shown += shown.length;
  if (!shown.length) return null;
  const index = rec.indices[p];
  const info = D.prompts[String(index)] || {};
  const judged = all.map((c) => c.reward).filter((v) => v !== null);
  const mean = judged.length ? judged.reduce((a, b) => a + b, 0) / judged.length : null;
  const head = el('div', { class: 'group-head' },
    el('b', { text: 'group ' + p }),
    el('a', { class: 'step-link', onclick: () => openPrompt(index), text: 'prompt #' + index }),
    el('span', { class: 'prompt', text: promptText(info.prompt) }),
    info.answer !== undefined && info.answer !== null ? el('span', { class: 'muted', text: 'answer: ' + info.answer }) : null,
    el('span', {}, 'mean reward ', el('b', { class: 'v-mean', text: fmt(mean) })),
    equal ? el('span', { class: 'badge equal', text: 'equal rewards' }) : null,
    el('span', { class: 'muted', text: shown.length + ' of ' + all.length + ' shown' }));
  const sel = S.detail && S.detail.step === rec.step ? S.detail.b : -1;
  return el('div', { class: 'group', 'data-group': p, 'data-prompt': index }, head,
    el('div', { class: 'cards' }, shown.map((c) => completionCard(c, c.b === sel))));
}

function filterBar(onChange) {
  const f = S.f;
  const set = (key, value) => { f[key] = value; onChange(); };
  const comps = D.meta.components || [];
  return el('div', { class: 'controls', id: 'filters' },
    el('label', {}, el('input', { type: 'checkbox', id: 'f-truncated', checked: f.truncated, onchange: (e) => set('truncated', e.target.checked) }), ' truncated only'),
    el('label', {}, 'equal-reward groups ', el('select', { id: 'f-equal', onchange: (e) => set('equal', e.target.value) },
      ['any', 'only', 'hide'].map((v) => el('option', { value: v, selected: f.equal === v, text: v })))),
    el('label', {}, el('input', { type: 'checkbox', id: 'f-none', checked: f.none, onchange: (e) => set('none', e.target.checked) }), ' None rewards only'),
    el('label', {}, 'reward ', el('select', { id: 'f-comp', onchange: (e) => set('comp', e.target.value) },
      el('option', { value: '', text: '(component)' }), comps.map((c) => el('option', { value: c, selected: f.comp === c, text: c }))),
    el('select', { id: 'f-op', onchange: (e) => set('op', e.target.value) }, ['<', '>'].map((v) => el('option', { value: v, selected: f.op === v, text: v }))),
    el('input', { type: 'number', id: 'f-value', step: 'any', value: f.value, onchange: (e) => set('value', e.target.value) })),
    el('input', { type: 'search', id: 'f-search', placeholder: 'search completions', value: f.search, onchange: (e) => set('search', e.target.value) }),
    el('span', { id: 'f-count', class: 'muted' }));
}

function stepMetricsTable(step) {
  const row = metricRow(step);
  if (!row) return el('p', { class: 'muted', text: 'metrics.jsonl has no row for step ' + step });
  const keys = Object.keys(row).sort();
  const half = Math.ceil(keys.length / 2);
  const table = (part) => el('table', { class: 'kv' }, part.map((k) => el('tr', { 'data-key': k }, el('td', { text: k }), el('td', { class: 'value', text: fmtMetric(row[k]) }))));
  return el('div', { class: 'kvwrap', id: 'step-metrics' }, table(keys.slice(0, half)), table(keys.slice(half)));
}

function searchHits() {
  if (!S.f.search) return null;
  const q = S.f.search.toLowerCase();
  const hits = [];
  for (const [key, rec] of Object.entries(STEPS)) {
    const n = rec.texts.filter((t) => String(t).toLowerCase().includes(q)).length;
    if (n) hits.push([Number(key), n]);
  }
  hits.sort((a, b) => a[0] - b[0]);
  return el('div', { class: 'hits', id: 'search-hits' }, 'matches in loaded steps: ',
    hits.length ? hits.slice(0, 200).map(([s, n]) => el('a', { onclick: () => openStep(s), text: 'step ' + s + ' (' + n + ')' })) : 'none');
}

async function renderStep(view) {
  const steps = availableSteps();
  if (S.step === null) S.step = steps.length ? steps[0] : (D.metrics.step || [0]).slice(-1)[0];
  const move = (dir) => { const i = steps.indexOf(S.step); const k = i < 0 ? steps.findIndex((s) => s > S.step) - (dir < 0 ? 1 : 0) : i + dir; if (k >= 0 && k < steps.length) openStep(steps[k]); };
  view.appendChild(el('div', { class: 'controls' },
    el('button', { id: 'step-prev', onclick: () => move(-1), text: '\u25c0 prev' }),
    el('label', {}, 'step ', el('input', { type: 'number', id: 'step-input', value: S.step, onchange: (e) => e.target.value !== '' && openStep(Number(e.target.value)) })),
    el('button', { id: 'step-next', onclick: () => move(1), text: 'next \u25b6' }),
    el('span', { class: 'muted', text: steps.length + ' steps with completions' + (D.meta.lazy ? ' (served)' : ' in this file') })));
  view.appendChild(el('h2', { text: 'step ' + S.step }));
  view.appendChild(stepMetricsTable(S.step));
  const body = el('div', { id: 'step-groups' });
  view.appendChild(filterBar(() => render()));
  view.appendChild(body);
  const rec = await getStep(S.step);
  if (!rec) {
    body.appendChild(el('p', { class: 'muted', id: 'step-missing', text: D.meta.has_rollouts
      ? 'This file does not hold step ' + S.step + "'s completions; `grpokit view --serve` (or --steps) shows every step."
      : 'The run wrote no rollouts.jsonl (log.rollouts off): metrics only.' }));
    return;
  }
  const counts = { total: 0, shown: 0 };
  const boxes = rec.indices.map((_, p) => groupBox(rec, p, counts)).filter(Boolean);
  body.appendChild(searchHits() || el('span'));
  boxes.forEach((b) => body.appendChild(b));
  view.querySelector('#f-count').textContent = 'showing ' + counts.shown + ' of ' + counts.total + ' completions in ' + boxes.length + ' groups';
}

function tokenStrip(c, kind, diffFrom) {
  const info = el('div', { id: 'tok-info', class: 'tok-info' });
  const strip = el('div', { class: 'tokens' });
  c.ids.forEach((id, t) => {
    const values = { logprob: c.logprobs ? c.logprobs[t] : null, entropy: c.entropies ? c.entropies[t] : null, advantage: c.adv };
    const piece = tokenText(id);
    const desc = 'token ' + t + ' id ' + id + ' ' + JSON.stringify(piece) + ' | log-prob ' + fmt(values.logprob) +
      ' | entropy ' + fmt(values.entropy) + ' | advantage ' + fmt(values.advantage);
    const span = el('span', { class: 'tok' + (diffFrom && diffFrom[t] !== id ? ' diff' : ''), title: desc, 'data-value': values[kind], text: piece });
    span.style.background = tokenColour(kind, values[kind]);
    span.addEventListener('mouseover', () => { info.textContent = desc; });
    strip.appendChild(span);
  });
  return el('div', {}, legend(kind), strip, info);
}

function colourSelect(onChange) {
  return el('select', { id: 'colour-by', onchange: (e) => { S.colourBy = e.target.value; onChange(); } },
    [['logprob', 'log-prob'], ['entropy', 'entropy'], ['advantage', 'advantage']].map(([v, label]) => el('option', { value: v, selected: S.colourBy === v, text: label })));
}

async function showDetail(step, b) {
  S.detail = { step, b };
  const box = clear(document.getElementById('detail'));
  box.hidden = false;
  const rec = await getStep(step);
  if (!rec) return;
  const c = completion(rec, b);
  const none = { logprob: !c.logprobs, entropy: !c.entropies, advantage: c.adv === null };
  box.append(
    el('h2', { text: 'step ' + step + ' \u00b7 group ' + c.p + ' \u00b7 completion ' + c.j }),
    el('button', { onclick: () => { S.detail = null; box.hidden = true; document.querySelectorAll('.card.selected').forEach((n) => n.classList.remove('selected')); }, text: 'close' }),
    completionCard(c, true),
    el('div', { class: 'controls' }, 'colour tokens by ', colourSelect(() => showDetail(step, b)),
      none[S.colourBy] ? el('span', { class: 'muted', text: 'not recorded for this run' }) : null),
    tokenStrip(c, S.colourBy),
    el('div', { class: 'controls' },
      el('button', { id: 'to-prompt', onclick: () => openPrompt(c.prompt), text: 'prompt #' + c.prompt + ' across the run' }),
      el('button', { id: 'to-compare', onclick: () => openCompare(c.prompt, step, c.j), text: 'compare with another step' })));
  document.querySelectorAll('.card').forEach((n) => n.classList.toggle('selected', Number(n.dataset.step) === step && Number(n.dataset.row) === b));
}
