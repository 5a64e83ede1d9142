//! What the metric families write through: a thin layer over
//! `prometheus-client`'s custom-metric encoders (`DescriptorEncoder`,
//! `MetricEncoder`), so that `red`, `net`, `export_health` and `process`
//! write each family once and every format (`expo::Format`) comes out of
//! the crate's encoders: names with `_total`/`_info`, `# UNIT`, escaping,
//! floats, exemplars, protobuf.
//!
//! It also owns two adaptations:
//! - label values that are empty are left out, as Prometheus treats an
//!   empty label as absent (a CONNECT request has no `http_route`);
//! - exemplars of our lock-free histograms become the crate's `Exemplar`s
//!   (see `exemplar`: the crate has no public constructor for them).

use super::expo::Format;
use super::histogram::{Exemplar as Sampled, Snapshot};
use super::native::{NativeSnapshot, SCHEMA, ZERO_THRESHOLD};
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
    MetricEncoder, NativeHistogram, NativeHistogramBuckets, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::{CounterWithExemplar, Exemplar};
use prometheus_client::registry::Unit;
use std::collections::HashMap;
use std::fmt;
use std::time::UNIX_EPOCH;

pub static SECONDS: Unit = Unit::Seconds;
pub static BYTES: Unit = Unit::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// `foo_info 1` with labels; a gauge in the text format 0.0.4 and protobuf.
    Info,
}

/// A label set: pairs of name and value; pairs with an empty value are
/// left out.
pub type Labels<'a> = [(&'a str, &'a str)];

struct LabelSet<'a>(&'a Labels<'a>);

impl EncodeLabelSet for LabelSet<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        for &(k, v) in self.0.iter().filter(|(_, v)| !v.is_empty()) {
            (k, v).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

pub struct Writer<'a> {
    encoder: DescriptorEncoder<'a>,
    format: Format,
}

impl<'a> Writer<'a> {
    pub fn new(encoder: DescriptorEncoder<'a>, format: Format) -> Writer<'a> {
        Writer { encoder, format }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Starts a family. `name` is the family name without `_total` (for
    /// counters) or `_info` (for info), and ends with the unit if there is
    /// one, as the name of the family will.
    pub fn family<'s>(
        &'s mut self,
        name: &'s str,
        kind: Kind,
        unit: Option<&'static Unit>,
        help: &str,
    ) -> Result<Family<'s>, fmt::Error> {
        // The encoders append the unit themselves.
        let base = unit.and_then(|u| name.strip_suffix(u.as_str())?.strip_suffix('_')).unwrap_or(name);
        debug_assert!(unit.is_none() || base != name, "{name} does not end with its unit");
        let metric_type = match kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
            Kind::Info => MetricType::Info,
        };
        let encoder = self.encoder.encode_descriptor(base, help, unit, metric_type)?;
        Ok(Family { encoder, format: self.format })
    }
}

/// A started family: each call writes one series of it.
pub struct Family<'s> {
    encoder: MetricEncoder<'s>,
    format: Format,
}

