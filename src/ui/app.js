// The app: hash routes to views, the graph's filter that the other views
// follow, auto-refresh, and the keys that work everywhere.
//
//   #/                           overview: the graph and the routes table
//   #/?service=S  #/?client=A&server=B   the same, filtered by a node or an edge
//   #/traces?service=…&attr=…    trace search
//   #/traces/ID[?span=SPAN]      one trace's waterfall
//   #/compare  #/compare/A/B     two traces side by side

import * as api from "./api.js";
import * as compare from "./compare.js";
import * as graph from "./graph.js";
import * as search from "./search.js";
import * as stats from "./stats.js";
import { empty, h, hashParams } from "./util.js";
import * as waterfall from "./waterfall.js";

const view = document.getElementById("view");
const errorBanner = document.getElementById("error");
const updated = document.getElementById("updated");
const autoRefresh = document.getElementById("auto-refresh");
const filterBar = document.getElementById("filter-bar");

let config = null;
let current = { refresh: null, route: "" };
let timer = 0;
// Each navigation bumps this; an answer for an older one is dropped.
let generation = 0;

function showError(err) {
  if (!err) {
    errorBanner.hidden = true;
    return;
  }
  errorBanner.hidden = false;
  errorBanner.textContent = err.message || String(err);
}

function stamp() {
  updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
}

/** The graph's selection, as the overview's hash query holds it. */
function selectionOf(params) {
  if (params.get("service")) return { service: params.get("service") };
  if (params.get("client") && params.get("server")) return { client: params.get("client"), server: params.get("server") };
  return null;
}

function selectionQuery(sel) {
  if (!sel) return "";
  const q = new URLSearchParams(sel.service ? { service: sel.service } : { client: sel.client, server: sel.server });
  return `?${q}`;
}

function drawFilterBar(sel) {
  if (!sel) {
    filterBar.hidden = true;
    return;
  }
  const what = sel.service ? `service ${sel.service}` : `calls ${sel.client} → ${sel.server}`;
  const traces = sel.service ? `#/traces?service=${encodeURIComponent(sel.service)}` : `#/traces?service=${encodeURIComponent(sel.server)}&with=${encodeURIComponent(sel.client)}`;
  filterBar.hidden = false;
  filterBar.replaceChildren(
    h("span", {}, "Showing ", h("strong", {}, what)),
    h("a", { href: traces, class: "button", "data-edge-traces": "" }, "Traces behind it →"),
    h("a", { href: "#/", class: "button ghost", title: "Esc" }, "Clear filter"),
  );
}

async function overview(params, gen) {
  const sel = selectionOf(params);
  drawFilterBar(sel);
  const graphBox = h("div", { class: "graph-box", "aria-label": "Service dependency graph" }, h("p", { class: "muted" }, "Loading the graph…"));
  const statsBox = h("div", { class: "stats-box" });
  view.replaceChildren(h(
      "section",
      { class: "overview" },
      h("div", { class: "section-head" }, h("h1", {}, "Services"), h("span", { class: "muted" }, `calls ${config.mode === "sidecar" ? "among this sidecar's newest spans" : "in the last hour"}; click a service or a call to filter`)),
      graphBox,
      statsBox,
    ));
  const select = (next) => {
    location.hash = `#/${selectionQuery(next)}`;
  };
  const openRoute = (r) => {
    const q = new URLSearchParams({ service: r.service });
    if (r.route && r.route !== "_other") q.set("route", r.route);
    location.hash = `#/traces?${q}`;
  };
  return async () => {
    const [deps, st] = await Promise.all([api.dependencies({}), api.stats({})]);
    if (gen !== generation) return;
    const focused = document.activeElement;
    const refocus = focused?.dataset?.service ? `[data-service="${CSS.escape(focused.dataset.service)}"]` : focused?.dataset?.client ? `[data-client="${CSS.escape(focused.dataset.client)}"][data-server="${CSS.escape(focused.dataset.server)}"]` : null;
    graph.render(graphBox, deps, sel, select);
    if (refocus) graphBox.querySelector(refocus)?.focus();
    if (!statsBox.contains(document.activeElement)) stats.render(statsBox, st, sel, openRoute);
  };
}

async function traces(params, gen) {
  drawFilterBar(null);
  const [svc, st] = await Promise.all([api.services().catch(() => ({ services: [] })), api.stats({}).catch(() => ({ routes: [] }))]);
  if (gen !== generation) return null;
  return search.render(view, params, { services: svc.services || [], routes: (st.routes || []).map((r) => r.route).filter(Boolean) });
}

async function traceView(id, params, gen) {
  drawFilterBar(null);
  view.replaceChildren(h("p", { class: "muted pad" }, "Loading the trace…"));
  const t = await api.trace(id);
  if (gen !== generation) return null;
  const handle = waterfall.render(view, t, {
    span: params.get("span"),
    onSelect: (spanId) => history.replaceState(null, "", `#/traces/${id}?span=${spanId}`),
  });
  document.title = `trace ${id.slice(0, 8)} · sidetrace`;
  current.focusSearch = handle.focusFilter;
  return null;
}

