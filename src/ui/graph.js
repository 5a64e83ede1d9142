// The service dependency graph, as SVG. A service graph has a handful to a
// few dozen nodes, so a small layered layout does (callers left of the
// services they call, the longest call chain deciding a node's column,
// a few barycentre sweeps against crossings) and no layout library is
// vendored.

import { fmtCount, fmtMs, fmtPct, fmtRate, s, serviceColor } from "./util.js";

const NODE_W = 168;
const NODE_H = 54;
// Room for an edge's label between two columns.
const COL_GAP = 230;
const ROW_GAP = 34;
const PAD = 24;

/** Columns and rows of the nodes: { name: {col, row} }. */
export function layout(names, edges) {
  const out = new Map(names.map((n) => [n, []]));
  for (const e of edges) if (e.client !== e.server) out.get(e.client)?.push(e.server);
  // Edges that close a cycle are left out of the ranking (found by a DFS
  // from the callers that nobody calls, then from the rest, by name).
  const back = new Set();
  const state = new Map();
  const called = new Set(edges.map((e) => e.server));
  const order = [...names].sort((a, b) => Number(called.has(a)) - Number(called.has(b)) || a.localeCompare(b));
  const visit = (n) => {
    state.set(n, 1);
    for (const m of out.get(n) || []) {
      if (state.get(m) === 1) back.add(`${n}\u0000${m}`);
      else if (!state.has(m)) visit(m);
    }
    state.set(n, 2);
  };
  for (const n of order) if (!state.has(n)) visit(n);

  const rank = new Map(names.map((n) => [n, 0]));
  for (let pass = 0; pass < names.length; pass++) {
    let changed = false;
    for (const [n, targets] of out) {
      for (const m of targets) {
        if (back.has(`${n}\u0000${m}`)) continue;
        if (rank.get(m) < rank.get(n) + 1) {
          rank.set(m, rank.get(n) + 1);
          changed = true;
        }
      }
    }
    if (!changed) break;
  }
  const cols = [];
  for (const n of order) (cols[rank.get(n)] ||= []).push(n);
  const cleaned = cols.filter(Boolean);
  cleaned.forEach((c) => c.sort());
  const neighbours = new Map(names.map((n) => [n, []]));
  for (const e of edges) {
    neighbours.get(e.client)?.push(e.server);
    neighbours.get(e.server)?.push(e.client);
  }
  for (let sweep = 0; sweep < 4; sweep++) {
    const pos = new Map();
    cleaned.forEach((c) => c.forEach((n, i) => pos.set(n, i)));
    for (const c of cleaned) {
      const bary = (n) => {
        const ps = neighbours.get(n).filter((m) => pos.has(m) && !c.includes(m)).map((m) => pos.get(m));
        return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : pos.get(n);
      };
      const keyed = c.map((n) => [bary(n), n]);
      keyed.sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]));
      keyed.forEach(([, n], i) => {
        c[i] = n;
        pos.set(n, i);
      });
    }
  }
  const place = {};
  cleaned.forEach((c, col) => c.forEach((n, row) => (place[n] = { col, row, rows: c.length })));
  return { place, cols: cleaned.length, rows: Math.max(1, ...cleaned.map((c) => c.length)) };
}

function edgeLabel(e) {
  return `${fmtRate(e.rate)}/s · ${fmtPct(e.error_rate)} err · p99 ${fmtMs(e.p99_ms)}`;
}

/**
 * Draws the graph into `root`. `selection` is {service} or {client, server}
 * or null; `onSelect` gets the same shapes (null to clear).
 */
