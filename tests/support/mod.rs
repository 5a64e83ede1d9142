//! The one test harness of the crate (DESIGN.md, "One test harness inside
//! the crate"). Every test file includes it with `mod support;`.
//!
//! - `proxy`: the only way to start sidetrace: `TestProxy` (in this
//!   process or as the real binary) with its addresses, spans and parsed
//!   `/metrics`; `sidetrace(args)` for commands that must end;
//! - `apps`: fake apps named by behaviour (`echo`, `slow`, `sleeper`, `reset`,
//!   `refusing`, `stalled`, `one_connection`, `tls`, …);
//! - `collector`: `sidetrace collector` itself as a process
//!   (`SidetraceCollector`), and OTLP requests built from test spans;
//! - `collectors`: fake span collectors (`Collector`, the decoding Python
//!   peer; `ok`; `stalled`);
//! - `client`: the one HTTP client (hyper, HTTP/1.1 and h2c, TLS);
//! - `wait`: the one bounded wait;
//! - `metrics`: a parsed `/metrics` scrape (`Metrics::value`, `sum`);
//! - `otlp`: reading OTLP/JSON spans and attributes;
//! - `process`: a child process with collected output, killed on drop;
//! - `tools`: what the machine must have, and the CI rule (`require`);
//!   `python`: the test venv; `prometheus`: a real Prometheus server;
//!   `pki`: certificates made with openssl;
//! - `netns`: network namespaces, HTTP from inside one, and the peers that
//!   run there (`calling_app`, `recording_service`, `dns_responder`,
//!   `file_server`);
//! - `browser`: headless Chromium over WebDriver, for the UI.
#![allow(dead_code)]

pub mod apps;
pub mod browser;
pub mod client;
pub mod collector;
pub mod collectors;
pub mod metrics;
pub mod netns;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod python;
pub mod tools;
pub mod wait;

#[allow(unused_imports)]
pub use client::{Client, Proto};
#[allow(unused_imports)]
pub use proxy::TestProxy;
