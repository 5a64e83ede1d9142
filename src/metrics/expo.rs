//! Exposition: which format a scraper gets (content negotiation on its
//! `Accept` header) and the bytes of it, encoded by `prometheus-client`
//! from snapshots taken at scrape time (never on the request path).
//!
//! Three formats, best first when a scraper accepts several equally:
//! - the Prometheus protobuf format (`MetricFamily`, length-delimited), the
//!   only one that carries native histograms; Prometheus asks for it when
//!   started with `--enable-feature=native-histograms`;
//! - OpenMetrics 1.0 text, with exemplars; what Prometheus asks for by
//!   default;
//! - the Prometheus text format 0.0.4, for scrapers that ask for nothing
//!   else: vmagent (VictoriaMetrics) and Netdata send
//!   `text/plain;version=0.0.4;q=1,*/*;q=0.1`, Datadog's OpenMetrics check
//!   asks for `text/plain` unless `use_latest_spec` is set, and curl sends
//!   `*/*`.
//!
//! The families themselves are written through `writer::Writer`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_protobuf, prometheus_text, text};
use prometheus_client::registry::Registry;

/// Declared from the least to the most preferred when weights tie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// `text/plain; version=0.0.4`: no exemplars, no native histograms.
    Text,
    /// `application/openmetrics-text; version=1.0.0`: with exemplars.
    OpenMetrics,
    /// `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
    /// encoding=delimited`: exemplars and native histograms.
    Protobuf,
}

const PROTOBUF: &str = "application/vnd.google.protobuf";
const METRIC_FAMILY: &str = "io.prometheus.client.MetricFamily";

impl Format {
    /// The format the scraper prefers (highest `q`), among those we write;
    /// ties go to the richer format. Without an `Accept` header, or with
    /// none we know, the text format 0.0.4, which every scraper reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let Some((format, q)) = media_range(range) else { continue };
            if q > 0.0 && best.is_none_or(|(bq, bf)| q > bq || (q == bq && format > bf)) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Text => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }
}

/// One element of an `Accept` header (RFC 9110 §12.5.1): the format it
/// names, if we write it, and its weight.
fn media_range(range: &str) -> Option<(Format, f32)> {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next()?.to_ascii_lowercase();
    let (mut q, mut proto, mut encoding) = (1.0, "", "");
    for param in parts {
        let Some((k, v)) = param.split_once('=') else { continue };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "q" => q = v.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))?,
            "proto" => proto = v,
            "encoding" => encoding = v,
            _ => {}
        }
    }
    let format = match media.as_str() {
        PROTOBUF if proto == METRIC_FAMILY && encoding == "delimited" => Format::Protobuf,
        "application/openmetrics-text" => Format::OpenMetrics,
        "text/plain" | "text/*" | "*/*" => Format::Text,
        _ => return None,
    };
    Some((format, q))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a metric could not be encoded")]
    Encode(#[from] std::fmt::Error),
    #[error("the protobuf exposition could not be written: {0}")]
    Protobuf(#[from] prometheus_protobuf::EncodeError),
}

/// The whole exposition of `collector` in `format`.
pub fn encode(format: Format, collector: impl Collector) -> Result<Vec<u8>, Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::with_capacity(64 * 1024);
    match format {
        Format::Text => prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => text::encode(&mut out, &registry)?,
        Format::Protobuf => return Ok(prometheus_protobuf::encode_to_vec(&registry)?),
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
        // vmagent, Netdata.
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4;q=1,*/*;q=0.1")), Format::Text);
        // Prometheus 2.42 by default.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        // Prometheus 2.42 with --enable-feature=native-histograms.
        let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(native)), Format::Protobuf);
        // Weights decide, then richness; a protobuf of another message or
        // encoding is not ours; q=0 means "not this".
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0.2, text/plain")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain, application/openmetrics-text")), Format::OpenMetrics);
        let text_proto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text";
        assert_eq!(Format::negotiate(Some(text_proto)), Format::Text);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0")), Format::Text);
        assert_eq!(Format::negotiate(Some("Application/OpenMetrics-Text; Q=\"0.9\"")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=2")), Format::Text);
    }
}
