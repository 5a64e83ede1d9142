//! Transparent inbound mode, end to end: a client in one network namespace
//! calls the app's own port in another; an iptables REDIRECT sends the
//! connection to the real `sidetrace` binary, which learns the original port
//! from `SO_ORIGINAL_DST`, forwards to the app and records a SERVER span.
//!
//! The test builds its own world and tears it down in `Drop`: two network
//! namespaces, a veth pair in 10.213.0.0/30, the app, the proxy. It needs
//! root, `ip netns` and iptables; without them it says why and skips. Every
//! other failure fails the test.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::Duration;

/// The test's own /30: the client end and the pod end of the veth pair.
/// Nothing else is ever addressed.
const CLIENT_IP: &str = "10.213.0.1";
const POD_IP: &str = "10.213.0.2";
const PREFIX_LEN: &str = "30";
const APP_PORT: u16 = 8080;
const INBOUND_PORT: u16 = 15006;
const ADMIN: &str = "127.0.0.1:15020";
const BODY: &str = "hello from the app behind a transparent sidetrace\n";

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

    /// Starts a long-running process inside `ns`. `ip netns exec` execs the
    /// command in place, so the child's pid is the process itself; it also
    /// dies with the test thread (PR_SET_PDEATHSIG) should `Drop` never run.
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

    /// Panics with the process's own words if `name` has exited.
    fn assert_running(&mut self, name: &str) {
        let diagnostics = self.diagnostics();
        let (_, child) = self.children.iter_mut().find(|(n, _)| *n == name).expect("known child");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited early ({status})\n{diagnostics}");
        }
    }

    fn diagnostics(&self) -> String {
        let app_log = std::fs::read_to_string(self.dir.join("app.log")).unwrap_or_default();
        format!(
            "proxy stdout:\n{}\nproxy stderr:\n{}\napp log:\n{app_log}",
            self.proxy_stdout.lock().unwrap().join("\n"),
            self.proxy_stderr.lock().unwrap().join("\n"),
        )
    }
}

