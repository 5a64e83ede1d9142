// Small helpers every view uses: building DOM, formatting numbers and
// times, and colours. No framework: the views rebuild what they own.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k in el && !(el instanceof SVGElement) && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "12"). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Nanoseconds (a number) as a short duration. */
export function fmtNs(ns) {
  if (ns == null || Number.isNaN(ns)) return "—";
  const abs = Math.abs(ns);
  if (abs < 1e3) return `${Math.round(ns)} ns`;
  if (abs < 1e6) return `${trim(ns / 1e3)} µs`;
  if (abs < 1e9) return `${trim(ns / 1e6)} ms`;
  if (abs < 60e9) return `${trim(ns / 1e9)} s`;
  return `${Math.floor(ns / 60e9)} m ${Math.round((ns % 60e9) / 1e9)} s`;
}

/** Milliseconds (a float) as a short duration. */
export function fmtMs(ms) {
  return ms == null ? "—" : fmtNs(ms * 1e6);
}

function trim(x) {
  const abs = Math.abs(x);
  return abs >= 100 ? x.toFixed(0) : abs >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** A ratio (0..1) as a percentage. */
export function fmtPct(r) {
  if (r == null || Number.isNaN(r)) return "—";
  if (r === 0) return "0%";
  const p = r * 100;
  return p < 0.1 ? "<0.1%" : p < 10 ? `${p.toFixed(1)}%` : `${p.toFixed(0)}%`;
}

/** Requests per second. */
export function fmtRate(r) {
  if (r == null || Number.isNaN(r)) return "—";
  if (r === 0) return "0";
  return r < 0.01 ? "<0.01" : r < 10 ? r.toFixed(2) : r < 100 ? r.toFixed(1) : r.toFixed(0);
}

export function fmtCount(n) {
  return n == null ? "—" : Number(n).toLocaleString("en-US");
}

/** Unix nanoseconds (a decimal string, as the API sends them) as BigInt. */
export function big(nanos) {
  try {
    return BigInt(nanos ?? 0);
  } catch {
    return 0n;
  }
}

/** Unix nanoseconds as local wall-clock time with milliseconds. */
export function fmtTime(nanos, withDate = false) {
  const d = new Date(Number(big(nanos) / 1000000n));
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
}

export function msOf(nanos) {
  return Number(big(nanos) / 1000000n);
}

/** "3 min ago" for a Unix-nanosecond time. */
export function ago(nanos) {
  const sec = (Date.now() - msOf(nanos)) / 1000;
  if (sec < 60) return `${Math.max(0, Math.round(sec))} s ago`;
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}

// Muted hues that stay apart from the error red and the critical-path amber.
const PALETTE = ["#4e79a7", "#59a89c", "#8c6bb1", "#5f8fc7", "#76a05a", "#b07aa1", "#3f8f8f", "#9c8458", "#6f7fb8", "#5aa0b8"];

/** A stable colour per service name. */
export function serviceColor(name) {
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

/** Attribute values as text, arrays and objects included. */
export function valueText(v) {
  if (v == null) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** Whether the trace's span is an error by its status or HTTP status. */
export function isError(span) {
  return span.status?.code === "ERROR";
}

/** Parses the query part of a hash route into URLSearchParams. */
export function hashParams(hash) {
  const i = hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : hash.slice(i + 1));
}

/** Debounces a function by `ms`. */
export function debounce(fn, ms) {
  let t = 0;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** Moves focus among `selector` rows inside `root` with the arrow keys. */
export function arrowRows(root, selector) {
  root.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    const rows = [...root.querySelectorAll(selector)];
    const i = rows.indexOf(document.activeElement);
    if (i < 0) return;
    const next = rows[i + (e.key === "ArrowDown" ? 1 : -1)];
    if (next) {
      next.focus();
      e.preventDefault();
    }
  });
}

/** An empty-state line. */
export function empty(text) {
  return h("p", { class: "empty" }, text);
}
