//! Exposition: the Prometheus text format 0.0.4 and OpenMetrics 1.0 text,
//! written from snapshots at scrape time (never on the request path).
//!
//! The two formats differ only in a few places, all handled here:
//! - a counter family is `foo_total` in 0.0.4 but `foo` (samples
//!   `foo_total`) in OpenMetrics;
//! - OpenMetrics has `# UNIT`, exemplars after bucket samples, canonical
//!   floats (`1.0`) in `le`, an `info` type, and ends with `# EOF`.
//!
//! Hand-written rather than `prometheus-client`'s encoders because those
//! only encode exemplars held by the crate's own locking histograms; see
//! `histogram.rs`. `promtool check metrics` and a real Prometheus (which
//! parses both formats) check this output in `tests/metrics.rs`.

use super::histogram::{Snapshot, float};
use std::fmt::Write;
use std::time::UNIX_EPOCH;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: no exemplars.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`: with exemplars.
    OpenMetrics,
}

impl Format {
    /// Picks OpenMetrics when the scraper's `Accept` header lists it
    /// (Prometheus does, unless told otherwise), else the classic format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.split(',').any(|m| m.trim().starts_with("application/openmetrics-text")) => {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// `foo_info 1` with labels; a gauge in the 0.0.4 format.
    Info,
    /// Only `_sum` and `_count` (used for export latency totals).
    Summary,
}

/// A label set: pairs of name and value; empty values are left out, as
/// Prometheus treats an empty label as absent.
pub type Labels<'a> = [(&'a str, &'a str)];

pub struct Writer {
    pub out: String,
    format: Format,
}

impl Writer {
    pub fn new(format: Format) -> Writer {
        Writer { out: String::with_capacity(64 * 1024), format }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Starts a family. `name` is the family name without `_total` (for
    /// counters) or `_info` (for info), and includes the unit suffix.
    pub fn family(&mut self, name: &str, kind: Kind, unit: Option<&str>, help: &str) -> Family {
        let om = self.format == Format::OpenMetrics;
        let (header_name, type_name) = match (kind, om) {
            (Kind::Counter, false) => (format!("{name}_total"), "counter"),
            (Kind::Counter, true) => (name.to_string(), "counter"),
            (Kind::Info, false) => (format!("{name}_info"), "gauge"),
            (Kind::Info, true) => (name.to_string(), "info"),
            (Kind::Gauge, _) => (name.to_string(), "gauge"),
            (Kind::Histogram, _) => (name.to_string(), "histogram"),
            (Kind::Summary, _) => (name.to_string(), "summary"),
        };
        let _ = writeln!(self.out, "# HELP {header_name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {header_name} {type_name}");
        if let (true, Some(u)) = (om, unit) {
            let _ = writeln!(self.out, "# UNIT {header_name} {u}");
        }
        let sample = match kind {
            Kind::Counter => format!("{name}_total"),
            Kind::Info => format!("{name}_info"),
            _ => name.to_string(),
        };
        Family { sample, kind }
    }

    pub fn counter(&mut self, f: &Family, labels: &Labels, v: u64) {
        debug_assert_eq!(f.kind, Kind::Counter);
        self.sample(&f.sample, "", labels, None, &v.to_string());
    }

    /// A counter of a fractional quantity (CPU seconds).
    pub fn counter_f64(&mut self, f: &Family, labels: &Labels, v: f64) {
        self.sample(&f.sample, "", labels, None, &float(v, false));
    }

    pub fn gauge(&mut self, f: &Family, labels: &Labels, v: f64) {
        self.sample(&f.sample, "", labels, None, &float(v, false));
    }

    pub fn info(&mut self, f: &Family, labels: &Labels) {
        self.sample(&f.sample, "", labels, None, "1");
    }

    pub fn summary(&mut self, f: &Family, labels: &Labels, sum: f64, count: u64) {
        self.sample(&f.sample, "_sum", labels, None, &float(sum, false));
        self.sample(&f.sample, "_count", labels, None, &count.to_string());
    }

    pub fn histogram(&mut self, f: &Family, labels: &Labels, h: &Snapshot) {
        let om = self.format == Format::OpenMetrics;
        let les = if om { &h.buckets.le_openmetrics } else { &h.buckets.le_prometheus };
        let inf = "+Inf".to_string();
        for (i, count) in h.cumulative.iter().enumerate() {
            let le = les.get(i).unwrap_or(&inf);
            let exemplar = if om { h.exemplars.get(i).copied().flatten() } else { None };
            let exemplar = exemplar.map(|e| {
                let (t, s) = (e.trace_id.hex(), e.span_id.hex());
                let secs = e.time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
                format!(
                    " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {:.3}",
                    std::str::from_utf8(&t).unwrap_or_default(),
                    std::str::from_utf8(&s).unwrap_or_default(),
                    float(e.value as f64 / h.buckets.per_unit, false),
                    secs
                )
            });
            self.sample(&f.sample, "_bucket", labels, Some(("le", le)), &count.to_string());
            if let Some(e) = exemplar {
                // Replace the sample's newline with the exemplar and a newline.
                self.out.pop();
                self.out.push_str(&e);
                self.out.push('\n');
            }
        }
        self.sample(&f.sample, "_sum", labels, None, &float(h.sum as f64 / h.buckets.per_unit, false));
        self.sample(&f.sample, "_count", labels, None, &h.count().to_string());
    }

    fn sample(&mut self, name: &str, suffix: &str, labels: &Labels, extra: Option<(&str, &str)>, value: &str) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(extra).filter(|(_, v)| !v.is_empty()) {
            self.out.push(if first { '{' } else { ',' });
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label_into(&mut self.out, v);
            self.out.push('"');
        }
        if !first {
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// A started family: what its samples are called.
pub struct Family {
    sample: String,
    kind: Kind,
}

fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_per_format() {
        let mut w = Writer::new(Format::Prometheus);
        let f = w.family("sidetrace_x", Kind::Counter, None, "Things.");
        w.counter(&f, &[("a", "1"), ("b", "")], 3);
        assert_eq!(
            w.finish(),
            "# HELP sidetrace_x_total Things.\n# TYPE sidetrace_x_total counter\nsidetrace_x_total{a=\"1\"} 3\n"
        );
        let mut w = Writer::new(Format::OpenMetrics);
        let f = w.family("sidetrace_x", Kind::Counter, None, "Things.");
        w.counter(&f, &[], 3);
        assert_eq!(w.finish(), "# HELP sidetrace_x Things.\n# TYPE sidetrace_x counter\nsidetrace_x_total 3\n# EOF\n");
    }

    #[test]
    fn escapes_and_floats() {
        let mut w = Writer::new(Format::Prometheus);
        let f = w.family("g", Kind::Gauge, None, "a\\b\nc");
        w.gauge(&f, &[("route", "/a\"b\\c\nd")], 0.5);
        assert_eq!(w.finish(), "# HELP g a\\\\b\\nc\n# TYPE g gauge\ng{route=\"/a\\\"b\\\\c\\nd\"} 0.5\n");
        assert_eq!(float(1.0, true), "1.0");
        assert_eq!(float(1.0, false), "1");
        assert_eq!(float(0.0005, true), "0.0005");
        assert_eq!(float(f64::INFINITY, false), "+Inf");
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")), Format::Prometheus);
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
    }
}
