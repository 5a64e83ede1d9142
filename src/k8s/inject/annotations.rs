//! `sidetrace.io/*` annotations parsed into one typed `Options`, once, at
//! the edge. The same `Options` shape carries the injector's defaults (its
//! flags), a namespace's annotations and a pod's; `over` layers them (pod
//! over namespace over flags). What the values mean for the pod is
//! `pod.rs`'s business; what the sidecar does with its `SIDETRACE_*`
//! variables is `config`'s.

use crate::k8s::ANNOTATION_PREFIX;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// `sidetrace.io/inject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    Enabled,
    Disabled,
}

/// How traffic reaches the sidecar (`sidetrace.io/interception`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Interception {
    /// NAT redirect rules installed by the `sidetrace-init` init container.
    Redirect,
    /// No privileges: the sidecar listens on its own port and forwards to
    /// the app's; the Service must target the sidecar's port.
    Ports,
}

/// An IPv4 or IPv6 network, `ADDR/PREFIX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A Kubernetes resource quantity (`100m`, `64Mi`, `0.5`), kept as
/// written once its form is known to be one the API server accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity(pub String);

/// The sidecar's resources; each field is set or left to a lower layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_request: Option<Quantity>,
    pub memory_request: Option<Quantity>,
    pub cpu_limit: Option<Quantity>,
    pub memory_limit: Option<Quantity>,
}

/// Everything the annotations (or the injector's flags) can say; `None`
/// leaves a field to the layer below.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub inject: Option<Switch>,
    pub native_sidecar: Option<bool>,
    pub interception: Option<Interception>,
    pub skip_inbound_ports: Option<Vec<u16>>,
    pub skip_outbound_ports: Option<Vec<u16>>,
    pub skip_outbound_cidrs: Option<Vec<Cidr>>,
    /// `ports` interception: the app's port (else its first declared one).
    pub app_port: Option<u16>,
    /// `ports` interception: the port the sidecar listens on.
    pub proxy_port: Option<u16>,
    pub service_name: Option<String>,
    pub resources: Resources,
    /// Sidecar options passed through as `SIDETRACE_*` variables (name →
    /// value, already in the form the sidecar's flags take).
    pub env: BTreeMap<&'static str, String>,
}

/// One annotation whose value cannot be used; the pod is then left as it
/// is, with this as the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {value:?} {reason}")]
pub struct AnnotationError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// How a pass-through option's value is checked before it becomes a
/// variable: the sidecar would refuse to start on a bad one, so the
/// injector refuses first, where the user sees it.
#[derive(Clone, Copy, Debug)]
pub enum Form {
    Ratio,
    Count,
    Duration,
    Url,
    OneOf(&'static [&'static str]),
    Ports,
    Text,
    /// `PATTERN=RATIO,…`, as `--sampling-rule` takes them.
    SamplingRules,
}

/// Annotation (after `sidetrace.io/`) → the sidecar's variable, and the
/// form of its value. The README's annotation table lists the same rows.
pub const PASS_THROUGH: &[(&str, &str, Form)] = &[
    ("sampling", "SIDETRACE_SAMPLING_RATIO", Form::Ratio),
    ("sampling-rules", "SIDETRACE_SAMPLING_RULES", Form::SamplingRules),
    ("sampling-rate-limit", "SIDETRACE_SAMPLING_RATE_LIMIT", Form::Count),
    ("keep-slower-than", "SIDETRACE_KEEP_SLOWER_THAN", Form::Duration),
    ("otlp-endpoint", "SIDETRACE_OTLP_ENDPOINT", Form::Url),
    ("otlp-protocol", "SIDETRACE_OTLP_PROTOCOL", Form::OneOf(&["http/protobuf", "http/json", "grpc"])),
    ("zipkin-endpoint", "SIDETRACE_ZIPKIN_ENDPOINT", Form::Url),
    ("log-level", "SIDETRACE_LOG", Form::Text),
    ("access-log", "SIDETRACE_ACCESS_LOG", Form::OneOf(&["json", "text", "off"])),
    ("opaque-ports", "SIDETRACE_OPAQUE_PORTS", Form::Ports),
    ("routes", "SIDETRACE_ROUTES", Form::Text),
    ("redact-query-keys", "SIDETRACE_REDACT_QUERY_KEYS", Form::Text),
    ("capture-request-headers", "SIDETRACE_CAPTURE_REQUEST_HEADERS", Form::Text),
    ("capture-response-headers", "SIDETRACE_CAPTURE_RESPONSE_HEADERS", Form::Text),
    ("trace-probes", "SIDETRACE_TRACE_PROBES", Form::OneOf(&["true", "false"])),
];

/// Annotations that only mark or name things and are not options.
const MARKERS: &[&str] = &["injected"];

