// Bar, line and scatter charts of a result, drawn on a <canvas>: no library, a few hundred marks
// or a hundred thousand points alike.

import { isNumericType, isTemporalType } from "./format.js";

const MAX_BARS = 400;
const PAD = { top: 16, right: 20, bottom: 56, left: 72 };
const COLORS = { mark: "#2f6fb0", axis: "#8a94a3", grid: "#e6e9ee", text: "#4a5361" };
const FONT = "11px system-ui, -apple-system, Segoe UI, sans-serif";

/** The kind of x axis a column gives: "number", "time" or "category". */
export function axisKind(column) {
  if (isNumericType(column.type)) return "number";
  if (isTemporalType(column.type)) return "time";
  return "category";
}

/**
 * Draw `kind` ("bar" | "line" | "scatter") of columns `x` and `y` (indexes into `columns`).
 * Returns {marks, note}; the canvas also gets `data-marks` so tests and tools can read it.
 */
export function drawChart(canvas, { kind, columns, rows, x, y }) {
  const ctx = setup(canvas);
  const { width, height } = canvas.getBoundingClientRect();
  const plot = { x0: PAD.left, y0: PAD.top, x1: width - PAD.right, y1: height - PAD.bottom };
  ctx.clearRect(0, 0, width, height);
  const series = extract(rows, x, y, kind === "bar" ? "category" : axisKind(columns[x]));
  let note = series.skipped ? `${series.skipped.toLocaleString()} rows without a numeric y skipped` : "";
  if (!series.points.length || plot.x1 <= plot.x0 || plot.y1 <= plot.y0) {
    canvas.dataset.marks = "0";
    message(ctx, width, height, series.points.length ? "" : "No numeric values to plot");
    return { marks: 0, note };
  }
  if (kind === "bar" && series.points.length > MAX_BARS) {
    series.points = series.points.slice(0, MAX_BARS);
    note = [`first ${MAX_BARS} bars`, note].filter(Boolean).join("; ");
  }
  if (kind === "line" && series.xKind !== "category") series.points.sort((a, b) => a.x - b.x);
  const scales = makeScales(series, plot, kind);
  drawAxes(ctx, scales, plot, columns[x].name, columns[y].name);
  const marks = { bar: drawBars, line: drawLine, scatter: drawPoints }[kind](ctx, series.points, scales, plot);
  canvas.dataset.marks = String(marks);
  return { marks, note };
}

function setup(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const { width, height } = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(width * ratio));
  canvas.height = Math.max(1, Math.round(height * ratio));
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.font = FONT;
  return ctx;
}

function message(ctx, width, height, text) {
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = "center";
  ctx.fillText(text, width / 2, height / 2);
}

function extract(rows, xi, yi, xKind) {
  const points = [];
  const categories = new Map();
  let skipped = 0;
  for (const row of rows) {
    const yv = row[yi] === null || row[yi] === undefined ? NaN : Number(row[yi]);
    let xv = row[xi];
    if (xKind === "number") xv = Number(xv);
    else if (xKind === "time") xv = Date.parse(xv);
    if (!Number.isFinite(yv) || (xKind !== "category" && !Number.isFinite(xv))) {
      skipped++;
      continue;
    }
    if (xKind === "category") {
      const label = xv === null || xv === undefined ? "NULL" : String(xv);
      if (!categories.has(label)) categories.set(label, categories.size);
      points.push({ x: categories.get(label), y: yv, label });
    } else {
      points.push({ x: xv, y: yv });
    }
  }
  return { points, xKind, categories: [...categories.keys()], skipped };
}

