//! OTLP/gRPC with tonic: the `TraceService/Export` call that
//! `opentelemetry-proto`'s generated client makes, but sending the batch's
//! bytes as they were encoded (`PreEncoded`) instead of decoding them into
//! message structs only for tonic to encode them again.

use super::error::StartError;
use super::retry::{Outcome, classify_grpc};
use crate::config::export::OtlpConfig;
use bytes::{BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tonic::Status;
use tonic::client::Grpc;
use tonic::codec::{Codec, CompressionEncoding, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const TRACES: (&str, &str) = (
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
);
const LOGS: (&str, &str) =
    ("opentelemetry.proto.collector.logs.v1.LogsService", "/opentelemetry.proto.collector.logs.v1.LogsService/Export");

pub struct GrpcSender {
    client: Grpc<Channel>,
    metadata: MetadataMap,
    timeout: std::time::Duration,
    service: &'static str,
    path: &'static str,
}

impl GrpcSender {
    /// `TraceService/Export`.
    pub fn new(c: &OtlpConfig) -> Result<Self, StartError> {
        GrpcSender::with(c, TRACES)
    }

    /// `LogsService/Export`: its response is the trace service's, field for
    /// field (a partial success with a count and a message), so the same
    /// decoder reads it.
    pub fn logs(c: &OtlpConfig) -> Result<Self, StartError> {
        GrpcSender::with(c, LOGS)
    }

    /// Connects lazily: a collector that is down at start-up is an export
    /// failure to retry, not a reason to refuse to start.
    fn with(c: &OtlpConfig, (service, path): (&'static str, &'static str)) -> Result<Self, StartError> {
        let mut endpoint =
            Endpoint::from(c.url.clone()).connect_timeout(c.timeout).timeout(c.timeout).tcp_nodelay(true);
        if c.url.scheme_str() == Some("https") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &c.tls.ca {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let (Some(cert), Some(key)) = (&c.tls.client_cert, &c.tls.client_key) {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(StartError::GrpcTls)?;
        }
        let mut client = Grpc::new(endpoint.connect_lazy());
        if c.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (k, v) in &c.headers {
            // The configuration has checked that each header makes ASCII metadata.
            let bad = || StartError::GrpcMetadata(k.to_string());
            let key = MetadataKey::from_bytes(k.as_str().as_bytes()).map_err(|_| bad())?;
            let value = MetadataValue::try_from(v.as_bytes()).map_err(|_| bad())?;
            metadata.append(key, value);
        }
        Ok(GrpcSender { client, metadata, timeout: c.timeout, service, path })
    }

    /// `body` is an encoded `ExportTraceServiceRequest` (or logs request;
    /// so the spool can keep the same bytes for every transport).
    pub async fn send(&self, body: Bytes) -> Outcome {
        let mut req = tonic::Request::new(body);
        *req.metadata_mut() = self.metadata.clone();
        req.set_timeout(self.timeout);
        req.extensions_mut().insert(tonic::GrpcMethod::new(self.service, "Export"));
        let mut client = self.client.clone();
        if let Err(e) = client.ready().await {
            return classify_grpc(&Status::unknown(format!("Service was not ready: {e}")));
        }
        match client.unary(req, PathAndQuery::from_static(self.path), PreEncoded).await {
            Ok(resp) => match resp.into_inner().partial_success {
                Some(p) => Outcome::Ok { rejected: p.rejected_spans, message: p.error_message },
                None => Outcome::Ok { rejected: 0, message: String::new() },
            },
            Err(status) => classify_grpc(&status),
        }
    }
}

/// Writes an already encoded request as it is; reads the response with
/// tonic's own prost decoder.
#[derive(Clone, Copy)]
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = PreEncoded;
    type Decoder = tonic_prost::ProstDecoder<ExportTraceServiceResponse>;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        Default::default()
    }
}

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}
