// The Colonnade console: wires the editor, table browser, results and history together.

import { getToken, setToken, streamQuery } from "./api.js";
import { $, clear, el, selectTab } from "./dom.js";
import { Editor } from "./editor.js";
import { formatCount, formatMs } from "./format.js";
import { clearHistory, loadHistory, remember } from "./history.js";
import { Results, setStatus } from "./results.js";
import { TableBrowser, TableDetail, quoteIdent } from "./tables.js";

const DRAFT_KEY = "colonnade.draft";
const ENGINE_KEY = "colonnade.engine";
const EXAMPLE = "-- Ctrl/Cmd+Enter runs the query (or the selection)\nSELECT 42 AS answer";

class Console {
  constructor() {
    this.engine = $("engine");
    this.runButton = $("run");
    this.running = null;     // AbortController of the query in flight
    this.results = new Results();
    this.detail = new TableDetail();
    this.editor = new Editor($("sql"), $("editor-highlight"), {
      onRun: () => this.run(),
      onChange: (text) => saveDraft(text),
    });
    this.tables = new TableBrowser({
      onOpen: (name) => this.openTable(name),
      onInsert: (text) => this.insert(text),
      onError: (err) => this.authHint(err),
    });
    this.bind();
  }

  bind() {
    this.runButton.addEventListener("click", () => (this.running ? this.cancel() : this.run()));
    $("share").addEventListener("click", () => this.share());
    this.engine.addEventListener("change", () => localStorage.setItem(ENGINE_KEY, this.engine.value));
    const token = $("token");
    token.value = getToken();
    const applyToken = () => {
      if (token.value.trim() === getToken()) return;
      setToken(token.value.trim());
      this.tables.load();
    };
    token.addEventListener("change", applyToken);
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      applyToken();
      this.editor.focus();
    });
    const sideTabs = [$("tab-tables"), $("tab-history")];
    sideTabs.forEach((t) => t.addEventListener("click", () => {
      selectTab(sideTabs, t);
      if (t.id === "tab-history") this.renderHistory();
    }));
    const outTabs = [$("tab-results"), $("tab-chart"), $("tab-table")];
    this.outTabs = outTabs;
    outTabs.forEach((t) => t.addEventListener("click", () => this.showOutput(t.id)));
    $("history-clear").addEventListener("click", () => {
      clearHistory();
      this.renderHistory();
    });
    $("detail-query").addEventListener("click", () => this.queryTable(this.detail.current));
    document.addEventListener("keydown", (e) => this.globalKey(e));
    window.addEventListener("popstate", () => this.loadFromUrl());
  }

  async start() {
    const saved = localStorage.getItem(ENGINE_KEY);
    if (saved) this.engine.value = saved;
    this.tables.load();
    if (!this.loadFromUrl()) {
      this.editor.value = localStorage.getItem(DRAFT_KEY) || EXAMPLE;
    }
    this.editor.focus();
  }

  /** `/?q=…&engine=…` opens and runs that query. */
  loadFromUrl() {
    const params = new URLSearchParams(location.search);
    const q = params.get("q");
    if (!q) return false;
    if (params.get("engine")) this.engine.value = params.get("engine");
    this.editor.value = q;
    this.run({ updateUrl: false });
    return true;
  }

  globalKey(e) {
    const mod = e.ctrlKey || e.metaKey;
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName);
    if (mod && e.key === "Enter" && document.activeElement !== this.editor.input) {
      e.preventDefault();
      this.run();
    } else if (e.key === "Escape" && this.running) {
      this.cancel();
    } else if (e.key === "/" && !typing && !mod) {
      e.preventDefault();
      selectTab([$("tab-tables"), $("tab-history")], $("tab-tables"));
      $("table-filter").focus();
    }
  }

  async run({ updateUrl = true } = {}) {
    const { sql, base } = this.editor.runnable();
    if (!sql.trim()) return;
    this.cancel();
    const engine = this.engine.value;
    const controller = new AbortController();
    this.running = controller;
    this.setRunning(true);
    this.editor.clearMark();
    this.results.start(sql, engine);
    if (this.activeOutput() === "tab-table") this.showOutput("tab-results");
    if (updateUrl) history.replaceState(null, "", shareUrl(this.editor.value, engine));
    setStatus("Running…");
    $("status").dataset.state = "running";
    const started = performance.now();
    try {
      const tail = await streamQuery({
        sql, engine, signal: controller.signal,
        onColumns: (columns) => this.results.setColumns(columns),
        onRows: (rows) => {
          this.results.addRows(rows);
          setStatus(`Streaming… ${formatCount(this.results.grid.rowCount)} rows`);
        },
      });
      this.results.finish(tail, performance.now() - started);
      remember({ sql, engine, rows: tail.row_count, ms: tail.elapsed_ms, ok: true });
    } catch (err) {
      if (err.name === "AbortError") {
        setStatus(`Cancelled · ${formatCount(this.results.grid.rowCount)} rows received`);
        return;
      }
      this.results.showProblem(err);
      this.editor.markError(err.position, base);
      this.authHint(err);
      remember({ sql, engine, ok: false, error: err.detail || err.message });
    } finally {
      if (this.running === controller) {
        this.running = null;
        this.setRunning(false);
      }
      $("status").dataset.state = "done";
      if (!$("pane-history").hidden) this.renderHistory();
    }
  }

  cancel() {
    if (!this.running) return;
    this.running.abort();
    this.running = null;
    this.setRunning(false);
  }

  setRunning(on) {
    this.runButton.classList.toggle("running", on);
    this.runButton.querySelector(".run-label").textContent = on ? "Cancel" : "Run";
    this.runButton.title = on ? "Cancel the running query (Esc)" : "Run (Ctrl/Cmd+Enter); runs the selection if there is one";
  }

  activeOutput() {
    return this.outTabs.find((t) => t.getAttribute("aria-selected") === "true")?.id;
  }

  showOutput(id) {
    const tab = $(id);
    tab.hidden = false;
    selectTab(this.outTabs, tab);
    $("downloads").classList.toggle("dim", id === "tab-table");
    if (id === "tab-chart") this.results.drawChart();
  }

  async openTable(name) {
    this.showOutput("tab-table");
    $("tab-table").textContent = `Table: ${name}`;
    try {
      await this.detail.show(name);
    } catch (err) {
      if (err.name === "AbortError") return;
      $("detail-meta").textContent = err.detail || err.message;
      this.authHint(err);
    }
  }

  queryTable(name) {
    if (!name) return;
    this.editor.value = `SELECT *\nFROM ${quoteIdent(name)}\nLIMIT 1000`;
    this.editor.focus();
    this.run();
  }

  insert(text) {
    const input = this.editor.input;
    input.focus();
    input.setRangeText(text, input.selectionStart, input.selectionEnd, "end");
    this.editor.changed();
  }

  async share() {
    const url = location.origin + shareUrl(this.editor.value, this.engine.value);
    history.replaceState(null, "", shareUrl(this.editor.value, this.engine.value));
    try {
      await navigator.clipboard.writeText(url);
      setStatus("Link copied");
    } catch {
      setStatus("Link in the address bar");
    }
  }

  authHint(err) {
    if (err?.status === 401) {
      setStatus("Failed · 401: enter a token at the top right");
      $("token").focus();
    }
  }

  renderHistory() {
    const list = clear($("history-list"));
    const items = loadHistory();
    if (!items.length) list.append(el("li", { class: "muted pad" }, "Queries you run appear here."));
    for (const h of items) list.append(this.historyItem(h));
  }

  historyItem(h) {
    const meta = h.ok ? `${formatCount(h.rows)} row${h.rows === 1 ? "" : "s"} · ${formatMs(h.ms)}` : "failed";
    const li = el("li", { class: h.ok ? "history-item" : "history-item failed", tabindex: "0",
      title: "Click to edit · double-click or Enter to run" },
      el("pre", { class: "history-sql" }, h.sql.trim()),
      el("div", { class: "history-meta" }, `${h.engine} · ${meta} · ${ago(h.at)}`));
    const load = () => {
      this.engine.value = h.engine || "duckdb";
      this.editor.value = h.sql;
    };
    li.addEventListener("click", load);
    li.addEventListener("dblclick", () => { load(); this.run(); });
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") { load(); this.run(); } });
    return li;
  }
}

export function shareUrl(sql, engine) {
  const params = new URLSearchParams({ q: sql });
  // Always named: the server's default engine is its own setting, not necessarily DuckDB.
  if (engine) params.set("engine", engine);
  return `/?${params}`;
}

function saveDraft(text) {
  try {
    localStorage.setItem(DRAFT_KEY, text);
  } catch {
    // Storage disabled: drafts are a convenience.
  }
}

function ago(at) {
  const s = Math.round((Date.now() - at) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(at).toLocaleDateString();
}

const app = new Console();
window.colonnade = app;  // for the browser console and tests
app.start();
