//! OTLP/gRPC with tonic's generated client from `opentelemetry-proto`.

use super::retry::{Outcome, classify_grpc};
use crate::config::export::OtlpConfig;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub struct GrpcSender {
    client: TraceServiceClient<Channel>,
    metadata: MetadataMap,
    timeout: std::time::Duration,
}

impl GrpcSender {
    /// Connects lazily: a collector that is down at start-up is an export
    /// failure to retry, not a reason to refuse to start.
    pub fn new(c: &OtlpConfig) -> Result<Self, String> {
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
            endpoint = endpoint.tls_config(tls).map_err(|e| format!("--otlp-endpoint TLS: {e}"))?;
        }
        let mut client = TraceServiceClient::new(endpoint.connect_lazy());
        if c.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (k, v) in &c.headers {
            let key = MetadataKey::from_bytes(k.as_str().as_bytes()).map_err(|e| format!("--otlp-header {k}: {e}"))?;
            let value = MetadataValue::try_from(v.as_bytes()).map_err(|e| format!("--otlp-header {k}: {e}"))?;
            metadata.append(key, value);
        }
        Ok(GrpcSender { client, metadata, timeout: c.timeout })
    }

    /// `body` is an encoded `ExportTraceServiceRequest` (so the spool can
    /// keep the same bytes for every transport).
    pub async fn send(&self, body: Bytes) -> Outcome {
        let msg = match ExportTraceServiceRequest::decode(body) {
            Ok(m) => m,
            Err(e) => return Outcome::Fail { reason: format!("undecodable batch: {e}") },
        };
        let mut req = tonic::Request::new(msg);
        *req.metadata_mut() = self.metadata.clone();
        req.set_timeout(self.timeout);
        match self.client.clone().export(req).await {
            Ok(resp) => match resp.into_inner().partial_success {
                Some(p) => Outcome::Ok { rejected: p.rejected_spans, message: p.error_message },
                None => Outcome::Ok { rejected: 0, message: String::new() },
            },
            Err(status) => classify_grpc(&status),
        }
    }
}
