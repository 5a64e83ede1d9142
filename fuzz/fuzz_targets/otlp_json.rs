//! OTLP/JSON as a collector decodes it: arbitrary bytes as an
//! `ExportTraceServiceRequest` through serde_json (opentelemetry-proto's
//! `with-serde`). Never panics; what decodes encodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) else { return };
    let _ = serde_json::to_vec(&request);
});