impl Family<'_> {
    pub fn counter(&mut self, labels: &Labels, v: impl EncodeCounterValue) -> fmt::Result {
        self.encoder.encode_family(&LabelSet(labels))?.encode_counter::<NoLabelSet, _, f64>(&v, None)
    }

    pub fn gauge(&mut self, labels: &Labels, v: impl EncodeGaugeValue) -> fmt::Result {
        self.encoder.encode_family(&LabelSet(labels))?.encode_gauge(&v)
    }

    pub fn info(&mut self, labels: &Labels) -> fmt::Result {
        self.encoder.encode_info(&LabelSet(labels))
    }

    /// A histogram with its classic buckets and their exemplars, and, where
    /// the format carries them (protobuf), native buckets too.
    pub fn histogram(&mut self, labels: &Labels, h: &Snapshot, native: Option<&NativeSnapshot>) -> fmt::Result {
        let buckets = h.bucket_pairs();
        let exemplars = if self.format == Format::Text { None } else { exemplars(h) };
        let labels = LabelSet(labels);
        let mut series = self.encoder.encode_family(&labels)?;
        match native.filter(|_| self.format == Format::Protobuf) {
            // A native histogram's count must equal its buckets' total.
            Some(n) => series.encode_histogram_with_native(
                h.sum(),
                n.total,
                &buckets,
                exemplars.as_ref(),
                NativeHistogram {
                    schema: SCHEMA,
                    zero_threshold: ZERO_THRESHOLD,
                    zero_count: n.zero_count,
                    negative: NativeHistogramBuckets { spans: &[], deltas: &[] },
                    positive: NativeHistogramBuckets { spans: &n.spans, deltas: &n.deltas },
                    created: None,
                },
            ),
            None => series.encode_histogram(h.sum(), h.count(), &buckets, exemplars.as_ref()),
        }
    }

    /// Only a sum and a count: a histogram whose one bucket is `+Inf`
    /// (the crate has no summary type; the series are the same, plus that
    /// bucket).
    pub fn sum_and_count(&mut self, labels: &Labels, sum: f64, count: u64) -> fmt::Result {
        self.encoder.encode_family(&LabelSet(labels))?.encode_histogram::<NoLabelSet>(
            sum,
            count,
            &[(f64::INFINITY, count)],
            None,
        )
    }
}

/// An exemplar's labels: the hex ids of a sampled request's span.
#[derive(Clone, Copy, Debug)]
struct SpanLabels {
    trace_id: [u8; 32],
    span_id: [u8; 16],
}

impl EncodeLabelSet for SpanLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        fn hex(b: &[u8]) -> Result<&str, fmt::Error> {
            std::str::from_utf8(b).map_err(|_| fmt::Error)
        }
        ("trace_id", hex(&self.trace_id)?).encode(encoder.encode_label())?;
        ("span_id", hex(&self.span_id)?).encode(encoder.encode_label())
    }
}

type Exemplars = HashMap<usize, Exemplar<SpanLabels, f64>>;

