// The SQL editor: a plain <textarea> over a highlighted <pre> that mirrors its text.

import { highlight, tokenAt } from "./sql-highlight.js";

const INDENT = "  ";

export class Editor {
  constructor(textarea, pre, { onRun, onChange } = {}) {
    this.input = textarea;
    this.pre = pre;
    this.onRun = onRun;
    this.onChange = onChange;
    this.mark = null;
    textarea.addEventListener("input", () => this.changed());
    textarea.addEventListener("scroll", () => this.syncScroll());
    textarea.addEventListener("keydown", (e) => this.keydown(e));
    this.render();
  }

  get value() {
    return this.input.value;
  }

  set value(text) {
    this.input.value = text;
    this.changed();
  }

  /** The selected text and where it starts, or the whole text. */
  runnable() {
    const { selectionStart: s, selectionEnd: e, value } = this.input;
    if (e > s && value.slice(s, e).trim()) return { sql: value.slice(s, e), base: s };
    return { sql: value, base: 0 };
  }

  focus() {
    this.input.focus();
  }

  changed() {
    this.mark = null;
    this.render();
    this.onChange?.(this.value);
  }

  render() {
    // The trailing space keeps the <pre> as tall as the textarea when the text ends in a newline.
    this.pre.innerHTML = highlight(this.value, this.mark) + " ";
    this.syncScroll();
  }

  syncScroll() {
    this.pre.scrollTop = this.input.scrollTop;
    this.pre.scrollLeft = this.input.scrollLeft;
  }

  /**
   * Mark the error at a problem's position (1-based offset into the SQL that ran, which started
   * at `base` in the editor) and put the caret there.
   */
  markError(position, base = 0) {
    if (!position) return;
    const index = base + charIndex(this.value.slice(base), position);
    this.mark = index >= this.value.length ? { start: this.value.length, end: this.value.length + 1 }
      : tokenAt(this.value, index);
    this.render();
    this.input.setSelectionRange(this.mark.start, Math.min(this.mark.end, this.value.length));
    this.scrollToMark();
  }

  clearMark() {
    if (!this.mark) return;
    this.mark = null;
    this.render();
  }

  scrollToMark() {
    const el = this.pre.querySelector("mark.sql-error");
    if (!el) return;
    const top = el.offsetTop - this.input.clientHeight / 2;
    this.input.scrollTop = Math.max(0, top);
    this.syncScroll();
  }

  keydown(e) {
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key === "Enter") {
      e.preventDefault();
      this.onRun?.();
    } else if (e.key === "Tab" && !mod && !e.altKey) {
      e.preventDefault();
      this.indent(e.shiftKey);
    }
  }

  indent(outdent) {
    const { selectionStart: s, selectionEnd: end, value } = this.input;
    if (s === end && !outdent) {
      this.input.setRangeText(INDENT, s, end, "end");
      this.changed();
      return;
    }
    const lineStart = value.lastIndexOf("\n", s - 1) + 1;
    const block = value.slice(lineStart, end);
    const lines = block.split("\n").map((l) => (outdent ? l.replace(/^ {1,2}/, "") : INDENT + l));
    this.input.setRangeText(lines.join("\n"), lineStart, end, "select");
    this.changed();
  }
}

/**
 * The JavaScript string index of a problem position. The server counts code points (Python
 * strings), JavaScript counts UTF-16 units, so walk line/column rather than trust `offset` when
 * the text has astral characters.
 */
export function charIndex(text, { offset, line, column }) {
  if (line && column) {
    let index = 0;
    for (let l = 1; l < line; l++) {
      const nl = text.indexOf("\n", index);
      if (nl < 0) return text.length;
      index = nl + 1;
    }
    const codePoints = Array.from(text.slice(index).split("\n")[0]).slice(0, column - 1);
    return index + codePoints.join("").length;
  }
  return Math.max(0, (offset || 1) - 1);
}
