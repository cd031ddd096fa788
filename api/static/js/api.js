// Talking to the Colonnade HTTP API: bearer token, problem+json errors, streamed results.

const TOKEN_KEY = "colonnade.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An RFC 9457 problem from the API (or a network failure dressed as one). */
export class Problem extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || "request failed");
    this.status = problem.status ?? 0;
    this.code = problem.code || "error";
    this.title = problem.title || "Error";
    this.detail = problem.detail || "";
    this.position = problem.position || null;
  }
}

function headers(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function problemFrom(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = { detail: `${response.status} ${response.statusText}` };
  }
  return new Problem({ status: response.status, title: response.statusText, ...body });
}

async function send(url, init = {}) {
  let response;
  try {
    response = await fetch(url, { ...init, headers: headers(init.headers) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Problem({ title: "Network error", code: "network_error", detail: "the server could not be reached" });
  }
  if (!response.ok) throw await problemFrom(response);
  return response;
}

export async function getJSON(url, init = {}) {
  const response = await send(url, init);
  return response.json();
}

export const listTables = () => getJSON("/api/tables");
export const describeTable = (name) => getJSON(`/api/tables/${encodeURIComponent(name)}`);
export const tableHistory = (name) => getJSON(`/api/tables/${encodeURIComponent(name)}/history`);

/** The GET URL of a query in some format: what the download links point at. */
export function sqlUrl(sql, engine, format) {
  const params = new URLSearchParams({ q: sql });
  // Always named: the server's default engine is its own setting, not necessarily DuckDB.
  if (engine) params.set("engine", engine);
  params.set("format", format);
  return `/api/sql?${params}`;
}

/**
 * Run SQL and stream the JSON result. The JSON format is used (not NDJSON) because it alone
 * carries the column types, `truncated` and the engine's elapsed time; its rows are parsed one
 * object at a time as bytes arrive, so rendering starts with the first batch.
 * Callbacks: onColumns(columns), onRows(arrayOfRowArrays). Resolves to the result's tail.
 */
export async function streamQuery({ sql, engine, signal, onColumns, onRows }) {
  const response = await send("/api/sql?format=json", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ sql, engine }),
    signal,
  });
  return streamRows(response, "rows", { onColumns, onRows });
}

/** Stream `/api/tables/{name}/rows` the same way. */
export async function streamTableRows(name, limit, { signal, onColumns, onRows }) {
  const url = `/api/tables/${encodeURIComponent(name)}/rows?limit=${limit}&format=json`;
  const response = await send(url, { signal });
  return streamRows(response, "rows", { onColumns, onRows });
}

async function streamRows(response, key, { onColumns, onRows }) {
  const parser = new JsonRowsParser(key, onColumns, onRows);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parser.push(decoder.decode(value, { stream: true }));
  }
  parser.push(decoder.decode());
  const tail = parser.finish();
  tail.serverElapsedHeader = Number(response.headers.get("X-Colonnade-Elapsed-Ms"));
  return tail;
}

// A number with this many digits may not survive a float64: keep the server's exact digits.
const LONG_NUMBER = /[-0-9.eE+]{16,}/;
const exactNumber = (key, value, context) =>
  typeof value === "number" && context?.source && String(value) !== context.source ? context.source : value;

/** One row object; int64/decimal values a double cannot hold exactly stay as their digit strings. */
export function parseRow(text) {
  return LONG_NUMBER.test(text) ? JSON.parse(text, exactNumber) : JSON.parse(text);
}

/**
 * Incremental parser for `{"columns":[…],"rows":[{…},{…},…],"row_count":…}`.
 * It finds each row object's boundaries with a tiny string-aware brace scanner and hands whole
 * objects to JSON.parse, so no partial object is ever parsed and nothing is re-scanned.
 */
export class JsonRowsParser {
  constructor(key, onColumns, onRows) {
    this.marker = `"${key}":[`;
    this.onColumns = onColumns;
    this.onRows = onRows;
    this.text = "";
    this.pos = 0;          // next character to scan
    this.inRows = false;
    this.rowsEnd = -1;     // index of the `]` closing the rows array
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.objStart = -1;
    this.columns = null;
  }

  push(chunk) {
    if (!chunk) return;
    this.text += chunk;
    if (!this.inRows && !this.enterRows()) return;
    if (this.rowsEnd < 0) this.scanRows();
  }

  enterRows() {
    const at = this.text.indexOf(this.marker);
    if (at < 0) return false;
    const head = JSON.parse(this.text.slice(0, at - 1).replace(/^\s*\{/, "{") + "}");
    this.columns = head.columns || [];
    this.onColumns?.(this.columns);
    this.inRows = true;
    this.pos = at + this.marker.length;
    return true;
  }

  scanRows() {
    const text = this.text;
    const names = this.columns.map((c) => c.name);
    const batch = [];
    let i = this.pos;
    for (; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === 92 /* \ */) this.escaped = true;
        else if (ch === 34 /* " */) this.inString = false;
      } else if (ch === 34) {
        this.inString = true;
      } else if (ch === 123 /* { */ || ch === 91 /* [ */) {
        if (this.depth++ === 0) this.objStart = i;
      } else if (ch === 125 /* } */ || ch === 93 /* ] */) {
        if (this.depth === 0) { this.rowsEnd = i; break; }
        if (--this.depth === 0) {
          const obj = parseRow(text.slice(this.objStart, i + 1));
          batch.push(names.map((n) => obj[n]));
        }
      }
    }
    // Drop the consumed text so the buffer holds at most one partial row.
    const keepFrom = this.rowsEnd >= 0 ? this.rowsEnd : this.depth > 0 ? this.objStart : i;
    this.text = text.slice(keepFrom);
    if (this.rowsEnd >= 0) this.rowsEnd = 0;
    if (this.depth > 0) this.objStart = 0;
    this.pos = i - keepFrom;
    if (this.rowsEnd < 0) this.pos = this.text.length;
    if (batch.length) this.onRows?.(batch);
  }

  finish() {
    if (!this.inRows || this.rowsEnd < 0) throw new Problem({ title: "Bad response", detail: "the result ended early" });
    return JSON.parse("{" + this.text.slice(this.rowsEnd + 1).replace(/^\s*,/, ""));
  }
}
