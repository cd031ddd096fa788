// Formatting values and numbers for people.

const NUMERIC = /^(u?int\d*|float|double|halffloat|decimal|float\d+|decimal\d+)/;

/** True for Arrow types whose values are numbers (as the API names them: int64, decimal128(15, 2)…). */
export const isNumericType = (type) => NUMERIC.test(type);

export const isTemporalType = (type) => /^(date|timestamp|time)/.test(type);

const decimalScale = (type) => {
  const m = /^decimal\d*\(\s*\d+\s*,\s*(\d+)\s*\)/.exec(type);
  return m ? Number(m[1]) : null;
};

/**
 * The formatter for one column's type, built once per result rather than per cell: exact
 * digits for numbers (decimals keep their scale), NULL for nulls, JSON for nested values.
 */
export function cellFormatter(type) {
  const scale = decimalScale(type);
  return (value) => {
    if (value === null || value === undefined) return "NULL";
    if (typeof value === "number") return scale !== null && Number.isFinite(value) ? value.toFixed(scale) : String(value);
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  };
}

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat("en");

export const formatCount = (n) => (n === null || n === undefined ? "?" : whole.format(n));
export const formatCompact = (n) => (n === null || n === undefined ? "" : compact.format(n));

export function formatMs(ms) {
  if (!Number.isFinite(ms)) return "";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  for (; bytes >= 1024 && i < units.length - 1; i++) bytes /= 1024;
  return `${bytes.toFixed(i && bytes < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatTime(epochMs) {
  const d = new Date(epochMs);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
