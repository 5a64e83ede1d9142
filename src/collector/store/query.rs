//! The reads behind the query API (/work/shared-notes/ui-api-contract.md,
//! docs/api/openapi.yaml): plain functions of a connection, so the same
//! code reads the file store and the in-memory one.

use super::super::rows::{KIND_CLIENT, KIND_CONSUMER, KIND_PRODUCER, KIND_SERVER, STATUS_ERROR, attr_needles};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A time window in Unix nanoseconds, both ends included.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn seconds(&self) -> f64 {
        ((self.end - self.start).max(1)) as f64 / 1e9
    }
}

/// The shortest period rates are taken over: a first span a millisecond
/// old is not a thousand requests a second.
const MIN_OBSERVED_NS: i64 = 1_000_000_000;

/// The part of `window` that holds data: from its first stored span (or
/// its start, if later) to its end, at least a second long. Rates (`rate`,
/// `tps`) are taken over it, so traffic that began five seconds ago reads
/// as its real pace, not as spread over the hour asked for.
pub fn observed(conn: &Connection, window: Window) -> rusqlite::Result<Window> {
    let first: Option<i64> = conn
        .prepare_cached("SELECT MIN(start_ns) FROM spans WHERE start_ns BETWEEN ?1 AND ?2")?
        .query_row([window.start, window.end], |r| r.get(0))?;
    let start = first.map_or(window.start, |f| f.max(window.start)).min(window.end - MIN_OBSERVED_NS);
    Ok(Window { start: start.max(window.start), end: window.end })
}

#[derive(Debug, Clone, PartialEq)]
pub enum StatusFilter {
    Ok,
    Error,
    Http(i64),
}

/// `/api/traces`: span filters (one span must match them all), then the
/// trace's own (minimum duration, start in the window).
#[derive(Debug, Clone)]
pub struct Search {
    pub service: Option<String>,
    pub route: Option<String>,
    pub status: Option<StatusFilter>,
    pub attrs: Vec<(String, String)>,
    pub min_duration_ns: Option<i64>,
    pub window: Window,
    pub limit: usize,
}

#[derive(Debug, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root: Root,
    #[serde(serialize_with = "as_string")]
    pub start_unix_nano: i64,
    pub duration_ns: i64,
    pub spans: usize,
    pub errors: usize,
    pub services: BTreeSet<String>,
    pub stitched: bool,
}

#[derive(Debug, Serialize)]
pub struct Root {
    pub service: String,
    pub name: String,
    pub route: Option<String>,
    pub status_code: Option<i64>,
}

fn as_string<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Spans a trace may start before its matching span: the search looks this
/// far past the window's end for spans of traces that started inside it.
const TRACE_SPREAD_NS: i64 = 3_600_000_000_000;

