//! The pod's Namespace annotations, read from the Kubernetes API.
//!
//! An AdmissionReview carries the pod but not its Namespace, so the
//! webhook asks the API server for it, as Linkerd's proxy-injector does:
//! `GET /api/v1/namespaces/{name}` over HTTPS with the pod's in-cluster
//! credentials (the service account's token, re-read on every call since
//! bound tokens rotate, and the cluster's CA), at
//! `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` unless
//! `--kube-api` says otherwise. The RBAC it needs is `get` on
//! `namespaces`, nothing else.
//!
//! Each namespace's `sidetrace.io/*` annotations are kept for the cache's
//! TTL, so a burst of pods in one namespace costs one call: callers for the
//! same namespace wait for the one request in flight. A failure (API down,
//! forbidden, slow beyond the timeout) is kept for a few seconds too, so a
//! burst during an outage does not queue one timeout behind another. The
//! caller injects with the pod's annotations alone and says why in a
//! warning: the webhook never blocks a pod.

use crate::k8s::ANNOTATION_PREFIX;
use bytes::Bytes;
use clap::Args;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the kubelet mounts a pod's service-account token and the cluster's CA.
const TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// How long a failed lookup is remembered (at most the cache's TTL).
const FAILURE_TTL: Duration = Duration::from_secs(5);

/// A Namespace object is small; anything larger is not one.
const MAX_BODY: usize = 1 << 20;

pub type Annotations = BTreeMap<String, String>;

#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// The Kubernetes API the webhook reads the pod's Namespace from (its
    /// sidetrace.io/* annotations); default
    /// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, as in a pod.
    #[arg(long, env = "SIDETRACE_WEBHOOK_KUBE_API", value_name = "URL")]
    pub kube_api: Option<String>,

    /// The bearer token for the Kubernetes API (re-read on every call).
    #[arg(long, env = "SIDETRACE_WEBHOOK_KUBE_TOKEN_FILE", default_value = TOKEN_FILE, value_name = "FILE")]
    pub kube_token_file: PathBuf,

    /// The CA certificates (PEM) the Kubernetes API's certificate is checked against.
    #[arg(long, env = "SIDETRACE_WEBHOOK_KUBE_CA_FILE", default_value = CA_FILE, value_name = "FILE")]
    pub kube_ca_file: PathBuf,

    /// How long one lookup of a Namespace may take; beyond it the pod is
    /// injected with its own annotations only, and a warning says so.
    #[arg(long, env = "SIDETRACE_WEBHOOK_KUBE_TIMEOUT", default_value = "2s", value_parser = crate::config::parse::duration, value_name = "DURATION")]
    pub kube_timeout: Duration,

    /// How long a Namespace's annotations are reused before it is read again.
    #[arg(long, env = "SIDETRACE_WEBHOOK_NAMESPACE_CACHE_TTL", default_value = "30s", value_parser = crate::config::parse::duration, value_name = "DURATION")]
    pub namespace_cache_ttl: Duration,
}

type Lookup = Result<Arc<Annotations>, String>;
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Lookup)>>>;

/// The namespaces' annotations, as far as the API lets the webhook know them.
pub struct Namespaces {
    source: Source,
    ttl: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

enum Source {
    Api(Box<Api>),
    /// No API to ask (outside a cluster, no CA): every lookup fails with this.
    Unavailable(String),
}

struct Api {
    base: String,
    token_file: PathBuf,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Namespaces {
    /// An error only for a `--kube-api` that is not an HTTPS URL; a
    /// missing in-cluster configuration leaves the lookups failing, each
    /// with the reason.
    pub fn new(args: &KubeArgs) -> Result<Namespaces, String> {
        let source = match base_url(args.kube_api.as_deref(), |k| std::env::var(k).ok())? {
            None => Source::Unavailable(
                "no Kubernetes API: KUBERNETES_SERVICE_HOST is not set and --kube-api is not given".into(),
            ),
            Some(base) => match client(&args.kube_ca_file, args.kube_timeout) {
                Ok(client) => Source::Api(Box::new(Api {
                    base,
                    token_file: args.kube_token_file.clone(),
                    timeout: args.kube_timeout,
                    client,
                })),
                Err(e) => Source::Unavailable(e),
            },
        };
        Ok(Namespaces { source, ttl: args.namespace_cache_ttl, slots: Mutex::new(HashMap::new()) })
    }

    /// Why no lookup can succeed, if that is known at start-up.
    pub fn unavailable(&self) -> Option<&str> {
        match &self.source {
            Source::Unavailable(why) => Some(why),
            Source::Api(_) => None,
        }
    }

    /// The namespace's `sidetrace.io/*` annotations, or why they are unknown.
    pub async fn annotations(&self, name: &str) -> Lookup {
        let api = match &self.source {
            Source::Api(api) => api,
            Source::Unavailable(why) => return Err(why.clone()),
        };
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(name.to_string()).or_default().clone()
        };
        // Held across the request: the others asking for this namespace
        // meanwhile get its answer instead of asking again.
        let mut slot = slot.lock().await;
        if let Some((at, lookup)) = &*slot {
            let ttl = if lookup.is_ok() { self.ttl } else { self.ttl.min(FAILURE_TTL) };
            if at.elapsed() < ttl {
                return lookup.clone();
            }
        }
        let lookup = api.get(name).await.map(Arc::new);
        if let Err(e) = &lookup {
            tracing::warn!(namespace = name, error = %e, "cannot read the namespace's annotations");
        }
        *slot = Some((Instant::now(), lookup.clone()));
        lookup
    }
}

impl Api {
    async fn get(&self, name: &str) -> Result<Annotations, String> {
        // A namespace name is a DNS label; anything else must not reach a URL.
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(format!("{name:?} is not a namespace name"));
        }
        let path = format!("/api/v1/namespaces/{name}");
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("cannot read the token {}: {e}", self.token_file.display()))?;
        let uri: Uri = format!("{}{path}", self.base).parse().map_err(|e| format!("{path}: {e}"))?;
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", token.trim()))
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("sidetrace-webhook/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|e| format!("GET {path}: {e}"))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| causes(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY).collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("GET {path}: no answer within {:?}", self.timeout))?
            .map_err(|e| format!("GET {path}: {e}"))?;
        if status != StatusCode::OK {
            let hint = if status == StatusCode::FORBIDDEN {
                " (the webhook's service account needs get on namespaces)"
            } else {
                ""
            };
            return Err(format!("GET {path}: {status}{hint}"));
        }
        annotations(&body).map_err(|e| format!("GET {path}: {e}"))
    }
}

