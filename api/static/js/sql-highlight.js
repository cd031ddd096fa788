// A small SQL tokenizer for highlighting: one regular expression, no grammar.

const KEYWORDS = new Set(`
  all and any anti as asc asof between both by case cast collate cross cube current desc describe distinct
  else end escape except exclude exists explain false filter first following for from full glob group grouping
  having ilike in inner intersect interval is join lateral left like limit natural not null nulls offset on or
  order outer over partition pivot positional preceding qualify range recursive replace right rollup row rows
  select semi sets similar some summarize table then ties to true try_cast unbounded union unnest unpivot
  using values when where window with within
`.trim().split(/\s+/));

const TYPES = new Set(`
  bigint blob boolean bool date datetime decimal double float hugeint int integer json list map numeric real
  smallint string struct text time timestamp timestamptz tinyint ubigint uinteger usmallint utinyint uuid varchar
`.trim().split(/\s+/));

// Order matters: comments and strings first so nothing inside them is taken for a keyword.
const TOKEN = new RegExp([
  String.raw`(?<comment>--[^\n]*|/\*[\s\S]*?(?:\*/|$))`,
  String.raw`(?<string>'(?:[^']|'')*(?:'|$))`,
  String.raw`(?<quoted>"(?:[^"]|"")*(?:"|$))`,
  String.raw`(?<number>\b\d+(?:\.\d*)?(?:[eE][+-]?\d+)?\b|\.\d+\b)`,
  String.raw`(?<param>\?|\$\d+)`,
  String.raw`(?<word>[A-Za-z_][A-Za-z0-9_]*)`,
  String.raw`(?<op>[-+*/%<>=!|&^~:]+|[(),;.\[\]{}])`,
].join("|"), "g");

/** Tokens `{type, start, end}` covering the text's non-blank parts, in order. */
export function tokenize(text) {
  const tokens = [];
  TOKEN.lastIndex = 0;
  for (let m; (m = TOKEN.exec(text)); ) {
    const type = Object.keys(m.groups).find((k) => m.groups[k] !== undefined);
    tokens.push({ type: classify(type, m[0], text, TOKEN.lastIndex), start: m.index, end: TOKEN.lastIndex });
  }
  return tokens;
}

function classify(type, word, text, end) {
  if (type !== "word") return type;
  const lower = word.toLowerCase();
  if (KEYWORDS.has(lower)) return "keyword";
  if (TYPES.has(lower)) return "type";
  return /^\s*\(/.test(text.slice(end, end + 8)) ? "function" : "ident";
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };
export const escapeHtml = (s) => s.replace(/[&<>]/g, (c) => ESCAPES[c]);

/**
 * Highlighted HTML for `text`; the character range [markStart, markEnd) — an error position —
 * is wrapped in <mark class="sql-error">.
 */
export function highlight(text, mark = null) {
  let html = "";
  let at = 0;
  const piece = (from, to, cls) => {
    if (to <= from) return;
    const body = escapeHtml(text.slice(from, to));
    html += cls ? `<span class="tok-${cls}">${body}</span>` : body;
  };
  const emit = (from, to, cls) => {
    if (!mark || to <= mark.start || from >= mark.end) return piece(from, to, cls);
    piece(from, Math.max(from, mark.start), cls);
    html += '<mark class="sql-error">';
    piece(Math.max(from, mark.start), Math.min(to, mark.end), cls);
    html += "</mark>";
    piece(Math.min(to, mark.end), to, cls);
  };
  for (const tok of tokenize(text)) {
    emit(at, tok.start, null);
    emit(tok.start, tok.end, tok.type);
    at = tok.end;
  }
  emit(at, text.length, null);
  // A position past the end (a query that stops short) still gets a visible mark.
  if (mark && mark.start >= text.length) html += '<mark class="sql-error"> </mark>';
  return html;
}

/** The token range around character `index` (for marking an error at a 1-char position). */
export function tokenAt(text, index) {
  const hit = tokenize(text).find((t) => t.start <= index && index < t.end);
  if (hit) return { start: hit.start, end: hit.end };
  const start = Math.min(Math.max(0, index), Math.max(0, text.length - 1));
  return { start, end: Math.min(text.length, start + 1) };
}
