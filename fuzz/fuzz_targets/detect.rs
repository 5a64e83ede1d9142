//! Protocol detection on arbitrary first bytes, the TLS ClientHello and SNI
//! parser included: never panics, and the verdict does not depend on how
//! the bytes were split into reads (`listen::detect::detect` classifies
//! after every read and stops at the first answer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidetrace::listen::detect::{Protocol, classify};

fuzz_target!(|data: &[u8]| {
    let whole = classify(data);
    if let Some(Protocol::Tls { sni: Some(sni) }) = &whole {
        assert!(sni.len() <= data.len());
    }
    // The first prefix that gets an answer is the answer the proxy acts
    // on; it must be the answer the whole input gets.
    let cuts: Vec<usize> =
        if data.len() <= 1024 { (1..=data.len()).collect() } else { (1..=64).map(|i| data.len() * i / 64).collect() };
    for cut in cuts {
        if let Some(first) = classify(&data[..cut]) {
            assert_eq!(Some(&first), whole.as_ref(), "{cut} bytes say {first:?}, {} bytes say {whole:?}", data.len());
            break;
        }
    }
});
