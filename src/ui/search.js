// Trace search: the form (its state lives in the URL's hash, so a search
// can be linked and reloaded) and the list of traces it finds. The form
// says which filters pick spans and which pick traces, as the API applies
// them.

import * as api from "./api.js";
import { ago, arrowRows, empty, fmtNs, fmtTime, h, serviceColor } from "./util.js";

const RANGES = [
  ["15m", "Last 15 minutes", 15 * 60e3],
  ["1h", "Last hour", 3600e3],
  ["6h", "Last 6 hours", 6 * 3600e3],
  ["24h", "Last 24 hours", 24 * 3600e3],
  ["7d", "Last 7 days", 7 * 86400e3],
];

// `datetime-local` inputs speak local time without a zone.
function localInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The API query of the search held in `params` (the hash's query). */
export function apiQuery(params) {
  const custom = params.get("range") === "custom";
  const range = RANGES.find((r) => r[0] === (params.get("range") || "1h")) || RANGES[1];
  const end = custom && params.get("to") ? Number(params.get("to")) : Date.now();
  const start = custom && params.get("from") ? Number(params.get("from")) : end - range[2];
  return {
    service: params.get("service") || null,
    route: params.get("route") || null,
    status: params.get("status") || null,
    min_duration: params.get("min_duration") || null,
    attr: params.getAll("attr").filter(Boolean),
    start: String(start),
    end: String(end),
    limit: params.get("limit") || "20",
  };
}

const selectedForCompare = new Set();

/**
 * Draws the form and runs the search. `services` fills the service list,
 * `routes` the route suggestions; `with` (a UI-only parameter set from a
 * graph edge) keeps the traces that also passed through that service.
 */
export function render(root, params, { services = [], routes = [] } = {}) {
  const field = (label, input, hint) => h("label", { class: "field" }, h("span", { class: "field-label" }, label), input, hint ? h("span", { class: "hint" }, hint) : null);
  const service = h("select", { name: "service", "data-slash": "" }, h("option", { value: "" }, "any service"), services.map((s) => h("option", { value: s.name }, s.name)));
  service.value = params.get("service") || "";
  if (params.get("service") && service.value !== params.get("service")) {
    service.append(h("option", { value: params.get("service") }, params.get("service")));
    service.value = params.get("service");
  }
  const routeList = h("datalist", { id: "route-list" }, [...new Set(routes)].sort().map((r) => h("option", { value: r })));
  const route = h("input", { name: "route", list: "route-list", placeholder: "/orders/{id}", value: params.get("route") || "", spellcheck: "false", class: "mono" });
  const status = h("input", { name: "status", list: "status-list", placeholder: "ok, error or 503", value: params.get("status") || "", size: 10 });
  const statusList = h("datalist", { id: "status-list" }, ["ok", "error", "200", "404", "500", "502", "503", "504"].map((v) => h("option", { value: v })));
  const attrs = h("textarea", { name: "attr", rows: 2, placeholder: "http.request.method=POST\none key=value per line", spellcheck: "false", class: "mono" });
  attrs.value = params.getAll("attr").join("\n");
  const minDuration = h("input", { name: "min_duration", placeholder: "250ms", value: params.get("min_duration") || "", size: 8 });
  const range = h("select", { name: "range" }, RANGES.map(([v, label]) => h("option", { value: v }, label)), h("option", { value: "custom" }, "Between…"));
  range.value = params.get("range") || "1h";
  const q0 = apiQuery(params);
  const from = h("input", { type: "datetime-local", name: "from", "aria-label": "Started from", value: localInput(Number(q0.start)) });
  const to = h("input", { type: "datetime-local", name: "to", "aria-label": "Started until", value: localInput(Number(q0.end)) });
  const between = h("span", { class: "between" }, from, " – ", to);
  const syncRange = () => (between.hidden = range.value !== "custom");
  range.addEventListener("change", syncRange);
  syncRange();
  const limit = h("select", { name: "limit" }, ["20", "50", "100", "500", "1000"].map((v) => h("option", { value: v }, v)));
  limit.value = params.get("limit") || "20";
  const withService = params.get("with");

  const form = h(
    "form",
    {
      class: "search-form",
      onsubmit: (e) => {
        e.preventDefault();
        const q = new URLSearchParams();
        for (const [k, el] of [["service", service], ["route", route], ["status", status], ["min_duration", minDuration]]) if (el.value.trim()) q.set(k, el.value.trim());
        for (const line of attrs.value.split("\n")) if (line.trim()) q.append("attr", line.trim());
        if (range.value !== "1h") q.set("range", range.value);
        if (range.value === "custom") {
          if (from.value) q.set("from", String(new Date(from.value).getTime()));
          if (to.value) q.set("to", String(new Date(to.value).getTime()));
        }
        if (limit.value !== "20") q.set("limit", limit.value);
        if (withService) q.set("with", withService);
        const next = `#/traces${q.toString() ? `?${q}` : ""}`;
        // The same search again still runs (a refresh by hand).
        if (location.hash === next) window.dispatchEvent(new HashChangeEvent("hashchange"));
        else location.hash = next;
      },
    },
    h(
      "fieldset",
      {},
      h("legend", {}, "Span filters ", h("span", { class: "hint" }, "— a trace is found when one of its spans matches all of these")),
      field("Service", service),
      field("Route", route, "exact http.route"),
      field("Status", status, "ok, error, or an HTTP status"),
      field("Attributes", attrs, "key=value, exact; span or resource attribute"),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Trace filters ", h("span", { class: "hint" }, "— about the whole trace")),
      field("Min duration", minDuration, "the trace's, e.g. 250ms, 1s"),
      field("Started", h("span", { class: "range" }, range, between)),
      field("Show", limit, "newest first"),
    ),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary" }, "Find traces"), h("a", { href: "#/traces", class: "button ghost" }, "Clear")),
    routeList,
    statusList,
  );
  const results = h("div", { class: "results", "aria-live": "polite" }, h("p", { class: "muted" }, "Searching…"));
  root.replaceChildren(h("section", { class: "search" }, h("h1", {}, "Traces"), form, results));

  return async function run() {
    const found = await api.traces(apiQuery(params));
    let list = found.traces || [];
    if (withService) list = list.filter((t) => (t.services || []).includes(withService));
    drawResults(results, list, found.limit, withService);
  };
}

function drawResults(root, list, limit, withService) {
  // A refresh redraws the list; the reader's row keeps the focus.
  const focusedId = root.contains(document.activeElement) ? document.activeElement.closest("tr")?.dataset.traceId : null;
  if (!list.length) {
    root.replaceChildren(empty("No trace matches. Widen the time range or drop a filter."));
    return;
  }
  const maxDur = Math.max(1, ...list.map((t) => t.duration_ns));
  // A ticked trace stays ticked when newer traces push it off a live
  // list (auto-refresh): it can still be compared with the next one ticked.
  const compareButton = h("button", { type: "button", class: "compare-button" });
  const syncCompare = () => {
    const ids = [...selectedForCompare];
    compareButton.textContent = ids.length === 2 ? "Compare the two selected" : `Select two to compare (${ids.length}/2)`;
    compareButton.disabled = ids.length !== 2;
  };
  compareButton.addEventListener("click", () => {
    const [a, b] = [...selectedForCompare];
    if (a && b) location.hash = `#/compare/${a}/${b}`;
  });
  syncCompare();
  const open = (t) => (location.hash = `#/traces/${t.trace_id}`);
  const tbody = h(
    "tbody",
    {},
    list.map((t) => {
      const box = h("input", {
        type: "checkbox",
        "aria-label": `Select ${t.trace_id} to compare`,
        checked: selectedForCompare.has(t.trace_id),
        onclick: (e) => e.stopPropagation(),
        onchange: (e) => {
          if (e.target.checked) {
            if (selectedForCompare.size >= 2) selectedForCompare.delete([...selectedForCompare][0]);
            selectedForCompare.add(t.trace_id);
          } else selectedForCompare.delete(t.trace_id);
          for (const other of tbody.querySelectorAll("input[type=checkbox]")) other.checked = selectedForCompare.has(other.dataset.id);
          syncCompare();
        },
        dataset: { id: t.trace_id },
      });
      return h(
        "tr",
        {
          tabindex: 0,
          class: "row-link",
          dataset: { traceId: t.trace_id },
          onclick: () => open(t),
          onkeydown: (e) => {
            if (e.key === "Enter" && e.target === e.currentTarget) open(t);
          },
        },
        h("td", {}, box),
        h("td", { title: fmtTime(t.start_unix_nano, true) }, fmtTime(t.start_unix_nano), h("div", { class: "muted small" }, ago(t.start_unix_nano))),
        h(
          "td",
          {},
          h("span", { class: "swatch", style: { background: serviceColor(t.root.service) } }),
          h("strong", {}, t.root.service),
          " ",
          t.root.name,
          t.root.status_code != null ? h("span", { class: `status ${t.root.status_code >= 500 ? "bad" : t.root.status_code >= 400 ? "warn" : ""}` }, ` ${t.root.status_code}`) : null,
          h("div", { class: "muted small mono" }, t.trace_id),
        ),
        h("td", { class: "num" }, fmtNs(t.duration_ns), h("div", { class: "dur-track" }, h("div", { class: "dur-fill", style: { width: `${(t.duration_ns / maxDur) * 100}%` } }))),
        h("td", { class: "num" }, String(t.spans), t.errors ? h("div", { class: "bad small" }, `${t.errors} errors`) : null),
        h("td", {}, (t.services || []).map((n) => h("span", { class: "chip" }, h("span", { class: "swatch", style: { background: serviceColor(n) } }), n)), t.stitched ? h("span", { class: "badge stitched" }, "stitched") : null),
      );
    }),
  );
  arrowRows(tbody, "tr[tabindex]");
  queueMicrotask(() => focusedId && tbody.querySelector(`tr[data-trace-id="${focusedId}"]`)?.focus());
  root.replaceChildren(
    h(
      "div",
      { class: "section-head" },
      h("h2", {}, `${list.length} trace${list.length === 1 ? "" : "s"}`),
      h("span", { class: "muted" }, list.length >= limit ? `newest ${limit} shown` : "newest first"),
      withService ? h("span", { class: "chip" }, `also through ${withService}`) : null,
      h("span", { class: "spacer" }),
      compareButton,
    ),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "data traces", "aria-label": "Traces found" },
        h("thead", {}, h("tr", {}, h("th", {}, h("span", { class: "sr-only" }, "Compare")), h("th", { scope: "col" }, "Started"), h("th", { scope: "col" }, "Root span"), h("th", { scope: "col", class: "num" }, "Duration"), h("th", { scope: "col", class: "num" }, "Spans"), h("th", { scope: "col" }, "Services"))),
        tbody,
      ),
    ),
  );
}
