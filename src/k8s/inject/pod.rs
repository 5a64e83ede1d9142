//! What injection adds to a pod template, and what makes it skip one.
//!
//! Added (the README's "Kubernetes" section says the same for users):
//!
//! - the sidecar: a native sidecar (an init container with `restartPolicy:
//!   Always` and a startup probe on `/ready`, KEP-753, Kubernetes ≥ 1.29),
//!   or with `sidetrace.io/native-sidecar: "false"` the first regular
//!   container with a postStart hook that holds the app's start until the
//!   proxy is ready (`sidetrace wait-ready`);
//! - with `redirect` interception, the `sidetrace-init` init container that
//!   runs `sidetrace init-net` — the only container with NET_ADMIN;
//! - identity from the downward API, `OTEL_SERVICE_NAME`, the options as
//!   `SIDETRACE_*` variables, Prometheus scrape annotations, resources sized
//!   from BENCHMARKS.md and a least-privilege security context;
//! - the label and annotation `sidetrace.io/injected: "true"`.

use super::annotations::{Interception, Options, Quantity};
use super::model::{Injected, Injector, Refusal, SkipReason, Target};
use crate::k8s::{
    ADMIN_PORT, BINARY_PATH, INBOUND_PORT, INIT_CONTAINER, INJECTED_KEY, OUTBOUND_PORT, PROXY_UID, SIDECAR_CONTAINER,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The parts of a pod template injection reads, parsed once.
#[derive(Debug, Default)]
pub struct PodView {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub host_network: bool,
    pub containers: Vec<ContainerView>,
    pub init_containers: Vec<ContainerView>,
}

#[derive(Debug, Deserialize)]
pub struct ContainerView {
    pub name: String,
    #[serde(default)]
    pub ports: Option<Vec<PortView>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortView {
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTemplate {
    #[serde(default)]
    metadata: Option<RawMeta>,
    spec: Option<RawSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    generate_name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    host_network: Option<bool>,
    containers: Option<Vec<ContainerView>>,
    init_containers: Option<Vec<ContainerView>>,
}

impl PodView {
    pub fn parse(template: &Value) -> Result<PodView, Refusal> {
        let raw = RawTemplate::deserialize(template).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let spec = raw.spec.ok_or_else(|| Refusal::Malformed("no spec".into()))?;
        let containers = spec.containers.filter(|c| !c.is_empty());
        let containers = containers.ok_or_else(|| Refusal::Malformed("spec.containers is missing or empty".into()))?;
        let meta = raw.metadata.unwrap_or_default();
        Ok(PodView {
            name: meta.name,
            generate_name: meta.generate_name,
            labels: meta.labels.unwrap_or_default(),
            annotations: meta.annotations.unwrap_or_default(),
            host_network: spec.host_network.unwrap_or(false),
            containers,
            init_containers: spec.init_containers.unwrap_or_default(),
        })
    }

    fn all_containers(&self) -> impl Iterator<Item = &ContainerView> {
        self.init_containers.iter().chain(&self.containers)
    }

    /// The reasons that hold whatever the options say.
    pub fn check_injectable(&self) -> Result<(), SkipReason> {
        if self.host_network {
            return Err(SkipReason::HostNetwork);
        }
        // Injecting twice must equal injecting once: our container (or our
        // mark, should someone rename the container) means done.
        if self.annotations.contains_key(INJECTED_KEY)
            || self.all_containers().any(|c| c.name == SIDECAR_CONTAINER || c.name == INIT_CONTAINER)
        {
            return Err(SkipReason::AlreadyInjected);
        }
        // Two proxies in one pod would both redirect the same traffic.
        // Istio and Linkerd name their containers so; their injection
        // marks cover a pod they are about to inject (webhook order is not
        // defined, so either may run first).
        const MESH_CONTAINERS: &[&str] = &["istio-proxy", "istio-init", "linkerd-proxy", "linkerd-init"];
        if let Some(c) = self.all_containers().find(|c| MESH_CONTAINERS.contains(&c.name.as_str())) {
            return Err(SkipReason::OtherMesh(c.name.clone()));
        }
        let marks = [
            (&self.annotations, "sidecar.istio.io/status", None),
            (&self.labels, "sidecar.istio.io/inject", Some("true")),
            (&self.annotations, "sidecar.istio.io/inject", Some("true")),
            (&self.annotations, "linkerd.io/inject", Some("enabled")),
            (&self.annotations, "linkerd.io/proxy-version", None),
        ];
        for (map, key, value) in marks {
            if map.get(key).is_some_and(|v| value.is_none_or(|want| v == want)) {
                return Err(SkipReason::OtherMesh(key.to_string()));
            }
        }
        Ok(())
    }

    /// `app.kubernetes.io/name`, else `app`, else the workload's (or the
    /// pod's) name. A pod made by a ReplicaSet has only a `generateName`
    /// such as `orders-7d9f8b6c5-`: its `pod-template-hash` is cut off.
    fn service_name(&self, target: &Target) -> Option<String> {
        let label = |k: &str| self.labels.get(k).filter(|v| !v.is_empty()).cloned();
        label("app.kubernetes.io/name")
            .or_else(|| label("app"))
            .or_else(|| target.workload.map(|(_, name)| name.to_string()))
            .or_else(|| self.name.clone().filter(|n| !n.is_empty()))
            .or_else(|| {
                let g = self.generate_name.as_deref()?.trim_end_matches('-');
                let g = match self.labels.get("pod-template-hash") {
                    Some(hash) => g.strip_suffix(hash.as_str()).map_or(g, |s| s.trim_end_matches('-')),
                    None => g,
                };
                (!g.is_empty()).then(|| g.to_string())
            })
    }

    /// The app's port for `ports` interception: the first TCP port the
    /// first container declares.
    fn first_app_port(&self) -> Option<u16> {
        self.containers
            .first()?
            .ports
            .as_ref()?
            .iter()
            .find(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
            .map(|p| p.container_port)
    }
}

/// Resources when nothing says otherwise, sized from BENCHMARKS.md (2-core
/// machine, full tracing and OTLP export):
/// - CPU request 100m: sidetrace spent 88 µs of CPU per request at a steady
///   1000 req/s, so 100m carries about 1100 req/s; busier pods raise it;
/// - memory request 32Mi: the peak RSS at 1000 req/s was 14.0 MiB (idle
///   7.5 MiB), doubled for the trace buffer and bursts;
/// - memory limit 128Mi: about 3× the 43.7 MiB peak at the throughput
///   ceiling (40k req/s) and with 10000 idle keep-alive connections;
/// - CPU limit 1: one core carries ~40k req/s at 25 µs/request, and the
///   quota is what makes sidetrace's cgroup-aware `--workers` default pick
///   one worker instead of one per node CPU.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
pub const DEFAULT_MEMORY_REQUEST: &str = "32Mi";
pub const DEFAULT_CPU_LIMIT: &str = "1";
pub const DEFAULT_MEMORY_LIMIT: &str = "128Mi";

/// How long a non-native sidecar's postStart hook holds the app's start.
const START_HOLD: &str = "60s";

/// Port names are at most 15 characters (IANA_SVC_NAME).
const ADMIN_PORT_NAME: &str = "sidetrace-admin";
const PROXY_PORT_NAME: &str = "sidetrace-proxy";

pub fn add_sidecar(
    template: &Value,
    view: &PodView,
    options: &Options,
    target: &Target,
    injector: &Injector,
) -> Result<Injected, Refusal> {
    let interception = options.interception.unwrap_or(Interception::Redirect);
    let native = options.native_sidecar.unwrap_or(true);
    let mut notes = Vec::new();
    let ports_mode = match interception {
        Interception::Redirect => None,
        Interception::Ports => {
            let app = options.app_port.or_else(|| view.first_app_port()).ok_or(SkipReason::NoAppPort)?;
            let proxy = options.proxy_port.unwrap_or(INBOUND_PORT);
            notes.push(format!(
                "ports interception: the Service must target port {proxy} ({PROXY_PORT_NAME}), which forwards to the app's port {app}"
            ));
            Some((proxy, app))
        }
    };
    let mut sidecar = sidecar_container(view, options, target, injector, ports_mode);
    let mut out = template.clone();
    let spec =
        out.get_mut("spec").and_then(Value::as_object_mut).ok_or_else(|| Refusal::Malformed("no spec".into()))?;
    let mut init: Vec<Value> = take_list(spec, "initContainers");
    let mut containers: Vec<Value> = take_list(spec, "containers");
    let init_net = (interception == Interception::Redirect).then(|| init_container(options, injector));
    if native {
        // KEP-753: an init container with restartPolicy Always starts before
        // the next init container once its startup probe passes, and stops
        // after the app's containers; a Job completes when its app exits.
        // init-net first, then the proxy, then the app's own init
        // containers, whose traffic is then proxied like the app's.
        sidecar["restartPolicy"] = json!("Always");
        sidecar["startupProbe"] = probe("/ready", 1, 60);
        let mut front: Vec<Value> = init_net.into_iter().collect();
        front.push(sidecar);
        init.splice(0..0, front);
    } else {
        // Without native sidecars the kubelet starts containers in order
        // and waits for each one's postStart hook: holding it until /ready
        // keeps the app from starting before the proxy (Istio's
        // holdApplicationUntilProxyStarts does the same). init-net goes
        // last among the init containers: the app's own init containers
        // run before any redirect, with no proxy to reach yet.
        sidecar["lifecycle"] = json!({"postStart": {"exec": {"command": [
            BINARY_PATH, "wait-ready", "--admin", format!("127.0.0.1:{ADMIN_PORT}"), "--timeout", START_HOLD
        ]}}});
        init.extend(init_net);
        containers.insert(0, sidecar);
    }
    if !init.is_empty() {
        spec.insert("initContainers".into(), Value::Array(init));
    }
    spec.insert("containers".into(), Value::Array(containers));
    mark_metadata(&mut out, view);
    Ok(Injected { template: out, notes })
}

fn take_list(spec: &mut Map<String, Value>, key: &str) -> Vec<Value> {
    match spec.remove(key) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

fn probe(path: &str, period: u32, failures: u32) -> Value {
    json!({
        "httpGet": {"path": path, "port": ADMIN_PORT},
        "periodSeconds": period,
        "timeoutSeconds": 1,
        "failureThreshold": failures,
    })
}

/// The injected label and annotation; Prometheus' scrape annotations when
/// the pod has none of its own (an app that exposes its own metrics keeps
/// them; the `PodMonitor` then finds the sidecar's by port name).
fn mark_metadata(out: &mut Value, view: &PodView) {
    let meta = ensure_object(&mut out["metadata"]);
    ensure_object(meta.entry("labels").or_insert(Value::Null)).insert(INJECTED_KEY.into(), json!("true"));
    let annotations = ensure_object(meta.entry("annotations").or_insert(Value::Null));
    annotations.insert(INJECTED_KEY.into(), json!("true"));
    if !view.annotations.keys().any(|k| k.starts_with("prometheus.io/")) {
        annotations.insert("prometheus.io/scrape".into(), json!("true"));
        annotations.insert("prometheus.io/port".into(), json!(ADMIN_PORT.to_string()));
        annotations.insert("prometheus.io/path".into(), json!("/metrics"));
    }
}

/// The map in `v`, which becomes an empty one if it was missing or null.
fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

fn sidecar_container(
    view: &PodView,
    options: &Options,
    target: &Target,
    injector: &Injector,
    ports_mode: Option<(u16, u16)>,
) -> Value {
    let mut env = downward_api_env();
    let mut attrs = vec!["k8s.pod.uid=$(POD_UID)".to_string(), "k8s.pod.ip=$(POD_IP)".to_string()];
    if let Some((kind, name)) = target.workload {
        attrs.push(format!("k8s.{}.name={name}", kind.to_ascii_lowercase()));
    }
    // Kubernetes expands $(VAR) from variables defined earlier in the list.
    env.push(json!({"name": "OTEL_RESOURCE_ATTRIBUTES", "value": attrs.join(",")}));
    if let Some(name) = options.service_name.clone().or_else(|| view.service_name(target)) {
        env.push(json!({"name": "OTEL_SERVICE_NAME", "value": name}));
    }
    let mut ports = vec![json!({"name": ADMIN_PORT_NAME, "containerPort": ADMIN_PORT, "protocol": "TCP"})];
    match ports_mode {
        Some((proxy, app)) => {
            env.push(json!({"name": "SIDETRACE_INBOUND", "value": format!("0.0.0.0:{proxy}")}));
            env.push(json!({"name": "SIDETRACE_APP", "value": format!("127.0.0.1:{app}")}));
            ports.push(json!({"name": PROXY_PORT_NAME, "containerPort": proxy, "protocol": "TCP"}));
        }
        // Redirected IPv6 arrives on IPv6 addresses (the outbound rule sends
        // it to ::1), so both listeners are dual-stack; sidetrace falls back
        // to IPv4 where the pod has no IPv6. Outside connections to the
        // outbound port are themselves redirected to the inbound port, so
        // listening on every address does not make it a relay.
        None => {
            env.push(json!({"name": "SIDETRACE_INBOUND", "value": format!("[::]:{INBOUND_PORT}")}));
            env.push(json!({"name": "SIDETRACE_OUTBOUND", "value": format!("[::]:{OUTBOUND_PORT}")}));
        }
    }
    for (name, value) in &options.env {
        env.push(json!({"name": name, "value": value}));
    }
    json!({
        "name": SIDECAR_CONTAINER,
        "image": injector.image,
        "imagePullPolicy": injector.image_pull_policy,
        "command": [BINARY_PATH],
        "args": ["run"],
        "env": env,
        "ports": ports,
        "readinessProbe": probe("/ready", 5, 3),
        "livenessProbe": probe("/live", 10, 3),
        "resources": resources(options),
        "securityContext": restricted_context(),
    })
}

fn downward_api_env() -> Vec<Value> {
    [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_UID", "metadata.uid"),
        ("NODE_NAME", "spec.nodeName"),
        ("POD_IP", "status.podIP"),
        ("POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ]
    .iter()
    .map(|(name, path)| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}))
    .collect()
}

fn resources(options: &Options) -> Value {
    let r = &options.resources;
    let q = |v: &Option<Quantity>, default: &str| v.as_ref().map_or(default.to_string(), |q| q.0.clone());
    json!({
        "requests": {"cpu": q(&r.cpu_request, DEFAULT_CPU_REQUEST), "memory": q(&r.memory_request, DEFAULT_MEMORY_REQUEST)},
        "limits": {"cpu": q(&r.cpu_limit, DEFAULT_CPU_LIMIT), "memory": q(&r.memory_limit, DEFAULT_MEMORY_LIMIT)},
    })
}

/// The restricted Pod Security Standard's container rules, and a fixed
/// UID that init-net's rules exempt.
fn restricted_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": PROXY_UID,
        "runAsGroup": PROXY_UID,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// `sidetrace init-net`: the only container with NET_ADMIN.
/// It runs as root because Kubernetes gives added capabilities to a
/// non-root process only through file capabilities, which a `FROM
/// scratch` image's binary does not carry (Istio's istio-init does the
/// same); it only programs the pod's own network namespace, then exits.
fn init_container(options: &Options, injector: &Injector) -> Value {
    let mut args: Vec<String> = vec![
        "init-net".into(),
        "--proxy-uid".into(),
        PROXY_UID.to_string(),
        "--inbound-port".into(),
        INBOUND_PORT.to_string(),
        "--outbound-port".into(),
        OUTBOUND_PORT.to_string(),
        "--admin-port".into(),
        ADMIN_PORT.to_string(),
    ];
    let join = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    if let Some(p) = options.skip_inbound_ports.as_deref().filter(|p| !p.is_empty()) {
        args.extend(["--skip-inbound-ports".into(), join(p)]);
    }
    if let Some(p) = options.skip_outbound_ports.as_deref().filter(|p| !p.is_empty()) {
        args.extend(["--skip-outbound-ports".into(), join(p)]);
    }
    if let Some(c) = options.skip_outbound_cidrs.as_deref().filter(|c| !c.is_empty()) {
        let c: Vec<String> = c.iter().map(ToString::to_string).collect();
        args.extend(["--skip-outbound-cidrs".into(), c.join(",")]);
    }
    json!({
        "name": INIT_CONTAINER,
        "image": injector.image,
        "imagePullPolicy": injector.image_pull_policy,
        "command": [BINARY_PATH],
        "args": args,
        "resources": {
            "requests": {"cpu": "10m", "memory": "10Mi"},
            "limits": {"cpu": "100m", "memory": "32Mi"},
        },
        "securityContext": {
            "runAsNonRoot": false,
            "runAsUser": 0,
            "runAsGroup": 0,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            // Programming nftables over netlink needs NET_ADMIN only.
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    })
}