async function compareView(a, b, gen) {
  drawFilterBar(null);
  if (!a || !b) {
    const inA = h("input", { class: "mono", placeholder: "Trace A", "aria-label": "Trace A", "data-slash": "", value: a || "" });
    const inB = h("input", { class: "mono", placeholder: "Trace B", "aria-label": "Trace B", value: b || "" });
    view.replaceChildren(
      h(
        "section",
        { class: "compare" },
        h("h1", {}, "Compare two traces"),
        h("p", { class: "muted" }, "Enter two trace IDs, or tick two traces in a search and press Compare."),
        h(
          "form",
          {
            class: "inline",
            onsubmit: (e) => {
              e.preventDefault();
              if (inA.value.trim() && inB.value.trim()) location.hash = `#/compare/${inA.value.trim()}/${inB.value.trim()}`;
            },
          },
          inA,
          inB,
          h("button", { type: "submit", class: "primary" }, "Compare"),
        ),
      ),
    );
    return null;
  }
  view.replaceChildren(h("p", { class: "muted pad" }, "Loading both traces…"));
  const [ta, tb] = await Promise.all([api.trace(a), api.trace(b)]);
  if (gen !== generation) return null;
  compare.render(view, ta, tb);
  return null;
}

async function route() {
  const gen = ++generation;
  const hash = location.hash || "#/";
  const path = hash.split("?")[0].replace(/^#/, "") || "/";
  const params = hashParams(hash);
  const parts = path.split("/").filter(Boolean);
  const section = parts[0] === "traces" ? "traces" : parts[0] === "compare" ? "compare" : "overview";
  for (const a of document.querySelectorAll("nav a")) a.toggleAttribute("aria-current", a.dataset.nav === section);
  document.title = "sidetrace";
  current = { refresh: null, route: hash, focusSearch: null };
  showError(null);
  try {
    let refresh = null;
    if (parts[0] === "traces" && parts[1]) await traceView(decodeURIComponent(parts[1]), params, gen);
    else if (parts[0] === "traces") refresh = await traces(params, gen);
    else if (parts[0] === "compare") await compareView(parts[1], parts[2], gen);
    else refresh = await overview(params, gen);
    if (gen !== generation) return;
    current.refresh = refresh;
    if (refresh) {
      await refresh();
      stamp();
    }
    view.dataset.ready = section;
  } catch (err) {
    if (gen !== generation) return;
    showError(err);
    if (!view.querySelector("section")) view.replaceChildren(empty(err.message));
  }
  schedule();
}

// Only list views refresh on their own: a trace or a comparison is fixed
// once found, and redrawing it would lose the reader's place.
function schedule() {
  clearTimeout(timer);
  if (!autoRefresh.checked || !current.refresh) return;
  timer = setTimeout(async () => {
    const gen = generation;
    if (!document.hidden && current.refresh) {
      try {
        await current.refresh();
        if (gen === generation) {
          showError(null);
          stamp();
        }
      } catch (err) {
        if (gen === generation) showError(err);
      }
    }
    if (gen === generation) schedule();
  }, (config?.refresh_seconds || 10) * 1000);
}

function focusSearch() {
  if (current.focusSearch) return current.focusSearch();
  const target = view.querySelector("[data-slash]");
  if (target) target.focus();
  else document.getElementById("goto-id").focus();
}

let pendingG = false;
document.addEventListener("keydown", (e) => {
  // An open dialog (the help) has the keys; Esc closes it by itself.
  if (document.querySelector("dialog[open]")) return;
  const typing = e.target.closest?.("input, textarea, select, [contenteditable]");
  if (e.key === "Escape") {
    if (typing) e.target.blur();
    else if (!filterBar.hidden && !location.hash.startsWith("#/traces")) location.hash = "#/";
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (pendingG) {
    pendingG = false;
    const to = { o: "#/", t: "#/traces", c: "#/compare" }[e.key];
    if (to) {
      location.hash = to;
      e.preventDefault();
      return;
    }
  }
  if (e.key === "/") {
    e.preventDefault();
    focusSearch();
  } else if (e.key === "?") {
    document.getElementById("help").showModal();
  } else if (e.key === "g") {
    pendingG = true;
    setTimeout(() => (pendingG = false), 1500);
  }
});

document.getElementById("help-button").addEventListener("click", () => document.getElementById("help").showModal());
document.getElementById("goto").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = document.getElementById("goto-id").value.trim();
  if (id) location.hash = `#/traces/${id}`;
});
autoRefresh.addEventListener("change", schedule);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) schedule();
});
window.addEventListener("hashchange", route);

config = await api.uiConfig();
document.getElementById("refresh-every").textContent = `(${config.refresh_seconds} s)`;
document.getElementById("mode").textContent = config.mode === "sidecar" ? `sidecar${config.service ? ` · ${config.service}` : ""}: its own spans` : "collector";
route();
