// chart.js - a small line chart on a <canvas>: the last N points of one
// series, its latest value labelled, scaled to the canvas' CSS size and the
// screen's pixel density. Gaps (null) break the line.

const STYLE = {
  line: '#1d4ed8',
  fill: 'rgba(29, 78, 216, 0.12)',
  grid: '#d6dbe4',
  text: '#4b5563',
};

export class Series {
  constructor(max = 60) {
    this.max = max;
    this.points = [];
  }

  push(value) {
    this.points.push(value === undefined || !Number.isFinite(value) ? null : value);
    if (this.points.length > this.max) this.points.shift();
  }
}

// Draws series on canvas; format renders the axis labels; empty is what
// to say while the series has no value.
export function drawChart(canvas, series, format, empty = 'no data yet') {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, canvas.clientWidth);
  const hgt = Math.max(1, canvas.clientHeight);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);

  const pts = series.points;
  const values = pts.filter((v) => v !== null);
  const top = 14;
  const bottom = hgt - 4;
  const highest = values.length ? Math.max(...values) : 0;
  const max = highest > 0 ? highest : 1;
  const y = (v) => bottom - (v / max) * (bottom - top);
  // Few points spread over the width; a full series scrolls from the right.
  const slots = Math.max(pts.length, 12);
  const step = w / (slots - 1);
  const x = (i) => (slots - pts.length + i) * step;

  ctx.strokeStyle = STYLE.grid;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(0, bottom + 0.5);
  ctx.lineTo(w, bottom + 0.5);
  ctx.stroke();

  ctx.fillStyle = STYLE.text;
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'top';
  if (!values.length) {
    ctx.fillText(empty, 2, top + 4);
    return;
  }
  ctx.fillText(`max ${format(highest)}`, 2, 0);

  // Runs of consecutive points, each filled and stroked.
  let run = [];
  const flush = () => {
    if (!run.length) return;
    ctx.beginPath();
    ctx.moveTo(x(run[0]), bottom);
    for (const i of run) ctx.lineTo(x(i), y(pts[i]));
    ctx.lineTo(x(run[run.length - 1]), bottom);
    ctx.closePath();
    ctx.fillStyle = STYLE.fill;
    ctx.fill();
    ctx.beginPath();
    run.forEach((i, k) => (k ? ctx.lineTo(x(i), y(pts[i])) : ctx.moveTo(x(i), y(pts[i]))));
    ctx.strokeStyle = STYLE.line;
    ctx.lineWidth = 2;
    ctx.stroke();
    if (run.length === 1) {
      ctx.fillStyle = STYLE.line;
      ctx.fillRect(x(run[0]) - 2, y(pts[run[0]]) - 2, 4, 4);
    }
    run = [];
  };
  pts.forEach((v, i) => (v === null ? flush() : run.push(i)));
  flush();
}