impl Options {
    /// Parses the `sidetrace.io/*` keys of an annotation map; other keys
    /// are not ours and are ignored. An unknown `sidetrace.io/` key is an
    /// error: a misspelt option silently ignored is worse than a pod left
    /// uninjected with the reason.
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Options, AnnotationError> {
        let mut o = Options::default();
        for (key, value) in annotations {
            let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else { continue };
            let err = |reason: String| AnnotationError { key: key.clone(), value: value.clone(), reason };
            let v = value.trim();
            match name {
                "inject" => o.inject = Some(enum_value(v).map_err(err)?),
                "native-sidecar" => o.native_sidecar = Some(boolean(v).map_err(err)?),
                "interception" => o.interception = Some(enum_value(v).map_err(err)?),
                "skip-inbound-ports" => o.skip_inbound_ports = Some(ports(v).map_err(err)?),
                "skip-outbound-ports" => o.skip_outbound_ports = Some(ports(v).map_err(err)?),
                "skip-outbound-cidrs" => o.skip_outbound_cidrs = Some(cidrs(v).map_err(err)?),
                "app-port" => o.app_port = Some(port(v).map_err(err)?),
                "proxy-port" => o.proxy_port = Some(port(v).map_err(err)?),
                "service-name" => o.service_name = Some(text(v).map_err(err)?),
                "proxy-cpu-request" => o.resources.cpu_request = Some(quantity(v).map_err(err)?),
                "proxy-memory-request" => o.resources.memory_request = Some(quantity(v).map_err(err)?),
                "proxy-cpu-limit" => o.resources.cpu_limit = Some(quantity(v).map_err(err)?),
                "proxy-memory-limit" => o.resources.memory_limit = Some(quantity(v).map_err(err)?),
                _ if MARKERS.contains(&name) => {}
                _ => match PASS_THROUGH.iter().find(|(n, _, _)| *n == name) {
                    Some((_, var, form)) => {
                        o.env.insert(var, checked(*form, v).map_err(err)?);
                    }
                    None => return Err(err("is not a sidetrace annotation (see the README's table)".into())),
                },
            }
        }
        Ok(o)
    }

    /// `self` layered over `lower`: each field `self` sets wins.
    pub fn over(self, lower: Options) -> Options {
        let mut env = lower.env;
        env.extend(self.env);
        let r = self.resources;
        let l = lower.resources;
        Options {
            inject: self.inject.or(lower.inject),
            native_sidecar: self.native_sidecar.or(lower.native_sidecar),
            interception: self.interception.or(lower.interception),
            skip_inbound_ports: self.skip_inbound_ports.or(lower.skip_inbound_ports),
            skip_outbound_ports: self.skip_outbound_ports.or(lower.skip_outbound_ports),
            skip_outbound_cidrs: self.skip_outbound_cidrs.or(lower.skip_outbound_cidrs),
            app_port: self.app_port.or(lower.app_port),
            proxy_port: self.proxy_port.or(lower.proxy_port),
            service_name: self.service_name.or(lower.service_name),
            resources: Resources {
                cpu_request: r.cpu_request.or(l.cpu_request),
                memory_request: r.memory_request.or(l.memory_request),
                cpu_limit: r.cpu_limit.or(l.cpu_limit),
                memory_limit: r.memory_limit.or(l.memory_limit),
            },
            env,
        }
    }
}

fn enum_value<T: clap::ValueEnum>(v: &str) -> Result<T, String> {
    T::from_str(v, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|x| x.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        format!("is not one of {}", names.join(", "))
    })
}

/// Kubernetes annotations are strings; `"true"`/`"false"` as kubectl and
/// other injectors write them.
pub fn boolean(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("is not true or false".into()),
    }
}

pub fn port(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("is not a port number (1-65535)".into()),
    }
}

/// A comma-separated port list; empty means none.
pub fn ports(v: &str) -> Result<Vec<u16>, String> {
    v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(port).collect()
}

pub fn cidr(v: &str) -> Result<Cidr, String> {
    let (addr, prefix) = v.split_once('/').ok_or_else(|| format!("{v:?} is not ADDR/PREFIX"))?;
    let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(Cidr { addr, prefix: p }),
        _ => Err(format!("{prefix:?} is not a prefix length (0-{max})")),
    }
}

pub fn cidrs(v: &str) -> Result<Vec<Cidr>, String> {
    v.split(',').map(str::trim).filter(|c| !c.is_empty()).map(cidr).collect()
}

pub fn ratio(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("is not a ratio between 0 and 1".into()),
    }
}

fn text(v: &str) -> Result<String, String> {
    if v.is_empty() { Err("is empty".into()) } else { Ok(v.to_string()) }
}

pub fn url(v: &str) -> Result<String, String> {
    if (v.starts_with("http://") || v.starts_with("https://")) && !v.contains(char::is_whitespace) {
        Ok(v.to_string())
    } else {
        Err("is not an http:// or https:// URL".into())
    }
}

