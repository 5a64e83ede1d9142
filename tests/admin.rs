//! The admin server as operators use it: probes, the configuration (with
//! secrets left out), and clear answers to bad requests.

mod support;

use sidetrace::config::Config;
use support::*;

fn get(url: &str) -> (String, String) {
    let out = curl(&["-s", "-w", "\n%{http_code}", url]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_config_and_bad_requests() {
    let app = echo_app().await;
    let flags = [
        "--otlp-endpoint",
        "http://127.0.0.1:1",
        "--otlp-header",
        "authorization=Bearer s3cr3t",
        "--route",
        "/users/{id}",
    ];
    let proxy = proxy_with(Config::local_with(app.addr, "admin-test", &flags)).await;
    let admin = format!("http://{}", proxy.admin.unwrap());
    assert_eq!(get(&format!("{admin}/live")).0, "200");
    assert_eq!(get(&format!("{admin}/ready")).0, "200");

    let (code, body) = get(&format!("{admin}/api/config"));
    assert_eq!(code, "200");
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["app"], app.addr.to_string());
    assert_eq!(config["resource"]["service.name"], "admin-test");
    assert_eq!(config["routes"][0], "/users/{id}");
    assert_eq!(config["export"]["otlp"]["header_names"][0], "authorization");
    assert!(!body.contains("s3cr3t"), "an export header value leaked: {body}");

    for (path, want) in [
        ("/api/traces?limit=0", "400"),
        ("/api/traces?limit=ten", "400"),
        ("/api/traces/nothex", "400"),
        ("/api/traces/00000000000000000000000000000000", "400"),
        ("/api/traces/4bf92f3577b34da6a3ce929d0e0e4736", "404"),
        ("/nope", "404"),
    ] {
        let (code, body) = get(&format!("{admin}{path}"));
        assert_eq!(code, want, "{path}: {body}");
        assert!(!body.is_empty(), "{path}: an error says why");
    }
    let post = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", &format!("{admin}/api/traces")]);
    assert_eq!(String::from_utf8_lossy(&post.stdout), "405");
}