pub fn services(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT service, COUNT(*) FROM spans GROUP BY service ORDER BY service")?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// A trace's span documents by start, `None` when no span is stored.
pub fn trace_spans(conn: &Connection, trace_id: &str) -> rusqlite::Result<Option<Vec<String>>> {
    let mut stmt = conn.prepare_cached("SELECT doc FROM spans WHERE trace_id = ?1 ORDER BY start_ns, rowid")?;
    let docs: Vec<String> = stmt.query_map([trace_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok((!docs.is_empty()).then_some(docs))
}

/// A trace's log documents by time.
pub fn trace_logs(conn: &Connection, trace_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT doc FROM logs WHERE trace_id = ?1 ORDER BY time_ns, rowid")?;
    stmt.query_map([trace_id], |r| r.get(0))?.collect()
}

/// The newest `limit` log documents of a window (of one service), by time.
pub fn window_logs(
    conn: &Connection,
    window: Window,
    service: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc FROM logs WHERE time_ns BETWEEN ?1 AND ?2 AND (?3 IS NULL OR service = ?3)
         ORDER BY time_ns DESC, rowid DESC LIMIT ?4",
    )?;
    let mut docs: Vec<String> = stmt
        .query_map(params![window.start, window.end, service, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    docs.reverse();
    Ok(docs)
}

pub fn search(conn: &Connection, q: &Search) -> rusqlite::Result<Vec<TraceSummary>> {
    // Matching spans newest first, straight off the start_ns index (or
    // service's): the scan stops as soon as `limit` traces qualify.
    let mut sql = String::from("SELECT trace_id FROM spans WHERE start_ns BETWEEN ? AND ?");
    let mut args = vec![Sql::Integer(q.window.start), Sql::Integer(q.window.end.saturating_add(TRACE_SPREAD_NS))];
    if let Some(service) = &q.service {
        sql.push_str(" AND service = ?");
        args.push(Sql::Text(service.clone()));
    }
    if let Some(route) = &q.route {
        sql.push_str(" AND route = ?");
        args.push(Sql::Text(route.clone()));
    }
    match &q.status {
        None => {}
        Some(StatusFilter::Error) => sql.push_str(&format!(" AND status = {STATUS_ERROR}")),
        Some(StatusFilter::Ok) => sql.push_str(&format!(" AND status <> {STATUS_ERROR}")),
        Some(StatusFilter::Http(code)) => {
            sql.push_str(" AND http_status = ?");
            args.push(Sql::Integer(*code));
        }
    }
    for (key, value) in &q.attrs {
        let needles = attr_needles(key, value);
        let any: Vec<&str> = needles.iter().map(|_| "instr(doc, ?) > 0").collect();
        sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        args.extend(needles.into_iter().map(Sql::Text));
    }
    sql.push_str(" ORDER BY start_ns DESC");
    let mut candidates = conn.prepare(&sql)?;
    let mut rows = candidates.query(params_from_iter(args))?;
    let mut found = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while found.len() < q.limit {
        let Some(row) = rows.next()? else { break };
        let trace_id: String = row.get(0)?;
        if !seen.insert(trace_id.clone()) {
            continue;
        }
        let Some(summary) = summary(conn, &trace_id)? else { continue };
        let in_window = (q.window.start..=q.window.end).contains(&summary.start_unix_nano);
        if in_window && q.min_duration_ns.is_none_or(|min| summary.duration_ns >= min) {
            found.push(summary);
        }
    }
    found.sort_by_key(|t| std::cmp::Reverse(t.start_unix_nano));
    Ok(found)
}

struct Brief {
    parent: Option<String>,
    service: String,
    name: String,
    route: Option<String>,
    http_status: Option<i64>,
    start: i64,
    end: i64,
    status: i64,
    stitched: bool,
}

fn summary(conn: &Connection, trace_id: &str) -> rusqlite::Result<Option<TraceSummary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT parent_span_id, service, name, route, http_status, start_ns, end_ns, status, stitched
         FROM spans WHERE trace_id = ?1 ORDER BY start_ns, rowid",
    )?;
    let spans: Vec<Brief> = stmt
        .query_map([trace_id], |r| {
            Ok(Brief {
                parent: r.get(0)?,
                service: r.get(1)?,
                name: r.get(2)?,
                route: r.get(3)?,
                http_status: r.get(4)?,
                start: r.get(5)?,
                end: r.get(6)?,
                status: r.get(7)?,
                stitched: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let Some(first) = spans.first() else { return Ok(None) };
    let start = first.start;
    // The root: the earliest span without a parent; a trace whose root has
    // not arrived is measured from its first span to its last end.
    let root = spans.iter().find(|s| s.parent.is_none());
    let duration = match root {
        Some(r) => r.end - r.start,
        None => spans.iter().map(|s| s.end).max().unwrap_or(start) - start,
    };
    let shown = root.unwrap_or(first);
    Ok(Some(TraceSummary {
        trace_id: trace_id.to_string(),
        root: Root {
            service: shown.service.clone(),
            name: shown.name.clone(),
            route: shown.route.clone(),
            status_code: shown.http_status,
        },
        start_unix_nano: start,
        duration_ns: duration,
        spans: spans.len(),
        errors: spans.iter().filter(|s| s.status == STATUS_ERROR).count(),
        services: spans.iter().map(|s| s.service.clone()).collect(),
        stitched: spans.iter().any(|s| s.stitched),
    }))
}

/// Latency figures of a set of durations, in milliseconds.
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct Latency {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `ms` (sorted here).
    pub fn of(ms: &mut [f64]) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Node {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
}

#[derive(Debug, Serialize)]
pub struct Edge {
    pub client: String,
    pub server: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Dependencies {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Default)]
struct Calls {
    ms: Vec<f64>,
    errors: u64,
}

/// Caller → callee edges: a CLIENT span and its SERVER child in another
/// service, and a CLIENT span's `peer.service` where no SERVER child was
/// recorded (a callee without instrumentation or sidecar).
pub fn dependencies(conn: &Connection, window: Window) -> rusqlite::Result<Dependencies> {
    let mut edges: BTreeMap<(String, String), Calls> = BTreeMap::new();
    let mut add = |client: String, server: String, ns: i64, error: bool| {
        let calls = edges.entry((client, server)).or_default();
        calls.ms.push(ns as f64 / 1e6);
        calls.errors += u64::from(error);
    };
    let mut pairs = conn.prepare_cached(&format!(
        "SELECT c.service, s.service, c.end_ns - c.start_ns, c.status = {STATUS_ERROR} OR s.status = {STATUS_ERROR}
         FROM spans c JOIN spans s ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
         WHERE c.kind = {KIND_CLIENT} AND s.kind = {KIND_SERVER} AND c.service <> s.service
           AND c.start_ns BETWEEN ?1 AND ?2"
    ))?;
    let mut rows = pairs.query([window.start, window.end])?;
    while let Some(r) = rows.next()? {
        add(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    }
    let mut peers = conn.prepare_cached(&format!(
        "SELECT c.service, c.peer_service, c.end_ns - c.start_ns, c.status = {STATUS_ERROR}
         FROM spans c
         WHERE c.kind = {KIND_CLIENT} AND c.peer_service IS NOT NULL AND c.start_ns BETWEEN ?1 AND ?2
           AND NOT EXISTS (SELECT 1 FROM spans s
                           WHERE s.trace_id = c.trace_id AND s.parent_span_id = c.span_id AND s.kind = {KIND_SERVER})"
    ))?;
    let mut rows = peers.query([window.start, window.end])?;
    while let Some(r) = rows.next()? {
        add(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    }
    // A node's own figures are its SERVER spans; a callee known only by
    // `peer.service` (no spans of its own) takes its incoming edges'.
    let mut nodes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut served = conn.prepare_cached(&format!(
        "SELECT service, COUNT(*), SUM(status = {STATUS_ERROR}) FROM spans
         WHERE kind = {KIND_SERVER} AND start_ns BETWEEN ?1 AND ?2 GROUP BY service"
    ))?;
    let mut rows = served.query([window.start, window.end])?;
    while let Some(r) = rows.next()? {
        nodes.insert(r.get(0)?, (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64));
    }
    let mut incoming: HashMap<&str, (u64, u64)> = HashMap::new();
    for ((client, server), calls) in &edges {
        nodes.entry(client.clone()).or_default();
        let sum = incoming.entry(server).or_default();
        sum.0 += calls.ms.len() as u64;
        sum.1 += calls.errors;
    }
    for (server, sum) in incoming {
        nodes.entry(server.to_string()).or_insert(sum);
    }
    Ok(Dependencies {
        nodes: nodes.into_iter().map(|(name, (requests, errors))| Node { name, requests, errors }).collect(),
        edges: edges
            .into_iter()
            .map(|((client, server), mut calls)| {
                let requests = calls.ms.len() as u64;
                let latency = Latency::of(&mut calls.ms);
                Edge {
                    client,
                    server,
                    requests,
                    errors: calls.errors,
                    error_rate: calls.errors as f64 / requests as f64,
                    rate: requests as f64 / window.seconds(),
                    p50_ms: latency.p50_ms,
                    p90_ms: latency.p90_ms,
                    p99_ms: latency.p99_ms,
                }
            })
            .collect(),
    })
}

#[derive(Debug, Serialize)]
pub struct RouteStats {
    pub service: String,
    pub direction: &'static str,
    pub route: String,
    pub count: u64,
    pub errors: u64,
    pub tps: f64,
    #[serde(flatten)]
    pub latency: Latency,
}

/// Per service, direction and route (the span name when there is no
/// `http.route`): SERVER and CONSUMER spans are inbound, CLIENT and
/// PRODUCER outbound; INTERNAL spans are not requests and are left out.
pub fn stats(conn: &Connection, window: Window) -> rusqlite::Result<Vec<RouteStats>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT service, kind, COALESCE(route, name), end_ns - start_ns, status = {STATUS_ERROR} FROM spans
         WHERE start_ns BETWEEN ?1 AND ?2
           AND kind IN ({KIND_SERVER}, {KIND_CLIENT}, {KIND_PRODUCER}, {KIND_CONSUMER})"
    ))?;
    let mut groups: BTreeMap<(String, &'static str, String), Calls> = BTreeMap::new();
    let mut rows = stmt.query([window.start, window.end])?;
    while let Some(r) = rows.next()? {
        let kind: i64 = r.get(1)?;
        let direction = if kind == KIND_SERVER || kind == KIND_CONSUMER { "inbound" } else { "outbound" };
        let calls = groups.entry((r.get(0)?, direction, r.get(2)?)).or_default();
        calls.ms.push(r.get::<_, i64>(3)? as f64 / 1e6);
        calls.errors += u64::from(r.get::<_, bool>(4)?);
    }
    Ok(groups
        .into_iter()
        .map(|((service, direction, route), mut calls)| {
            let count = calls.ms.len() as u64;
            RouteStats {
                service,
                direction,
                route,
                count,
                errors: calls.errors,
                tps: count as f64 / window.seconds(),
                latency: Latency::of(&mut calls.ms),
            }
        })
        .collect())
}

/// Whether any span of the trace is stored (for a 404 that says so).
pub fn has_trace(conn: &Connection, trace_id: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM spans WHERE trace_id = ?1 LIMIT 1", [trace_id], |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut ms: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let l = Latency::of(&mut ms);
        assert_eq!((l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms), (50.0, 90.0, 99.0, 100.0, 50.5));
        assert_eq!(Latency::of(&mut [7.0]).p99_ms, 7.0);
    }
}
