//! Kubernetes: `sidetrace init-net`, which programs a pod's redirect rules
//! (`netfilter` holds the rules, `init_net` the command). Injection and the
//! admission webhook live beside it.
//!
//! The constants are the ports and the user id that an injected pod uses;
//! the injector and init-net must agree on them.

pub mod init_net;
pub mod netfilter;

/// The proxy's own user id: its connections are never redirected (the same
/// number Linkerd uses, so clusters that already allow it need no change).
pub const PROXY_UID: u32 = 2102;
/// Where inbound TCP to the pod is redirected (`sidetrace run --inbound`).
pub const INBOUND_PORT: u16 = 15006;
/// Where the app's outbound TCP is redirected (`sidetrace run --outbound`).
pub const OUTBOUND_PORT: u16 = 15001;
/// The admin server (`sidetrace run --admin`): probes and scrapes reach it
/// directly, never through the inbound redirect.
pub const ADMIN_PORT: u16 = 15020;
