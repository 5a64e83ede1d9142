// The JSON API the pages read. The collector serves it as the contract
// says; a sidecar's admin port serves its own older shapes (OTLP/JSON
// spans, per-route stats without a service), which sidecar.js turns into
// the same answers, so the views never ask which server they talk to.

import { getJSON } from "./http.js";
import * as sidecar from "./sidecar.js";

let config = null;

/** /api/ui-config, asked once; a server without it is a sidecar of an older kind. */
export async function uiConfig() {
  if (config) return config;
  try {
    config = await getJSON("/api/ui-config");
  } catch {
    config = {};
  }
  config = {
    mode: config.mode === "collector" ? "collector" : "sidecar",
    refresh_seconds: config.refresh_seconds || 10,
    log_link_template: config.log_link_template || null,
    service: config.service || null,
  };
  return config;
}

const isSidecar = () => config?.mode === "sidecar";

export const services = () => (isSidecar() ? sidecar.services() : getJSON("/api/services"));
export const traces = (q) => (isSidecar() ? sidecar.traces(q) : getJSON("/api/traces", q));
export const dependencies = (q) => (isSidecar() ? sidecar.dependencies(q) : getJSON("/api/dependencies", q));
export const stats = (q) => (isSidecar() ? sidecar.stats(q, config) : getJSON("/api/stats", q));

export async function trace(id) {
  if (isSidecar()) return sidecar.trace(id);
  return getJSON(`/api/traces/${encodeURIComponent(id)}`);
}

/** The external log system's link for a trace, or null without a template. */
export function logLink(trace) {
  const template = config?.log_link_template;
  if (!template || !trace.spans.length) return null;
  let start = null;
  let end = null;
  for (const s of trace.spans) {
    const a = BigInt(s.start_unix_nano);
    const b = BigInt(s.end_unix_nano);
    if (start == null || a < start) start = a;
    if (end == null || b > end) end = b;
  }
  const root = trace.spans.find((s) => !s.parent_span_id) || trace.spans[0];
  const values = {
    trace_id: trace.trace_id,
    service: root.service,
    start_ms: String(start / 1000000n),
    // Rounded up, so the window holds the last span's end.
    end_ms: String((end + 999999n) / 1000000n),
  };
  return template.replace(/\{(trace_id|service|start_ms|end_ms)\}/g, (_, k) => encodeURIComponent(values[k]));
}
