// A virtual results grid: rows live in an array; only the visible ones (plus a margin) exist in
// the DOM, as a fixed pool of row elements whose cells are refilled on scroll.

import { el, clear } from "./dom.js";
import { cellFormatter, isNumericType } from "./format.js";

const ROW_HEIGHT = 24;
const OVERSCAN = 8;
const CHAR_WIDTH = 7.3;   // the grid's 12px monospace face
const SAMPLE_ROWS = 200;
const NUMBER_WIDTH = 64;  // the row-number column: room for seven digits

export class Grid {
  constructor(host) {
    this.host = host;
    this.columns = [];
    this.rows = [];
    this.order = null;        // row indexes when sorted, else null
    this.sort = null;         // {index, dir}
    this.pool = [];
    this.frame = 0;
    this.scroller = el("div", { class: "grid-scroll", tabindex: "0" });
    this.header = el("div", { class: "grid-header" });
    this.sizer = el("div", { class: "grid-sizer" });
    this.body = el("div", { class: "grid-body" });
    this.sizer.append(this.body);
    this.scroller.append(this.header, this.sizer);
    host.append(this.scroller);
    this.scroller.addEventListener("scroll", () => this.schedule());
    new ResizeObserver(() => this.schedule()).observe(this.scroller);
  }

  /** Start a new result with these columns ({name, type}). */
  reset(columns) {
    this.columns = columns;
    this.formatters = columns.map((c) => cellFormatter(c.type));
    this.rows = [];
    this.order = null;
    this.sort = null;
    this.widths = null;
    this.pool = [];
    clear(this.body);
    this.scroller.scrollTop = 0;
    this.scroller.scrollLeft = 0;
    this.measure();
    this.schedule();
  }

  append(rows) {
    const before = this.rows.length;
    for (const row of rows) this.rows.push(row);
    if (before < SAMPLE_ROWS && rows.length) this.measure();
    if (this.sort) this.applySort();
    this.schedule();
  }

  get rowCount() {
    return this.rows.length;
  }

  /** Column widths from the header and the first rows: computed once, so nothing jumps later. */
  measure() {
    const sample = this.rows.slice(0, SAMPLE_ROWS);
    this.widths = this.columns.map((col, i) => {
      let chars = Math.max(col.name.length, Math.min(col.type.length, 14)) + 2;
      for (const row of sample) chars = Math.max(chars, this.formatters[i](row[i]).length);
      return Math.round(Math.min(Math.max(chars * CHAR_WIDTH + 18, 64), 420));
    });
    this.renderHeader();
    this.pool = [];
    clear(this.body);
  }

  renderHeader() {
    clear(this.header);
    const widths = this.widths;
    const total = widths.reduce((a, b) => a + b, 0) + NUMBER_WIDTH;
    this.header.style.width = this.sizer.style.width = `${total}px`;
    const corner = el("div", { class: "grid-cell grid-rownum" }, "#");
    corner.style.width = `${NUMBER_WIDTH}px`;
    this.header.append(corner);
    this.columns.forEach((col, i) => {
      const arrow = this.sort?.index === i ? (this.sort.dir > 0 ? " ▲" : " ▼") : "";
      const cell = el("div", { class: "grid-cell grid-head", title: `${col.name} · ${col.type} — click to sort`,
        role: "columnheader" },
        el("span", { class: "grid-colname" }, col.name + arrow), el("span", { class: "grid-coltype" }, col.type));
      if (isNumericType(col.type)) cell.classList.add("num");
      cell.style.width = `${widths[i]}px`;
      cell.addEventListener("click", () => this.toggleSort(i));
      this.header.append(cell);
    });
  }

  toggleSort(index) {
    const dir = this.sort?.index === index ? (this.sort.dir > 0 ? -1 : 0) : 1;
    this.sort = dir ? { index, dir } : null;
    if (this.sort) this.applySort();
    else this.order = null;
    this.renderHeader();
    this.schedule();
  }

  applySort() {
    const { index, dir } = this.sort;
    const numeric = isNumericType(this.columns[index].type);
    const key = (v) => (v === null || v === undefined ? null : numeric ? Number(v) : String(v));
    const keys = this.rows.map((r) => key(r[index]));
    this.order = keys.map((_, i) => i).sort((a, b) => {
      const x = keys[a], y = keys[b];
      if (x === y) return a - b;
      if (x === null) return 1;      // nulls last either way
      if (y === null) return -1;
      return (x < y ? -1 : 1) * dir;
    });
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const total = this.rows.length;
    this.sizer.style.height = `${total * ROW_HEIGHT}px`;
    const viewport = Math.max(this.scroller.clientHeight, ROW_HEIGHT * 10);
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const wanted = Math.ceil(viewport / ROW_HEIGHT) + 2 * OVERSCAN;
    this.ensurePool(wanted);
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    this.pool.forEach((rowEl, k) => this.fillRow(rowEl, first + k));
  }

  ensurePool(size) {
    if (!this.widths) return;
    while (this.pool.length < size) {
      const rowEl = el("div", { class: "grid-row", role: "row" });
      const num = el("div", { class: "grid-cell grid-rownum" });
      num.style.width = `${NUMBER_WIDTH}px`;
      rowEl.append(num);
      this.columns.forEach((col, i) => {
        const cell = el("div", { class: "grid-cell" });
        if (isNumericType(col.type)) cell.classList.add("num");
        cell.style.width = `${this.widths[i]}px`;
        rowEl.append(cell);
      });
      this.pool.push(rowEl);
      this.body.append(rowEl);
    }
    while (this.pool.length > size) this.pool.pop().remove();
  }

  fillRow(rowEl, position) {
    if (position >= this.rows.length) {
      rowEl.hidden = true;
      return;
    }
    rowEl.hidden = false;
    const index = this.order ? this.order[position] : position;
    const row = this.rows[index];
    const cells = rowEl.children;
    cells[0].textContent = String(index + 1);
    for (let i = 0; i < this.columns.length; i++) {
      const value = row[i];
      const cell = cells[i + 1];
      const text = this.formatters[i](value);
      const isNull = value === null || value === undefined;
      const wasNull = cell.classList.contains("null");
      if (cell.textContent === text && wasNull === isNull) continue;
      cell.textContent = text;
      if (wasNull !== isNull) cell.classList.toggle("null", isNull);
      if (text.length > 40 || cell.title) cell.title = text.length > 40 ? text : "";
    }
  }
}
