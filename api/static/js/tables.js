// The table browser (sidebar) and a table's detail (columns, history, first rows).

import { describeTable, listTables, streamTableRows, tableHistory } from "./api.js";
import { $, clear, el } from "./dom.js";
import { formatBytes, formatCompact, formatCount, formatTime } from "./format.js";
import { Grid } from "./grid.js";

const FIRST_ROWS = 100;

export class TableBrowser {
  /** `onOpen(name)` shows a table; `onInsert(text)` puts a name into the editor. */
  constructor({ onOpen, onInsert, onError }) {
    this.list = $("table-list");
    this.filter = $("table-filter");
    this.onOpen = onOpen;
    this.onInsert = onInsert;
    this.onError = onError;
    this.tables = [];
    this.expanded = new Set();
    this.active = null;
    this.filter.addEventListener("input", () => this.render());
    this.filter.addEventListener("keydown", (e) => this.filterKey(e));
  }

  async load() {
    this.list.replaceChildren(el("li", { class: "muted pad" }, "Loading tables…"));
    try {
      this.tables = await listTables();
    } catch (err) {
      this.tables = [];
      this.list.replaceChildren(el("li", { class: "problem-inline pad" }, err.detail || err.message));
      this.onError?.(err);
      return;
    }
    this.render();
  }

  names() {
    return this.tables.map((t) => t.name);
  }

  visible() {
    const q = this.filter.value.trim().toLowerCase();
    if (!q) return this.tables;
    return this.tables.filter((t) => t.name.toLowerCase().includes(q)
      || t.columns.some((c) => c.name.toLowerCase().includes(q)));
  }

  render() {
    const tables = this.visible();
    clear(this.list);
    if (!tables.length) {
      this.list.append(el("li", { class: "muted pad" }, this.tables.length ? "No match" : "No tables yet"));
      return;
    }
    const q = this.filter.value.trim().toLowerCase();
    for (const t of tables) this.list.append(this.item(t, q));
  }

  item(table, query) {
    const open = this.expanded.has(table.name) || (query && !table.name.toLowerCase().includes(query));
    const toggle = el("button", { class: "twisty", "aria-expanded": String(Boolean(open)),
      title: "Show columns", "aria-label": `Columns of ${table.name}` }, open ? "▾" : "▸");
    const name = el("button", { class: "table-name", title: `Open ${table.name}: columns, history, first rows` },
      table.name);
    const meta = el("span", { class: "table-meta" },
      el("span", { class: `badge badge-${table.kind}` }, table.kind),
      table.version === null || table.version === undefined ? "" : el("span", { class: "version" }, `v${table.version}`),
      el("span", { class: "rows", title: `${formatCount(table.row_count)} rows` }, formatCompact(table.row_count)));
    const li = el("li", { class: table.name === this.active ? "table-item active" : "table-item", "data-table": table.name },
      el("div", { class: "table-row" }, toggle, name, meta));
    if (open) li.append(columnList(table.columns, query, (c) => this.onInsert?.(quoteIdent(c))));
    toggle.addEventListener("click", () => {
      if (this.expanded.has(table.name)) this.expanded.delete(table.name);
      else this.expanded.add(table.name);
      this.render();
    });
    name.addEventListener("click", () => this.open(table.name));
    name.addEventListener("dblclick", () => this.onInsert?.(quoteIdent(table.name)));
    return li;
  }

  open(name) {
    this.active = name;
    this.render();
    this.onOpen(name);
  }

  filterKey(e) {
    if (e.key === "Enter") {
      const first = this.visible()[0];
      if (first) this.open(first.name);
    } else if (e.key === "Escape") {
      this.filter.value = "";
      this.render();
    }
  }
}

function columnList(columns, query, onPick) {
  const ul = el("ul", { class: "column-list" });
  for (const c of columns) {
    const hit = query && c.name.toLowerCase().includes(query);
    const li = el("li", { class: hit ? "hit" : "", title: "Double-click to insert into the editor" },
      el("span", { class: "col-name" }, c.name),
      el("span", { class: "col-type" }, c.type + (c.nullable === false ? " not null" : "")));
    li.addEventListener("dblclick", () => onPick(c.name));
    ul.append(li);
  }
  return ul;
}

/** Quote an identifier only when DuckDB needs it. */
export function quoteIdent(name) {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** The "Table" tab: one table's metadata, columns, history and first rows. */
export class TableDetail {
  constructor() {
    this.grid = new Grid($("detail-grid"));
    this.current = null;
    this.controller = null;
  }

  async show(name) {
    this.controller?.abort();
    this.controller = new AbortController();
    this.current = name;
    $("detail-name").textContent = name;
    $("detail-meta").textContent = "Loading…";
    clear($("detail-columns"));
    clear($("detail-history"));
    this.grid.reset([]);
    const signal = this.controller.signal;
    const [info, history] = await Promise.all([describeTable(name), tableHistory(name).catch(() => [])]);
    if (this.current !== name) return;
    this.renderInfo(info);
    this.renderHistory(history);
    await streamTableRows(name, FIRST_ROWS, {
      signal,
      onColumns: (cols) => this.grid.reset(cols),
      onRows: (rows) => this.grid.append(rows),
    });
  }

  renderInfo(info) {
    const parts = [info.kind, info.version === null || info.version === undefined ? null : `version ${info.version}`,
      `${formatCount(info.row_count)} rows`, `${info.files} file${info.files === 1 ? "" : "s"}`, formatBytes(info.bytes),
      info.partitions?.length ? `partitioned by ${info.partitions.join(", ")}` : null];
    $("detail-meta").textContent = parts.filter(Boolean).join(" · ");
    const list = $("detail-columns");
    for (const c of info.columns) {
      list.append(el("li", {}, el("span", { class: "col-name" }, c.name),
        el("span", { class: "col-type" }, c.type + (c.nullable === false ? " not null" : ""))));
    }
  }

  renderHistory(history) {
    const body = $("detail-history");
    if (!history.length) {
      body.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No versions (an external table)")));
      return;
    }
    for (const h of history) {
      const rows = h.rows_added ?? h.operation_metrics?.num_added_rows ?? "";
      const files = Number.isFinite(h.files_added) ? `+${h.files_added} / −${h.files_removed ?? 0}` : "";
      const mode = h.parameters?.mode ? ` (${h.parameters.mode})` : "";
      body.append(el("tr", {}, el("td", { class: "num" }, String(h.version)), el("td", {}, formatTime(h.timestamp)),
        el("td", {}, `${h.operation || ""}${mode}`), el("td", { class: "num" }, rows === "" ? "" : formatCount(rows)),
        el("td", { class: "num" }, files)));
    }
  }
}
