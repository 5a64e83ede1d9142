// A sidecar's admin port as the contract's API. The sidecar keeps its
// newest spans in a ring and serves them as OTLP/JSON (/api/traces), and its
// own per-route figures (/api/stats, without a service); the contract's
// answers are computed here, in the browser, from those. A sidecar sees
// only its own service's spans, so its graph shows that service and the
// servers it calls (by `peer.service`, else `server.address`).

import { getJSON } from "./http.js";

// The newest spans the lists and the graph are computed from. The ring
// holds 10000 by default (--trace-buffer), but encoding all of them every
// refresh would cost the sidecar more than a glance at its traffic is
// worth; one trace is always read whole, by its id.
const RING_LIMIT = 2000;
const KINDS = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];
const STATUS = ["UNSET", "OK", "ERROR"];

let cache = { at: 0, spans: null, pending: null };

function anyValue(v) {
  if (v == null) return null;
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return Number(v.doubleValue);
  if ("boolValue" in v) return v.boolValue;
  if ("arrayValue" in v) return (v.arrayValue.values || []).map(anyValue);
  if ("kvlistValue" in v) return attrs(v.kvlistValue.values);
  return null;
}

function attrs(list) {
  const out = {};
  for (const kv of list || []) out[kv.key] = anyValue(kv.value);
  return out;
}

function enumName(names, v, prefix) {
  if (typeof v === "number") return names[v] ?? names[0];
  return String(v ?? names[0]).replace(prefix, "");
}

/** OTLP/JSON's ExportTraceServiceRequest as the contract's spans. */
export function fromOtlp(doc) {
  const spans = [];
  for (const rs of doc?.resourceSpans || []) {
    const resource = attrs(rs.resource?.attributes);
    const service = resource["service.name"] ?? "unknown";
    for (const ss of rs.scopeSpans || []) {
      for (const sp of ss.spans || []) {
        const start = BigInt(sp.startTimeUnixNano || 0);
        const end = BigInt(sp.endTimeUnixNano || 0);
        spans.push({
          trace_id: sp.traceId,
          span_id: sp.spanId,
          parent_span_id: sp.parentSpanId || null,
          name: sp.name,
          kind: enumName(KINDS, sp.kind, "SPAN_KIND_"),
          service,
          start_unix_nano: String(start),
          end_unix_nano: String(end),
          duration_ns: Number(end - start),
          status: { code: enumName(STATUS, sp.status?.code, "STATUS_CODE_"), message: sp.status?.message || "" },
          attributes: attrs(sp.attributes),
          resource,
          links: (sp.links || []).map((l) => ({ trace_id: l.traceId, span_id: l.spanId, attributes: attrs(l.attributes) })),
          events: (sp.events || []).map((e) => ({ time_unix_nano: e.timeUnixNano, name: e.name, attributes: attrs(e.attributes) })),
        });
      }
    }
  }
  spans.sort((a, b) => (BigInt(a.start_unix_nano) < BigInt(b.start_unix_nano) ? -1 : 1));
  return spans;
}

// The overview asks for services, stats and dependencies at once: one
// fetch of the ring serves all three.
async function ringSpans() {
  if (cache.spans && Date.now() - cache.at < 1000) return cache.spans;
  if (!cache.pending) {
    cache.pending = getJSON("/api/traces", { limit: RING_LIMIT })
      .then((doc) => {
        cache = { at: Date.now(), spans: fromOtlp(doc), pending: null };
        return cache.spans;
      })
      .finally(() => {
        cache.pending = null;
      });
  }
  return cache.pending;
}

export async function services() {
  const counts = new Map();
  for (const s of await ringSpans()) counts.set(s.service, (counts.get(s.service) || 0) + 1);
  return { services: [...counts].sort().map(([name, spans]) => ({ name, spans })) };
}

function groupTraces(spans) {
  const byTrace = new Map();
  for (const s of spans) {
    if (!byTrace.has(s.trace_id)) byTrace.set(s.trace_id, []);
    byTrace.get(s.trace_id).push(s);
  }
  return byTrace;
}

function spanMatches(s, q) {
  if (q.service && s.service !== q.service) return false;
  if (q.route && s.attributes["http.route"] !== q.route) return false;
  if (q.status) {
    const code = s.attributes["http.response.status_code"];
    if (q.status === "error" && s.status.code !== "ERROR") return false;
    if (q.status === "ok" && s.status.code === "ERROR") return false;
    if (/^\d{3}$/.test(q.status) && String(code) !== q.status) return false;
  }
  for (const pair of [q.attr || []].flat()) {
    const i = pair.indexOf("=");
    const [k, v] = [pair.slice(0, i), pair.slice(i + 1)];
    const have = k in s.attributes ? s.attributes[k] : s.resource[k];
    if (have == null || String(have) !== v) return false;
  }
  return true;
}

function parseDuration(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|min|h)?\s*$/.exec(text || "");
  if (!m) return null;
  const unit = { ns: 1, us: 1e3, "µs": 1e3, ms: 1e6, s: 1e9, m: 60e9, min: 60e9, h: 3600e9 }[m[2] || "ms"];
  return Number(m[1]) * unit;
}

