//! The resource every span carries: `service.name` and the attributes that
//! say where the sidecar runs (`OTEL_RESOURCE_ATTRIBUTES`, the Kubernetes
//! downward API, the host name).

use super::error::Error;
use std::collections::BTreeMap;

/// Resource attributes of every span: `service.name` first.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Resource {
    pub attributes: BTreeMap<String, String>,
}

impl Resource {
    pub fn service_name(&self) -> &str {
        self.attributes.get("service.name").map_or("unknown_service", String::as_str)
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES` (W3C Baggage-style `k=v,k2=v2`, values
/// percent-decoded), then the Kubernetes downward-API variables, then
/// `OTEL_SERVICE_NAME`, then `--service-name`: later ones win.
pub fn resource(service_name: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Resource, Error> {
    let mut attrs = BTreeMap::new();
    if let Some(raw) = env("OTEL_RESOURCE_ATTRIBUTES") {
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(Error::invalid("OTEL_RESOURCE_ATTRIBUTES", format!("{pair:?} is not key=value")));
            };
            let v = percent_encoding::percent_decode_str(v.trim()).decode_utf8().map_err(|_| {
                Error::invalid(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    format!("value of {k:?} is not UTF-8 after percent-decoding"),
                )
            })?;
            if k.trim().is_empty() {
                return Err(Error::invalid("OTEL_RESOURCE_ATTRIBUTES", "empty key"));
            }
            attrs.insert(k.trim().to_string(), v.into_owned());
        }
    }
    let host = env("HOSTNAME").filter(|h| !h.is_empty()).or_else(hostname);
    for (attr, vars) in [
        ("k8s.pod.name", ["SIDETRACE_POD_NAME", "POD_NAME"]),
        ("k8s.namespace.name", ["SIDETRACE_POD_NAMESPACE", "POD_NAMESPACE"]),
        ("k8s.node.name", ["SIDETRACE_NODE_NAME", "NODE_NAME"]),
    ] {
        if let Some(v) = vars.iter().find_map(|v| env(v).filter(|s| !s.is_empty())) {
            attrs.insert(attr.to_string(), v);
        }
    }
    if let Some(h) = &host {
        attrs.entry("host.name".into()).or_insert_with(|| h.clone());
    }
    if let Some(name) = env("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()) {
        attrs.insert("service.name".into(), name);
    }
    if let Some(name) = service_name {
        if name.is_empty() {
            return Err(Error::invalid("--service-name", "must not be empty"));
        }
        attrs.insert("service.name".into(), name.to_string());
    }
    if !attrs.contains_key("service.name") {
        let base = attrs.get("k8s.pod.name").cloned().or(host).unwrap_or_else(|| "unknown_service".into());
        attrs.insert("service.name".into(), service_from_pod_name(&base).to_string());
    }
    attrs.entry("service.instance.id".into()).or_insert_with(random_uuid);
    attrs.insert("telemetry.sdk.name".into(), "sidetrace".into());
    attrs.insert("telemetry.sdk.language".into(), "rust".into());
    attrs.insert("telemetry.sdk.version".into(), env!("CARGO_PKG_VERSION").into());
    Ok(Resource { attributes: attrs })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A Deployment's pod is named `{deployment}-{replicaset hash}-{5 chars}`;
/// the service is the deployment.
pub fn service_from_pod_name(pod: &str) -> &str {
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    let alnum = |s: &str| s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if parts.len() == 3
        && parts[0].len() == 5
        && alnum(parts[0])
        && (6..=10).contains(&parts[1].len())
        && alnum(parts[1])
    {
        return parts[2];
    }
    pod
}

fn random_uuid() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
