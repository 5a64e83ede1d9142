//! Transparent mode, end to end, in both directions, with the real
//! `sidetrace` binary and real iptables REDIRECT rules.
//!
//! Inbound: a client in one network namespace calls the app's own port in
//! another; a PREROUTING REDIRECT sends the connection to the proxy, which
//! learns the original port from `SO_ORIGINAL_DST`, forwards to the app and
//! records a SERVER span.
//!
//! Outbound: the app in the pod namespace calls a server in the other
//! namespace; a nat OUTPUT REDIRECT, which spares the proxy's own uid (as
//! Istio does), sends the connection to the proxy's outbound listener, which
//! forwards it to the original destination with a `traceparent` and records
//! a CLIENT span.
//!
//! Inbound over IPv6: the same as inbound, with the veth pair addressed in
//! fd00:213::/64, an ip6tables REDIRECT (`IP6T_SO_ORIGINAL_DST`) and an app
//! listening on `[::1]`.
//!
//! Each test builds its own world and tears it down in `Drop`: two network
//! namespaces, a veth pair in 10.213.0.0/30 (or fd00:213::/64), the
//! processes. They need root, `ip netns` and iptables (ip6tables, and IPv6
//! in a network namespace, for the IPv6 one; `setpriv` for the outbound
//! one); without them they say why and skip. Every other failure fails the
//! test.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::Duration;

/// The test's own /30: the client end and the pod end of the veth pair.
/// Nothing else is ever addressed. Each test has namespaces of its own, so
/// both can use the same addresses and ports at once.
const CLIENT_IP: &str = "10.213.0.1";
const POD_IP: &str = "10.213.0.2";
const PREFIX_LEN: &str = "30";
/// The IPv6 test's own pair of unique local addresses, likewise.
const CLIENT_IP6: &str = "fd00:213::1";
const POD_IP6: &str = "fd00:213::2";
const PREFIX_LEN6: &str = "64";
const APP_PORT: u16 = 8080;
const INBOUND_PORT: u16 = 15006;
const ADMIN: &str = "127.0.0.1:15020";
const BODY: &str = "hello from the app behind a transparent sidetrace\n";

/// The server the app calls in the outbound test, in the client namespace.
const SERVER_PORT: u16 = 9090;
const OUTBOUND_PORT: u16 = 15001;
/// The proxy's own uid in the outbound test; the OUTPUT rule spares its
/// connections, so they leave for the original destination and do not loop.
const PROXY_UID: &str = "1337";
const SERVER_BODY: &str = "hello from a server outside the pod\n";
/// Serves `SERVER_BODY` for any GET and appends the path and every
/// `traceparent` it received to a JSON-lines file, before it answers.
const SERVER_PY: &str = r#"import http.server, json, sys

