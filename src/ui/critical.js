// A trace as a tree of spans, and its critical path. Pure functions of the
// API's trace document, shared by the waterfall and the comparison.
//
// Times inside a trace are nanosecond offsets from its first span's start,
// as plain numbers: Unix nanoseconds need BigInt, offsets within one trace
// do not.

/**
 * { nodes, roots, byId, order, total, base, unattachedLogs }: every span
 * as a node {span, start, end, depth, children, parent, logs, orphan};
 * `order` is the depth-first order of display.
 */
export function buildTree(trace) {
  const spans = trace.spans || [];
  let base = null;
  for (const sp of spans) {
    const t = BigInt(sp.start_unix_nano);
    if (base == null || t < base) base = t;
  }
  const nodes = spans.map((span, i) => {
    const start = Number(BigInt(span.start_unix_nano) - base);
    const end = Math.max(start, Number(BigInt(span.end_unix_nano) - base));
    return { span, i, start, end, depth: 0, children: [], parent: null, logs: [], orphan: false };
  });
  const byId = new Map();
  for (const n of nodes) if (!byId.has(n.span.span_id)) byId.set(n.span.span_id, n);
  const roots = [];
  for (const n of nodes) {
    const p = n.span.parent_span_id ? byId.get(n.span.parent_span_id) : null;
    if (p && p !== n) {
      n.parent = p;
      p.children.push(n);
    } else {
      n.orphan = Boolean(n.span.parent_span_id);
      roots.push(n);
    }
  }
  const byStart = (a, b) => a.start - b.start || a.i - b.i;
  for (const n of nodes) n.children.sort(byStart);
  roots.sort(byStart);
  // Depth-first without recursion: a trace may be thousands of spans deep.
  const order = [];
  const seen = new Set();
  const walk = (root) => {
    const stack = [root];
    while (stack.length) {
      const n = stack.pop();
      if (seen.has(n)) continue;
      seen.add(n);
      n.depth = n.parent && seen.has(n.parent) ? n.parent.depth + 1 : 0;
      order.push(n);
      for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]);
    }
  };
  roots.forEach(walk);
  // Parent ids that form a loop leave spans unreachable from any root.
  for (const n of nodes) {
    if (!seen.has(n)) {
      n.parent?.children.splice(n.parent.children.indexOf(n), 1);
      n.parent = null;
      n.orphan = true;
      roots.push(n);
      walk(n);
    }
  }
  const unattachedLogs = [];
  for (const log of trace.logs || []) {
    const n = byId.get(log.span_id);
    if (n) n.logs.push(log);
    else unattachedLogs.push(log);
  }
  const total = nodes.reduce((m, n) => Math.max(m, n.end), 0);
  return { nodes, roots, byId, order, total, base: base ?? 0n, unattachedLogs };
}

/**
 * The critical path: the chain of work that decided when the trace ended.
 * From the root's end backwards, the child that finished last before the
 * cursor is on the path, the cursor moves to that child's start, and so
 * on; the parent's own time between its children is on the path too.
 * Returns Map(node → [[from, to], …]) of the path's segments.
 */
export function criticalPath(tree) {
  const segments = new Map();
  const add = (n, a, b) => {
    if (b <= a) return;
    if (!segments.has(n)) segments.set(n, []);
    segments.get(n).push([a, b]);
  };
  const root = tree.roots.reduce((best, n) => (!best || n.end - n.start > best.end - best.start ? n : best), null);
  if (!root) return segments;
  const stack = [[root, root.end]];
  while (stack.length) {
    const [n, limit] = stack.pop();
    let cursor = Math.min(n.end, limit);
    if (cursor <= n.start) {
      add(n, n.start, Math.max(n.start, cursor));
      if (!segments.has(n)) segments.set(n, []);
      continue;
    }
    const kids = [...n.children].sort((a, b) => b.end - a.end);
    for (const c of kids) {
      if (c.start >= cursor) continue;
      const end = Math.min(c.end, cursor);
      add(n, end, cursor);
      stack.push([c, end]);
      cursor = c.start;
      if (cursor <= n.start) break;
    }
    add(n, n.start, cursor);
    if (!segments.has(n)) segments.set(n, []);
  }
  return segments;
}

/**
 * Each span's own time: its duration less the time its children cover
 * (their union, clipped to the span). Map(node → ns).
 */
export function selfTimes(tree) {
  const out = new Map();
  for (const n of tree.nodes) {
    const spans = n.children.map((c) => [Math.max(c.start, n.start), Math.min(c.end, n.end)]).filter(([a, b]) => b > a);
    spans.sort((x, y) => x[0] - y[0]);
    let covered = 0;
    let reach = -Infinity;
    for (const [a, b] of spans) {
      if (b <= reach) continue;
      covered += b - Math.max(a, reach);
      reach = b;
    }
    out.set(n, n.end - n.start - covered);
  }
  return out;
}
