// The per-service, per-route table: the sidecar's live figures (requests,
// TPS, error rate, mean and percentiles), sortable, each row leading to the
// traces behind it.

import { arrowRows, empty, fmtCount, fmtMs, fmtPct, fmtRate, h, serviceColor } from "./util.js";

const COLUMNS = [
  { key: "service", label: "Service", text: true },
  { key: "direction", label: "Side", text: true },
  { key: "route", label: "Route", text: true },
  { key: "count", label: "Requests", fmt: fmtCount },
  { key: "tps", label: "TPS", fmt: fmtRate },
  { key: "error_rate", label: "Errors", fmt: fmtPct },
  { key: "mean_ms", label: "Mean", fmt: fmtMs },
  { key: "p50_ms", label: "p50", fmt: fmtMs },
  { key: "p90_ms", label: "p90", fmt: fmtMs },
  { key: "p99_ms", label: "p99", fmt: fmtMs },
];

let sort = { key: "count", desc: true };
let textFilter = "";

function inSelection(r, selection) {
  if (!selection) return true;
  if (selection.service) return r.service === selection.service;
  // An edge: the caller's outbound routes and the callee's inbound ones.
  return (r.service === selection.client && r.direction !== "inbound") || (r.service === selection.server && r.direction !== "outbound");
}

/**
 * Draws the table into `root`. `onOpen(row)` shows the row's traces.
 */
export function render(root, stats, selection, onOpen) {
  const rows = (stats.routes || []).map((r) => ({ ...r, error_rate: r.count ? r.errors / r.count : 0 }));
  const filterBox = h("input", {
    type: "search",
    class: "table-filter",
    placeholder: "Filter routes…",
    "aria-label": "Filter the routes table",
    "data-slash": "",
    value: textFilter,
  });
  const tbody = h("tbody");
  const table = h("table", { class: "data routes", "aria-label": "Requests per service and route" });
  const head = h(
    "tr",
    {},
    COLUMNS.map((c) => {
      const sorted = sort.key === c.key;
      return h(
        "th",
        { scope: "col", class: c.text ? "" : "num", "aria-sort": sorted ? (sort.desc ? "descending" : "ascending") : "none" },
        h(
          "button",
          {
            type: "button",
            class: "sort",
            onclick: () => {
              sort = { key: c.key, desc: sorted ? !sort.desc : !c.text };
              render(root, stats, selection, onOpen);
              root.querySelector(`th button[data-key="${c.key}"]`)?.focus();
            },
            dataset: { key: c.key },
          },
          c.label,
          h("span", { class: "sort-mark", "aria-hidden": "true" }, sorted ? (sort.desc ? " ▾" : " ▴") : ""),
        ),
      );
    }),
  );
  table.append(h("thead", {}, head), tbody);

  const fill = () => {
    const needle = textFilter.trim().toLowerCase();
    const shown = rows
      .filter((r) => inSelection(r, selection))
      .filter((r) => !needle || `${r.service} ${r.route} ${r.direction}`.toLowerCase().includes(needle));
    const dir = sort.desc ? -1 : 1;
    shown.sort((a, b) => {
      const x = a[sort.key];
      const y = b[sort.key];
      const c = typeof x === "string" || typeof y === "string" ? String(x ?? "").localeCompare(String(y ?? "")) : (x ?? 0) - (y ?? 0);
      return c * dir || b.count - a.count;
    });
    tbody.replaceChildren(
      ...shown.map((r) =>
        h(
          "tr",
          {
            tabindex: 0,
            class: "row-link",
            title: "Enter: the traces behind this route",
            onclick: () => onOpen(r),
            onkeydown: (ev) => {
              if (ev.key === "Enter") onOpen(r);
            },
          },
          COLUMNS.map((c) => {
            if (c.key === "service") return h("td", {}, h("span", { class: "swatch", style: { background: serviceColor(r.service) } }), r.service);
            if (c.key === "route") return h("td", { class: "mono" }, r.route ?? "—");
            if (c.key === "error_rate") return h("td", { class: `num${r.error_rate >= 0.05 ? " bad" : r.error_rate > 0 ? " warn" : ""}` }, fmtPct(r.error_rate));
            return h("td", { class: c.text ? "" : "num" }, c.fmt ? c.fmt(r[c.key]) : (r[c.key] ?? "—"));
          }),
        ),
      ),
    );
    if (!shown.length) tbody.append(h("tr", {}, h("td", { colspan: COLUMNS.length }, empty(rows.length ? "No route matches." : "No requests recorded yet."))));
  };
  filterBox.addEventListener("input", () => {
    textFilter = filterBox.value;
    fill();
  });
  fill();
  arrowRows(tbody, "tr[tabindex]");
  const windowText = stats.window_seconds ? `TPS over the last ${stats.window_seconds >= 120 ? `${Math.round(stats.window_seconds / 60)} min` : `${Math.round(stats.window_seconds)} s`}` : "";
  root.replaceChildren(
    h("div", { class: "section-head" }, h("h2", {}, "Routes"), h("span", { class: "muted" }, windowText), h("span", { class: "spacer" }), filterBox),
    h("div", { class: "table-wrap" }, table),
  );
}
