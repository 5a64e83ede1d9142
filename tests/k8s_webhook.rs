//! The admission webhook as the API server meets it: the real binary over
//! TLS with a certificate made here (openssl), real `admission.k8s.io/v1`
//! AdmissionReview bodies (the harness's client trusting the test CA), the JSONPatch
//! applied with the `json-patch` crate and compared with what `sidetrace
//! inject` makes of the same pod; malformed reviews get 400; a pod it
//! cannot inject is allowed unchanged with a warning; a certificate
//! replaced on disk is served within a bounded wait.

mod support;

#[path = "k8s/common.rs"]
mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
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
        let (cert, key) = leaf(dir, "first");
        std::fs::copy(&cert, dir.join("tls.crt")).unwrap();
        std::fs::copy(&key, dir.join("tls.key")).unwrap();
        let port = apps::refusing().port();
        let mut cmd = support::proxy::command(&["webhook", "--listen", &format!("127.0.0.1:{port}")]);
        cmd.args(["--cert-check-interval", "200ms", "--image", TEST_IMAGE, "--log", "warn"]);
        cmd.arg("--tls-cert").arg(dir.join("tls.crt")).arg("--tls-key").arg(dir.join("tls.key"));
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

fn admission_review(uid: &str, pod: &Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
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
    let webhook = Webhook::start(&dir).await;
    for stem in ["pod", "multi-container", "generated-pod", "flags"] {
        let (_, input, _) = golden_inputs().into_iter().find(|(s, _, _)| s == stem).unwrap();
        let pod: Value = serde_norway::from_slice(&std::fs::read(&input).unwrap()).unwrap();
        let (body, status) = webhook.review(&admission_review(&format!("uid-{stem}"), &pod)).await;
        assert_eq!(status, 200, "{stem}: {body}");
        let r = response(&body);
        assert_eq!(r["uid"], format!("uid-{stem}"));
        assert_eq!(r["patchType"], "JSONPatch", "{stem}: {r}");
        let patch = base64::engine::general_purpose::STANDARD.decode(r["patch"].as_str().unwrap()).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &patch).unwrap();

        let out = inject(&[], &std::fs::read(&input).unwrap());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let injected: Value = serde_norway::from_slice(&out.stdout).unwrap();
        assert_eq!(patched, injected, "{stem}: the webhook's pod differs from sidetrace inject's");
    }
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
