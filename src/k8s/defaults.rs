//! The injector's defaults: one set of flags (each with a
//! `SIDETRACE_INJECT_*` variable) shared by `sidetrace inject` and
//! `sidetrace webhook`, so the two front doors cannot drift apart. They sit
//! below the namespace's and the pod's `sidetrace.io/*` annotations.

use super::inject::Injector;
use super::inject::annotations::{self, Interception, Options, Quantity, Resources};
use clap::Args;
use std::collections::BTreeMap;

const DEFAULT_IMAGE: &str = concat!("sidetrace:", env!("CARGO_PKG_VERSION"));

#[derive(Args, Debug, Clone)]
pub struct InjectArgs {
    /// The sidecar's image (also runs `sidetrace init-net`).
    #[arg(long, env = "SIDETRACE_INJECT_IMAGE", default_value = DEFAULT_IMAGE, value_name = "IMAGE")]
    pub image: String,

    /// The injected containers' imagePullPolicy.
    #[arg(long, env = "SIDETRACE_INJECT_IMAGE_PULL_POLICY", default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"], value_name = "POLICY")]
    pub image_pull_policy: String,

    /// How traffic reaches the sidecar when the pod does not say
    /// (sidetrace.io/interception): redirect (an init container installs NAT
    /// rules; needs NET_ADMIN) or ports (no privileges; the Service targets
    /// the sidecar's port).
    #[arg(long, env = "SIDETRACE_INJECT_INTERCEPTION", value_enum, default_value = "redirect", value_name = "MODE")]
    pub interception: Interception,

    /// Inject a native sidecar (an init container with restartPolicy: Always,
    /// Kubernetes >= 1.29) unless the pod says sidetrace.io/native-sidecar: "false".
    #[arg(long, env = "SIDETRACE_INJECT_NATIVE_SIDECAR", default_value = "true", value_parser = annotations::boolean, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub native_sidecar: bool,

    /// OTLP endpoint of the injected sidecars (sidetrace.io/otlp-endpoint).
    #[arg(long, env = "SIDETRACE_INJECT_OTLP_ENDPOINT", value_parser = annotations::url, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP protocol of the injected sidecars (sidetrace.io/otlp-protocol).
    #[arg(long, env = "SIDETRACE_INJECT_OTLP_PROTOCOL", value_parser = ["http/protobuf", "http/json", "grpc"], value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,

    /// Share of new traces the injected sidecars record (sidetrace.io/sampling).
    #[arg(long, env = "SIDETRACE_INJECT_SAMPLING", value_parser = sampling, value_name = "RATIO")]
    pub sampling: Option<String>,

    /// Log filter of the injected sidecars (sidetrace.io/log-level).
    #[arg(long, env = "SIDETRACE_INJECT_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Outbound CIDRs never redirected to the sidecar, comma-separated
    /// (sidetrace.io/skip-outbound-cidrs), e.g. the cloud metadata address.
    #[arg(long, env = "SIDETRACE_INJECT_SKIP_OUTBOUND_CIDRS", value_parser = cidrs, value_name = "CIDRS")]
    pub skip_outbound_cidrs: Option<String>,

    /// The sidecar's CPU request (sidetrace.io/proxy-cpu-request).
    #[arg(long, env = "SIDETRACE_INJECT_CPU_REQUEST", default_value = super::inject::pod::DEFAULT_CPU_REQUEST, value_parser = annotations::quantity, value_name = "QUANTITY")]
    pub cpu_request: Quantity,

    /// The sidecar's memory request (sidetrace.io/proxy-memory-request).
    #[arg(long, env = "SIDETRACE_INJECT_MEMORY_REQUEST", default_value = super::inject::pod::DEFAULT_MEMORY_REQUEST, value_parser = annotations::quantity, value_name = "QUANTITY")]
    pub memory_request: Quantity,

    /// The sidecar's CPU limit (sidetrace.io/proxy-cpu-limit).
    #[arg(long, env = "SIDETRACE_INJECT_CPU_LIMIT", default_value = super::inject::pod::DEFAULT_CPU_LIMIT, value_parser = annotations::quantity, value_name = "QUANTITY")]
    pub cpu_limit: Quantity,

    /// The sidecar's memory limit (sidetrace.io/proxy-memory-limit).
    #[arg(long, env = "SIDETRACE_INJECT_MEMORY_LIMIT", default_value = super::inject::pod::DEFAULT_MEMORY_LIMIT, value_parser = annotations::quantity, value_name = "QUANTITY")]
    pub memory_limit: Quantity,
}

fn sampling(v: &str) -> Result<String, String> {
    annotations::ratio(v).map(|_| v.to_string())
}

fn cidrs(v: &str) -> Result<String, String> {
    annotations::cidrs(v).map(|_| v.to_string())
}

impl InjectArgs {
    /// The injector these flags describe. The values were checked by clap
    /// with the annotations' own parsers; they go through
    /// `Options::parse` once more so that flags and annotations are read by
    /// one function.
    pub fn injector(&self) -> Result<Injector, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                a.insert(format!("sidetrace.io/{k}"), v.to_string());
            }
        };
        put("otlp-endpoint", self.otlp_endpoint.as_deref());
        put("otlp-protocol", self.otlp_protocol.as_deref());
        put("sampling", self.sampling.as_deref());
        put("log-level", self.log_level.as_deref());
        put("skip-outbound-cidrs", self.skip_outbound_cidrs.as_deref());
        let parsed = Options::parse(&a).map_err(|e| e.to_string())?;
        let flags = Options {
            interception: Some(self.interception),
            native_sidecar: Some(self.native_sidecar),
            resources: Resources {
                cpu_request: Some(self.cpu_request.clone()),
                memory_request: Some(self.memory_request.clone()),
                cpu_limit: Some(self.cpu_limit.clone()),
                memory_limit: Some(self.memory_limit.clone()),
            },
            ..Options::default()
        };
        Ok(Injector {
            image: self.image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            defaults: parsed.over(flags),
        })
    }
}
