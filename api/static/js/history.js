// Query history, kept in this browser (localStorage): newest first, one entry per distinct query.

const KEY = "colonnade.history";
const LIMIT = 100;

export function loadHistory() {
  try {
    const items = JSON.parse(localStorage.getItem(KEY) || "[]");
    return Array.isArray(items) ? items : [];
  } catch {
    return [];
  }
}

export function remember(entry) {
  const items = loadHistory().filter((h) => h.sql !== entry.sql || h.engine !== entry.engine);
  items.unshift({ ...entry, at: Date.now() });
  save(items.slice(0, LIMIT));
}

export function clearHistory() {
  save([]);
}

function save(items) {
  try {
    localStorage.setItem(KEY, JSON.stringify(items));
  } catch {
    // Storage full or disabled: history is a convenience, the console works without it.
  }
}