bind, port, body, record = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        seen = {"path": self.path, "traceparent": self.headers.get_all("traceparent", [])}
        with open(record, "a") as f:
            f.write(json.dumps(seen) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer((bind, port), Handler).serve_forever()
"#;

/// Everything the test created; dropping it removes all of it, panic or not.
struct Lab {
    client_ns: String,
    pod_ns: String,
    namespaces: Vec<String>,
    children: Vec<(&'static str, Child)>,
    dir: PathBuf,
    proxy_stdout: Lines,
    proxy_stderr: Lines,
}

type Lines = Arc<Mutex<Vec<String>>>;

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            // Only what we started can live in a namespace we created; kill
            // anything still there by pid so nothing outlives the test.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill(2) with a pid read from our own namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "delete", ns]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    /// `ip netns exec <ns> <args>`, waited for. Panics if it cannot start.
    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {ns} {args:?}: {e}"))
    }

    /// Like `exec`, but a non-zero exit is a test failure.
    fn must(&self, ns: &str, args: &[&str]) -> Output {
        let out = self.exec(ns, args);
        assert!(
            out.status.success(),
            "`ip netns exec {ns} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        out
    }

    /// Makes sure IPv6 is on in `ns` (a new namespace may inherit
    /// `disable_ipv6=1`); `Err`, a reason to skip, if the kernel has no
    /// IPv6 or will not let us turn it on. Setting `all` sets `default`
    /// and every existing interface (`lo`) as well.
    fn enable_ipv6(&self, ns: &str) -> Result<(), String> {
        let key = "net.ipv6.conf.all.disable_ipv6";
        let out = self.exec(ns, &["sysctl", "-n", key]);
        if !out.status.success() {
            return Err(format!("no IPv6 in a network namespace: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        if text(&out).trim() == "0" {
            return Ok(());
        }
        let out = self.exec(ns, &["sysctl", "-w", &format!("{key}=0")]);
        if !out.status.success() {
            return Err(format!(
                "IPv6 is disabled in a network namespace ({key}=1) and cannot be enabled: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Starts a long-running process inside `ns`. `ip netns exec` execs the
    /// command in place, so the child's pid is the process itself; it also
    /// dies with the test thread (PR_SET_PDEATHSIG) should `Drop` never run.
    /// (A uid change clears that signal: give `setpriv` `--pdeathsig KILL`.)
    fn spawn(&mut self, name: &'static str, ns: &str, args: &[&str], stdout: Stdio, stderr: Stdio) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(args).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name, child));
    }

    /// Starts the real binary in the pod namespace, as an injector would
    /// run it (`command` ends with the path of the binary; anything before
    /// it, such as `setpriv`, wraps it), collects its output and waits
    /// until its admin server says it is ready.
    fn start_proxy(&mut self, command: &[&str], flags: &[&str]) {
        let pod = self.pod_ns.clone();
        let args: Vec<&str> = command.iter().chain(["run"].iter()).chain(flags).copied().collect();
        self.spawn("proxy", &pod, &args, Stdio::piped(), Stdio::piped());
        let proxy = &mut self.children.last_mut().expect("proxy child").1;
        let (stdout, stderr) = (proxy.stdout.take(), proxy.stderr.take());
        self.proxy_stdout = collect(stdout.expect("proxy stdout"));
        self.proxy_stderr = collect(stderr.expect("proxy stderr"));

        let ready_url = format!("http://{ADMIN}/ready");
        let ready = self.wait_for(&["proxy"], |lab| {
            let out = lab.exec(&lab.pod_ns, &["curl", "-s", "--max-time", "2", &ready_url]);
            (out.status.success() && text(&out).trim() == "ready").then_some(())
        });
        assert!(ready.is_some(), "the proxy never became ready\n{}", self.diagnostics());
    }

    /// Asks `probe` every 100 ms, for up to 10 s, as long as every process
    /// named in `watched` is still running.
    fn wait_for<T>(&mut self, watched: &[&str], mut probe: impl FnMut(&Lab) -> Option<T>) -> Option<T> {
        for _ in 0..100 {
            for name in watched {
                self.assert_running(name);
            }
            if let Some(found) = probe(self) {
                return Some(found);
            }
            sleep(Duration::from_millis(100));
        }
        None
    }

    /// The span whose `url.path` is `path`, from the admin API (the export
    /// task fills the ring asynchronously, so poll).
    fn span_for(&mut self, path: &str) -> Value {
        let traces_url = format!("http://{ADMIN}/api/traces?limit=10");
        let mut last = String::new();
        let found = self.wait_for(&["proxy"], |lab| {
            let out = lab.must(&lab.pod_ns, &["curl", "-sS", "--fail", "--max-time", "2", &traces_url]);
            last = text(&out);
            let doc: Value =
                serde_json::from_str(&last).unwrap_or_else(|e| panic!("/api/traces is not JSON ({e}): {last}"));
            let spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().cloned().unwrap_or_default();
            spans.into_iter().find(|s| string_attr(s, "url.path") == Some(path))
        });
        found.unwrap_or_else(|| panic!("no span for {path} in /api/traces: {last}\n{}", self.diagnostics()))
    }

    /// The access log line for `path` on the proxy's stdout (written by
    /// its own thread, so poll).
    fn access_log_line(&mut self, path: &str) -> Value {
        let found = self.wait_for(&[], |lab| {
            let lines = lab.proxy_stdout.lock().unwrap();
            lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| v["path"] == path)
        });
        found.unwrap_or_else(|| panic!("no access log line for {path}\n{}", self.diagnostics()))
    }

    /// Panics with the process's own words if `name` has exited.
    fn assert_running(&mut self, name: &str) {
        let diagnostics = self.diagnostics();
        let (_, child) = self.children.iter_mut().find(|(n, _)| *n == name).expect("known child");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited early ({status})\n{diagnostics}");
        }
    }

    /// The proxy's output and every `*.log` file in the test's directory.
    fn diagnostics(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        let mut out = format!(
            "proxy stdout:\n{}\nproxy stderr:\n{}",
            self.proxy_stdout.lock().unwrap().join("\n"),
            self.proxy_stderr.lock().unwrap().join("\n"),
        );
        for log in logs {
            let name = log.file_name().unwrap_or_default().to_string_lossy();
            let content = std::fs::read_to_string(&log).unwrap_or_default();
            out.push_str(&format!("\n{name}:\n{content}"));
        }
        out
    }
}

/// The address family of a lab's veth pair, and so of its nat rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `CLIENT_IP` and `POD_IP`; `iptables` rules.
    V4,
    /// `CLIENT_IP6` and `POD_IP6`; `ip6tables` rules.
    V6,
}

/// Builds the namespaces and the veth pair, addressed in `family`, and
/// appends `nat_rules` (each the arguments of one `iptables -t nat` call,
/// or `ip6tables -t nat` for `Family::V6`) in the pod namespace. `Err` is a
/// reason to skip: the machine does not allow this kind of test, or lacks
/// one of `tools`. `tag` keeps the names of concurrent tests apart.
fn lab(tag: &str, family: Family, tools: &[&str], nat_rules: &[String]) -> Result<Lab, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root (network namespaces and iptables need it)".into());
    }
    let (iptables, addrs) = match family {
        Family::V4 => ("iptables", [(CLIENT_IP, PREFIX_LEN), (POD_IP, PREFIX_LEN)]),
        Family::V6 => ("ip6tables", [(CLIENT_IP6, PREFIX_LEN6), (POD_IP6, PREFIX_LEN6)]),
    };
    for tool in [iptables].iter().chain(tools) {
        match Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(s) if s.success() => {}
            Ok(s) => return Err(format!("`{tool} --version` failed ({s})")),
            Err(e) => return Err(format!("{tool} is not installed ({e})")),
        }
    }

    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("sidetrace-transparent-{pid}-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's directory");
    let mut lab = Lab {
        client_ns: format!("st-cli-{pid}-{tag}"),
        pod_ns: format!("st-pod-{pid}-{tag}"),
        namespaces: Vec::new(),
        children: Vec::new(),
        dir,
        proxy_stdout: Lines::default(),
        proxy_stderr: Lines::default(),
    };

    for ns in [lab.client_ns.clone(), lab.pod_ns.clone()] {
        // A namespace left by a killed run whose pid we now reuse.
        let _ = Command::new("ip").args(["netns", "delete", &ns]).stderr(Stdio::null()).status();
        let out = Command::new("ip")
            .args(["netns", "add", &ns])
            .output()
            .map_err(|e| format!("cannot run `ip netns add` ({e})"))?;
        if !out.status.success() {
            return Err(format!("`ip netns add {ns}` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        lab.namespaces.push(ns);
    }
    if family == Family::V6 {
        for ns in [lab.client_ns.clone(), lab.pod_ns.clone()] {
            lab.enable_ipv6(&ns)?;
        }
    }

    // The veth ends are created straight inside the namespaces, so no
    // interface of ours ever appears in the host's namespace.
    let (client_if, pod_if) = (format!("stc{pid}{tag}"), format!("stp{pid}{tag}"));
    let out = Command::new("ip")
        .args(["link", "add", &client_if, "netns", &lab.client_ns])
        .args(["type", "veth", "peer", "name", &pod_if, "netns", &lab.pod_ns])
        .output()
        .expect("run ip link add");
    if !out.status.success() {
        return Err(format!("cannot create a veth pair: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let [client_addr, pod_addr] = addrs;
    for (ns, ifname, (ip, prefix_len)) in
        [(lab.client_ns.clone(), &client_if, client_addr), (lab.pod_ns.clone(), &pod_if, pod_addr)]
    {
        let cidr = format!("{ip}/{prefix_len}");
        match family {
            Family::V4 => lab.must(&ns, &["ip", "addr", "add", &cidr, "dev", ifname]),
            // nodad: usable at once, not tentative for a second or two.
            Family::V6 => lab.must(&ns, &["ip", "-6", "addr", "add", &cidr, "dev", ifname, "nodad"]),
        };
        lab.must(&ns, &["ip", "link", "set", ifname, "up"]);
        lab.must(&ns, &["ip", "link", "set", "lo", "up"]);
    }

    for rule in nat_rules {
        // -w: the legacy backend's lock is shared by all namespaces, and the
        // other tests may be installing their rules at this very moment.
        let args: Vec<&str> = [iptables, "-w", "-t", "nat"].into_iter().chain(rule.split_whitespace()).collect();
        let out = lab.exec(&lab.pod_ns, &args);
        if !out.status.success() {
            return Err(format!(
                "cannot install the REDIRECT rule `{}`: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(lab)
}

/// Collects a child's output lines on a thread that ends with the pipe.
fn collect(pipe: impl Read + Send + 'static) -> Lines {
    let lines = Lines::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"].as_array()?.iter().find(|kv| kv["key"] == key).map(|kv| &kv["value"])
}

fn string_attr<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    attr(span, key)?["stringValue"].as_str()
}

/// OTLP/JSON writes int64 as a string; accept a number as well.
fn int_attr(span: &Value, key: &str) -> Option<i64> {
    match &attr(span, key)?["intValue"] {
        Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

/// Starts the app in the pod namespace (python's file server on `APP_PORT`,
/// bound to `bind`, serving `hello.txt`) and waits until `ready_url` answers.
fn serve_hello(lab: &mut Lab, bind: &str, ready_url: &str) {
    let pod = lab.pod_ns.clone();
    std::fs::write(lab.dir.join("hello.txt"), BODY).expect("write hello.txt");
    let app_log = std::fs::File::create(lab.dir.join("app.log")).expect("create app.log");
    let app_dir = lab.dir.to_string_lossy().into_owned();
    let app_port = APP_PORT.to_string();
    lab.spawn(
        "app",
        &pod,
        &["python3", "-m", "http.server", &app_port, "--bind", bind, "--directory", &app_dir],
        Stdio::null(),
        app_log.into(),
    );
    let app_ready = lab.wait_for(&["app"], |lab| {
        let out = lab.exec(&pod, &["curl", "-g", "-s", "--max-time", "2", ready_url]);
        (out.status.success() && text(&out) == BODY).then_some(())
    });
    assert!(app_ready.is_some(), "the app never served {ready_url}\n{}", lab.diagnostics());
}

/// The client calls the app's own port at `url`; only the REDIRECT rule
/// brings the connection to the proxy. Checks that the app's file came back
/// byte for byte, that the proxy recorded a SERVER span from `client_ip`
/// (not a NAT, loopback or IPv4-mapped address) and logged the request as
/// sent to `upstream` (the app's address with the original port). Returns
/// the span.
fn fetch_through_redirect(lab: &mut Lab, url: &str, client_ip: &str, upstream: &str, client_prefix: &str) -> Value {
    let client = lab.client_ns.clone();
    let out = lab.exec(&client, &["curl", "-g", "-sS", "--fail", "--max-time", "10", url]);
    assert!(
        out.status.success(),
        "curl {url} from {client} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        lab.diagnostics()
    );
    assert_eq!(text(&out), BODY, "the app's file, byte for byte");

    let span = lab.span_for("/hello.txt");
    assert_eq!(span["kind"], 2, "a SERVER span: {span}");
    assert_eq!(int_attr(&span, "http.response.status_code"), Some(200), "{span}");
    assert_eq!(string_attr(&span, "client.address"), Some(client_ip), "the client's own address: {span}");
    assert_eq!(string_attr(&span, "http.request.method"), Some("GET"), "{span}");
    assert_eq!(int_attr(&span, "server.port"), Some(i64::from(APP_PORT)), "{span}");

    let line = lab.access_log_line("/hello.txt");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["direction"], "inbound", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["upstream"], upstream, "the app's address with the original port: {line}");
    let client_field = line["client"].as_str().unwrap_or_default();
    assert!(client_field.starts_with(client_prefix), "{line}");
    assert_eq!(line["trace_id"], span["traceId"], "the log line and the span describe the same request");
    span
}

#[test]
fn redirected_inbound_request_reaches_the_app_and_is_traced() {
    let rule = format!("-A PREROUTING -p tcp --dport {APP_PORT} -j REDIRECT --to-ports {INBOUND_PORT}");
    let mut lab = match lab("i", Family::V4, &[], &[rule]) {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("skipping transparent test: {why}");
            return;
        }
    };

    // The app: a plain file server on its usual port, all addresses. Local
    // traffic skips PREROUTING, so the readiness check reaches it directly.
    serve_hello(&mut lab, "0.0.0.0", &format!("http://127.0.0.1:{APP_PORT}/hello.txt"));

    let inbound = format!("0.0.0.0:{INBOUND_PORT}");
    // A different --app port: only the redirect's original destination can
    // bring the request to the app's real port.
    let app = format!("127.0.0.1:{}", APP_PORT + 1);
    lab.start_proxy(
        &[env!("CARGO_BIN_EXE_sidetrace")],
        &[
            "--inbound",
            &inbound,
            "--app",
            &app,
            "--outbound",
            "off",
            "--admin",
            ADMIN,
            "--access-log",
            "json",
            "--service-name",
            "transparent-test",
        ],
    );

    // The client calls the app's own port; only the REDIRECT rule brings
    // the connection to the proxy.
    let url = format!("http://{POD_IP}:{APP_PORT}/hello.txt");
    fetch_through_redirect(&mut lab, &url, CLIENT_IP, &format!("127.0.0.1:{APP_PORT}"), &format!("{CLIENT_IP}:"));
}

#[test]
fn redirected_outbound_request_reaches_the_server_and_is_traced() {
    let rule = format!(
        "-A OUTPUT -p tcp -d {CLIENT_IP} --dport {SERVER_PORT} -m owner ! --uid-owner {PROXY_UID} \
         -j REDIRECT --to-ports {OUTBOUND_PORT}"
    );
    let mut lab = match lab("o", Family::V4, &["setpriv"], &[rule]) {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("skipping transparent outbound test: {why}");
            return;
        }
    };
    let (pod, client) = (lab.pod_ns.clone(), lab.client_ns.clone());

    // The server the app calls, in the other namespace: it records the
    // `traceparent` of every request it receives.
    let script = lab.dir.join("server.py");
    std::fs::write(&script, SERVER_PY).expect("write server.py");
    let received = lab.dir.join("received.log");
    let server_log = std::fs::File::create(lab.dir.join("server.log")).expect("create server.log");
    let server_port = SERVER_PORT.to_string();
    lab.spawn(
        "server",
        &client,
        &["python3", &script.to_string_lossy(), CLIENT_IP, &server_port, SERVER_BODY, &received.to_string_lossy()],
        Stdio::null(),
        server_log.into(),
    );
    let probe_url = format!("http://{CLIENT_IP}:{SERVER_PORT}/probe");
    let server_ready = lab.wait_for(&["server"], |lab| {
        let out = lab.exec(&client, &["curl", "-s", "--max-time", "2", &probe_url]);
        (out.status.success() && text(&out) == SERVER_BODY).then_some(())
    });
    assert!(server_ready.is_some(), "the server never served {probe_url}\n{}", lab.diagnostics());

    // The proxy under a uid of its own, which the OUTPUT rule spares; a uid
    // change clears the parent-death signal, so setpriv sets it again.
    let reuid = format!("--reuid={PROXY_UID}");
    let regid = format!("--regid={PROXY_UID}");
    let outbound = format!("127.0.0.1:{OUTBOUND_PORT}");
    lab.start_proxy(
        &["setpriv", &reuid, &regid, "--clear-groups", "--pdeathsig", "KILL", env!("CARGO_BIN_EXE_sidetrace")],
        &[
            "--inbound",
            "off",
            "--outbound",
            &outbound,
            "--admin",
            ADMIN,
            "--access-log",
            "json",
            "--service-name",
            "transparent-outbound-test",
        ],
    );

    // The app (root, so not the proxy's uid) calls the server directly, no
    // proxy configured; only the OUTPUT rule brings it to the proxy.
    let path = "/outbound/hello.txt";
    let url = format!("http://{CLIENT_IP}:{SERVER_PORT}{path}");
    let out = lab.exec(&pod, &["curl", "-sS", "--fail", "--max-time", "10", &url]);
    assert!(
        out.status.success(),
        "curl {url} from {pod} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        lab.diagnostics()
    );
    assert_eq!(text(&out), SERVER_BODY, "the server's own response, byte for byte");

    let span = lab.span_for(path);
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
    // answers, so it is there once curl has the response.
    let record = std::fs::read_to_string(&received).expect("read received.log");
    let seen: Value = record
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["path"] == path)
        .unwrap_or_else(|| panic!("the server never saw {path}\n{}", lab.diagnostics()));
    let traceparents: Vec<&str> =
        seen["traceparent"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let [traceparent] = traceparents[..] else {
        panic!("expected exactly one traceparent at the server: {seen}\n{}", lab.diagnostics());
    };
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "version-traceid-parentid-flags: {traceparent}");
    assert_eq!(fields[1], trace_id, "the server's request is in the span's trace: {traceparent} vs {span}");
    assert_eq!(fields[2], span_id, "the server's parent is the recorded CLIENT span: {traceparent} vs {span}");

    let line = lab.access_log_line(path);
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["direction"], "outbound", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["upstream"], format!("{CLIENT_IP}:{SERVER_PORT}"), "the original destination: {line}");
    let client_field = line["client"].as_str().unwrap_or_default();
    assert!(client_field.starts_with(&format!("{POD_IP}:")), "the app's own address: {line}");
    assert_eq!(line["span_id"], span["spanId"], "the log line and the span describe the same request");
}

#[test]
fn redirected_inbound_ipv6_request_reaches_the_app_and_is_traced() {
    let rule = format!("-A PREROUTING -p tcp --dport {APP_PORT} -j REDIRECT --to-ports {INBOUND_PORT}");
    let mut lab = match lab("6", Family::V6, &[], &[rule]) {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("skipping transparent IPv6 test: {why}");
            return;
        }
    };

    // The app: a plain file server on its usual port, IPv6 loopback only, so
    // every leg of the request is IPv6.
    serve_hello(&mut lab, "::1", &format!("http://[::1]:{APP_PORT}/hello.txt"));

    // `--app` names a port nothing listens on: the proxy uses it only when
    // a connection has no original destination, so the request reaches the
    // app only if IP6T_SO_ORIGINAL_DST gave the proxy the original port.
    let inbound = format!("[::]:{INBOUND_PORT}");
    let app = format!("[::1]:{}", APP_PORT + 1);
    lab.start_proxy(
        &[env!("CARGO_BIN_EXE_sidetrace")],
        &[
            "--inbound",
            &inbound,
            "--app",
            &app,
            "--outbound",
            "off",
            "--admin",
            ADMIN,
            "--access-log",
            "json",
            "--service-name",
            "transparent-ipv6-test",
        ],
    );

    // The client calls the app's own port at the pod's IPv6 address; only
    // the ip6tables REDIRECT rule brings the connection to the proxy.
    let url = format!("http://[{POD_IP6}]:{APP_PORT}/hello.txt");
    let span =
        fetch_through_redirect(&mut lab, &url, CLIENT_IP6, &format!("[::1]:{APP_PORT}"), &format!("[{CLIENT_IP6}]:"));
    assert_eq!(string_attr(&span, "server.address"), Some(POD_IP6), "from the Host header: {span}");
}
