//! The admission webhook as the API server meets it: the real binary over
//! TLS with a certificate made here (openssl), real `admission.k8s.io/v1`
//! AdmissionReview bodies (the harness's client trusting the test CA), the JSONPatch
//! applied with the `json-patch` crate and compared with what `sidetrace
//! inject` makes of the same pod; malformed reviews get 400; a pod it
//! cannot inject is allowed unchanged with a warning; a certificate
//! replaced on disk is served within a bounded wait. The pod's Namespace
//! comes from a fake Kubernetes API served here over TLS: its
//! `sidetrace.io/*` annotations apply under the pod's, one call serves a
//! burst, and an API that is down or refuses costs a warning, never the
//! pod.

mod support;

#[path = "k8s/common.rs"]
mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::pki::Ca;
use support::process::Process;
use support::{Client, apps, tools, wait};

/// A leaf for 127.0.0.1 and the webhook's Service name, signed by the
/// test's CA in `dir`: (cert, key).
fn leaf(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    Ca::new(dir, "sidetrace webhook test CA").server(cn, Some("sidetrace-webhook.sidetrace.svc"))
}

struct Webhook {
    process: Process,
    port: u16,
    ca: PathBuf,
    client: Client,
}

impl Webhook {
    async fn start(dir: &Path) -> Webhook {
        Webhook::start_with(dir, &[]).await
    }

    async fn start_with(dir: &Path, extra: &[String]) -> Webhook {
        let (cert, key) = leaf(dir, "first");
        std::fs::copy(&cert, dir.join("tls.crt")).unwrap();
        std::fs::copy(&key, dir.join("tls.key")).unwrap();
        let port = apps::refusing().port();
        let mut cmd = support::proxy::command(&["webhook", "--listen", &format!("127.0.0.1:{port}")]);
        cmd.args(["--cert-check-interval", "200ms", "--image", TEST_IMAGE, "--log", "warn"]);
        cmd.arg("--tls-cert").arg(dir.join("tls.crt")).arg("--tls-key").arg(dir.join("tls.key"));
        cmd.args(extra);
        let ca = dir.join("ca.pem");
        let mut w = Webhook {
            process: Process::spawn("sidetrace webhook", &mut cmd),
            port,
            client: Client::http1().tls(&ca, None),
            ca,
        };
        let live = wait::until(Duration::from_secs(20), async || {
            w.process.assert_running();
            w.get("/live").await.is_some_and(|(status, _)| status == 200)
        })
        .await;
        assert!(live.is_some(), "the webhook did not answer /live over TLS\n{}", w.process.output());
        assert_eq!(w.get("/ready").await.map(|r| r.0), Some(200));
        w
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// A GET trusting only the test CA: (status, body), or `None` when it
    /// did not complete (not listening yet).
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = self.client.get(&self.url(path)).timeout(Duration::from_secs(10)).try_send().await.ok()?;
        Some((r.status.as_u16(), r.text()))
    }