/// The forms of quantity the API server accepts for CPU and memory:
/// a decimal number and an optional SI or binary suffix.
pub fn quantity(v: &str) -> Result<Quantity, String> {
    const SUFFIXES: &[&str] = &["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", ""];
    let ok = SUFFIXES.iter().any(|s| {
        v.strip_suffix(s).is_some_and(|n| {
            let mut parts = n.splitn(2, '.');
            let whole = parts.next().unwrap_or("");
            let frac = parts.next();
            !n.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
                && (!whole.is_empty() || frac.is_some())
        })
    });
    if ok { Ok(Quantity(v.to_string())) } else { Err("is not a resource quantity such as 100m, 0.5 or 64Mi".into()) }
}

/// A pass-through value in the form the sidecar's flag takes.
fn checked(form: Form, v: &str) -> Result<String, String> {
    match form {
        Form::Ratio => ratio(v).map(|_| v.to_string()),
        Form::Count => v.parse::<u64>().map(|n| n.to_string()).map_err(|_| "is not a whole number".into()),
        Form::Duration => crate::config::parse::duration(v).map(|_| v.to_string()),
        Form::Url => url(v),
        Form::OneOf(allowed) if allowed.contains(&v) => Ok(v.to_string()),
        Form::OneOf(allowed) => Err(format!("is not one of {}", allowed.join(", "))),
        Form::Ports => ports(v).map(|p| p.iter().map(u16::to_string).collect::<Vec<_>>().join(",")),
        Form::Text => text(v),
        Form::SamplingRules => v
            .split(',')
            .map(|r| crate::config::parse::sampling_rule(r.trim()).map(|r| r.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(|rules| rules.join(","))
            .map_err(|e| format!("has a bad rule: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_every_kind_of_value() {
        let o = Options::parse(&map(&[
            ("sidetrace.io/inject", "enabled"),
            ("sidetrace.io/native-sidecar", "false"),
            ("sidetrace.io/interception", "ports"),
            ("sidetrace.io/skip-outbound-ports", "5432, 6379"),
            ("sidetrace.io/skip-outbound-cidrs", "10.0.0.0/8,fd00::/8"),
            ("sidetrace.io/sampling", "0.25"),
            ("sidetrace.io/proxy-memory-limit", "96Mi"),
            ("app.kubernetes.io/name", "not ours"),
        ]))
        .unwrap();
        assert_eq!(o.inject, Some(Switch::Enabled));
        assert_eq!(o.native_sidecar, Some(false));
        assert_eq!(o.interception, Some(Interception::Ports));
        assert_eq!(o.skip_outbound_ports, Some(vec![5432, 6379]));
        let cidrs: Vec<String> = o.skip_outbound_cidrs.unwrap().iter().map(Cidr::to_string).collect();
        assert_eq!(cidrs, ["10.0.0.0/8", "fd00::/8"]);
        assert_eq!(o.env.get("SIDETRACE_SAMPLING_RATIO").map(String::as_str), Some("0.25"));
        assert_eq!(o.resources.memory_limit, Some(Quantity("96Mi".into())));
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_annotation() {
        for (k, v) in [
            ("sidetrace.io/sampling", "2"),
            ("sidetrace.io/interception", "iptables"),
            ("sidetrace.io/skip-outbound-cidrs", "10.0.0.0/33"),
            ("sidetrace.io/skip-inbound-ports", "http"),
            ("sidetrace.io/proxy-cpu-limit", "lots"),
            ("sidetrace.io/otlp-endpoint", "collector:4318"),
            ("sidetrace.io/samplig", "0.5"),
        ] {
            let e = Options::parse(&map(&[(k, v)])).unwrap_err();
            assert_eq!(e.key, k);
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn pod_wins_over_namespace_over_defaults() {
        let defaults = Options { interception: Some(Interception::Redirect), ..Default::default() };
        let ns =
            Options::parse(&map(&[("sidetrace.io/sampling", "0.5"), ("sidetrace.io/log-level", "debug")])).unwrap();
        let pod = Options::parse(&map(&[("sidetrace.io/sampling", "0.1")])).unwrap();
        let o = pod.over(ns.over(defaults));
        assert_eq!(o.interception, Some(Interception::Redirect));
        assert_eq!(o.env["SIDETRACE_SAMPLING_RATIO"], "0.1");
        assert_eq!(o.env["SIDETRACE_LOG"], "debug");
    }

    #[test]
    fn quantities() {
        for ok in ["100m", "1", "0.5", "64Mi", "1G", ".5"] {
            assert!(quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "m", "1.", "1.5.2", "64MB", "-1", "1 Gi"] {
            assert!(quantity(bad).is_err(), "{bad}");
        }
    }
}
