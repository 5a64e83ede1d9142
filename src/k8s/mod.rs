//! Kubernetes: the injection of the sidecar into pod templates
//! (`inject`), its two front doors — `sidetrace inject` for files and
//! pipelines (`cli`) and the mutating admission webhook (`webhook`) — and the
//! start-up hold of a non-native sidecar (`wait_ready`); and the pod's
//! redirect rules, `sidetrace init-net` (`init_net`), programmed as
//! nftables over netlink (`netfilter`). The numbers the injector and
//! init-net must agree on are the constants below, and only here. The request path (probes making no span, `POST /shutdown`) is not
//! Kubernetes-specific and lives with the admin server and `http`.
//!
//! Layering: this module reads `config` (the ground floor) and nothing of
//! the data path (`http`, `listen`, `export`, `metrics`).

pub mod cli;
pub mod defaults;
pub mod documents;
pub mod init_net;
pub mod inject;
pub mod netfilter;
pub mod wait_ready;
pub mod webhook;

/// The UID (and GID) the sidecar runs as. `init-net` exempts this UID's
/// outbound connections from the redirect, so the proxy's own upstream
/// connections are not sent back to itself. Linkerd's proxy uses the same
/// number; pods that carry Linkerd's proxy are never injected, so the two
/// never share a pod.
pub const PROXY_UID: u32 = 2102;

/// Where redirected inbound connections arrive (`sidetrace run --inbound`'s
/// default port).
pub const INBOUND_PORT: u16 = 15006;

/// Where redirected outbound connections arrive (`--outbound`'s default
/// port; also the explicit `HTTP_PROXY` port).
pub const OUTBOUND_PORT: u16 = 15001;

/// The admin server (`/live`, `/ready`, `/metrics`); never redirected, so the
/// kubelet's probes and Prometheus reach it directly.
pub const ADMIN_PORT: u16 = 15020;

/// The absolute path of the binary in the image. Containers name it in
/// `command` (so they do not depend on the image's ENTRYPOINT), and the
/// non-native sidecar's postStart hook must exec it by path: a `FROM
/// scratch` image has no shell.
pub const BINARY_PATH: &str = "/usr/local/bin/sidetrace";

/// The injected containers' names. A pod holding a container of either
/// name is taken as already injected.
pub const SIDECAR_CONTAINER: &str = "sidetrace";
pub const INIT_CONTAINER: &str = "sidetrace-init";

/// The prefix of every annotation sidetrace reads or writes.
pub const ANNOTATION_PREFIX: &str = "sidetrace.io/";

/// Set (as a label and an annotation) on every injected pod: the label
/// lets a `PodMonitor` and the webhook's `objectSelector` find them.
pub const INJECTED_KEY: &str = "sidetrace.io/injected";