    /// POSTs an AdmissionReview to /mutate: (body, status).
    async fn review(&self, body: &str) -> (String, u16) {
        let r = self
            .client
            .post(&self.url("/mutate"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        (r.text(), r.status.as_u16())
    }

    /// The subject of the certificate the server presents now, as openssl
    /// sees it (the test is about the certificate, not HTTP).
    fn served_subject(&self) -> String {
        let script = format!(
            "openssl s_client -connect 127.0.0.1:{} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -subject",
            self.port,
            self.ca.display()
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// A Pod CREATE review, in the pod's namespace (`default` when it names none).
fn admission_review(uid: &str, pod: &Value) -> String {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
    .to_string()
}

/// The bearer token the fake API expects.
const TOKEN: &str = "test-service-account-token";

/// A fake Kubernetes API over TLS, with a certificate of the test's CA in
/// `dir`: `GET /api/v1/namespaces/NAME` answers the Namespace of that name
/// or 404, and 401 without `Bearer TOKEN`, each after 200 ms (so that
/// requests made together overlap). It remembers every request's path.
struct FakeApi {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    async fn start(dir: &Path, namespaces: &[Value]) -> FakeApi {
        use http_body_util::Full;
        use hyper_util::rt::TokioIo;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (cert, key) = Ca::new(dir, "sidetrace webhook test CA").server("kube-apiserver", None);
        let chain = CertificateDer::pem_file_iter(&cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let by_name: Arc<BTreeMap<String, Value>> = Arc::new(
            namespaces.iter().map(|n| (n["metadata"]["name"].as_str().unwrap().to_string(), n.clone())).collect(),
        );
        let (seen2, acceptor2) = (seen.clone(), acceptor.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (seen, by_name, acceptor) = (seen2.clone(), by_name.clone(), acceptor2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_string();
                        seen.lock().unwrap().push(path.clone());
                        let authorized =
                            req.headers().get("authorization").is_some_and(|v| v == &*format!("Bearer {TOKEN}"));
                        let found = path.strip_prefix("/api/v1/namespaces/").and_then(|n| by_name.get(n));
                        let (status, body) = match (authorized, found) {
                            (false, _) => (401, json!({"kind": "Status", "code": 401, "reason": "Unauthorized"})),
                            (true, None) => (404, json!({"kind": "Status", "code": 404, "reason": "NotFound"})),
                            (true, Some(ns)) => (200, ns.clone()),
                        };
                        let response = hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(bytes::Bytes::from(body.to_string())))
                            .unwrap();
                        async move {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        FakeApi { port, seen, task }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// How many requests asked for `path`.
    fn count(&self, path: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|p| *p == path).count()
    }
}

/// The webhook's flags for an API at `url`, with the token (as given) and
/// the test's CA written in `dir`.
fn kube_flags(dir: &Path, url: &str, token: &str) -> Vec<String> {
    std::fs::write(dir.join("token"), format!("{token}\n")).unwrap();
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    vec![
        "--kube-api".into(),
        url.into(),
        "--kube-token-file".into(),
        path("token"),
        "--kube-ca-file".into(),
        path("ca.pem"),
    ]
}

fn namespace(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "annotations": annotations}})
}

/// The pod the webhook's answer makes of `pod`.
fn patched(pod: &Value, r: &Value) -> Value {
    assert_eq!(r["patchType"], "JSONPatch", "not injected: {r}");
    let patch = base64::engine::general_purpose::STANDARD.decode(r["patch"].as_str().unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    patched
}

/// The literal variables of the injected `sidetrace` container.
fn sidecar_env(pod: &Value) -> BTreeMap<String, String> {
    let spec = &pod["spec"];
    let mut all = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["containers"].as_array().into_iter().flatten());
    let sidecar = all.find(|c| c["name"] == "sidetrace").unwrap_or_else(|| panic!("no sidetrace container: {pod}"));
    sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
        .collect()
}

fn warnings(r: &Value) -> Vec<String> {
    r["warnings"].as_array().into_iter().flatten().map(|w| w.as_str().unwrap().to_string()).collect()
}

fn response(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{v}");
    assert_eq!(v["kind"], "AdmissionReview", "{v}");
    assert_eq!(v["response"]["allowed"], true, "the webhook never blocks: {v}");
    v["response"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_patch_gives_the_same_pod_as_inject() {
    let dir = tools::scratch_dir("webhook-same");
    leaf(&dir, "first");
    // The golden Namespace with sidetrace.io/* annotations, served by the
    // API; `sidetrace inject` gets the same object in its input.
    let golden = std::fs::read_to_string(golden_dir().join("namespace-annotations.yaml")).unwrap();
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&golden)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .collect();
    let (ns, deployment) = (&docs[0], &docs[1]);
    assert_eq!(ns["kind"], "Namespace");
    let api = FakeApi::start(&dir, &[ns.clone(), namespace("shop", json!({})), namespace("default", json!({}))]).await;
    let webhook = Webhook::start_with(&dir, &kube_flags(&dir, &api.url(), TOKEN)).await;
    let mut cases: Vec<(String, Value, Vec<u8>)> = Vec::new();
    for stem in ["pod", "multi-container", "generated-pod", "flags"] {
        let (_, input, _) = golden_inputs().into_iter().find(|(s, _, _)| s == stem).unwrap();
        let text = std::fs::read(&input).unwrap();
        cases.push((stem.to_string(), serde_norway::from_slice(&text).unwrap(), text));
    }
    // A pod of the golden Deployment, in the annotated namespace.
    let template = &deployment["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    metadata["name"] = json!("catalog-7d9f8-x2x4q");
    metadata["namespace"] = deployment["metadata"]["namespace"].clone();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]});
    let input = format!("{}---\n{}", serde_norway::to_string(ns).unwrap(), serde_norway::to_string(&pod).unwrap());
    cases.push(("pod in an annotated namespace".into(), pod, input.into_bytes()));

    for (case, pod, input) in &cases {
        let (body, status) = webhook.review(&admission_review(&format!("uid-{case}"), pod)).await;
        assert_eq!(status, 200, "{case}: {body}");
        let r = response(&body);
        assert_eq!(r["uid"], format!("uid-{case}"));
        assert!(warnings(&r).iter().all(|w| !w.contains("namespace")), "{case}: {r}");
        let patched = patched(pod, &r);

        let out = inject(&[], input);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let injected: Vec<Value> = serde_norway::Deserializer::from_slice(&out.stdout)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .collect();
        let injected = injected.into_iter().find(|d| d["kind"] == "Pod").unwrap();
        assert_eq!(patched, injected, "{case}: the webhook's pod differs from sidetrace inject's");
    }
    // The namespace's options did apply, under the pod's.
    let env = sidecar_env(&webhook_pod(&webhook, &cases[4].1).await);
    assert_eq!(env.get("SIDETRACE_OTLP_ENDPOINT").map(String::as_str), Some("http://collector.tracing-demo:4318"));
    assert_eq!(env.get("SIDETRACE_SAMPLING_RATIO").map(String::as_str), Some("0.5"));
}

/// The pod the webhook makes of `pod`, with no warning.
async fn webhook_pod(webhook: &Webhook, pod: &Value) -> Value {
    let (body, status) = webhook.review(&admission_review("uid", pod)).await;
    assert_eq!(status, 200, "{body}");
    let r = response(&body);
    assert!(warnings(&r).is_empty(), "{r}");
    patched(pod, &r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_annotations_come_from_the_api_once_per_ttl_and_the_pods_win() {
    let dir = tools::scratch_dir("webhook-namespace");
    leaf(&dir, "first");
    let shop = namespace(
        "shop",
        json!({"sidetrace.io/otlp-endpoint": "http://collector.observability:4318", "sidetrace.io/sampling": "0.25", "owner": "team-shop"}),
    );
    let api = FakeApi::start(&dir, &[shop, namespace("plain", json!({}))]).await;
    let mut flags = kube_flags(&dir, &api.url(), TOKEN);
    flags.extend(["--namespace-cache-ttl".into(), "5m".into()]);
    let webhook = Webhook::start_with(&dir, &flags).await;
    let pod = |name: &str, ns: &str, annotations: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": {"app": "orders"}, "annotations": annotations},
               "spec": {"containers": [{"name": "orders", "image": "example/orders:1", "ports": [{"containerPort": 8080}]}]}})
    };

    // A burst of pods in one namespace, all at once (the API takes its
    // time to answer): one call serves them all.
    let burst: Vec<Value> = (0..8).map(|i| pod(&format!("c{i}"), "shop", json!({}))).collect();
    let answers = futures_util::future::join_all(burst.iter().map(|p| webhook_pod(&webhook, p))).await;
    for p in &answers {
        assert_eq!(sidecar_env(p).get("SIDETRACE_SAMPLING_RATIO").map(String::as_str), Some("0.25"), "{p}");
    }
    assert_eq!(api.count("/api/v1/namespaces/shop"), 1, "the burst read the namespace more than once");

    let env = sidecar_env(&webhook_pod(&webhook, &pod("a", "shop", json!({}))).await);
    assert_eq!(env.get("SIDETRACE_OTLP_ENDPOINT").map(String::as_str), Some("http://collector.observability:4318"));
    assert_eq!(env.get("SIDETRACE_SAMPLING_RATIO").map(String::as_str), Some("0.25"));
    // The pod's own annotation wins over its namespace's.
    let env = sidecar_env(&webhook_pod(&webhook, &pod("b", "shop", json!({"sidetrace.io/sampling": "0.5"}))).await);
    assert_eq!(env.get("SIDETRACE_SAMPLING_RATIO").map(String::as_str), Some("0.5"));
    assert_eq!(env.get("SIDETRACE_OTLP_ENDPOINT").map(String::as_str), Some("http://collector.observability:4318"));
    // Within the TTL the namespace is read once.
    assert_eq!(api.count("/api/v1/namespaces/shop"), 1);
    // Another namespace is read on its own, and lends nothing it does not have.
    let env = sidecar_env(&webhook_pod(&webhook, &pod("d", "plain", json!({}))).await);
    assert!(!env.contains_key("SIDETRACE_OTLP_ENDPOINT") && !env.contains_key("SIDETRACE_SAMPLING_RATIO"), "{env:?}");
    assert_eq!(api.count("/api/v1/namespaces/plain"), 1);
    assert_eq!(api.seen.lock().unwrap().len(), 2, "{:?}", api.seen.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_is_down_or_refuses_costs_a_warning_not_the_pod() {
    let dir = tools::scratch_dir("webhook-api-down");
    leaf(&dir, "first");
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "a", "namespace": "shop", "annotations": {"sidetrace.io/sampling": "0.5"}},
                     "spec": {"containers": [{"name": "orders", "image": "example/orders:1"}]}});
    // Nothing listens at the API's address.
    let down = format!("https://127.0.0.1:{}", apps::refusing().port());
    // The API answers, but not to this token.
    let api = FakeApi::start(&dir, &[namespace("shop", json!({"sidetrace.io/sampling": "0.1"}))]).await;
    for (url, token, says) in [(down, TOKEN, "refused"), (api.url(), "a-stale-token", "401")] {
        let webhook = Webhook::start_with(&dir, &kube_flags(&dir, &url, token)).await;
        let (body, status) = webhook.review(&admission_review("uid-down", &pod)).await;
        assert_eq!(status, 200, "{body}");
        let r = response(&body);
        let env = sidecar_env(&patched(&pod, &r));
        assert_eq!(
            env.get("SIDETRACE_SAMPLING_RATIO").map(String::as_str),
            Some("0.5"),
            "the pod's own annotations apply"
        );
        let w = warnings(&r);
        assert!(
            w.iter().any(|w| w.contains("namespace shop annotations not read") && w.to_lowercase().contains(says)),
            "{url}: no warning saying {says:?}: {w:?}"
        );
    }
    assert!(api.count("/api/v1/namespaces/shop") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_get_400_and_uninjectable_pods_are_allowed_with_a_warning() {
    let dir = tools::scratch_dir("webhook-bad");
    let webhook = Webhook::start(&dir).await;
    for (body, says) in [
        ("not json at all", "not JSON"),
        (r#"{"apiVersion":"v1","kind":"Pod"}"#, "AdmissionReview"),
        (r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "no request"),
        (r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod"}}}"#, "uid"),
    ] {
        let (answer, status) = webhook.review(body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains(says), "{body}: {answer:?} does not say {says:?}");
    }

    let (_, input, _) = golden_inputs().into_iter().find(|(s, _, _)| s == "host-network").unwrap();
    let daemonset: Value = serde_norway::from_slice(&std::fs::read(&input).unwrap()).unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": daemonset["spec"]["template"]["metadata"], "spec": daemonset["spec"]["template"]["spec"]});
    let (body, status) = webhook.review(&admission_review("uid-host", &pod)).await;
    assert_eq!(status, 200, "{body}");
    let r = response(&body);
    assert!(r.get("patch").is_none(), "a hostNetwork pod was patched: {r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("hostNetwork")), "{r}");

    // A pod whose containers are not a list cannot be read: still allowed.
    let broken = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": "nope"}});
    let (body, status) = webhook.review(&admission_review("uid-broken", &broken)).await;
    assert_eq!(status, 200, "{body}");
    let r = response(&body);
    assert!(r.get("patch").is_none() && r["warnings"].as_array().is_some_and(|w| !w.is_empty()), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_within_a_bounded_wait() {
    let dir = tools::scratch_dir("webhook-reload");
    let webhook = Webhook::start(&dir).await;
    assert!(webhook.served_subject().contains("CN = first"), "{}", webhook.served_subject());
    // cert-manager's renewal lands in the same files: overwrite in place.
    let (cert, key) = leaf(&dir, "rotated");
    std::fs::write(dir.join("tls.key"), std::fs::read(key).unwrap()).unwrap();
    std::fs::write(dir.join("tls.crt"), std::fs::read(cert).unwrap()).unwrap();
    let rotated =
        wait::until(Duration::from_secs(10), async || webhook.served_subject().contains("CN = rotated")).await;
    assert!(rotated.is_some(), "still serving {:?} 10 s after the files changed", webhook.served_subject());
    // And it still answers with the new certificate.
    assert_eq!(webhook.get("/ready").await.map(|r| r.0), Some(200));
}

/// How the kubelet renews a mounted Secret: the file names are symlinks
/// into `..data`, itself a symlink to a timestamped directory, and the
/// update swaps `..data` in one rename. A pair that does not load is not
/// served: the previous certificate stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_volume_swap_is_served_and_a_broken_pair_is_not() {
    use std::os::unix::fs::symlink;
    let dir = tools::scratch_dir("webhook-secret-swap");
    let mut webhook = Webhook::start(&dir).await;
    // Turn the files into the kubelet's layout, still holding "first".
    let generation = |name: &str, cert: &Path, key: &Path| {
        let g = dir.join(name);
        std::fs::create_dir_all(&g).unwrap();
        std::fs::copy(cert, g.join("tls.crt")).unwrap();
        std::fs::copy(key, g.join("tls.key")).unwrap();
    };
    let swap = |name: &str| {
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    generation("..2026_12_02_first", &dir.join("tls.crt"), &dir.join("tls.key"));
    swap("..2026_12_02_first");
    for f in ["tls.crt", "tls.key"] {
        let tmp = dir.join(format!("{f}.link"));
        symlink(format!("..data/{f}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(f)).unwrap();
    }
    assert!(webhook.served_subject().contains("CN = first"), "{}", webhook.served_subject());

    let (cert, key) = leaf(&dir, "rotated");
    generation("..2026_12_02_rotated", &cert, &key);
    swap("..2026_12_02_rotated");
    let rotated =
        wait::until(Duration::from_secs(10), async || webhook.served_subject().contains("CN = rotated")).await;
    assert!(rotated.is_some(), "still serving {:?} 10 s after ..data moved", webhook.served_subject());

    // A certificate with another certificate's key: it does not load.
    let (other, _) = leaf(&dir, "mismatched");
    generation("..2026_12_02_broken", &other, &key);
    swap("..2026_12_02_broken");
    // The files are looked at when a client connects.
    let warned = wait::until(Duration::from_secs(10), async || {
        let _ = webhook.served_subject();
        webhook.process.stderr_text().contains("does not load; keeping the previous one")
    })
    .await;
    assert!(warned.is_some(), "no warning for the broken pair\n{}", webhook.process.output());
    assert!(webhook.served_subject().contains("CN = rotated"), "{}", webhook.served_subject());
    assert_eq!(webhook.get("/ready").await.map(|r| r.0), Some(200));
    webhook.process.assert_running();
}
