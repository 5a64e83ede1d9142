//! Transparent mode inbound, end to end, with the real `sidetrace` binary
//! and real REDIRECT rules: a client in one network namespace calls the
//! app's own port in another (the pod); a PREROUTING REDIRECT sends the
//! connection to the proxy, which learns the original port from
//! `SO_ORIGINAL_DST`, forwards to the app and records a SERVER span.
//!
//! Over IPv4 (the veth pair in 10.213.0.0/30, iptables) and over IPv6
//! (fd00:213::/64, ip6tables and `IP6T_SO_ORIGINAL_DST`, an app listening
//! on `[::1]`). Each test builds its own namespaces (support::netns) and
//! tears them down on drop. They need root, `ip netns` and iptables: without
//! them they fail under CI and skip with a printed line elsewhere.

mod support;

use serde_json::Value;
use support::TestProxy;
use support::netns::{self, World};
use support::otlp::{int_attr, string_attr};

const APP_PORT: u16 = 8080;
const INBOUND_PORT: u16 = 15006;
const ADMIN: &str = "127.0.0.1:15020";
const BODY: &str = "hello from the app behind a transparent sidetrace\n";

/// One family's addresses: the client end and the pod end of the veth
/// pair, each test's own (in namespaces of its own, so both tests can use
/// the same addresses and ports at once), and where the app listens.
struct Family {
    tag: &'static str,
    client: &'static str,
    pod: &'static str,
    len: &'static str,
    /// The app's bind address, and how a URL writes the loopback address.
    app_bind: &'static str,
    loopback: &'static str,
    inbound: &'static str,
}

const V4: Family = Family {
    tag: "4",
    client: "10.213.0.1",
    pod: "10.213.0.2",
    len: "30",
    app_bind: "0.0.0.0",
    loopback: "127.0.0.1",
    inbound: "0.0.0.0",
};

const V6: Family = Family {
    tag: "6",
    client: "fd00:213::1",
    pod: "fd00:213::2",
    len: "64",
    app_bind: "::1",
    loopback: "[::1]",
    inbound: "[::]",
};

fn url(ip: &str, port: u16, path: &str) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("http://[{ip}]:{port}{path}")
    } else {
        format!("http://{ip}:{port}{path}")
    }
}

/// The client calls the app's own port; only the REDIRECT rule brings the
/// connection to the proxy. Checks that the app's file came back byte for
/// byte, that the proxy recorded a SERVER span from the client's own
/// address (not a NAT, loopback or IPv4-mapped one) and logged the request
/// as sent to the app's address with the original port. Returns the span.
fn redirected_inbound(f: &Family) -> Option<Value> {
    let test = format!("the transparent inbound IPv{} test", f.tag);
    let iptables = if f.tag == "6" { "ip6tables" } else { "iptables" };
    if let Err(why) = netns::require(&[iptables, "sysctl", "python3"]) {
        netns::unavailable(&test, &why);
        return None;
    }
    let mut w = World::new(&format!("i{}", f.tag));
    let rule = format!("-A PREROUTING -p tcp --dport {APP_PORT} -j REDIRECT --to-ports {INBOUND_PORT}");
    let cidr = |ip: &str| format!("{ip}/{}", f.len);
    let (client, pod) = match w.client_and_pod(&cidr(f.client), &cidr(f.pod), &[rule]) {
        Ok(names) => names,
        Err(why) => {
            netns::unavailable(&test, &why);
            return None;
        }
    };

    // The app: a plain file server on its usual port. Local traffic skips
    // PREROUTING, so the readiness check reaches it directly.
    let files = w.dir.join("files");
    std::fs::create_dir_all(&files).expect("create files/");
    std::fs::write(files.join("hello.txt"), BODY).expect("write hello.txt");
    let ready = url(f.loopback, APP_PORT, "/hello.txt");
    w.file_server(&pod, f.app_bind, APP_PORT, &files, &ready, BODY);

    // `--app` names a port nothing listens on: the proxy uses it only when
    // a connection has no original destination, so the request reaches the
    // app only if SO_ORIGINAL_DST gave the proxy the original port.
    let app = format!("{}:{}", f.loopback, APP_PORT + 1);
    let inbound = format!("{}:{INBOUND_PORT}", f.inbound);
    let service = format!("transparent-ipv{}-test", f.tag);
    let mut proxy = TestProxy::builder()
        .service(&service)
        .flags(&["--inbound", &inbound, "--app", &app, "--outbound", "off", "--admin", ADMIN])
        .flags(&["--access-log", "json"])
        .wrapped(&["ip", "netns", "exec", &pod])
        .spawn();

    let target = url(f.pod, APP_PORT, "/hello.txt");
    let r = netns::get(&client, &target).unwrap_or_else(|e| panic!("GET {target} from {client}: {e}{}", w.logs()));
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, BODY), "the app's file, byte for byte");

    let span = netns::wait_for_span(&mut proxy, &pod, "/hello.txt");
    assert_eq!(span["kind"], 2, "a SERVER span: {span}");
    assert_eq!(int_attr(&span, "http.response.status_code"), Some(200), "{span}");
    assert_eq!(string_attr(&span, "client.address"), Some(f.client), "the client's own address: {span}");
    assert_eq!(string_attr(&span, "http.request.method"), Some("GET"), "{span}");
    assert_eq!(int_attr(&span, "server.port"), Some(i64::from(APP_PORT)), "{span}");

    let line = proxy.wait_for_access_log("/hello.txt");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["direction"], "inbound", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["upstream"], format!("{}:{APP_PORT}", f.loopback), "the original port: {line}");
    let client_field = line["client"].as_str().unwrap_or_default();
    let client_prefix = if f.client.contains(':') { format!("[{}]:", f.client) } else { format!("{}:", f.client) };
    assert!(client_field.starts_with(&client_prefix), "{line}");
    assert_eq!(line["trace_id"], span["traceId"], "the log line and the span describe the same request");
    Some(span)
}

#[test]
fn redirected_inbound_request_reaches_the_app_and_is_traced() {
    redirected_inbound(&V4);
}

#[test]
fn redirected_inbound_ipv6_request_reaches_the_app_and_is_traced() {
    let Some(span) = redirected_inbound(&V6) else { return };
    assert_eq!(string_attr(&span, "server.address"), Some(V6.pod), "from the Host header: {span}");
}
