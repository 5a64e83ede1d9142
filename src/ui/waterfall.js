// One trace as a waterfall: each span's bar against the trace and its
// parent, its log lines beneath it, the critical path drawn over the bars,
// collapsible subtrees, a span filter, and a panel with the selected span's
// attributes. Only the rows in view are in the DOM (a trace may hold tens of
// thousands of spans): the list is a tall empty box, and the few rows that
// show are drawn into it at their offset on each scroll.

import { logLink } from "./api.js";
import { buildTree, criticalPath } from "./critical.js";
import { debounce, fmtNs, fmtTime, h, isError, serviceColor, valueText } from "./util.js";

const ROW = 26;
// Rows drawn above and below the visible ones, so a fast scroll shows no gap.
const OVERSCAN = 12;

/** Whether a span matches the filter text: `key=value` or a substring. */
export function spanMatcher(text) {
  const t = text.trim();
  if (!t) return null;
  const eq = t.indexOf("=");
  if (eq > 0 && !t.slice(0, eq).includes(" ")) {
    const k = t.slice(0, eq).trim();
    const v = t.slice(eq + 1).trim();
    return (sp) => {
      const have = k in (sp.attributes || {}) ? sp.attributes[k] : sp.resource?.[k];
      return have != null && valueText(have) === v;
    };
  }
  const needle = t.toLowerCase();
  return (sp) => {
    if (`${sp.service} ${sp.name} ${sp.span_id}`.toLowerCase().includes(needle)) return true;
    for (const v of Object.values(sp.attributes || {})) if (valueText(v).toLowerCase().includes(needle)) return true;
    return false;
  };
}

const plural = (n, word) => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;

const isStitched = (sp) => sp.attributes?.["sidetrace.stitched"] === true || sp.attributes?.["sidetrace.stitched"] === "true";

/**
 * Draws `trace` (the API's document) into `root`. `opts.span` selects a
 * span by id; `opts.onSelect(spanId)` is told when the selection changes.
 */
