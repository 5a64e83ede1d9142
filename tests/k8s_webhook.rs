//! The admission webhook as the API server meets it: the real binary over
//! TLS with a certificate made here (openssl), real `admission.k8s.io/v1`
//! AdmissionReview bodies (curl trusting the test CA), the JSONPatch
//! applied with the `json-patch` crate and compared with what `sidetrace
//! inject` makes of the same pod; malformed reviews get 400; a pod it
//! cannot inject is allowed unchanged with a warning; a certificate
//! replaced on disk is served within a bounded wait.

#[path = "k8s/common.rs"]
mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and a leaf for 127.0.0.1 named `cn` signed by it: (cert, key).
fn leaf(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let p = |n: String| dir.join(n);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    if !ca.exists() {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sidetrace webhook test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
        ]);
    }
    let (cert, key, csr, ext) =
        (p(format!("{cn}.pem")), p(format!("{cn}.key")), p(format!("{cn}.csr")), p(format!("{cn}.ext")));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:sidetrace-webhook.sidetrace.svc\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&cert),
    ]);
    (cert, key)
}

struct Webhook {
    child: Child,
    port: u16,
    ca: PathBuf,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhook {
    fn start(dir: &Path) -> Webhook {
        let (cert, key) = leaf(dir, "first");
        std::fs::copy(&cert, dir.join("tls.crt")).unwrap();
        std::fs::copy(&key, dir.join("tls.key")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_sidetrace"))
            .args(["webhook", "--listen", &format!("127.0.0.1:{port}"), "--cert-check-interval", "200ms"])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(["--image", TEST_IMAGE, "--log", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let w = Webhook { child, port, ca: dir.join("ca.pem") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while w.curl(&["/live"]).1 != 200 {
            assert!(Instant::now() < deadline, "the webhook did not answer /live over TLS");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(w.curl(&["/ready"]).1, 200);
        w
    }

    /// curl trusting only the test CA: (body, status).
    fn curl(&self, args: &[&str]) -> (String, u16) {
        let (path, rest) = args.split_first().unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert", self.ca.to_str().unwrap(), "-w", "\n%{http_code}"])
            .args(rest)
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (body.to_string(), code.trim().parse().unwrap_or(0))
    }

    fn review(&self, body: &str) -> (String, u16) {
        let file = std::env::temp_dir().join(format!("sidetrace-review-{}-{}.json", std::process::id(), fastrand()));
        std::fs::write(&file, body).unwrap();
        let data = format!("@{}", file.display());
        let r = self.curl(&["/mutate", "-H", "Content-Type: application/json", "--data-binary", &data]);
        let _ = std::fs::remove_file(file);
        r
    }

    /// The subject of the certificate the server presents now.
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

fn fastrand() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sidetrace-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

#[test]
fn the_webhook_patch_gives_the_same_pod_as_inject() {
    let dir = tempdir("webhook-same");
    let webhook = Webhook::start(&dir);
    for stem in ["pod", "multi-container", "generated-pod", "flags"] {
        let (_, input, _) = golden_inputs().into_iter().find(|(s, _, _)| s == stem).unwrap();
        let pod: Value = serde_norway::from_slice(&std::fs::read(&input).unwrap()).unwrap();
        let (body, status) = webhook.review(&admission_review(&format!("uid-{stem}"), &pod));
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

#[test]
fn malformed_reviews_get_400_and_uninjectable_pods_are_allowed_with_a_warning() {
    let dir = tempdir("webhook-bad");
    let webhook = Webhook::start(&dir);
    for (body, says) in [
        ("not json at all", "not JSON"),
        (r#"{"apiVersion":"v1","kind":"Pod"}"#, "AdmissionReview"),
        (r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "no request"),
        (r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod"}}}"#, "uid"),
    ] {
        let (answer, status) = webhook.review(body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains(says), "{body}: {answer:?} does not say {says:?}");
    }

    let (_, input, _) = golden_inputs().into_iter().find(|(s, _, _)| s == "host-network").unwrap();
    let daemonset: Value = serde_norway::from_slice(&std::fs::read(&input).unwrap()).unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": daemonset["spec"]["template"]["metadata"], "spec": daemonset["spec"]["template"]["spec"]});
    let (body, status) = webhook.review(&admission_review("uid-host", &pod));
    assert_eq!(status, 200, "{body}");
    let r = response(&body);
    assert!(r.get("patch").is_none(), "a hostNetwork pod was patched: {r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("hostNetwork")), "{r}");

    // A pod whose containers are not a list cannot be read: still allowed.
    let broken = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": "nope"}});
    let (body, status) = webhook.review(&admission_review("uid-broken", &broken));
    assert_eq!(status, 200, "{body}");
    let r = response(&body);
    assert!(r.get("patch").is_none() && r["warnings"].as_array().is_some_and(|w| !w.is_empty()), "{r}");
}

#[test]
fn a_replaced_certificate_is_served_within_a_bounded_wait() {
    let dir = tempdir("webhook-reload");
    let webhook = Webhook::start(&dir);
    assert!(webhook.served_subject().contains("CN = first"), "{}", webhook.served_subject());
    // cert-manager's renewal lands in the same files: overwrite in place.
    let (cert, key) = leaf(&dir, "rotated");
    std::fs::write(dir.join("tls.key"), std::fs::read(key).unwrap()).unwrap();
    std::fs::write(dir.join("tls.crt"), std::fs::read(cert).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let subject = webhook.served_subject();
        if subject.contains("CN = rotated") {
            break;
        }
        assert!(Instant::now() < deadline, "still serving {subject:?} 10 s after the files changed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // And it still answers reviews with the new certificate.
    assert_eq!(webhook.curl(&["/ready"]).1, 200);
}
