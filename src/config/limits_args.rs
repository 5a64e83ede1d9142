//! The limit flags of `sidetrace run`, each with its `SIDETRACE_*`
//! variable: what one listener takes on at once, and how long a client
//! may take to send a request head. Beyond a limit the answer is a clear
//! refusal, counted: never a wait.

use super::parse::duration;
use clap::Args;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Client connections open at once on each listener (inbound, outbound); beyond it a new
    /// connection is accepted and closed before anything is read, and counted. 0 for no limit.
    #[arg(long, env = "SIDETRACE_MAX_CONNECTIONS", default_value = "10000", value_name = "N")]
    pub max_connections: usize,

    /// Requests waiting for their response head at once on each listener; beyond it a request
    /// is answered 503 with Retry-After, not forwarded, and counted. 0 for no limit.
    #[arg(long, env = "SIDETRACE_MAX_CONCURRENT_REQUESTS", default_value = "10000", value_name = "N")]
    pub max_concurrent_requests: usize,

    /// How long an HTTP/1 client may take to send a request's header section, from its first
    /// byte; past it the connection is closed (slow-header clients, slowloris). 0s disables it.
    #[arg(long, env = "SIDETRACE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration, value_name = "DURATION")]
    pub header_read_timeout: Duration,
}
