//! Transparent mode outbound, end to end, with the real `sidetrace` binary
//! and a real REDIRECT rule: the app in the pod's network namespace calls a
//! server in another namespace; a nat OUTPUT REDIRECT, which spares the
//! proxy's own uid (as Istio does), sends the connection to the proxy's
//! outbound listener, which forwards it to the original destination with a
//! `traceparent` and records a CLIENT span.
//!
//! The test builds its own namespaces (support::netns) and tears them down
//! on drop. It needs root, `ip netns`, iptables and `setpriv`: without them
//! it fails under CI and skips with a printed line elsewhere.

mod support;

use serde_json::Value;
use support::TestProxy;
use support::netns::{self, World};
use support::otlp::{int_attr, string_attr};

/// The test's own /30: the client end (where the server runs) and the pod
/// end of the veth pair.
const CLIENT_IP: &str = "10.213.0.1";
const POD_IP: &str = "10.213.0.2";
const ADMIN: &str = "127.0.0.1:15020";
/// The server the app calls, in the client namespace.
const SERVER_PORT: u16 = 9090;
const OUTBOUND_PORT: u16 = 15001;
/// The proxy's own uid; the OUTPUT rule spares its connections, so they
/// leave for the original destination and do not loop.
const PROXY_UID: &str = "1337";
const SERVER_BODY: &str = "hello from a server outside the pod\n";

#[test]
fn redirected_outbound_request_reaches_the_server_and_is_traced() {
    let test = "the transparent outbound test";
    if let Err(why) = netns::require(&["iptables", "sysctl", "setpriv", "python3"]) {
        return netns::unavailable(test, &why);
    }
    let mut w = World::new("o");
    let rule = format!(
        "-A OUTPUT -p tcp -d {CLIENT_IP} --dport {SERVER_PORT} -m owner ! --uid-owner {PROXY_UID} \
         -j REDIRECT --to-ports {OUTBOUND_PORT}"
    );
    let (client, pod) = match w.client_and_pod(&format!("{CLIENT_IP}/30"), &format!("{POD_IP}/30"), &[rule]) {
        Ok(names) => names,
        Err(why) => return netns::unavailable(test, &why),
    };

    // The server the app calls, in the other namespace: it records the
    // `traceparent` of every request it receives.
    let received = w.dir.join("received.jsonl");
    let server = w.recording_service(&client, CLIENT_IP, SERVER_PORT, SERVER_BODY, &received);

    // The proxy under a uid of its own, which the OUTPUT rule spares.
    let outbound = format!("127.0.0.1:{OUTBOUND_PORT}");
    let (reuid, regid) = (format!("--reuid={PROXY_UID}"), format!("--regid={PROXY_UID}"));
    let mut proxy = TestProxy::builder()
        .service("transparent-outbound-test")
        .flags(&["--inbound", "off", "--outbound", &outbound, "--admin", ADMIN, "--access-log", "json"])
        .wrapped(&["ip", "netns", "exec", &pod, "setpriv", &reuid, &regid, "--clear-groups", "--pdeathsig", "KILL"])
        .spawn();

    // The app (this test's thread in the pod's namespace, root, so not the
    // proxy's uid) calls the server directly, no proxy configured; only the
    // OUTPUT rule brings it to the proxy.
    let path = "/outbound/hello.txt";
    let target = format!("http://{CLIENT_IP}:{SERVER_PORT}{path}");
    let r = netns::get(&pod, &target).unwrap_or_else(|e| panic!("GET {target} from {pod}: {e}\n{}", proxy.output()));
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, SERVER_BODY), "the server's own response");

    let span = netns::wait_for_span(&mut proxy, &pod, path);
    assert_eq!(span["kind"], 3, "a CLIENT span: {span}");
    assert_eq!(int_attr(&span, "http.response.status_code"), Some(200), "{span}");
    assert_eq!(string_attr(&span, "http.request.method"), Some("GET"), "{span}");
    assert_eq!(int_attr(&span, "server.port"), Some(i64::from(SERVER_PORT)), "{span}");
    assert_eq!(
        string_attr(&span, "network.peer.address"),
        Some(CLIENT_IP),
        "the original destination, not the proxy's listener: {span}"
    );
    let span_id = span["spanId"].as_str().unwrap_or_else(|| panic!("no spanId: {span}"));
    let trace_id = span["traceId"].as_str().unwrap_or_else(|| panic!("no traceId: {span}"));

    // The request as the server saw it: the server records it before it
    // answers, so it is there once the response is.
    let seen = server.find(path).unwrap_or_else(|| panic!("the server never saw {path}{}", w.logs()));
    let traceparents: Vec<&str> =
        seen["traceparent"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let [traceparent] = traceparents[..] else {
        panic!("expected exactly one traceparent at the server: {seen}");
    };
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "version-traceid-parentid-flags: {traceparent}");
    assert_eq!(fields[1], trace_id, "the server's request is in the span's trace: {traceparent} vs {span}");
    assert_eq!(fields[2], span_id, "the server's parent is the recorded CLIENT span: {traceparent} vs {span}");

    let line = proxy.wait_for_access_log(path);
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["direction"], "outbound", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["upstream"], format!("{CLIENT_IP}:{SERVER_PORT}"), "the original destination: {line}");
    let client_field = line["client"].as_str().unwrap_or_default();
    assert!(client_field.starts_with(&format!("{POD_IP}:")), "the app's own address: {line}");
    assert_eq!(line["span_id"], span["spanId"], "the log line and the span describe the same request");
}
