// The run at a glance, a prompt across the run, and one completion compared between two steps.

function seriesList() {
  const comps = (D.meta.components || []).map((c) => ['reward/' + c + '/mean', 'reward: ' + c]);
  return [['reward/total/mean', 'reward (total)'], ...comps, ['eval/accuracy', 'held-out accuracy'],
    ['completion/length_mean', 'completion length (tokens)'], ['completion/truncated_share', 'truncated share'],
    ['reward/zero_std_share', 'equal-reward groups share'], ['completion/entropy', 'entropy (nats/token)'],
    ['update/kl', 'KL to reference'], ['update/clipped_share', 'clipped share'], ['update/lr', 'learning rate']];
}

function nearestStep(step) {
  const steps = availableSteps();
  if (!steps.length) return step;
  return steps.reduce((best, s) => (Math.abs(s - step) < Math.abs(best - step) ? s : best), steps[0]);
}

function renderOverview(view) {
  const m = D.metrics;
  const charts = el('div', { class: 'charts', id: 'overview-charts' });
  for (const [key, label] of seriesList()) {
    if (!m[key] || !m[key].some((v) => v !== null)) continue;  // not recorded by this run
    charts.appendChild(lineChart({ title: label, xs: m.step, ys: m[key], alerts: D.alerts, id: 'chart-' + key.replace(/\W/g, '_'),
      dots: key === 'eval/accuracy', onPick: (s) => openStep(nearestStep(s)) }));
  }
  const s = D.summary || {};
  view.append(el('h2', { text: 'the run at a glance' }),
    el('p', { class: 'muted', text: 'click a chart to open the nearest step with completions' }), charts);
  if (D.alerts.length) {
    view.append(el('h2', { text: 'alerts' }), el('ul', { class: 'alerts', id: 'alerts' },
      D.alerts.map((a) => el('li', {}, el('a', { class: 'step-link', onclick: () => openStep(nearestStep(a.step)), text: 'step ' + a.step }), a.text))));
  }
  if (Object.keys(s).length) {
    view.append(el('h2', { text: 'summary.json' }), el('table', { class: 'kv', id: 'summary' },
      Object.entries(s).map(([k, v]) => el('tr', {}, el('td', { text: k }), el('td', { text: typeof v === 'number' ? fmtMetric(v) : JSON.stringify(v) })))));
  }
}

function openPrompt(index) { S.prompt = index; S.promptPage = 0; show('prompt'); }

async function renderPrompt(view) {
  if (S.prompt === null && D.groups.prompt.length) S.prompt = D.groups.prompt[0];
  const rows = promptRows(S.prompt);
  const info = D.prompts[String(S.prompt)] || {};
  view.appendChild(el('div', { class: 'controls' },
    el('label', {}, 'prompt index ', el('input', { type: 'number', id: 'prompt-input', value: S.prompt, onchange: (e) => e.target.value !== '' && openPrompt(Number(e.target.value)) })),
    el('span', { class: 'muted', id: 'prompt-drawn', text: 'drawn at ' + rows.length + ' steps' })));
  view.appendChild(el('pre', { class: 'text', id: 'prompt-text', text: promptText(info.prompt) }));
  if (info.answer !== undefined && info.answer !== null) view.appendChild(el('p', { text: 'answer: ' + info.answer }));
  if (!rows.length) return;
  const xs = rows.map((i) => D.groups.step[i]);
  view.appendChild(el('div', { class: 'charts' },
    lineChart({ title: 'pass rate (' + (D.meta.accuracy_component || 'reward') + ' > 0)', xs, ys: rows.map((i) => D.groups.pass[i]), dots: true, id: 'chart-pass', onPick: (s) => openStep(nearestStep(s)) }),
    lineChart({ title: 'group mean reward', xs, ys: rows.map((i) => D.groups.mean[i]), dots: true, id: 'chart-prompt-mean' })));
  view.appendChild(el('p', { class: 'hits' }, 'steps: ', xs.slice(0, 300).map((s) => el('a', { onclick: () => openStep(s), text: String(s) }))));
  view.appendChild(filterBar(() => render()));
  const have = xs.filter((s) => availableSteps().includes(s));
  const per = 5, pages = Math.max(1, Math.ceil(have.length / per));
  S.promptPage = Math.min(S.promptPage, pages - 1);
  view.appendChild(el('div', { class: 'pager' },
    el('button', { id: 'prompt-prev', onclick: () => { S.promptPage = Math.max(0, S.promptPage - 1); render(); }, text: '\u25c0' }),
    ' page ' + (S.promptPage + 1) + ' of ' + pages + ' (' + have.length + ' steps with completions) ',
    el('button', { id: 'prompt-next', onclick: () => { S.promptPage = Math.min(pages - 1, S.promptPage + 1); render(); }, text: '\u25b6' })));
  const counts = { total: 0, shown: 0 };
  const list = el('div', { id: 'prompt-groups' });
  view.appendChild(list);
  for (const s of have.slice(S.promptPage * per, (S.promptPage + 1) * per)) {
    const rec = await getStep(s);
    rec.indices.forEach((idx, p) => {
      if (idx !== S.prompt) return;
      const box = groupBox(rec, p, counts);
      list.appendChild(el('h2', {}, el('a', { class: 'step-link', onclick: () => openStep(s), text: 'step ' + s })));
      list.appendChild(box || el('p', { class: 'muted', text: 'no completion passes the filters' }));
    });
  }
  view.querySelector('#f-count').textContent = 'showing ' + counts.shown + ' of ' + counts.total + ' completions';
}

