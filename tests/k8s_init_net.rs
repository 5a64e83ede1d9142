//! `sidetrace init-net` in real network namespaces, with the real binary
//! (issue 10, must-show 4).
//!
//! The rules: in a namespace holding someone else's table, the installed
//! ruleset is exactly what `--dry-run` printed (as `nft list` prints it),
//! running twice gives the same ruleset as once, a run without
//! CAP_NET_ADMIN fails with one line and exit 1 and changes nothing, and
//! `--cleanup` leaves the ruleset exactly as it was before.
//!
//! The traffic, over IPv4 and over IPv6: three namespaces — a client, the
//! pod, a service — joined by two veth pairs. init-net installs the rules in
//! the pod; the proxy runs there as the proxy uid, beside an app that knows
//! nothing of it. A client calling the app's own port is traced as a SERVER
//! span; the app's call to the service (no proxy configured) as a CLIENT
//! span; the proxy's own upstream connection leaves for the service instead
//! of being redirected back into the proxy (the service sees the pod's
//! address and sidetrace's `traceparent`, and nothing answers 508); the
//! admin port and the skipped ports are reached directly, untraced.
//!
//! `nft` (Debian's nftables) only inspects; init-net itself needs no binary.
//! Needs root and network namespaces: without them the tests fail under
//! `CI=true` and skip with a printed line elsewhere.

mod support;

use serde_json::Value;
use std::process::Output;
use support::TestProxy;
use support::netns::{self, End, Record, World, require, text, unavailable};
use support::otlp::{int_attr, string_attr};
use support::proxy::sidetrace;

const PROXY_UID: &str = "2102";
const APP_PORT: u16 = 8080;
/// Inbound, skipped: reaches a second app directly.
const SKIPPED_APP_PORT: u16 = 8081;
const SERVICE_PORT: u16 = 9090;
/// Outbound, skipped: reaches the service directly.
const SKIPPED_SERVICE_PORT: u16 = 9091;
const ADMIN_PORT: u16 = 15020;
const APP_BODY: &str = "hello from the app in the pod\n";
const SERVICE_BODY: &str = "hello from the service outside the pod\n";

/// The flags an injector would pass, with one of each kind of exemption.
const INIT_FLAGS: &[&str] = &[
    "--proxy-uid",
    PROXY_UID,
    "--inbound-port",
    "15006",
    "--outbound-port",
    "15001",
    "--admin-port",
    "15020",
    "--skip-inbound-ports",
    "8081",
    "--skip-outbound-ports",
    "9091,6000-6010",
    "--skip-outbound-cidrs",
    "192.0.2.0/24,2001:db8::/32,198.51.100.7",
];

/// The addresses of one family: client ↔ pod on one veth pair, pod ↔
/// service on the other. Test-only prefixes, in namespaces of our own.
struct Family {
    tag: &'static str,
    client: &'static str,
    pod_client_side: &'static str,
    pod_service_side: &'static str,
    service: &'static str,
    len: &'static str,
}

const V4: Family = Family {
    tag: "4",
    client: "10.214.0.1",
    pod_client_side: "10.214.0.2",
    pod_service_side: "10.214.0.5",
    service: "10.214.0.6",
    len: "30",
};

const V6: Family = Family {
    tag: "6",
    client: "fd00:214::1",
    pod_client_side: "fd00:214::2",
    pod_service_side: "fd00:214:1::1",
    service: "fd00:214:1::2",
    len: "64",
};

fn url(ip: &str, port: u16, path: &str) -> String {
    if ip.contains(':') { format!("http://[{ip}]:{port}{path}") } else { format!("http://{ip}:{port}{path}") }
}

/// `setpriv` words that drop to the proxy uid with no capabilities at all.
const UNPRIVILEGED: &[&str] =
    &["setpriv", "--reuid", PROXY_UID, "--regid", PROXY_UID, "--clear-groups", "--inh-caps=-all"];