export function render(root, trace, opts = {}) {
  const tree = buildTree(trace);
  const critical = criticalPath(tree);
  const total = Math.max(tree.total, 1);
  const state = {
    collapsed: new Set(),
    match: null,
    keep: null,
    matched: 0,
    showLogs: true,
    rows: [],
    selected: tree.byId.get(opts.span) || tree.roots[0] || null,
  };

  // ---- header ------------------------------------------------------------
  const root0 = tree.roots[0]?.span;
  const services = [...new Set(trace.spans.map((sp) => sp.service))].sort();
  const errors = trace.spans.filter(isError).length;
  const stitched = trace.spans.filter(isStitched).length;
  const link = logLink(trace);
  const compareInput = h("input", { placeholder: "Another trace ID", "aria-label": "Trace ID to compare with", spellcheck: "false", class: "mono" });
  const head = h(
    "div",
    { class: "trace-head" },
    h("h1", {}, root0 ? h("span", {}, h("span", { class: "swatch", style: { background: serviceColor(root0.service) } }), `${root0.service} · `, h("strong", {}, root0.name)) : "Empty trace"),
    h(
      "div",
      { class: "facts" },
      h("span", { class: "mono", title: "Trace ID" }, trace.trace_id),
      trace.spans.length ? h("span", {}, fmtTime(trace.spans[0].start_unix_nano, true)) : null,
      h("span", {}, h("strong", {}, fmtNs(tree.total)), " long"),
      h("span", { class: "span-count" }, plural(trace.spans.length, "span")),
      h("span", {}, `${plural(services.length, "service")}: `, services.map((n) => h("span", { class: "chip" }, h("span", { class: "swatch", style: { background: serviceColor(n) } }), n))),
      errors ? h("span", { class: "bad" }, `${errors} errors`) : h("span", {}, "no errors"),
      stitched ? h("span", { class: "badge stitched", title: "Spans joined to this trace by sidetrace's stitching" }, `${stitched} stitched`) : null,
      (trace.logs || []).length ? h("span", {}, plural(trace.logs.length, "log line")) : null,
    ),
    h(
      "div",
      { class: "actions" },
      link ? h("a", { href: link, target: "_blank", rel: "noopener noreferrer", class: "button", "data-log-link": "" }, "Logs in the log system ↗") : null,
      h(
        "form",
        {
          class: "inline",
          onsubmit: (e) => {
            e.preventDefault();
            const other = compareInput.value.trim();
            if (other) location.hash = `#/compare/${trace.trace_id}/${other}`;
          },
        },
        compareInput,
        h("button", { type: "submit" }, "Compare"),
      ),
    ),
  );

  // ---- toolbar -----------------------------------------------------------
  const filterInput = h("input", {
    type: "search",
    class: "span-filter",
    placeholder: "Filter spans: text, or key=value",
    "aria-label": "Filter spans by name, service, attribute text, or key=value",
    "data-slash": "",
  });
  const matchInfo = h("span", { class: "muted match-info", "aria-live": "polite" });
  const logsBox = h("input", { type: "checkbox", checked: true });
  const critBox = h("input", { type: "checkbox", checked: true });
  const toolbar = h(
    "div",
    { class: "toolbar" },
    filterInput,
    matchInfo,
    h("span", { class: "spacer" }),
    h("button", { type: "button", onclick: () => (state.collapsed.clear(), refresh()) }, "Expand all"),
    h(
      "button",
      {
        type: "button",
        onclick: () => {
          for (const r of tree.roots) for (const c of r.children) if (c.children.length) state.collapsed.add(c);
          refresh();
        },
      },
      "Collapse all",
    ),
    h("label", {}, logsBox, " Log lines"),
    h("label", {}, critBox, " ", h("span", { class: "legend-crit" }), " Critical path"),
    h("span", { class: "legend" }, h("span", { class: "badge stitched" }, "stitched"), h("span", { class: "badge linked" }, "linked")),
  );

  // ---- the list ----------------------------------------------------------
  const ticks = h("div", { class: "wf-ticks" }, [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { style: { left: `${f * 100}%` } }, fmtNs(tree.total * f))));
  const listHead = h("div", { class: "wf-head" }, h("div", { class: "wf-label" }, "Service · operation"), h("div", { class: "wf-bar-cell" }, ticks));
  const rowsBox = h("div", { class: "wf-rows", role: "tree", "aria-label": "Spans of the trace" });
  const spacer = h("div", { class: "wf-spacer" }, rowsBox);
  const scroller = h("div", { class: "wf-scroll", tabindex: 0 }, spacer);
  const detail = h("aside", { class: "wf-detail", "aria-label": "The selected span" });
  const main = h("div", { class: "wf-main" }, listHead, scroller);
  const body = h("div", { class: "wf" }, main, detail);
  root.replaceChildren(h("section", { class: "trace" }, head, toolbar, body));
  if (tree.unattachedLogs.length) {
    root.querySelector(".trace").append(
      h("details", { class: "loose-logs" }, h("summary", {}, `${tree.unattachedLogs.length} log lines of this trace name no span in it`), tree.unattachedLogs.map(logLine)),
    );
  }

  function visibleRows() {
    const rows = [];
    let skipBelow = Infinity;
    for (const n of tree.order) {
      if (n.depth > skipBelow) continue;
      skipBelow = Infinity;
      if (state.keep && !state.keep.has(n)) continue;
      rows.push({ node: n });
      if (state.showLogs) for (const log of n.logs) rows.push({ node: n, log });
      if (!state.keep && state.collapsed.has(n)) skipBelow = n.depth;
    }
    return rows;
  }

  function refresh() {
    state.rows = visibleRows();
    spacer.style.height = `${state.rows.length * ROW}px`;
    const m = state.match ? `${state.matched.toLocaleString("en-US")} of ${trace.spans.length.toLocaleString("en-US")} spans match` : "";
    matchInfo.textContent = m;
    draw();
  }

  let drawn = [-1, -1];
  function draw(force = true) {
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(state.rows.length, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW) + OVERSCAN);
    if (!force && first === drawn[0] && last === drawn[1]) return;
    drawn = [first, last];
    const hadFocus = rowsBox.contains(document.activeElement);
    rowsBox.style.transform = `translateY(${first * ROW}px)`;
    const out = [];
    for (let i = first; i < last; i++) out.push(state.rows[i].log ? logRow(state.rows[i]) : spanRow(state.rows[i].node, i));
    rowsBox.replaceChildren(...out);
    if (hadFocus) rowsBox.querySelector(".wf-row.selected")?.focus({ preventScroll: true });
  }

  function pct(t) {
    return `${(t / total) * 100}%`;
  }

  function spanRow(n) {
    const sp = n.span;
    const segs = critical.get(n);
    const left = (n.start / total) * 100;
    const width = ((n.end - n.start) / total) * 100;
    const hasKids = n.children.length > 0;
    const open = hasKids && !state.collapsed.has(n);
    const classes = ["wf-row", "span"];
    if (segs) classes.push("critical");
    if (isError(sp)) classes.push("error");
    if (state.selected === n) classes.push("selected");
    if (state.match && !state.match(sp)) classes.push("context");
    const badges = [];
    if (isStitched(sp)) badges.push(h("span", { class: "badge stitched", title: `Stitched: joined to its parent by sidetrace (${sp.attributes["sidetrace.stitch.candidates"] ?? 1} candidate${sp.attributes["sidetrace.stitch.candidates"] === 1 ? "" : "s"})` }, "stitched"));
    if ((sp.links || []).length) badges.push(h("span", { class: "badge linked", title: `${sp.links.length} linked span(s)` }, "linked"));
    if (n.orphan) badges.push(h("span", { class: "badge", title: "Its parent span is not in this trace" }, "no parent"));
    if (n.logs.length && !state.showLogs) badges.push(h("span", { class: "badge", title: "Log lines" }, `${n.logs.length} log`));
    // Beside the bar where there is room, else inside a long bar.
    const durLabel = h("span", { class: "wf-dur" }, fmtNs(n.end - n.start));
    if (left + width < 78) durLabel.style.left = `calc(${left + width}% + 4px)`;
    else if (width > 20) {
      durLabel.classList.add("inside");
      durLabel.style.right = `calc(${100 - left - width}% + 6px)`;
    } else durLabel.style.right = `calc(${100 - left}% + 4px)`;
    const bar = h("div", { class: "wf-bar-cell" });
    if (n.parent) bar.append(h("div", { class: "wf-parent", style: { left: pct(n.parent.start), width: pct(n.parent.end - n.parent.start) } }));
    bar.append(h("div", { class: "wf-bar", style: { left: `${left}%`, width: `${width}%`, background: isError(sp) ? "" : serviceColor(sp.service) } }));
    for (const [a, b] of segs || []) bar.append(h("div", { class: "wf-crit", style: { left: pct(a), width: pct(b - a) } }));
    bar.append(durLabel);
    return h(
      "div",
      {
        class: classes.join(" "),
        role: "treeitem",
        "aria-level": n.depth + 1,
        "aria-expanded": hasKids ? String(open) : null,
        "aria-selected": String(state.selected === n),
        tabindex: state.selected === n ? 0 : -1,
        dataset: { spanId: sp.span_id },
        onclick: (e) => {
          if (e.target.closest(".twist")) toggle(n);
          else select(n, true);
        },
      },
      h(
        "div",
        { class: "wf-label", style: { paddingLeft: `${6 + Math.min(n.depth, 40) * 14}px` } },
        hasKids ? h("span", { class: "twist", "aria-hidden": "true" }, open ? "▾" : "▸") : h("span", { class: "twist none" }),
        h("span", { class: "swatch", style: { background: serviceColor(sp.service) } }),
        h("span", { class: "svc" }, sp.service),
        h("span", { class: "op", title: sp.name }, sp.name),
        badges,
      ),
      bar,
    );
  }

  function logRow({ node, log }) {
    const at = Number(BigInt(log.time_unix_nano) - tree.base);
    return h(
      "div",
      { class: "wf-row log", dataset: { spanId: node.span.span_id }, onclick: () => select(node, true) },
      h(
        "div",
        { class: "wf-log", style: { paddingLeft: `${26 + Math.min(node.depth, 40) * 14}px` } },
        h("span", { class: "log-at" }, `+${fmtNs(at)}`),
        h("span", { class: `sev sev-${String(log.severity || "").toLowerCase()}` }, log.severity || "LOG"),
        h("span", { class: "log-body", title: log.body }, log.body),
      ),
    );
  }

  function toggle(n) {
    if (!n.children.length) return;
    if (state.collapsed.has(n)) state.collapsed.delete(n);
    else state.collapsed.add(n);
    refresh();
  }

  function rowIndex(n) {
    return state.rows.findIndex((r) => r.node === n && !r.log);
  }

  function select(n, focus) {
    state.selected = n;
    showDetail(n);
    const i = rowIndex(n);
    if (i >= 0) {
      const top = i * ROW;
      if (top < scroller.scrollTop) scroller.scrollTop = top;
      else if (top + ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW - scroller.clientHeight;
    }
    draw();
    if (focus) rowsBox.querySelector(".wf-row.selected")?.focus({ preventScroll: true });
    opts.onSelect?.(n.span.span_id);
  }

  function step(delta) {
    let i = rowIndex(state.selected);
    for (;;) {
      i += delta;
      if (i < 0 || i >= state.rows.length) return;
      if (!state.rows[i].log) return select(state.rows[i].node, true);
    }
  }

  scroller.addEventListener("scroll", () => requestAnimationFrame(() => draw(false)), { passive: true });
  scroller.addEventListener("keydown", (e) => {
    const n = state.selected;
    if (e.key === "ArrowDown") step(1);
    else if (e.key === "ArrowUp") step(-1);
    else if (e.key === "Home") state.rows.length && select(state.rows[0].node, true);
    else if (e.key === "End") state.rows.length && select(state.rows[state.rows.length - 1].node, true);
    else if (e.key === "PageDown") step(Math.max(1, Math.floor(scroller.clientHeight / ROW) - 1));
    else if (e.key === "PageUp") step(-Math.max(1, Math.floor(scroller.clientHeight / ROW) - 1));
    else if (!n) return;
    else if (e.key === "ArrowLeft") {
      if (n.children.length && !state.collapsed.has(n)) toggle(n);
      else if (n.parent) select(n.parent, true);
    } else if (e.key === "ArrowRight") {
      if (state.collapsed.has(n)) toggle(n);
      else if (n.children.length) select(n.children[0], true);
    } else if (e.key === "Enter" || e.key === " ") toggle(n);
    else return;
    e.preventDefault();
  });
  // Focus entering the list from outside lands on the selected span; from
  // a row (Shift+Tab) it stays, so the next Shift+Tab leaves the list.
  scroller.addEventListener("focus", (e) => {
    if (!scroller.contains(e.relatedTarget)) rowsBox.querySelector(".wf-row.selected")?.focus({ preventScroll: true });
  });

  const applyFilter = debounce(() => {
    state.match = spanMatcher(filterInput.value);
    if (!state.match) {
      state.keep = null;
    } else {
      state.keep = new Set();
      state.matched = 0;
      for (const n of tree.nodes) {
        if (!state.match(n.span)) continue;
        state.matched++;
        for (let p = n; p && !state.keep.has(p); p = p.parent) state.keep.add(p);
      }
    }
    scroller.scrollTop = 0;
    refresh();
  }, 150);
  filterInput.addEventListener("input", applyFilter);
  logsBox.addEventListener("change", () => {
    state.showLogs = logsBox.checked;
    refresh();
  });
  critBox.addEventListener("change", () => body.classList.toggle("no-critical", !critBox.checked));

  // ---- the selected span -------------------------------------------------
  function showDetail(n) {
    if (!n) {
      detail.replaceChildren(h("p", { class: "muted" }, "Select a span."));
      return;
    }
    const sp = n.span;
    const jump = (id) => {
      const target = tree.byId.get(id);
      if (!target) return;
      for (let p = target.parent; p; p = p.parent) state.collapsed.delete(p);
      refresh();
      select(target, true);
    };
    const attrRows = (obj) =>
      Object.keys(obj || {})
        .sort()
        .map((k) => h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "mono" }, valueText(obj[k]))));
    const facts = [
      ["Service", sp.service],
      ["Kind", sp.kind],
      ["Status", `${sp.status?.code ?? "UNSET"}${sp.status?.message ? ` — ${sp.status.message}` : ""}`],
      ["Duration", fmtNs(n.end - n.start)],
      ["Starts", `+${fmtNs(n.start)} into the trace${n.parent ? `, +${fmtNs(n.start - n.parent.start)} after its parent starts` : ""}`],
      n.parent ? ["Of its parent", `${Math.round(((n.end - n.start) / Math.max(1, n.parent.end - n.parent.start)) * 100)}% of ${fmtNs(n.parent.end - n.parent.start)}`] : null,
      ["Span ID", sp.span_id],
      ["Parent", sp.parent_span_id ? (tree.byId.has(sp.parent_span_id) ? h("button", { type: "button", class: "link mono", onclick: () => jump(sp.parent_span_id) }, sp.parent_span_id) : `${sp.parent_span_id} (not in this trace)`) : "none: a root span"],
      critical.has(n) ? ["Critical path", `${fmtNs((critical.get(n) || []).reduce((t, [a, b]) => t + b - a, 0))} of it`] : null,
      isStitched(sp) ? ["Stitched", `joined to its parent by sidetrace from ${sp.attributes["sidetrace.stitch.candidates"] ?? 1} candidate(s)`] : null,
    ].filter(Boolean);
    // Built by h(), which leaves out the sections a span lacks (null);
    // replaceChildren would print them.
    const parts = h(
      "div",
      {},
      h("h2", {}, sp.name),
      h("dl", { class: "facts-list" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", { class: k === "Status" && isError(sp) ? "bad" : "" }, v)])),
      (sp.links || []).length
        ? h(
            "section",
            {},
            h("h3", {}, "Links"),
            h(
              "ul",
              { class: "links" },
              sp.links.map((l) =>
                h(
                  "li",
                  {},
                  l.trace_id === trace.trace_id && tree.byId.has(l.span_id)
                    ? h("button", { type: "button", class: "link mono", onclick: () => jump(l.span_id) }, `span ${l.span_id}`)
                    : h("a", { href: `#/traces/${l.trace_id}?span=${l.span_id}`, class: "mono" }, `${l.trace_id} / ${l.span_id}`),
                  Object.keys(l.attributes || {}).length ? h("span", { class: "muted" }, ` ${Object.entries(l.attributes).map(([k, v]) => `${k}=${valueText(v)}`).join(", ")}`) : null,
                ),
              ),
            ),
          )
        : null,
      h("section", {}, h("h3", {}, `Log lines (${n.logs.length})`), n.logs.length ? n.logs.map(logLine) : h("p", { class: "muted" }, "None for this span.")),
      h("section", {}, h("h3", {}, "Attributes"), h("table", { class: "kv" }, attrRows(sp.attributes))),
      (sp.events || []).length
        ? h("section", {}, h("h3", {}, "Events"), sp.events.map((ev) => h("div", { class: "event" }, h("span", { class: "log-at" }, `+${fmtNs(Number(BigInt(ev.time_unix_nano) - tree.base))}`), " ", h("strong", {}, ev.name), h("table", { class: "kv" }, attrRows(ev.attributes)))))
        : null,
      h("details", {}, h("summary", {}, "Resource"), h("table", { class: "kv" }, attrRows(sp.resource))),
    );
    detail.replaceChildren(...parts.childNodes);
  }

  function logLine(log) {
    return h(
      "div",
      { class: "log-line" },
      h("span", { class: "log-at" }, fmtTime(log.time_unix_nano)),
      h("span", { class: `sev sev-${String(log.severity || "").toLowerCase()}` }, log.severity || "LOG"),
      h("span", { class: "mono" }, log.body),
      Object.keys(log.attributes || {}).length ? h("div", { class: "muted mono small" }, Object.entries(log.attributes).map(([k, v]) => `${k}=${valueText(v)}`).join("  ")) : null,
    );
  }

  refresh();
  showDetail(state.selected);
  if (state.selected && opts.span) select(state.selected, false);
  return { focusFilter: () => filterInput.focus() };
}
