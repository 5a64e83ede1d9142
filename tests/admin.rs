//! The admin server as operators use it: probes, the configuration (with
//! secrets left out), and clear answers to bad requests.

mod support;

use support::{Client, TestProxy, apps};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_config_and_bad_requests() {
    let app = apps::echo().await;
    let flags = [
        "--otlp-endpoint",
        "http://127.0.0.1:1",
        "--otlp-header",
        "authorization=Bearer s3cr3t",
        "--route",
        "/users/{id}",
    ];
    let proxy = TestProxy::to(app.addr).service("admin-test").flags(&flags).start().await;
    let admin = proxy.admin_url();
    let client = Client::http1();
    assert_eq!(client.get(&format!("{admin}/live")).send().await.status, 200);
    assert_eq!(client.get(&format!("{admin}/ready")).send().await.status, 200);

    let r = client.get(&format!("{admin}/api/config")).send().await;
    assert_eq!(r.status, 200);
    let body = r.text();
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["app"], app.addr.to_string());
    assert_eq!(config["resource"]["service.name"], "admin-test");
    assert_eq!(config["routes"][0], "/users/{id}");
    assert_eq!(config["export"]["otlp"]["header_names"][0], "authorization");
    assert!(!body.contains("s3cr3t"), "an export header value leaked: {body}");

    for (path, want) in [
        ("/api/traces?limit=0", 400),
        ("/api/traces?limit=ten", 400),
        ("/api/traces/nothex", 400),
        ("/api/traces/00000000000000000000000000000000", 400),
        ("/api/traces/4bf92f3577b34da6a3ce929d0e0e4736", 404),
        ("/nope", 404),
    ] {
        let r = client.get(&format!("{admin}{path}")).send().await;
        assert_eq!(r.status, want, "{path}: {}", r.text());
        assert!(!r.body.is_empty(), "{path}: an error says why");
    }
    let post = client.post(&format!("{admin}/api/traces")).send().await;
    assert_eq!(post.status, 405);
}