function timeBound(v, fallback) {
  if (v == null || v === "") return fallback;
  const n = Number(v);
  return BigInt(Math.round(Number.isNaN(n) ? Date.parse(v) : n)) * 1000000n;
}

export function summary(traceId, spans) {
  let start = null;
  let end = null;
  for (const s of spans) {
    const a = BigInt(s.start_unix_nano);
    const b = BigInt(s.end_unix_nano);
    if (start == null || a < start) start = a;
    if (end == null || b > end) end = b;
  }
  const ids = new Set(spans.map((s) => s.span_id));
  const root = spans.find((s) => !s.parent_span_id) || spans.find((s) => !ids.has(s.parent_span_id)) || spans[0];
  return {
    trace_id: traceId,
    root: {
      service: root.service,
      name: root.name,
      route: root.attributes["http.route"] ?? null,
      status_code: root.attributes["http.response.status_code"] ?? null,
    },
    start_unix_nano: String(start),
    duration_ns: root.parent_span_id ? Number(end - start) : root.duration_ns,
    spans: spans.length,
    errors: spans.filter((s) => s.status.code === "ERROR").length,
    services: [...new Set(spans.map((s) => s.service))].sort(),
    stitched: spans.some((s) => s.attributes["sidetrace.stitched"] === true),
  };
}

export async function traces(q) {
  const limit = Math.min(Number(q.limit) || 20, 1000);
  const minNs = parseDuration(q.min_duration);
  if (q.min_duration && minNs == null) throw new Error("min_duration is a number and a unit, such as 250ms or 1s");
  const endNs = timeBound(q.end, BigInt(Date.now()) * 1000000n);
  const startNs = timeBound(q.start, endNs - 3600n * 1000000000n);
  const out = [];
  for (const [id, spans] of groupTraces(await ringSpans())) {
    if (!spans.some((s) => spanMatches(s, q))) continue;
    const t = summary(id, spans);
    const at = BigInt(t.start_unix_nano);
    if (at < startNs || at > endNs) continue;
    if (minNs != null && t.duration_ns < minNs) continue;
    out.push(t);
  }
  out.sort((a, b) => (BigInt(b.start_unix_nano) > BigInt(a.start_unix_nano) ? 1 : -1));
  return { traces: out.slice(0, limit), limit };
}

export async function trace(id) {
  const spans = fromOtlp(await getJSON(`/api/traces/${encodeURIComponent(id)}`));
  return { trace_id: id, spans, logs: [] };
}

function percentile(sorted, p) {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export async function dependencies() {
  const spans = await ringSpans();
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const childServer = new Set();
  const edges = new Map();
  const nodes = new Map();
  const node = (name) => {
    if (!nodes.has(name)) nodes.set(name, { name, requests: 0, errors: 0 });
    return nodes.get(name);
  };
  const add = (client, server, s) => {
    const key = `${client}\u0000${server}`;
    if (!edges.has(key)) edges.set(key, { client, server, durations: [], errors: 0, first: null, last: null });
    const e = edges.get(key);
    e.durations.push(s.duration_ns / 1e6);
    if (s.status.code === "ERROR") e.errors++;
    const t = BigInt(s.start_unix_nano);
    if (e.first == null || t < e.first) e.first = t;
    if (e.last == null || t > e.last) e.last = t;
  };
  for (const s of spans) {
    if (s.kind === "SERVER") {
      const n = node(s.service);
      n.requests++;
      if (s.status.code === "ERROR") n.errors++;
      const parent = byId.get(s.parent_span_id);
      if (parent && parent.kind === "CLIENT" && parent.service !== s.service) {
        add(parent.service, s.service, parent);
        childServer.add(parent.span_id);
      }
    } else {
      node(s.service);
    }
  }
  for (const s of spans) {
    if (s.kind !== "CLIENT" || childServer.has(s.span_id)) continue;
    const peer = s.attributes["peer.service"] ?? s.attributes["server.address"];
    if (peer == null || peer === s.service) continue;
    const n = node(String(peer));
    n.requests++;
    if (s.status.code === "ERROR") n.errors++;
    add(s.service, String(peer), s);
  }
  const list = [...edges.values()].map((e) => {
    e.durations.sort((a, b) => a - b);
    const seconds = Math.max(1, Number((BigInt(Date.now()) * 1000000n - e.first) / 1000000000n));
    return {
      client: e.client,
      server: e.server,
      requests: e.durations.length,
      errors: e.errors,
      error_rate: e.errors / e.durations.length,
      rate: e.durations.length / seconds,
      p50_ms: percentile(e.durations, 50),
      p90_ms: percentile(e.durations, 90),
      p99_ms: percentile(e.durations, 99),
    };
  });
  return { nodes: [...nodes.values()], edges: list };
}

export async function stats(_q, config) {
  const doc = await getJSON("/api/stats");
  const service = config?.service || "this service";
  return {
    window_seconds: 60,
    routes: (doc?.routes || []).map((r) => ({ service, ...r })),
  };
}