/// Builds the namespaces, the veth pair and the redirect rule. `Err` is a
/// reason to skip: the machine does not allow this kind of test.
fn lab() -> Result<Lab, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root (network namespaces and iptables need it)".into());
    }
    match Command::new("iptables").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("`iptables --version` failed ({s})")),
        Err(e) => return Err(format!("iptables is not installed ({e})")),
    }

    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("sidetrace-transparent-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the app's directory");
    std::fs::write(dir.join("hello.txt"), BODY).expect("write hello.txt");
    let mut lab = Lab {
        client_ns: format!("st-cli-{pid}"),
        pod_ns: format!("st-pod-{pid}"),
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

    // The veth ends are created straight inside the namespaces, so no
    // interface of ours ever appears in the host's namespace.
    let (client_if, pod_if) = (format!("stc{pid}"), format!("stp{pid}"));
    let out = Command::new("ip")
        .args(["link", "add", &client_if, "netns", &lab.client_ns])
        .args(["type", "veth", "peer", "name", &pod_if, "netns", &lab.pod_ns])
        .output()
        .expect("run ip link add");
    if !out.status.success() {
        return Err(format!("cannot create a veth pair: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    for (ns, ifname, ip) in [(lab.client_ns.clone(), &client_if, CLIENT_IP), (lab.pod_ns.clone(), &pod_if, POD_IP)] {
        let cidr = format!("{ip}/{PREFIX_LEN}");
        lab.must(&ns, &["ip", "addr", "add", &cidr, "dev", ifname]);
        lab.must(&ns, &["ip", "link", "set", ifname, "up"]);
        lab.must(&ns, &["ip", "link", "set", "lo", "up"]);
    }

    let (app_port, inbound_port) = (APP_PORT.to_string(), INBOUND_PORT.to_string());
    let rule = [
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-p",
        "tcp",
        "--dport",
        &app_port,
        "-j",
        "REDIRECT",
        "--to-ports",
        &inbound_port,
    ];
    let out = lab.exec(&lab.pod_ns, &rule);
    if !out.status.success() {
        return Err(format!("cannot install the REDIRECT rule: {}", String::from_utf8_lossy(&out.stderr).trim()));
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

#[test]
fn redirected_inbound_request_reaches_the_app_and_is_traced() {
    let mut lab = match lab() {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("skipping transparent test: {why}");
            return;
        }
    };
    let (pod, client) = (lab.pod_ns.clone(), lab.client_ns.clone());

    // The app: a plain file server on its usual port, all addresses.
    let app_log = std::fs::File::create(lab.dir.join("app.log")).expect("create app.log");
    let app_dir = lab.dir.to_string_lossy().into_owned();
    let app_port = APP_PORT.to_string();
    lab.spawn(
        "app",
        &pod,
        &["python3", "-m", "http.server", &app_port, "--bind", "0.0.0.0", "--directory", &app_dir],
        Stdio::null(),
        app_log.into(),
    );
    // Local traffic skips PREROUTING, so this reaches the app directly.
    let app_url = format!("http://127.0.0.1:{APP_PORT}/hello.txt");
    let mut app_ready = false;
    for _ in 0..100 {
        lab.assert_running("app");
        let out = lab.exec(&pod, &["curl", "-s", "--max-time", "2", &app_url]);
        if out.status.success() && text(&out) == BODY {
            app_ready = true;
            break;
        }
        sleep(Duration::from_millis(100));
    }
    assert!(app_ready, "the app never served {app_url}\n{}", lab.diagnostics());

    // The proxy: the real binary, as an injector would run it.
    let inbound = format!("0.0.0.0:{INBOUND_PORT}");
    let app = format!("127.0.0.1:{APP_PORT}");
    lab.spawn(
        "proxy",
        &pod,
        &[
            env!("CARGO_BIN_EXE_sidetrace"),
            "run",
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
        Stdio::piped(),
        Stdio::piped(),
    );
    let proxy = &mut lab.children.last_mut().expect("proxy child").1;
    let (stdout, stderr) = (proxy.stdout.take(), proxy.stderr.take());
    lab.proxy_stdout = collect(stdout.expect("proxy stdout"));
    lab.proxy_stderr = collect(stderr.expect("proxy stderr"));

    let ready_url = format!("http://{ADMIN}/ready");
    let mut proxy_ready = false;
    for _ in 0..100 {
        lab.assert_running("proxy");
        let out = lab.exec(&pod, &["curl", "-s", "--max-time", "2", &ready_url]);
        if out.status.success() && text(&out).trim() == "ready" {
            proxy_ready = true;
            break;
        }
        sleep(Duration::from_millis(100));
    }
    assert!(proxy_ready, "the proxy never became ready\n{}", lab.diagnostics());

    // The client calls the app's own port; only the REDIRECT rule brings
    // the connection to the proxy.
    let url = format!("http://{POD_IP}:{APP_PORT}/hello.txt");
    let out = lab.exec(&client, &["curl", "-sS", "--fail", "--max-time", "10", &url]);
    assert!(
        out.status.success(),
        "curl {url} from {client} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        lab.diagnostics()
    );
    assert_eq!(text(&out), BODY, "the app's file, byte for byte");

    // The span, from the admin API (the export task fills the ring
    // asynchronously, so poll).
    let traces_url = format!("http://{ADMIN}/api/traces?limit=10");
    let mut found = None;
    let mut last = String::new();
    for _ in 0..100 {
        let out = lab.must(&pod, &["curl", "-sS", "--fail", "--max-time", "2", &traces_url]);
        last = text(&out);
        let doc: Value =
            serde_json::from_str(&last).unwrap_or_else(|e| panic!("/api/traces is not JSON ({e}): {last}"));
        let spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().cloned().unwrap_or_default();
        found = spans.into_iter().find(|s| string_attr(s, "url.path") == Some("/hello.txt"));
        if found.is_some() {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    let span = found.unwrap_or_else(|| panic!("no span for /hello.txt in /api/traces: {last}\n{}", lab.diagnostics()));
    assert_eq!(span["kind"], 2, "a SERVER span: {span}");
    assert_eq!(int_attr(&span, "http.response.status_code"), Some(200), "{span}");
    assert_eq!(
        string_attr(&span, "client.address"),
        Some(CLIENT_IP),
        "the client's own address, not a NAT or loopback one: {span}"
    );
    assert_eq!(string_attr(&span, "http.request.method"), Some("GET"), "{span}");
    assert_eq!(int_attr(&span, "server.port"), Some(i64::from(APP_PORT)), "{span}");

    // The access log line on the proxy's stdout (written by its own thread).
    let mut line = None;
    for _ in 0..100 {
        line = lab
            .proxy_stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["path"] == "/hello.txt");
        if line.is_some() {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    let line = line.unwrap_or_else(|| panic!("no access log line for /hello.txt\n{}", lab.diagnostics()));
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["direction"], "inbound", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["upstream"], format!("127.0.0.1:{APP_PORT}"), "the app's address with the original port: {line}");
    let client_field = line["client"].as_str().unwrap_or_default();
    assert!(client_field.starts_with(&format!("{CLIENT_IP}:")), "{line}");
    assert_eq!(line["trace_id"], span["traceId"], "the log line and the span describe the same request");
}