export function render(root, deps, selection, onSelect) {
  root.replaceChildren();
  const nodeInfo = new Map();
  for (const n of deps.nodes || []) nodeInfo.set(n.name, n);
  for (const e of deps.edges || []) {
    for (const name of [e.client, e.server]) if (!nodeInfo.has(name)) nodeInfo.set(name, { name, requests: 0, errors: 0 });
  }
  const names = [...nodeInfo.keys()];
  if (!names.length) {
    root.append(s("svg", { class: "graph", viewBox: "0 0 400 60", role: "img", "aria-label": "No services yet" }, s("text", { x: 200, y: 35, "text-anchor": "middle", class: "graph-empty" }, "No calls seen in this time window yet.")));
    return;
  }
  const edges = deps.edges || [];
  const { place, cols, rows } = layout(names, edges);
  // Below the nodes: room for edges that run back to the left.
  const back = edges.some((e) => e.client !== e.server && place[e.server].col <= place[e.client].col);
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP + (back ? 60 : 0);
  const width = PAD * 2 + cols * NODE_W + (cols - 1) * COL_GAP;
  const xy = (n) => {
    const p = place[n];
    const colHeight = p.rows * NODE_H + (p.rows - 1) * ROW_GAP;
    const top = PAD + (rows * NODE_H + (rows - 1) * ROW_GAP - colHeight) / 2;
    return { x: PAD + p.col * (NODE_W + COL_GAP), y: top + p.row * (NODE_H + ROW_GAP) };
  };
  const svg = s("svg", {
    class: "graph",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "group",
    "aria-label": `Service graph: ${names.length} services, ${edges.length} calls`,
    onclick: (ev) => {
      if (ev.target === svg) onSelect(null);
    },
  });
  svg.append(
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))),
  );
  const active = (e) =>
    !selection || (selection.service ? e.client === selection.service || e.server === selection.service : e.client === selection.client && e.server === selection.server);
  const activeNode = (n) =>
    !selection || (selection.service ? n === selection.service || edges.some((e) => active(e) && (e.client === n || e.server === n)) : n === selection.client || n === selection.server);

  const edgeLayer = s("g", { class: "edges" });
  const labelLayer = s("g", { class: "labels" });
  for (const e of edges) {
    const a = xy(e.client);
    const b = xy(e.server);
    let d;
    let mid;
    if (e.client === e.server) {
      const x = a.x + NODE_W - 20;
      d = `M${x},${a.y} C${x},${a.y - 40} ${x + 40},${a.y - 40} ${x + 40},${a.y + 10} L${a.x + NODE_W},${a.y + 14}`;
      mid = { x: x + 20, y: a.y - 34 };
    } else if (b.x > a.x) {
      const [x1, y1, x2, y2] = [a.x + NODE_W, a.y + NODE_H / 2, b.x - 2, b.y + NODE_H / 2];
      const dx = (x2 - x1) / 2;
      d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
      mid = { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 6 };
    } else {
      // A call back to the left (a cycle) or within a column: under the nodes.
      const [x1, y1, x2, y2] = [a.x + NODE_W / 2, a.y + NODE_H, b.x + NODE_W / 2 + 10, b.y + NODE_H + 2];
      const low = Math.max(y1, y2) + 48;
      d = `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`;
      mid = { x: (x1 + x2) / 2, y: low - 8 };
    }
    const errorClass = e.error_rate >= 0.05 ? " bad" : e.error_rate > 0 ? " warn" : "";
    const dim = active(e) ? "" : " dim";
    const selected = selection && selection.client === e.client && selection.server === e.server ? " selected" : "";
    const label = `${e.client} → ${e.server}: ${fmtCount(e.requests)} requests, ${edgeLabel(e)}`;
    const g = s(
      "g",
      {
        class: `edge${errorClass}${dim}${selected}`,
        tabindex: 0,
        role: "button",
        "aria-label": `${label}. Enter filters on this call.`,
        dataset: { client: e.client, server: e.server },
        onclick: () => onSelect({ client: e.client, server: e.server }),
        onkeydown: (ev) => {
          if (ev.key === "Enter" || ev.key === " ") {
            ev.preventDefault();
            onSelect({ client: e.client, server: e.server });
          }
        },
      },
      s("title", {}, label),
      s("path", { d, class: "edge-hit" }),
      s("path", { d, class: "edge-line", "marker-end": "url(#arrow)" }),
    );
    edgeLayer.append(g);
    labelLayer.append(s("text", { x: mid.x, y: mid.y, class: `edge-label${errorClass}${dim}`, "text-anchor": "middle" }, edgeLabel(e)));
  }
  const nodeLayer = s("g", { class: "nodes" });
  for (const name of names) {
    const n = nodeInfo.get(name);
    const { x, y } = xy(name);
    // A service that only calls others (a client, a job) has no requests
    // of its own: it shows the calls it makes instead of "0 req".
    const out = edges.filter((e) => e.client === name && e.server !== name);
    const calls = !n.requests && out.length;
    const count = calls ? out.reduce((t, e) => t + e.requests, 0) : n.requests;
    const errs = calls ? out.reduce((t, e) => t + e.errors, 0) : n.errors;
    const errRate = count ? errs / count : 0;
    const dim = activeNode(name) ? "" : " dim";
    const selected = selection?.service === name ? " selected" : "";
    const what = calls ? "calls out" : "requests";
    const label = `${name}: ${fmtCount(count)} ${what}, ${fmtPct(errRate)} errors`;
    nodeLayer.append(
      s(
        "g",
        {
          class: `node${dim}${selected}${errs ? " has-errors" : ""}`,
          transform: `translate(${x},${y})`,
          tabindex: 0,
          role: "button",
          "aria-label": `${label}. Enter filters on this service.`,
          dataset: { service: name },
          onclick: () => onSelect({ service: name }),
          onkeydown: (ev) => {
            if (ev.key === "Enter" || ev.key === " ") {
              ev.preventDefault();
              onSelect({ service: name });
            }
          },
        },
        s("title", {}, label),
        s("rect", { width: NODE_W, height: NODE_H, rx: 8, class: "node-box" }),
        s("rect", { width: 5, height: NODE_H - 16, x: 8, y: 8, rx: 2, fill: serviceColor(name) }),
        s("text", { x: 22, y: 23, class: "node-name" }, name.length > 20 ? `${name.slice(0, 19)}…` : name),
        s("text", { x: 22, y: 41, class: "node-sub" }, `${fmtCount(count)} ${calls ? "calls out" : "req"} · ${fmtPct(errRate)} err`),
      ),
    );
  }
  svg.append(edgeLayer, nodeLayer, labelLayer);
  root.append(svg);
}
