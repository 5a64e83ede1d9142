//! The collector's OTLP/HTTP receiver before its store
//! (`collector::read_otlp_http`): arbitrary bodies as traces or logs, as
//! protobuf, JSON or an unsupported type, plain or gzip (the bytes as
//! given, or compressed first so the inflated body is the fuzzed one).
//! Never panics; a refusal is 400, 413 or 415 with a sentence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let mut headers = http::HeaderMap::new();
    let content_type = match (mode >> 1) & 3 {
        0 => "application/x-protobuf",
        1 => "application/json",
        2 => "application/protobuf; charset=utf-8",
        _ => "text/plain",
    };
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    let body = match (mode >> 3) & 3 {
        0 | 1 => body.to_vec(),
        2 => {
            headers.insert(http::header::CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
            body.to_vec()
        }
        _ => {
            headers.insert(http::header::CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body).unwrap();
            gz.finish().unwrap()
        }
    };
    match sidetrace::collector::read_otlp_http(&headers, body.into(), mode & 1 == 1) {
        Ok((rows, rejected)) => assert!(rejected.count >= 0 && rows < 1 << 24),
        Err((status, message)) => {
            assert!([400, 413, 415].contains(&status.as_u16()), "{status}: {message}");
            assert!(!message.is_empty() && !message.contains('\n'), "{message:?}");
        }
    }
});