/// `ip netns exec NS sidetrace init-net FLAGS…`, optionally as the proxy
/// uid with no capabilities at all.
fn init_net(ns: &str, unprivileged: bool, flags: &[&str]) -> Output {
    let mut wrapper = vec!["ip", "netns", "exec", ns];
    if unprivileged {
        wrapper.extend(UNPRIVILEGED);
    }
    let args: Vec<&str> = ["init-net"].into_iter().chain(flags.iter().copied()).collect();
    sidetrace(&args).wrapped(&wrapper).output()
}

fn ruleset(w: &World, ns: &str) -> String {
    text(&w.must(ns, &["nft", "list", "ruleset"]))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rules_match_the_dry_run_replace_themselves_and_clean_up_to_what_was_there() {
    if let Err(why) = require(&["nft", "setpriv"]) {
        return unavailable("the init-net rules test", &why);
    }
    let mut w = World::new("r");
    let pod = match w.namespace("pod") {
        Ok(ns) => ns,
        Err(why) => return unavailable("the init-net rules test", &why),
    };

    // Someone else's rules, which nothing of ours may touch.
    let foreign = "table ip other {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n";
    let file = w.dir.join("other.nft");
    std::fs::write(&file, foreign).expect("write other.nft");
    w.must(&pod, &["nft", "-f", &file.to_string_lossy()]);
    let before = ruleset(&w, &pod);
    assert_eq!(before, foreign);

    // The dry run needs no privilege.
    let dry_flags: Vec<&str> = INIT_FLAGS.iter().copied().chain(["--dry-run"]).collect();
    let dry = init_net(&pod, true, &dry_flags);
    assert!(dry.status.success(), "--dry-run as an unprivileged user: {}", stderr(&dry));
    let printed = text(&dry);
    assert_eq!(ruleset(&w, &pod), before, "--dry-run changed the ruleset");

    let first = init_net(&pod, false, INIT_FLAGS);
    assert!(first.status.success(), "init-net: {}", stderr(&first));
    let installed = text(&w.must(&pod, &["nft", "list", "table", "inet", "sidetrace"]));
    assert_eq!(installed, printed, "the kernel's listing differs from --dry-run");
    let once = ruleset(&w, &pod);
    assert!(once.starts_with(foreign), "the other table is untouched:\n{once}");

    let second = init_net(&pod, false, INIT_FLAGS);
    assert!(second.status.success(), "init-net again: {}", stderr(&second));
    assert_eq!(ruleset(&w, &pod), once, "running twice must give the ruleset of running once");

    // Different options replace the table as a whole.
    let fewer = init_net(&pod, false, &["--skip-outbound-ports", "5432"]);
    assert!(fewer.status.success(), "init-net with other options: {}", stderr(&fewer));
    let replaced = text(&w.must(&pod, &["nft", "list", "table", "inet", "sidetrace"]));
    assert!(replaced.contains("tcp dport 5432 return") && !replaced.contains("9091"), "{replaced}");

    let denied = init_net(&pod, true, INIT_FLAGS);
    assert_eq!(denied.status.code(), Some(1), "without CAP_NET_ADMIN: {}", stderr(&denied));
    let line = stderr(&denied);
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    assert!(line.contains("CAP_NET_ADMIN"), "{line}");
    assert_eq!(text(&w.must(&pod, &["nft", "list", "table", "inet", "sidetrace"])), replaced);

    let dry_cleanup = init_net(&pod, true, &["--cleanup", "--dry-run"]);
    assert_eq!(text(&dry_cleanup), "delete table inet sidetrace\n", "{}", stderr(&dry_cleanup));

    for run in ["cleanup", "cleanup again"] {
        let out = init_net(&pod, false, &["--cleanup"]);
        assert!(out.status.success(), "{run}: {}", stderr(&out));
        assert_eq!(ruleset(&w, &pod), before, "after {run}, the ruleset must be as before");
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2_and_flags_come_from_the_environment() {
    for (args, env) in [
        (&["--skip-outbound-cidrs", "10.0.0.0/33"][..], &[][..]),
        (&["--inbound-port", "15001"], &[]),
        (&["--proxy-uid", "0"], &[]),
        (&[], &[("SIDETRACE_INIT_SKIP_INBOUND_PORTS", "22,http")]),
    ] {
        let argv: Vec<&str> = ["init-net"].into_iter().chain(args.iter().copied()).collect();
        let mut run = sidetrace(&argv);
        for (k, v) in env {
            run = run.env(k, v);
        }
        let out = run.output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?} {env:?}: {err:?}");
        assert!(out.stdout.is_empty(), "nothing printed on bad input");
    }
    let out = sidetrace(&["init-net"])
        .env("SIDETRACE_INIT_DRY_RUN", "1")
        .env("SIDETRACE_INIT_SKIP_OUTBOUND_PORTS", "5432")
        .env("SIDETRACE_INIT_PROXY_UID", "1337")
        .output();
    let printed = text(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(printed.contains("tcp dport 5432 return") && printed.contains("meta skuid 1337 return"), "{printed}");
}

#[test]
fn ipv4_traffic_is_redirected_traced_and_never_loops() {
    traffic(&V4);
}

#[test]
fn ipv6_traffic_is_redirected_traced_and_never_loops() {
    traffic(&V6);
}

/// The pod's world: client, pod and service namespaces, addressed in `f`,
/// the proxy in the pod (once started) and what the service recorded.
struct Pod {
    proxy: Option<TestProxy>,
    w: World,
    client: String,
    pod: String,
    svc: String,
    service: Option<Record>,
}

fn traffic(f: &Family) {
    let test = format!("the init-net IPv{} traffic test", f.tag);
    if let Err(why) = require(&["nft", "setpriv", "python3"]) {
        return unavailable(&test, &why);
    }
    let mut w = World::new(f.tag);
    let names = ["cli", "pod", "svc"].map(|n| w.namespace(n));
    let [client, pod, svc] = match names {
        [Ok(c), Ok(p), Ok(s)] => [c, p, s],
        [Err(why), ..] | [_, Err(why), _] | [.., Err(why)] => return unavailable(&test, &why),
    };
    let cidr = |ip: &str| format!("{ip}/{}", f.len);
    w.link(End { ns: &client, addrs: &[&cidr(f.client)] }, End { ns: &pod, addrs: &[&cidr(f.pod_client_side)] });
    w.link(End { ns: &pod, addrs: &[&cidr(f.pod_service_side)] }, End { ns: &svc, addrs: &[&cidr(f.service)] });
    let mut p = Pod { proxy: None, w, client, pod, svc, service: None };
    let before = ruleset(&p.w, &p.pod);

    let out = init_net(&p.pod, false, INIT_FLAGS);
    assert!(out.status.success(), "init-net: {}", stderr(&out));
    start_peers(&mut p, f);
    start_proxy(&mut p, &url(f.service, SERVICE_PORT, ""));

    // Inbound: the client calls the app's own port.
    let hello = fetch(&p, &p.client, &url(f.pod_client_side, APP_PORT, "/hello"));
    assert_eq!(hello, APP_BODY);
    let server = span(&mut p, "/hello");
    assert_eq!(server["kind"], 2, "a SERVER span: {server}");
    assert_eq!(string_attr(&server, "client.address"), Some(f.client), "{server}");
    assert_eq!(int_attr(&server, "server.port"), Some(i64::from(APP_PORT)), "{server}");

    // Outbound: the app calls the service; only the rules bring the call to
    // the proxy, and only the uid exemption lets the proxy's own connection out.
    let call = format!("/call?url={}", url(f.service, SERVICE_PORT, "/svc"));
    assert_eq!(fetch(&p, &p.client, &url(f.pod_client_side, APP_PORT, &call)), SERVICE_BODY);
    let client_span = span(&mut p, "/svc");
    assert_eq!(client_span["kind"], 3, "a CLIENT span: {client_span}");
    assert_eq!(int_attr(&client_span, "http.response.status_code"), Some(200), "{client_span}");
    assert_eq!(int_attr(&client_span, "server.port"), Some(i64::from(SERVICE_PORT)), "{client_span}");
    assert_eq!(string_attr(&client_span, "network.peer.address"), Some(f.service), "{client_span}");
    let seen = service_saw(&p, "/svc");
    assert_eq!(seen["client"], f.pod_service_side, "the proxy connected straight out from the pod: {seen}");
    let parents: Vec<&str> = seen["traceparent"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let [parent] = parents[..] else { panic!("one traceparent at the service: {seen}") };
    assert_eq!(parent.split('-').nth(2), client_span["spanId"].as_str(), "the service's parent is the CLIENT span");

    // An app that names the proxy itself (HTTP_PROXY) reaches it through
    // `lo`, unredirected, on the same dual-stack listener.
    let explicit = format!("/call?url={}&proxy=http://127.0.0.1:15001", url(f.service, SERVICE_PORT, "/explicit"));
    assert_eq!(fetch(&p, &p.client, &url(f.pod_client_side, APP_PORT, &explicit)), SERVICE_BODY);
    let explicit_span = span(&mut p, "/explicit");
    assert_eq!(explicit_span["kind"], 3, "a CLIENT span: {explicit_span}");
    assert_eq!(int_attr(&explicit_span, "http.response.status_code"), Some(200), "{explicit_span}");

    // Exempt: the admin port and the skipped ports are reached directly.
    let ready = fetch(&p, &p.client, &url(f.pod_client_side, ADMIN_PORT, "/ready"));
    assert_eq!(ready.trim(), "ready", "the admin port is not redirected");
    // What shows traffic stays inside the pod: not on the admin port, and
    // its own port listens on loopback only.
    // its own port listens on loopback only; a redirect to it, or to the
    // outbound listener (an open relay), is refused, not forwarded.
    let status = |port: u16, path: &str| netns::status(&p.client, &url(f.pod_client_side, port, path));
    assert_eq!(status(ADMIN_PORT, "/api/traces"), Ok(404), "the trace API answered on the admin port");
    assert_eq!(status(15021, "/api/stats"), Ok(403), "the trace API answered from outside the pod");
    assert_eq!(status(15001, "/relay"), Ok(403), "the outbound listener answered from outside the pod");
    assert_eq!(fetch(&p, &p.client, &url(f.pod_client_side, SKIPPED_APP_PORT, "/skipped-in")), APP_BODY);
    let skipped_call = format!("/call?url={}", url(f.service, SKIPPED_SERVICE_PORT, "/skipped-out"));
    assert_eq!(fetch(&p, &p.client, &url(f.pod_client_side, APP_PORT, &skipped_call)), SERVICE_BODY);
    let seen = service_saw(&p, "/skipped-out");
    assert_eq!(seen["traceparent"], serde_json::json!([]), "a skipped port never passes the proxy: {seen}");

    // A last traced request; once its span is there, everything before it
    // has been recorded too, so what is missing was never traced.
    fetch(&p, &p.client, &url(f.pod_client_side, APP_PORT, "/last"));
    span(&mut p, "/last");
    let spans = spans(&p);
    // The admin port inbound (the client's /ready) and loopback outbound
    // (the test's own /ready and /api/traces calls inside the pod) pass
    // untouched: a redirect would have made spans of them.
    for path in ["/skipped-in", "/skipped-out", "/ready", "/api/traces"] {
        assert!(!spans.iter().any(|s| string_attr(s, "url.path") == Some(path)), "{path} was traced: {spans:?}");
    }
    let looped: Vec<&Value> = spans.iter().filter(|s| int_attr(s, "http.response.status_code") == Some(508)).collect();
    assert!(looped.is_empty(), "the proxy looped into itself: {looped:?}");

    // The proxy's own export leaves the pod directly (the uid exemption):
    // it is never traced, stitched into the app's trace, or given context.
    let export = support::wait::until_sync(std::time::Duration::from_secs(10), || {
        p.proxy.as_mut().expect("the proxy").process().assert_running();
        p.service.as_ref().expect("the service").find("/v1/traces")
    });
    let export = export.unwrap_or_else(|| panic!("no span export reached the collector\n{}", diagnostics(&p)));
    assert_eq!(export["client"], f.pod_service_side, "the export went straight out: {export}");
    assert_eq!(export["traceparent"], serde_json::json!([]), "the export carried trace context: {export}");
    assert_eq!(export["tracestate"], serde_json::json!([]), "the export carried trace context: {export}");
    let spans = crate::spans(&p);
    assert!(!spans.iter().any(|s| string_attr(s, "url.path") == Some("/v1/traces")), "the export was traced");

    let out = init_net(&p.pod, false, &["--cleanup"]);
    assert!(out.status.success(), "cleanup: {}", stderr(&out));
    assert_eq!(ruleset(&p.w, &p.pod), before, "cleanup leaves the namespace as it was");
}

/// The service (two ports, one skipped, one record; also the proxy's
/// collector) and the app (the traced port and the skipped one), each
/// answering before the test goes on.
fn start_peers(p: &mut Pod, f: &Family) {
    let record = p.w.dir.join("service.jsonl");
    let (pod, svc) = (p.pod.clone(), p.svc.clone());
    for port in [SERVICE_PORT, SKIPPED_SERVICE_PORT] {
        p.service = Some(p.w.recording_service(&svc, f.service, port, SERVICE_BODY, &record));
    }
    // Local traffic (the readiness check) leaves through `lo`, which the
    // rules exempt.
    for port in [APP_PORT, SKIPPED_APP_PORT] {
        p.w.calling_app(&pod, port, APP_BODY);
    }
}

/// The proxy as an injected pod runs it: its own uid, no capabilities,
/// dual-stack listeners (a wildcard IPv6 socket takes IPv4 too; the rules
/// keep the outbound listener out of reach from outside the pod), the
/// trace API on its default loopback port.
fn start_proxy(p: &mut Pod, otlp_endpoint: &str) {
    let mut wrapper = vec!["ip", "netns", "exec", &p.pod];
    wrapper.extend(UNPRIVILEGED);
    // A uid change clears the parent-death signal: ask setpriv for it.
    wrapper.extend(["--pdeathsig", "KILL"]);
    let app = format!("127.0.0.1:{APP_PORT}").parse().expect("an address");
    let proxy = TestProxy::to(app)
        .service("pod-app")
        .flags(&["--inbound", "[::]:15006", "--outbound", "[::]:15001", "--admin", "[::]:15020"])
        .flags(&["--api", "127.0.0.1:15021", "--access-log", "json", "--otlp-endpoint", otlp_endpoint])
        .wrapped(&wrapper)
        .spawn();
    p.proxy = Some(proxy);
    let pod = p.pod.clone();
    let ready = support::wait::until_sync(std::time::Duration::from_secs(10), || {
        p.proxy.as_mut().expect("the proxy").process().assert_running();
        netns::get(&pod, "http://127.0.0.1:15020/ready").ok().filter(|r| r.text().trim() == "ready")
    });
    assert!(ready.is_some(), "the proxy never became ready\n{}", diagnostics(p));
}

/// A GET of `url` from `ns` that must answer 200; its body.
fn fetch(p: &Pod, ns: &str, url: &str) -> String {
    let r = netns::get(ns, url).unwrap_or_else(|f| panic!("GET {url} from {ns}: {f}\n{}", diagnostics(p)));
    assert_eq!(r.status, 200, "GET {url} from {ns}: {}\n{}", r.text(), diagnostics(p));
    r.text()
}

fn spans(p: &Pod) -> Vec<Value> {
    netns::proxy_spans(p.proxy.as_ref().expect("the proxy"), &p.pod)
}

/// The span for `path`, polled from the trace API (spans reach it
/// asynchronously).
fn span(p: &mut Pod, path: &str) -> Value {
    let pod = p.pod.clone();
    netns::wait_for_span(p.proxy.as_mut().expect("the proxy"), &pod, path)
}

/// The service's record of the request for `path`.
fn service_saw(p: &Pod, path: &str) -> Value {
    p.service.as_ref().expect("the service").seen(path)
}

fn diagnostics(p: &Pod) -> String {
    let proxy = p.proxy.as_ref().map_or_else(|| "(no proxy yet)".to_string(), TestProxy::output);
    format!("{proxy}\nrules:\n{}", text(&p.w.exec(&p.pod, &["nft", "list", "ruleset"])))
}
