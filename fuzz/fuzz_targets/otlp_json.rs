//! OTLP/JSON as a collector decodes it: arbitrary bytes as an
//! `ExportTraceServiceRequest` through serde_json (opentelemetry-proto's
//! `with-serde`). Never panics; what decodes encodes again, and the
//! encoding decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) else { return };
    let json = serde_json::to_vec(&request).expect("a decoded request encodes");
    let again: ExportTraceServiceRequest = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("its encoding does not decode ({e}): {}", String::from_utf8_lossy(&json)));
    assert_eq!(again, request, "{}", String::from_utf8_lossy(&json));
});
