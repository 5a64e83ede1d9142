//! Posting an encoded batch over HTTP(S): OTLP/HTTP (protobuf or JSON) and
//! Zipkin v2 share this client (hyper, rustls, pooled connections).

use super::retry::{Failure, Outcome, classify_http};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OtlpProtobuf,
    OtlpJson,
    ZipkinJson,
}

pub struct HttpSender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    format: Format,
    gzip: bool,
    timeout: Duration,
}

static UA: HeaderValue = HeaderValue::from_static(concat!("sidetrace/", env!("CARGO_PKG_VERSION")));

impl HttpSender {
    pub fn new(
        url: Uri,
        headers: Vec<(HeaderName, HeaderValue)>,
        format: Format,
        gzip: bool,
        timeout: Duration,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(rustls::ClientConfig::clone(&tls))
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        HttpSender { client, url, headers, format, gzip, timeout }
    }

    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// Sends an already encoded (and, if configured, compressed) body.
    pub async fn send(&self, body: Bytes) -> Outcome {
        let content_type = match self.format {
            Format::OtlpProtobuf => "application/x-protobuf",
            Format::OtlpJson | Format::ZipkinJson => "application/json",
        };
        let mut req = Request::post(self.url.clone()).body(Full::new(body)).expect("a valid URI and method");
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(USER_AGENT, UA.clone());
        if self.gzip {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        for (k, v) in &self.headers {
            h.append(k.clone(), v.clone());
        }
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return Outcome::Retry { after: None, reason: Failure::Timeout },
            Ok(Err(e)) => return Outcome::Retry { after: None, reason: Failure::Connection(e.to_string()) },
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if let Some(failed) = classify_http(status, resp.headers().get(RETRY_AFTER)) {
            return failed;
        }
        let is_json = resp.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = match tokio::time::timeout(self.timeout, resp.into_body().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => Bytes::new(),
        };
        if self.format == Format::ZipkinJson {
            return Outcome::Ok { rejected: 0, message: String::new() };
        }
        partial_success(&body, is_json)
    }
}

fn partial_success(body: &[u8], is_json: bool) -> Outcome {
    let parsed = if is_json {
        serde_json::from_slice::<ExportTraceServiceResponse>(body).ok()
    } else {
        ExportTraceServiceResponse::decode(body).ok()
    };
    match parsed.and_then(|r| r.partial_success) {
        Some(p) => Outcome::Ok { rejected: p.rejected_spans, message: p.error_message },
        None => Outcome::Ok { rejected: 0, message: String::new() },
    }
}
