//! The OTLP/HTTP receiver: `POST /v1/traces` and `/v1/logs`, binary
//! protobuf or JSON, gzip or not, answered as the OTLP specification says
//! (opentelemetry.io/docs/specs/otlp/#otlphttp): 200 with the Export*
//! response in the request's encoding (`partial_success` when items were
//! rejected); 400 for a body that does not decode; 415 for an encoding or
//! content type it does not know; 429 with `Retry-After` when the writer's
//! queue is full; 503 when the store fails. Error bodies are a
//! `google.rpc.Status`, in protobuf or JSON after the request.

use super::forward::Forwarder;
use super::rows::{self, Batch, Rejected};
use super::writer::{Refused, Writer};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::io::Read;
use std::sync::Arc;

/// A request body, compressed or not, may be this large: far above the
/// SDKs' batches (512 spans), low enough that a gzip bomb stops here.
pub const MAX_BODY: usize = 64 << 20;

/// How long a refused sender is asked to wait.
const RETRY_AFTER_SECONDS: &str = "1";

pub struct Receiver {
    pub writer: Writer,
    pub forward: Option<Arc<Forwarder>>,
}

pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(receiver)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// A refusal, as its status and the one sentence its body says.
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    fn answer(self, encoding: Encoding) -> Response {
        // google.rpc.Code values: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE.
        let code = match self.status {
            StatusCode::TOO_MANY_REQUESTS => 8,
            StatusCode::SERVICE_UNAVAILABLE => 14,
            _ => 3,
        };
        let body = match encoding {
            Encoding::Protobuf => {
                tonic_types::Status { code, message: self.message, details: Vec::new() }.encode_to_vec()
            }
            Encoding::Json => serde_json::json!({ "code": code, "message": self.message }).to_string().into_bytes(),
        };
        let mut response = (self.status, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response();
        if matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}

impl From<Refused> for Failure {
    fn from(r: Refused) -> Failure {
        let status = match r {
            Refused::Busy => StatusCode::TOO_MANY_REQUESTS,
            Refused::Failed(_) | Refused::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        };
        Failure::new(status, r.to_string())
    }
}

/// The request's encoding from its `Content-Type`; JSON when it names none
/// that fits, for the 415's body.
fn encoding(headers: &HeaderMap) -> Result<Encoding, Failure> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {given:?}: send application/x-protobuf or application/json"),
        )),
    }
}

fn decompress(headers: &HeaderMap, body: Bytes) -> Result<Bytes, Failure> {
    let coding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match coding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            let read = flate2::read::GzDecoder::new(&body[..]).take(MAX_BODY as u64 + 1).read_to_end(&mut out);
            match read {
                Err(e) => Err(Failure::new(StatusCode::BAD_REQUEST, format!("the gzip body does not inflate: {e}"))),
                Ok(n) if n > MAX_BODY => {
                    Err(Failure::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body inflates past {MAX_BODY} bytes")))
                }
                Ok(_) => Ok(out.into()),
            }
        }
        other => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}: send gzip or none"),
        )),
    }
}

fn decode<M: Message + Default + serde::de::DeserializeOwned>(encoding: Encoding, body: &[u8]) -> Result<M, Failure> {
    match encoding {
        Encoding::Protobuf => M::decode(body).map_err(|e| {
            Failure::new(StatusCode::BAD_REQUEST, format!("the body is not a valid protobuf message: {e}"))
        }),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("the body is not valid OTLP/JSON: {e}"))),
    }
}

fn encode<M: Message + serde::Serialize>(encoding: Encoding, message: &M) -> Response {
    let body = match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
    };
    ([(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

/// What `/v1/traces` and `/v1/logs` make of a request's headers and body
/// before anything is stored: the rows, with what was rejected, or the
/// status and sentence of the refusal. The entry point of the collector's
/// fuzz target.
pub fn read(headers: &HeaderMap, body: Bytes, logs: bool) -> Result<(usize, Rejected), (StatusCode, String)> {
    let read = || {
        let encoding = encoding(headers)?;
        let body = decompress(headers, body)?;
        Ok(if logs {
            let (rows, rejected) = rows::logs(&decode::<ExportLogsServiceRequest>(encoding, &body)?);
            (rows.len(), rejected)
        } else {
            let (rows, rejected) = rows::spans(&decode::<ExportTraceServiceRequest>(encoding, &body)?);
            (rows.len(), rejected)
        })
    };
    read().map_err(|f: Failure| (f.status, f.message))
}

async fn traces(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let encoding = match encoding(&headers) {
        Ok(e) => e,
        Err(f) => return f.answer(Encoding::Json),
    };
    let result = async {
        let request: ExportTraceServiceRequest = decode(encoding, &decompress(&headers, body)?)?;
        let (spans, rejected) = rows::spans(&request);
        r.writer.write(Batch { spans, logs: Vec::new() }).await?;
        if let Some(forward) = &r.forward {
            forward.traces(&request);
        }
        Ok::<_, Failure>(rejected)
    };
    match result.await {
        Ok(rejected) => encode(encoding, &ExportTraceServiceResponse { partial_success: trace_partial(rejected) }),
        Err(f) => f.answer(encoding),
    }
}

async fn logs(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let encoding = match encoding(&headers) {
        Ok(e) => e,
        Err(f) => return f.answer(Encoding::Json),
    };
    let result = async {
        let request: ExportLogsServiceRequest = decode(encoding, &decompress(&headers, body)?)?;
        let (logs, rejected) = rows::logs(&request);
        r.writer.write(Batch { spans: Vec::new(), logs }).await?;
        if let Some(forward) = &r.forward {
            forward.logs(&request);
        }
        Ok::<_, Failure>(rejected)
    };
    match result.await {
        Ok(rejected) => encode(encoding, &ExportLogsServiceResponse { partial_success: logs_partial(rejected) }),
        Err(f) => f.answer(encoding),
    }
}

pub fn trace_partial(rejected: Rejected) -> Option<ExportTracePartialSuccess> {
    (rejected.count > 0)
        .then(|| ExportTracePartialSuccess { rejected_spans: rejected.count, error_message: rejected.message() })
}

pub fn logs_partial(rejected: Rejected) -> Option<ExportLogsPartialSuccess> {
    (rejected.count > 0)
        .then(|| ExportLogsPartialSuccess { rejected_log_records: rejected.count, error_message: rejected.message() })
}
