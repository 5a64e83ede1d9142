// The UI's pure logic under Node's own test runner (node:test): the span
// tree, the critical path, self times, the comparison's matching, the
// graph's layout, the span filter and the sidecar's OTLP/JSON reading.
// tests/ui.rs runs it (`ui_logic_in_node`) against a copy of src/ui/ marked
// as ES modules; the browser test covers the same code drawn on a page.

import assert from "node:assert/strict";
import { test } from "node:test";
import { buildTree, criticalPath, selfTimes } from "./critical.js";
import { diff } from "./compare.js";
import { layout } from "./graph.js";
import { fromOtlp, summary } from "./sidecar.js";
import { spanMatcher } from "./waterfall.js";

const BASE = 1_700_000_000_000_000_000n;

/** A contract-shaped span; times in ms from BASE. */
function span(id, parent, [a, b], { service = "svc", name = `op ${id}`, attributes = {} } = {}) {
  return {
    trace_id: "t",
    span_id: id,
    parent_span_id: parent,
    name,
    service,
    kind: "SERVER",
    start_unix_nano: String(BASE + BigInt(Math.round(a * 1e6))),
    end_unix_nano: String(BASE + BigInt(Math.round(b * 1e6))),
    status: { code: "UNSET" },
    attributes,
    resource: { "service.name": service },
  };
}

const tree = (spans, logs = []) => buildTree({ trace_id: "t", spans, logs });
const onPath = (t) => [...criticalPath(t).keys()].map((n) => n.span.span_id).sort();

test("sequential calls are all on the critical path, a shorter parallel one is not", () => {
  const t = tree([
    span("root", null, [0, 100]),
    span("first", "root", [5, 40]),
    span("second", "root", [45, 90]),
    span("beside", "root", [50, 60]),
  ]);
  assert.deepEqual(onPath(t), ["first", "root", "second"]);
  const segs = criticalPath(t).get(t.byId.get("root"));
  const own = segs.reduce((s, [a, b]) => s + b - a, 0);
  assert.equal(own, 20e6, "the root's own time: 0-5, 40-45, 90-100");
});

test("a child that outlives its parent counts only up to the parent's end", () => {
  const t = tree([span("root", null, [0, 50]), span("async", "root", [10, 80])]);
  assert.deepEqual(criticalPath(t).get(t.byId.get("async")), [[10e6, 50e6]]);
});

test("orphans become roots, logs find their spans, loops do not hang", () => {
  const t = tree(
    [span("a", null, [0, 10]), span("lost", "nowhere", [1, 2]), span("x", "y", [3, 4]), span("y", "x", [4, 5])],
    [{ span_id: "a", time_unix_nano: String(BASE), body: "hello" }, { span_id: "zzz", time_unix_nano: String(BASE), body: "stray" }],
  );
  assert.equal(t.order.length, 4);
  assert.ok(t.byId.get("lost").orphan);
  assert.deepEqual(t.byId.get("a").logs.map((l) => l.body), ["hello"]);
  assert.deepEqual(t.unattachedLogs.map((l) => l.body), ["stray"]);
});

test("self time is the duration less the union of the children", () => {
  const t = tree([span("p", null, [0, 100]), span("c1", "p", [10, 50]), span("c2", "p", [30, 70]), span("c3", "p", [90, 120])]);
  assert.equal(selfTimes(t).get(t.byId.get("p")), 100e6 - 60e6 - 10e6);
});

test("compare matches by place, names with slashes included, and puts B's extra spans under their parent", () => {
  const a = tree([span("1", null, [0, 10], { name: "GET /a/{id}" }), span("2", "1", [1, 5], { name: "GET /b" }), span("3", "1", [5, 9], { name: "GET /b" })]);
  const b = tree([
    span("1", null, [0, 30], { name: "GET /a/{id}" }),
    span("2", "1", [1, 5], { name: "GET /b" }),
    span("9", "2", [2, 4], { name: "SELECT" }),
    span("3", "1", [5, 29], { name: "GET /b" }),
  ]);
  const rows = diff(a, b).map((r) => [r.depth, r.a?.node.span.span_id ?? null, r.b?.node.span.span_id ?? null, r.selfDelta / 1e6]);
  assert.deepEqual(rows, [
    [0, "1", "1", 0],
    [1, "2", "2", -2],
    [2, null, "9", 2],
    [1, "3", "3", 20],
  ]);
});

test("the graph puts callers left of the services they call, and survives a cycle", () => {
  const edges = [
    { client: "producer", server: "consumer" },
    { client: "consumer", server: "store" },
  ];
  const { place, cols } = layout(["store", "consumer", "producer"], edges);
  assert.equal(cols, 3);
  assert.deepEqual([place.producer.col, place.consumer.col, place.store.col], [0, 1, 2]);
  const cyclic = layout(["a", "b"], [{ client: "a", server: "b" }, { client: "b", server: "a" }]);
  assert.equal(cyclic.cols, 2);
});

test("the span filter takes key=value exactly, else text anywhere", () => {
  const s = span("1", null, [0, 1], { name: "GET /x", attributes: { "http.response.status_code": 503, "customer.tier": "gold" } });
  assert.ok(spanMatcher("http.response.status_code=503")(s));
  assert.ok(!spanMatcher("http.response.status_code=50")(s));
  assert.ok(spanMatcher("GOLD")(s));
  assert.ok(!spanMatcher("silver")(s));
  assert.equal(spanMatcher("  "), null);
});

test("a sidecar's OTLP/JSON reads as the contract's spans", () => {
  const doc = {
    resourceSpans: [
      {
        resource: { attributes: [{ key: "service.name", value: { stringValue: "checkout" } }] },
        scopeSpans: [
          {
            spans: [
              {
                traceId: "ab".repeat(16),
                spanId: "cd".repeat(8),
                parentSpanId: "",
                name: "GET /cart",
                kind: 2,
                startTimeUnixNano: "1700000000000000000",
                endTimeUnixNano: "1700000000002500000",
                attributes: [
                  { key: "http.response.status_code", value: { intValue: "503" } },
                  { key: "http.route", value: { stringValue: "/cart" } },
                ],
                status: { code: 2 },
              },
            ],
          },
        ],
      },
    ],
  };
  const [s] = fromOtlp(doc);
  assert.equal(s.kind, "SERVER");
  assert.equal(s.status.code, "ERROR");
  assert.equal(s.parent_span_id, null);
  assert.equal(s.duration_ns, 2_500_000);
  assert.equal(s.attributes["http.response.status_code"], 503);
  assert.equal(s.service, "checkout");
  const sum = summary(s.trace_id, [s]);
  assert.deepEqual(sum.root, { service: "checkout", name: "GET /cart", route: "/cart", status_code: 503 });
  assert.equal(sum.errors, 1);
});
