//! The HTTP stage: hyper serves the client connection (`serve`); each
//! request runs down one stack of tower layers (`stack`: connection
//! bookkeeping, the refusal of malformed HTTP/1 (`guard_layer`, with the
//! byte-level `framing` checks), the span's phases in `record_layer`, the
//! response timeout, `forward`); the upstream side sends it on, on the client connection's
//! own connection inbound (`dedicated`) or from the worker's pool
//! (`pool`); bodies stream both ways (`request_body`, `response_body`),
//! and protocol switches become tunnels (`upgrade`). The span rides along
//! in a `record::InFlight`, which finishes it on every exit.

pub mod conn;
pub mod dedicated;
pub mod destination;
pub mod error;
pub mod exchange;
pub mod forward;
pub mod framing;
pub mod guard_layer;
pub mod h2_guard;
pub mod headers;
pub mod idle;
pub mod joint;
pub mod keepalive_layer;
pub mod limits;
pub mod overload_layer;
pub mod pool;
pub mod prefixed;
pub mod record_layer;
pub mod request_body;
pub mod response_body;
pub mod serve;
pub mod shared;
pub mod stack;
pub mod upgrade;

pub use conn::ConnMeta;
pub use prefixed::PrefixedIo;
pub use serve::{serve_http1, serve_http2};
pub use shared::Shared;