function makeScales(series, plot, kind) {
  const ys = series.points.map((p) => p.y);
  let yMin = Math.min(...sample(ys, Math.min)), yMax = Math.max(...sample(ys, Math.max));
  if (kind === "bar") { yMin = Math.min(0, yMin); yMax = Math.max(0, yMax); }
  const yTicks = niceTicks(yMin, yMax, Math.max(2, Math.floor((plot.y1 - plot.y0) / 40)));
  const yLo = Math.min(yMin, yTicks[0]), yHi = Math.max(yMax, yTicks[yTicks.length - 1]);
  const y = (v) => plot.y1 - ((v - yLo) / (yHi - yLo || 1)) * (plot.y1 - plot.y0);
  if (series.xKind === "category") {
    const n = Math.max(1, series.categories.length);
    const band = (plot.x1 - plot.x0) / n;
    return { y, yTicks, band, xKind: "category", categories: series.categories,
      x: (i) => plot.x0 + band * (i + 0.5) };
  }
  const xs = series.points.map((p) => p.x);
  const xMin = Math.min(...sample(xs, Math.min)), xMax = Math.max(...sample(xs, Math.max));
  const xTicks = series.xKind === "time" ? timeTicks(xMin, xMax) : niceTicks(xMin, xMax, Math.max(2, Math.floor((plot.x1 - plot.x0) / 90)));
  const xLo = series.xKind === "time" ? xMin : Math.min(xMin, xTicks[0]);
  const xHi = series.xKind === "time" ? xMax : Math.max(xMax, xTicks[xTicks.length - 1]);
  const x = (v) => plot.x0 + ((v - xLo) / (xHi - xLo || 1)) * (plot.x1 - plot.x0);
  return { y, yTicks, x, xTicks, xKind: series.xKind, xSpan: xHi - xLo };
}

// Math.min(...array) overflows the stack on huge arrays: reduce in chunks first.
function sample(values, fn) {
  const out = [];
  for (let i = 0; i < values.length; i += 50000) out.push(fn(...values.slice(i, i + 50000)));
  return out;
}

export function niceTicks(lo, hi, count) {
  if (lo === hi) { lo -= Math.abs(lo) || 1; hi += Math.abs(hi) || 1; }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

const DAY = 86400e3;

/** Ticks on calendar boundaries (UTC): years, months or days, whichever gives 3–10 of them. */
export function timeTicks(lo, hi) {
  const span = hi - lo;
  if (span > 3 * 365 * DAY) return calendarTicks(lo, hi, "year", [1, 2, 5, 10, 20, 50, 100]);
  if (span > 90 * DAY) return calendarTicks(lo, hi, "month", [1, 2, 3, 6]);
  if (span > 3 * DAY) return calendarTicks(lo, hi, "day", [1, 2, 7, 14]);
  return niceTicks(lo, hi, 6).filter((t) => t >= lo && t <= hi);
}

function calendarTicks(lo, hi, unit, steps) {
  const start = new Date(lo);
  const units = unit === "year" ? (hi - lo) / (365.25 * DAY) : unit === "month" ? (hi - lo) / (30.44 * DAY) : (hi - lo) / DAY;
  const step = steps.find((s) => units / s <= 10) || steps[steps.length - 1];
  let y = start.getUTCFullYear(), m = unit === "year" ? 0 : start.getUTCMonth(), d = unit === "day" ? start.getUTCDate() : 1;
  if (unit === "year") y = Math.ceil(y / step) * step;
  const ticks = [];
  for (let t = Date.UTC(y, m, d); t <= hi && ticks.length < 200; ) {
    if (t >= lo) ticks.push(t);
    if (unit === "year") y += step;
    else if (unit === "month") m += step;
    else d += step;
    t = Date.UTC(y, m, d);
  }
  return ticks.length >= 2 ? ticks : [lo, hi];
}

function tickLabel(v, kind, span) {
  if (kind === "time") {
    const iso = new Date(v).toISOString();
    if (span > 3 * 365 * DAY) return iso.slice(0, 4);
    if (span > 90 * DAY) return iso.slice(0, 7);
    return span > 3 * DAY ? iso.slice(0, 10) : iso.slice(0, 16).replace("T", " ");
  }
  const abs = Math.abs(v);
  if (abs >= 1e6) return new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 2 }).format(v);
  return String(Number(v.toPrecision(6)));
}