/// The `sidetrace.io/*` annotations of a Namespace object (JSON).
pub fn annotations(body: &[u8]) -> Result<Annotations, String> {
    let ns: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if ns.get("kind").and_then(serde_json::Value::as_str) != Some("Namespace") {
        return Err("the answer is not a Namespace".into());
    }
    let all = match ns.pointer("/metadata/annotations") {
        None | Some(serde_json::Value::Null) => Annotations::new(),
        Some(a) => serde_json::from_value(a.clone()).map_err(|e| format!("metadata.annotations: {e}"))?,
    };
    Ok(all.into_iter().filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX)).collect())
}

/// The API's base URL: the flag, else the in-cluster variables; `None`
/// when neither is there.
fn base_url(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let url = match flag {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let Some(host) = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty()) else { return Ok(None) };
            let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty()).unwrap_or_else(|| "443".into());
            // An IPv6 service address needs its brackets in a URL.
            let host = if host.contains(':') { format!("[{host}]") } else { host };
            format!("https://{host}:{port}")
        }
    };
    let uri: Uri = url.parse().map_err(|e| format!("invalid value {url:?} for '--kube-api': {e}"))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(format!(
            "invalid value {url:?} for '--kube-api': an https:// URL is needed (the token is a secret)"
        ));
    }
    Ok(Some(url))
}

fn client(ca_file: &Path, timeout: Duration) -> Result<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read the cluster's CA {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("--kube-ca-file {}: {e}", ca_file.display()))?;
        roots.add(cert).map_err(|e| format!("--kube-ca-file {}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--kube-ca-file {}: no certificate in the file", ca_file.display()));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector))
}

/// An error with its causes: hyper's own says only "client error (Connect)".
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_comes_from_the_flag_or_the_pods_variables() {
        let none = |_: &str| None;
        assert_eq!(base_url(None, none), Ok(None));
        let pod = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        assert_eq!(base_url(None, pod), Ok(Some("https://10.96.0.1:443".into())));
        let v6 = |k: &str| (k == "KUBERNETES_SERVICE_HOST").then(|| "fd00::1".to_string());
        assert_eq!(base_url(None, v6), Ok(Some("https://[fd00::1]:443".into())));
        assert_eq!(base_url(Some("https://127.0.0.1:6443/"), pod), Ok(Some("https://127.0.0.1:6443".into())));
        assert!(base_url(Some("http://127.0.0.1:8001"), none).unwrap_err().contains("https://"));
        assert!(base_url(Some("not a url"), none).is_err());
    }

    #[test]
    fn only_sidetrace_annotations_are_kept() {
        let body = br#"{"kind":"Namespace","metadata":{"name":"shop","annotations":{"sidetrace.io/sampling":"0.1","other.io/x":"y"}}}"#;
        let a = annotations(body).unwrap();
        assert_eq!(a.into_iter().collect::<Vec<_>>(), [("sidetrace.io/sampling".to_string(), "0.1".to_string())]);
        assert_eq!(annotations(br#"{"kind":"Namespace","metadata":{"name":"bare"}}"#), Ok(Annotations::new()));
        assert!(annotations(br#"{"kind":"Status","code":404}"#).is_err());
        assert!(annotations(b"<html>").is_err());
    }
}
