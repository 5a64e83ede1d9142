//! The export pipeline's health (`export::ExportStats`): spans recorded,
//! sampled out, exported, dropped by reason, retried; batches; queue depth
//! and spool size per exporter. The counters live in `export`; this only
//! renders them.

use super::writer::{Kind, SECONDS, Writer};
use crate::export::ExportStats;
use crate::export::exporter::ExporterStats;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter or gauge of an exporter.
type Field = fn(&ExporterStats) -> &AtomicU64;

pub fn render(w: &mut Writer, stats: &ExportStats) -> fmt::Result {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut f = w.family(
        "sidetrace_spans_recorded",
        Kind::Counter,
        None,
        "Finished spans offered to the export queue (head-sampled, or kept by the tail rule).",
    )?;
    f.counter(&[], load(&stats.recorded))?;
    let mut f = w.family(
        "sidetrace_spans_sampled_out",
        Kind::Counter,
        None,
        "Finished spans the head sampler skipped and the tail rule did not keep.",
    )?;
    f.counter(&[], load(&stats.sampled_out))?;
    let mut f =
        w.family("sidetrace_span_queue_capacity", Kind::Gauge, None, "Spans the export queue holds at most.")?;
    f.gauge(&[], stats.queue_capacity)?;
    let mut f = w.family("sidetrace_span_queue_spans", Kind::Gauge, None, "Spans waiting in the export queue.")?;
    f.gauge(&[], load(&stats.queue_spans))?;

    let exporters = stats.exporters();
    let mut f = w.family(
        "sidetrace_spans_dropped",
        Kind::Counter,
        None,
        "Spans dropped and never exported, by reason (and exporter, where one exporter dropped them).",
    )?;
    f.counter(&[("reason", "queue_full")], load(&stats.dropped_queue_full))?;
    for e in &exporters {
        for (reason, c) in [
            ("exporter_queue_full", &e.dropped_spans_queue_full),
            ("non_retryable", &e.dropped_spans_non_retryable),
            ("retries_exhausted", &e.dropped_spans_retries_exhausted),
            ("spool_full", &e.dropped_spans_spool_full),
            ("spool_damaged", &e.dropped_spans_spool_damaged),
            ("shutdown", &e.dropped_spans_shutdown),
        ] {
            f.counter(&[("reason", reason), ("exporter", e.name)], load(c))?;
        }
    }
    if exporters.is_empty() {
        return Ok(());
    }
    let counters: [(&str, &str, Field); 4] = [
        ("sidetrace_exporter_spans_exported", "Spans the backend accepted.", |e| &e.exported_spans),
        ("sidetrace_exporter_spans_rejected", "Spans the backend reported as rejected in a partial success.", |e| {
            &e.rejected_spans
        }),
        ("sidetrace_exporter_retries", "Export attempts retried after a retryable failure.", |e| &e.retries),
        ("sidetrace_exporter_spool_batches_damaged", "Batches found damaged in the disk spool.", |e| {
            &e.spool_batches_damaged
        }),
    ];
    for (name, help, get) in counters {
        let mut f = w.family(name, Kind::Counter, None, help)?;
        for e in &exporters {
            f.counter(&[("exporter", e.name)], load(get(e)))?;
        }
    }
    let mut f = w.family("sidetrace_exporter_batches", Kind::Counter, None, "Batch export attempts, by outcome.")?;
    for e in &exporters {
        f.counter(&[("exporter", e.name), ("outcome", "ok")], load(&e.batches_ok))?;
        f.counter(&[("exporter", e.name), ("outcome", "failed")], load(&e.batches_failed))?;
    }
    let gauges: [(&str, &str, Field); 2] = [
        ("sidetrace_exporter_queue_spans", "Spans waiting for this exporter.", |e| &e.queue_spans),
        ("sidetrace_exporter_spool_bytes", "Bytes in this exporter's disk spool.", |e| &e.spool_bytes),
    ];
    for (name, help, get) in gauges {
        let mut f = w.family(name, Kind::Gauge, None, help)?;
        for e in &exporters {
            f.gauge(&[("exporter", e.name)], load(get(e)))?;
        }
    }
    let mut f = w.family(
        "sidetrace_exporter_export_duration_seconds",
        Kind::Histogram,
        Some(&SECONDS),
        "Time spent sending batches to the backend.",
    )?;
    for e in &exporters {
        f.sum_and_count(&[("exporter", e.name)], load(&e.export_nanos_sum) as f64 / 1e9, load(&e.export_count))?;
    }
    Ok(())
}
