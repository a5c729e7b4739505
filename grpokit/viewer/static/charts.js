// Small SVG line charts and colour scales, written for this page (no library, no network).
const SVGNS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function axisLabel(y) {
  return y !== 0 && Math.abs(y) < 1e-3 ? y.toExponential(2) : String(Number(y.toPrecision(4)));
}

// xs, ys: arrays (ys may hold null: a gap); alerts: [{step, text}]; onPick(step) on click
function lineChart({ title, xs, ys, alerts = [], onPick = null, dots = false, id = null }) {
  const W = 340, H = 150, L = 52, R = 8, T = 18, B = 20;
  const pts = [];
  xs.forEach((x, i) => { if (ys[i] !== null && ys[i] !== undefined) pts.push([x, ys[i]]); });
  const box = el('div', { class: 'chart', id, 'data-points': pts.length });
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  root.appendChild(svg('text', { x: 4, y: 12, class: 'title' }, title));
  box.appendChild(root);
  if (!pts.length) { root.appendChild(svg('text', { x: L, y: H / 2 }, 'no values')); return box; }
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Infinity, y1 = -Infinity;
  for (const [, y] of pts) { y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  root.appendChild(svg('rect', { x: L, y: T, width: W - L - R, height: H - T - B, fill: '#fff', stroke: '#d8d8dc' }));
  root.appendChild(svg('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, axisLabel(y1)));
  root.appendChild(svg('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, axisLabel(y0)));
  root.appendChild(svg('text', { x: L, y: H - 6 }, 'step ' + x0));
  root.appendChild(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, String(x1)));
  for (const a of alerts) {
    const line = svg('line', { x1: sx(a.step), x2: sx(a.step), y1: T, y2: H - B, stroke: '#c62828', 'stroke-dasharray': '3 2', class: 'alert-mark' });
    line.appendChild(svg('title', {}, 'step ' + a.step + ': ' + a.text));
    root.appendChild(line);
  }
  const d = pts.map(([x, y], i) => (i ? 'L' : 'M') + sx(x).toFixed(1) + ' ' + sy(y).toFixed(1)).join('');
  root.appendChild(svg('path', { d, fill: 'none', stroke: '#2458c6', 'stroke-width': 1.3 }));
  if (dots || pts.length < 60) {
    for (const [x, y] of pts.slice(0, 2000)) {
      const c = svg('circle', { cx: sx(x), cy: sy(y), r: 2.2, fill: '#2458c6' });
      c.appendChild(svg('title', {}, 'step ' + x + ': ' + fmtMetric(y)));
      root.appendChild(c);
    }
  }
  if (onPick) {
    root.addEventListener('click', (ev) => {
      const r = root.getBoundingClientRect();
      const x = x0 + ((ev.clientX - r.left) * (W / r.width) - L) / (W - L - R) * (x1 - x0);
      onPick(Math.round(x));
    });
  }
  return box;
}

// background colour of a token for value v of kind ('logprob', 'entropy', 'advantage')
function tokenColour(kind, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '#ffffff';
  if (kind === 'advantage') {
    const t = Math.min(1, Math.abs(v) / 2);
    return v >= 0 ? `rgb(${Math.round(255 - 120 * t)},${Math.round(255 - 40 * t)},${Math.round(255 - 120 * t)})`
      : `rgb(${Math.round(255 - 20 * t)},${Math.round(255 - 130 * t)},${Math.round(255 - 130 * t)})`;
  }
  const t = kind === 'logprob' ? Math.min(1, -v / 5) : Math.min(1, v / 3);
  return kind === 'logprob' ? `rgb(255,${Math.round(255 - 150 * t)},${Math.round(255 - 190 * t)})`
    : `rgb(${Math.round(255 - 90 * t)},${Math.round(255 - 140 * t)},255)`;
}

const SCALE_TEXT = { logprob: ['0', '\u2264 -5 (unlikely)'], entropy: ['0', '\u2265 3 nats'], advantage: ['-2', '+2'] };

function legend(kind) {
  const vals = kind === 'logprob' ? [0, -1.25, -2.5, -3.75, -5] : kind === 'entropy' ? [0, 0.75, 1.5, 2.25, 3] : [-2, -1, 0, 1, 2];
  const bar = el('span', { class: 'bar' });
  bar.style.background = 'linear-gradient(to right,' + vals.map((v) => tokenColour(kind, v)).join(',') + ')';
  return el('div', { class: 'legend' }, SCALE_TEXT[kind][0], bar, SCALE_TEXT[kind][1]);
}