function drawAxes(ctx, s, plot, xName, yName) {
  ctx.lineWidth = 1;
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of s.yTicks) {
    const py = Math.round(s.y(t)) + 0.5;
    line(ctx, plot.x0, py, plot.x1, py, COLORS.grid);
    ctx.fillText(tickLabel(t, "number"), plot.x0 - 8, py);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  if (s.xKind === "category") drawCategoryLabels(ctx, s, plot);
  else {
    for (const t of s.xTicks) {
      const px = Math.round(s.x(t)) + 0.5;
      line(ctx, px, plot.y1, px, plot.y1 + 4, COLORS.axis);
      const label = tickLabel(t, s.xKind, s.xSpan);
      const half = ctx.measureText(label).width / 2;
      // Keep the end labels inside the canvas rather than centred under their tick.
      const cx = Math.min(Math.max(px, half + 2), plot.x1 + PAD.right - half - 2);
      ctx.fillText(label, cx, plot.y1 + 7);
    }
  }
  line(ctx, plot.x0, plot.y1 + 0.5, plot.x1, plot.y1 + 0.5, COLORS.axis);
  line(ctx, plot.x0 - 0.5, plot.y0, plot.x0 - 0.5, plot.y1, COLORS.axis);
  ctx.font = `600 ${FONT}`;
  ctx.fillText(xName, (plot.x0 + plot.x1) / 2, plot.y1 + 34);
  ctx.save();
  ctx.translate(14, (plot.y0 + plot.y1) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(yName, 0, -6);
  ctx.restore();
  ctx.font = FONT;
}

function drawCategoryLabels(ctx, s, plot) {
  const widest = Math.max(...s.categories.slice(0, 200).map((c) => ctx.measureText(c).width), 1);
  const every = Math.max(1, Math.ceil((Math.min(widest, 120) + 8) / s.band));
  s.categories.forEach((label, i) => {
    if (i % every) return;
    const text = label.length > 18 ? `${label.slice(0, 17)}…` : label;
    ctx.fillText(text, s.x(i), plot.y1 + 7);
  });
}

function line(ctx, x0, y0, x1, y1, color) {
  ctx.strokeStyle = color;
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}

function drawBars(ctx, points, s) {
  const width = Math.max(1, s.band * 0.8);
  const base = s.y(Math.max(s.yTicks[0], Math.min(0, s.yTicks[s.yTicks.length - 1])));
  ctx.fillStyle = COLORS.mark;
  for (const p of points) {
    const top = s.y(p.y);
    ctx.fillRect(s.x(p.x) - width / 2, Math.min(top, base), width, Math.max(1, Math.abs(base - top)));
  }
  return points.length;
}

function drawLine(ctx, points, s) {
  ctx.strokeStyle = COLORS.mark;
  ctx.lineWidth = 1.75;
  ctx.lineJoin = "round";
  ctx.beginPath();
  points.forEach((p, i) => (i ? ctx.lineTo(s.x(p.x), s.y(p.y)) : ctx.moveTo(s.x(p.x), s.y(p.y))));
  ctx.stroke();
  if (points.length <= 200) drawDots(ctx, points, s, 2.5);
  return points.length;
}

function drawPoints(ctx, points, s) {
  ctx.globalAlpha = points.length > 5000 ? 0.35 : 0.75;
  drawDots(ctx, points, s, points.length > 5000 ? 1.5 : 3);
  ctx.globalAlpha = 1;
  return points.length;
}

function drawDots(ctx, points, s, r) {
  ctx.fillStyle = COLORS.mark;
  ctx.beginPath();
  for (const p of points) {
    const px = s.x(p.x), py = s.y(p.y);
    ctx.moveTo(px + r, py);
    ctx.arc(px, py, r, 0, 2 * Math.PI);
  }
  ctx.fill();
}
