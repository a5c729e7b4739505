// Tabs, the header, and start-up.
const RENDER = { overview: renderOverview, step: renderStep, prompt: renderPrompt, compare: renderCompare };

function openStep(step) { S.step = step; show('step'); }

function show(view) { S.view = view; render(); }

async function render() {
  for (const b of document.querySelectorAll('nav button')) b.classList.toggle('active', b.dataset.view === S.view);
  const old = document.getElementById('view');
  const view = el('section', { id: 'view', 'data-view': S.view, 'data-ready': 'no' });
  old.replaceWith(view);
  try {
    await RENDER[S.view](view);
  } catch (err) {
    view.appendChild(el('p', { class: 'muted', text: 'could not show this: ' + err.message }));
  }
  view.setAttribute('data-ready', 'yes');
}

function header() {
  const s = D.summary || {}, m = D.meta;
  document.getElementById('run-title').textContent = 'grpokit view: ' + m.run;
  const facts = [];
  if (typeof s.accuracy_before === 'number') facts.push('held-out accuracy ' + fmt(s.accuracy_before, 3) + ' \u2192 ' + fmt(s.accuracy_after, 3));
  facts.push((D.metrics.step || []).length + ' metric rows', m.rollout_steps.length + ' steps with completions');
  document.getElementById('run-facts').textContent = facts.join(' \u00b7 ');
  if (!m.lazy && m.has_rollouts && m.embedded_steps.length < m.rollout_steps.length) {
    document.getElementById('notice').textContent = 'This file holds the completions of ' + m.embedded_steps.length + ' of ' +
      m.rollout_steps.length + ' steps (first, last, evenly spaced); `grpokit view --serve ' + m.run + '` shows every step.';
  }
}

for (const b of document.querySelectorAll('nav button')) b.addEventListener('click', () => show(b.dataset.view));
header();
render();
