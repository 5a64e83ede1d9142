// Two traces side by side. Spans are matched by their place in the tree:
// the path of `service · name` from the root, with a count among siblings
// of the same name (the second `GET /x` under a parent matches the
// second). What differs most comes first: the largest change in a span's
// own time (its duration less its children's), so the span that grew comes
// before the parents that grew only because they waited for it; a span on
// one side only counts its whole own time.

import { buildTree, selfTimes } from "./critical.js";
import { empty, fmtNs, h, serviceColor } from "./util.js";

// A comparison's structure table is for reading, not scrolling through
// tens of thousands of rows; the differences list holds the rest.
const MAX_STRUCTURE_ROWS = 2000;

// Keys join the path's names with a character no span name holds.
const SEP = "\u0000";

/** Map(key → {node, key, parent, depth, self}) in depth-first order. */
export function keyed(tree) {
  const self = selfTimes(tree);
  const out = new Map();
  const stack = [...tree.roots].reverse().map((n) => [n, ""]);
  while (stack.length) {
    const [n, parent] = stack.pop();
    const base = `${parent}${SEP}${n.span.service} · ${n.span.name}`;
    let key = base;
    for (let k = 2; out.has(key); k++) key = `${base} #${k}`;
    out.set(key, { node: n, key, parent, depth: n.depth, self: self.get(n) });
    for (let i = n.children.length - 1; i >= 0; i--) stack.push([n.children[i], key]);
  }
  return out;
}

/**
 * Rows of the union of both structures, depth first, A's children before
 * those only B has: {key, depth, a, b, delta, selfDelta}.
 */