function rankInGroup(rec, b) {
  const gs = rec.group_size || G, p = Math.floor(b / gs);
  const order = groupRows(rec, p).sort((x, y) => (rec.advantages ? rec.advantages[y] - rec.advantages[x] : x - y));
  return order.indexOf(b) + 1;
}

function rowOfRank(rec, index, rank) {
  const p = rec.indices.indexOf(index);
  const order = groupRows(rec, p).sort((x, y) => (rec.advantages ? rec.advantages[y] - rec.advantages[x] : x - y));
  return order[Math.min(rank, order.length) - 1];
}

async function openCompare(index, stepA, row) {
  const rec = await getStep(stepA);
  S.cmp = { prompt: index, a: stepA, b: null, rank: rec ? rankInGroup(rec, row) : 1 };
  show('compare');
}

function defaultComparePrompt() {
  const have = new Set(availableSteps());
  const counts = new Map();
  D.groups.prompt.forEach((p, i) => { if (have.has(D.groups.step[i])) counts.set(p, (counts.get(p) || 0) + 1); });
  let best = null;
  for (const [p, n] of counts) if (best === null || n > counts.get(best)) best = p;
  return best;
}

async function renderCompare(view) {
  const c = S.cmp;
  if (c.prompt === null) c.prompt = defaultComparePrompt();
  const have = new Set(availableSteps());
  const steps = promptRows(c.prompt).map((i) => D.groups.step[i]).filter((s) => have.has(s));
  if (c.a === null || !steps.includes(c.a)) c.a = steps[0] ?? null;
  if (c.b === null || !steps.includes(c.b)) c.b = steps.find((s) => s !== c.a) ?? c.a;
  const pick = (id, value, key) => el('select', { id, onchange: (e) => { c[key] = Number(e.target.value); render(); } },
    steps.map((s) => el('option', { value: s, selected: s === value, text: 'step ' + s })));
  view.appendChild(el('div', { class: 'controls' },
    el('label', {}, 'prompt index ', el('input', { type: 'number', id: 'cmp-prompt', value: c.prompt ?? '', onchange: (e) => e.target.value !== '' && (() => { c.prompt = Number(e.target.value); c.a = c.b = null; render(); })() })),
    el('label', {}, 'step A ', pick('cmp-a', c.a, 'a')), el('label', {}, 'step B ', pick('cmp-b', c.b, 'b')),
    el('label', {}, 'completion ranked ', el('input', { type: 'number', id: 'cmp-rank', min: 1, max: G, value: c.rank, onchange: (e) => { c.rank = Math.max(1, Number(e.target.value)); render(); } }), ' by advantage'),
    el('label', {}, 'colour by ', colourSelect(() => render()))));
  if (!steps.length) { view.appendChild(el('p', { class: 'muted', text: 'this prompt has no completions here' })); return; }
  const [ra, rb] = [await getStep(c.a), await getStep(c.b)];
  const ca = completion(ra, rowOfRank(ra, c.prompt, c.rank)), cb = completion(rb, rowOfRank(rb, c.prompt, c.rank));
  let shared = 0;
  while (shared < ca.ids.length && shared < cb.ids.length && ca.ids[shared] === cb.ids[shared]) shared++;
  view.appendChild(el('p', { id: 'cmp-shared', text: 'same first ' + shared + ' tokens; outlined tokens differ from the other side' }));
  const side = (x, other, id) => el('div', { id }, el('h2', { text: 'step ' + x.step }), completionCard(x, false), tokenStrip(x, S.colourBy, other.ids));
  view.appendChild(el('div', { class: 'cols' }, side(ca, cb, 'cmp-left'), side(cb, ca, 'cmp-right')));
}