fn exemplars(h: &Snapshot) -> Option<Exemplars> {
    let map: Exemplars = h
        .exemplars
        .iter()
        .enumerate()
        .filter_map(|(bucket, e)| Some((bucket, exemplar(e.as_ref()?, h.buckets.per_unit)?)))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// `prometheus-client` 0.26 encodes exemplars only as its own `Exemplar`
/// values, whose fields are private and which have no constructor: only
/// its locking metric types make them, and hand them out by reference.
/// So one is made in a scratch `CounterWithExemplar` and copied out.
fn exemplar(e: &Sampled, per_unit: f64) -> Option<Exemplar<SpanLabels, f64>> {
    // The copy below is sound only while an `Exemplar` of plain data owns
    // nothing: no drop glue means the original and the copy share nothing
    // that could be freed twice. A crate update that changes this fails
    // the build here.
    const { assert!(!std::mem::needs_drop::<Exemplar<SpanLabels, f64>>()) };
    let labels = SpanLabels { trace_id: e.trace_id.hex(), span_id: e.span_id.hex() };
    // The text encoder cannot write a time before the epoch (it panics).
    let time = e.time.duration_since(UNIX_EPOCH).is_ok().then_some(e.time);
    let scratch = CounterWithExemplar::<SpanLabels, f64>::default();
    scratch.inc_by(e.value as f64 / per_unit, Some(labels), time);
    let (_, stored) = scratch.get();
    let stored: &Exemplar<SpanLabels, f64> = stored.as_ref()?;
    // SAFETY: `stored` is a valid, initialised value behind a live shared
    // reference, and the type has no drop glue (asserted above), so a
    // bitwise copy is a second valid value that owns nothing.
    Some(unsafe { std::ptr::read(stored) })
}

/// The text of the families `write` writes, in `format` (for tests of the
/// modules that write them).
#[cfg(test)]
pub fn text_of(format: Format, write: impl Fn(&mut Writer) -> fmt::Result + Send + Sync + 'static) -> String {
    struct Families<F>(Format, F);
    impl<F> fmt::Debug for Families<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Families")
        }
    }
    impl<F: Fn(&mut Writer) -> fmt::Result + Send + Sync + 'static> prometheus_client::collector::Collector
        for Families<F>
    {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            (self.1)(&mut Writer::new(encoder, self.0))
        }
    }
    let bytes = super::expo::encode(format, Families(format, write)).expect("the families encode");
    String::from_utf8(bytes).expect("a text format")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::expo::encode;
    use crate::metrics::histogram::{Buckets, Histogram};
    use crate::trace::{SpanId, TraceId};
    use prometheus_client::collector::Collector;
    use std::sync::LazyLock;
    use std::time::{Duration, SystemTime};

    static B: LazyLock<Buckets> = LazyLock::new(|| Buckets::new(&[0.001, 0.01], 1e9));

    /// Writes a few families, whatever the format.
    #[derive(Debug)]
    struct Sample(Format);

    impl Collector for Sample {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            let mut w = Writer::new(encoder, self.0);
            let mut f = w.family("sidetrace_x", Kind::Counter, None, "Things.")?;
            f.counter(&[("a", "1"), ("b", "")], 3u64)?;
            let mut f = w.family("g", Kind::Gauge, None, "A gauge.")?;
            f.gauge(&[("route", "/a\"b\\c\nd")], 0.5)?;
            f.gauge(&[("route", "/n")], 7u64)?;
            let h = Histogram::with_exemplars(&B);
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
            h.observe_with_exemplar(2_000_000, Some((TraceId([0xab; 16]), SpanId([0xcd; 8]), at)));
            let mut f = w.family("d_seconds", Kind::Histogram, Some(&SECONDS), "Durations.")?;
            f.histogram(&[("r", "/")], &h.snapshot(), None)?;
            let mut f = w.family("b", Kind::Info, None, "Build.")?;
            f.info(&[("version", "1")])
        }
    }

    fn text(format: Format) -> String {
        String::from_utf8(encode(format, Sample(format)).unwrap()).unwrap()
    }

    #[test]
    fn openmetrics_with_exemplars() {
        assert_eq!(
            text(Format::OpenMetrics),
            r#"# HELP sidetrace_x Things.
# TYPE sidetrace_x counter
sidetrace_x_total{a="1"} 3
# HELP g A gauge.
# TYPE g gauge
g{route="/a\"b\\c\nd"} 0.5
g{route="/n"} 7
# HELP d_seconds Durations.
# TYPE d_seconds histogram
# UNIT d_seconds seconds
d_seconds_sum{r="/"} 0.002
d_seconds_count{r="/"} 1
d_seconds_bucket{le="0.001",r="/"} 0
d_seconds_bucket{le="0.01",r="/"} 1 # {trace_id="abababababababababababababababab",span_id="cdcdcdcdcdcdcdcd"} 0.002 1700000000.25
d_seconds_bucket{le="+Inf",r="/"} 1
# HELP b Build.
# TYPE b info
b_info{version="1"} 1
# EOF
"#
        );
    }

    #[test]
    fn text_0_0_4_without_exemplars() {
        assert_eq!(
            text(Format::Text),
            r#"# HELP sidetrace_x_total Things.
# TYPE sidetrace_x_total counter
sidetrace_x_total{a="1"} 3
# HELP g A gauge.
# TYPE g gauge
g{route="/a\"b\\c\nd"} 0.5
g{route="/n"} 7
# HELP d_seconds Durations.
# TYPE d_seconds histogram
d_seconds_bucket{r="/",le="0.001"} 0
d_seconds_bucket{r="/",le="0.01"} 1
d_seconds_bucket{r="/",le="+Inf"} 1
d_seconds_sum{r="/"} 0.002
d_seconds_count{r="/"} 1
# HELP b_info Build.
# TYPE b_info gauge
b_info{version="1"} 1
"#
        );
    }
}