export function diff(ta, tb) {
  const a = keyed(ta);
  const b = keyed(tb);
  const kids = new Map();
  const add = (key, parent) => {
    if (!kids.has(parent)) kids.set(parent, []);
    kids.get(parent).push(key);
  };
  for (const [key, e] of a) add(key, e.parent);
  for (const [key, e] of b) if (!a.has(key)) add(key, e.parent);
  const dur = (e) => (e ? e.node.end - e.node.start : 0);
  const rows = [];
  const stack = [...(kids.get("") || [])].reverse();
  while (stack.length) {
    const key = stack.pop();
    const ea = a.get(key) || null;
    const eb = b.get(key) || null;
    rows.push({ key, depth: (ea || eb).depth, a: ea, b: eb, delta: dur(eb) - dur(ea), selfDelta: (eb?.self ?? 0) - (ea?.self ?? 0) });
    const children = kids.get(key) || [];
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
  return rows;
}

/** A key as the path a reader follows: "producer · GET /x › consumer · GET /y". */
const pathText = (key) => key.split(SEP).filter(Boolean).join(" › ");

export function render(root, traceA, traceB) {
  const ta = buildTree(traceA);
  const tb = buildTree(traceB);
  const rows = diff(ta, tb);
  const side = (t, tree, label) => {
    const r = tree.roots[0]?.span;
    return h(
      "div",
      { class: "compare-side" },
      h("div", { class: "muted" }, label),
      h("a", { href: `#/traces/${t.trace_id}`, class: "mono" }, t.trace_id),
      h("div", {}, r ? `${r.service} · ${r.name}` : "empty"),
      h("div", {}, h("strong", {}, fmtNs(tree.total)), ` · ${t.spans.length} spans`),
    );
  };
  const onlyA = rows.filter((r) => !r.b).length;
  const onlyB = rows.filter((r) => !r.a).length;
  const ranked = [...rows].sort((x, y) => Math.abs(y.selfDelta) - Math.abs(x.selfDelta) || Math.abs(y.delta) - Math.abs(x.delta)).slice(0, 25);
  const maxDelta = Math.max(1, ...ranked.map((r) => Math.abs(r.selfDelta)));
  const name = (r) => {
    const e = r.a || r.b;
    return h("span", {}, h("span", { class: "swatch", style: { background: serviceColor(e.node.span.service) } }), `${e.node.span.service} · `, h("span", { class: "op" }, e.node.span.name));
  };
  const durCell = (e) => h("td", { class: "num" }, e ? fmtNs(e.node.end - e.node.start) : h("span", { class: "muted" }, "absent"));
  const signed = (d) => `${d > 0 ? "+" : d < 0 ? "−" : "±"}${fmtNs(Math.abs(d))}`;
  const deltaCell = (d, withBar) =>
    h(
      "td",
      { class: `num delta ${d > 0 ? "slower" : d < 0 ? "faster" : ""}` },
      signed(d),
      withBar ? h("span", { class: "delta-bar", style: { width: `${(Math.abs(d) / maxDelta) * 60}px` } }) : null,
    );
  const differ = h(
    "table",
    { class: "data differ", "aria-label": "Spans that differ most" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Span"), h("th", { scope: "col" }, "Where"), h("th", { scope: "col", class: "num" }, "A"), h("th", { scope: "col", class: "num" }, "B"), h("th", { scope: "col", class: "num" }, "B − A"), h("th", { scope: "col", class: "num", title: "The change in the span's own time, less its children's" }, "Own time B − A"))),
    h(
      "tbody",
      {},
      ranked.map((r) =>
        h("tr", { class: !r.a ? "only-b" : !r.b ? "only-a" : "" }, h("td", {}, name(r)), h("td", { class: "muted small", title: pathText(r.key) }, `depth ${r.depth}${!r.a ? " · only in B" : !r.b ? " · only in A" : ""}`), durCell(r.a), durCell(r.b), deltaCell(r.delta, false), deltaCell(r.selfDelta, true)),
      ),
    ),
  );
  const bar = (e, tree) => {
    if (!e) return h("div", { class: "cmp-bar-cell absent" }, "—");
    const total = Math.max(1, tree.total);
    return h(
      "div",
      { class: "cmp-bar-cell" },
      h("div", { class: "wf-bar", style: { left: `${(e.node.start / total) * 100}%`, width: `${((e.node.end - e.node.start) / total) * 100}%`, background: serviceColor(e.node.span.service) } }),
      h("span", { class: "cmp-dur" }, fmtNs(e.node.end - e.node.start)),
    );
  };
  const structure = h(
    "div",
    { class: "cmp-structure", role: "table", "aria-label": "Both traces' structure, side by side" },
    h("div", { class: "cmp-row cmp-head", role: "row" }, h("div", { role: "columnheader" }, "A"), h("div", { role: "columnheader" }, "Span"), h("div", { role: "columnheader" }, "B")),
    rows.slice(0, MAX_STRUCTURE_ROWS).map((r) =>
      h(
        "div",
        { class: `cmp-row${!r.a ? " only-b" : !r.b ? " only-a" : ""}`, role: "row" },
        h("div", { role: "cell" }, bar(r.a, ta)),
        h("div", { role: "cell", class: "cmp-name", style: { paddingLeft: `${6 + Math.min(r.depth, 30) * 12}px` } }, name(r)),
        h("div", { role: "cell" }, bar(r.b, tb)),
      ),
    ),
  );
  root.replaceChildren(
    h(
      "section",
      { class: "compare" },
      h("h1", {}, "Compare two traces"),
      h("div", { class: "compare-sides" }, side(traceA, ta, "A"), side(traceB, tb, "B")),
      h("p", { class: "muted" }, `${rows.length} span positions: ${rows.length - onlyA - onlyB} in both, ${onlyA} only in A, ${onlyB} only in B. B took ${fmtNs(Math.abs(tb.total - ta.total))} ${tb.total >= ta.total ? "longer" : "less"}.`),
      h("h2", {}, "Spans that differ most"),
      rows.length ? h("div", { class: "table-wrap" }, differ) : empty("Both traces are empty."),
      h("h2", {}, "Structure and durations, side by side"),
      rows.length > MAX_STRUCTURE_ROWS ? h("p", { class: "muted" }, `The first ${MAX_STRUCTURE_ROWS} of ${rows.length} rows.`) : null,
      structure,
    ),
  );
}
