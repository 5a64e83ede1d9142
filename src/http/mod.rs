//! The HTTP stage: hyper serves the client connection (`serve`), each
//! request runs through the proxy's phases (`proxy`), the upstream side
//! sends it on (`pool`), bodies stream both ways (`body`), and protocol
//! switches become tunnels (`upgrade`). The span rides along in a
//! `record::InFlight`, which finishes it on every exit.

pub mod conn;
pub mod error;
pub mod headers;
pub mod idle;
pub mod pool;
pub mod prefixed;
pub mod proxy;
pub mod request_body;
pub mod response_body;
pub mod serve;
pub mod shared;
pub mod upgrade;

pub use conn::ConnMeta;
pub use prefixed::PrefixedIo;
pub use serve::{serve_http1, serve_http2};
pub use shared::Shared;
