// The output area of a query: grid, status line, truncated notice, problem box, downloads, chart.

import { getToken, sqlUrl } from "./api.js";
import { axisKind, drawChart } from "./chart.js";
import { $, el } from "./dom.js";
import { formatCount, formatMs, isNumericType } from "./format.js";
import { Grid } from "./grid.js";

const DOWNLOADS = { csv: "csv", parquet: "parquet", arrow: "arrows", json: "json" };

export class Results {
  constructor() {
    this.grid = new Grid($("results-grid"));
    this.columns = [];
    this.query = null;
    for (const fmt of Object.keys(DOWNLOADS)) {
      $(`dl-${fmt}`).addEventListener("click", downloadWithToken);
    }
    for (const id of ["chart-kind", "chart-x", "chart-y"]) $(id).addEventListener("change", () => this.drawChart());
    new ResizeObserver(() => this.chartVisible() && this.drawChart()).observe($("chart"));
  }

  /** A new query started: clear the previous result and problem. */
  start(sql, engine) {
    this.query = { sql, engine };
    this.columns = [];
    this.hideProblem();
    $("truncated").hidden = true;
    $("downloads").hidden = true;
    $("results-empty").hidden = true;
    $("results-grid").hidden = true;
    this.grid.reset([]);
  }

  setColumns(columns) {
    this.columns = columns;
    $("results-grid").hidden = false;
    this.grid.reset(columns);
    this.fillChartControls();
  }

  addRows(rows) {
    this.grid.append(rows);
  }

  /** The stream ended: `tail` is {row_count, truncated, elapsed_ms}; `totalMs` as seen here. */
  finish(tail, totalMs) {
    const rows = tail.row_count;
    setStatus(`${formatCount(rows)} row${rows === 1 ? "" : "s"} · ${formatMs(tail.elapsed_ms)}`,
      `engine ${formatMs(tail.elapsed_ms)}, received in ${formatMs(totalMs)}`);
    const notice = $("truncated");
    notice.hidden = !tail.truncated;
    notice.textContent = tail.truncated
      ? `Showing the first ${formatCount(rows)} rows: the result was truncated at the server's row limit. `
        + "The downloads below hold the full result." : "";
    this.setDownloads();
    if (!rows && !this.columns.length) $("results-empty").hidden = false;
    if (this.chartVisible()) this.drawChart();
  }

  setDownloads() {
    const { sql, engine } = this.query;
    for (const [fmt, ext] of Object.entries(DOWNLOADS)) {
      const link = $(`dl-${fmt}`);
      link.href = sqlUrl(sql, engine, fmt);
      link.download = `result.${ext}`;
    }
    $("downloads").hidden = false;
  }

  showProblem(problem) {
    $("error-title").textContent = problem.title || "Error";
    $("error-code").textContent = problem.code || "";
    $("error-detail").textContent = problem.detail || problem.message;
    $("error").hidden = false;
    setStatus(problem.status ? `Failed · ${problem.status}` : "Failed");
  }

  hideProblem() {
    $("error").hidden = true;
  }

  // -- chart ------------------------------------------------------------------------------

  chartVisible() {
    return !$("pane-chart").hidden;
  }

  /** Offer every column for x and the numeric ones for y; keep the previous picks when they still exist. */
  fillChartControls() {
    const xSel = $("chart-x"), ySel = $("chart-y");
    const prevX = xSel.selectedOptions[0]?.textContent, prevY = ySel.selectedOptions[0]?.textContent;
    const option = (i) => el("option", { value: String(i) }, this.columns[i].name);
    const all = this.columns.map((_, i) => i);
    const numeric = all.filter((i) => isNumericType(this.columns[i].type));
    xSel.replaceChildren(...all.map(option));
    ySel.replaceChildren(...numeric.map(option));
    const named = (name) => this.columns.findIndex((c) => c.name === name);
    const firstText = all.find((i) => !isNumericType(this.columns[i].type));
    const x = named(prevX) >= 0 ? named(prevX) : (firstText ?? 0);
    const y = numeric.includes(named(prevY)) && named(prevY) !== x ? named(prevY) : numeric.find((i) => i !== x);
    xSel.value = String(x);
    if (y !== undefined) ySel.value = String(y);
    if (named(prevX) < 0 && this.columns.length) {
      const kind = axisKind(this.columns[x]);
      $("chart-kind").value = kind === "time" ? "line" : kind === "number" ? "scatter" : "bar";
    }
  }

  drawChart() {
    const canvas = $("chart");
    const x = Number($("chart-x").value), y = Number($("chart-y").value);
    if (!this.columns.length || $("chart-y").value === "") {
      canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
      canvas.dataset.marks = "0";
      $("chart-note").textContent = this.columns.length ? "The result has no numeric column for y." : "Run a query first.";
      return;
    }
    const rows = this.grid.rows;
    const { note } = drawChart(canvas, { kind: $("chart-kind").value, columns: this.columns, rows, x, y });
    $("chart-note").textContent = note;
  }
}

export function setStatus(text, title = "") {
  const status = $("status");
  status.textContent = text;
  status.title = title;
}

/**
 * Plain links stream straight to disk. With a token the browser cannot add the header to a
 * link, so fetch the file with it and hand the blob over instead.
 */
async function downloadWithToken(event) {
  const token = getToken();
  if (!token) return;
  event.preventDefault();
  const link = event.currentTarget;
  const response = await fetch(link.href, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    setStatus(`Download failed · ${response.status}`);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", { href: url, download: link.download });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
