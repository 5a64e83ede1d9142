//! Network namespaces for tests: a world of namespaces joined by veth
//! pairs, the processes started inside them, HTTP calls made from inside
//! one (`block_on_in`, `get`, `send`: the harness's client, never curl),
//! and its teardown in `Drop` (panic or not). Only the namespaces,
//! interfaces and addresses a test creates itself are ever touched.
//!
//! The peers that run inside a namespace, named by behaviour (on the
//! system's `python3`; each answers before it is returned):
//!
//! - `World::calling_app`: an app with no tracing code that calls the URL
//!   it is given (`/call?url=…`), directly or through a proxy it is named;
//! - `World::recording_service`: answers a fixed body and records every
//!   request's method, path, client address and trace context (`Record`);
//!   it answers a POST with an empty 200, so it doubles as an OTLP/HTTP
//!   collector that records each export (`collectors::recording_in`);
//! - `World::dns_responder`: an authoritative DNS server for a few names,
//!   logging every question;
//! - `World::file_server`: a plain file server (Python's `http.server`).
//!
//! The sidecar itself runs there as `TestProxy::…wrapped(&["ip", "netns",
//! "exec", ns, …])`, and one-shot commands (`init-net`) as
//! `proxy::sidetrace(args).wrapped(…)`.
//!
//! Such tests need root and `ip netns` (and whatever else `require` is
//! asked for). Where the machine lacks them, `unavailable` makes the test
//! fail under CI (see `tools::require`: CI must not pass without them) and
//! skip with a printed line elsewhere.

use super::client::{Call, Client, Failure, Response};
pub use super::process::{Lines, collect};
use super::proxy::TestProxy;
use serde_json::Value;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A test that cannot run here: a failure under CI, a printed skip
/// otherwise. Call it and return.
pub fn unavailable(test: &str, why: &str) {
    let _: Option<()> = super::tools::require(test, Err(why.to_string()));
}

/// `Err` with the reason when this process is not root or a tool is
/// missing (`tool --version`, `ip -V`, must run).
pub fn require(tools: &[&str]) -> Result<(), String> {
    super::tools::root().map_err(|why| format!("{why} (network namespaces need it)"))?;
    for tool in ["ip"].iter().chain(tools) {
        let version = if *tool == "ip" { "-V" } else { "--version" };
        super::tools::runs(std::path::Path::new(tool), version)?;
    }
    Ok(())
}

/// Runs `fut` to its end on a thread of its own inside network namespace
/// `ns`, on a runtime of its own: every socket it opens (a `Client`'s, say)
/// is in `ns`. The rest of the test stays where it was.
pub fn block_on_in<F>(ns: &str, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        let thread = s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns(2) moves only this thread, into a namespace file we hold open.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns into {ns}: {}", std::io::Error::last_os_error());
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut)
        });
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A GET of `url` from inside `ns`, with the harness's client.
pub fn get(ns: &str, url: &str) -> Result<Response, Failure> {
    send(ns, Client::http1().get(url).timeout(Duration::from_secs(10)))
}

/// Sends `call` (made with the harness's client: through a proxy with
/// `via`, bounded with `timeout`, …) from inside `ns`.
pub fn send(ns: &str, call: Call<'static>) -> Result<Response, Failure> {
    block_on_in(ns, call.try_send())
}

/// The status of a GET of `url` from inside `ns`, or why none came.
pub fn status(ns: &str, url: &str) -> Result<u16, String> {
    get(ns, url).map(|r| r.status.as_u16()).map_err(|f| f.to_string())
}

/// The spans a sidecar in `ns` shows at `api` (its admin port, or its own
/// API listener), as OTLP/JSON.
pub fn api_spans(ns: &str, api: SocketAddr) -> Vec<Value> {
    let r = get(ns, &format!("http://{api}/api/traces?limit=1000")).unwrap_or_else(|f| panic!("/api/traces: {f}"));
    assert_eq!(r.status, 200, "/api/traces: {}", r.text());
    let doc: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/api/traces ({e}): {}", r.text()));
    super::otlp::spans(&doc)
}

/// Where a spawned `proxy` serves `/api/traces`: its own API listener, or
/// the admin port under `--api admin`.
fn api_of(proxy: &TestProxy) -> SocketAddr {
    proxy.api.or(proxy.admin).expect("the proxy's API or admin port")
}

/// Every span the spawned `proxy` in `ns` shows now.
pub fn proxy_spans(proxy: &TestProxy, ns: &str) -> Vec<Value> {
    api_spans(ns, api_of(proxy))
}

/// The span of the request for `path` from the spawned `proxy` in `ns`,
/// polled (spans reach the trace API asynchronously) while it runs.
pub fn wait_for_span(proxy: &mut TestProxy, ns: &str, path: &str) -> Value {
    let api = api_of(proxy);
    let found = super::wait::until_sync(Duration::from_secs(10), || {
        proxy.process().assert_running();
        api_spans(ns, api).into_iter().find(|s| super::otlp::string_attr(s, "url.path") == Some(path))
    });
    found.unwrap_or_else(|| panic!("no span for {path} in /api/traces\n{}", proxy.output()))
}

/// One end of a veth pair: its namespace and addresses (`ip/len`).
pub struct End<'a> {
    pub ns: &'a str,
    pub addrs: &'a [&'a str],
}

pub struct World {
    pub dir: PathBuf,
    tag: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    links: usize,
}

impl World {
    /// An empty world with a scratch directory; `tag` keeps concurrent
    /// tests' names apart.
    pub fn new(tag: &str) -> World {
        let tag = format!("{}{tag}", std::process::id());
        let dir = super::tools::scratch_dir(&format!("netns-{tag}"));
        World { dir, tag, namespaces: Vec::new(), children: Vec::new(), links: 0 }
    }

    /// Creates namespace `st-{short}-{tag}` with `lo` up and IPv6 enabled
    /// (a new namespace may inherit `disable_ipv6=1`). `Err` is a reason the
    /// machine cannot run the test.
    pub fn namespace(&mut self, short: &str) -> Result<String, String> {
        let ns = format!("st-{short}-{}", self.tag);
        // One left by a killed run whose pid we now reuse.
        let _ = Command::new("ip").args(["netns", "delete", &ns]).stderr(Stdio::null()).status();
        let out = Command::new("ip").args(["netns", "add", &ns]).output().map_err(|e| format!("ip netns add: {e}"))?;
        if !out.status.success() {
            return Err(format!("`ip netns add {ns}` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        self.namespaces.push(ns.clone());
        self.must(&ns, &["ip", "link", "set", "lo", "up"]);
        let key = "net.ipv6.conf.all.disable_ipv6";
        let out = self.exec(&ns, &["sysctl", "-w", &format!("{key}=0")]);
        if !out.status.success() {
            return Err(format!("cannot enable IPv6 in a namespace: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(ns)
    }

    /// A veth pair between two namespaces, addressed and up. The ends are
    /// created straight inside the namespaces, so nothing of ours ever
    /// appears in the host's namespace.
    pub fn link(&mut self, a: End, b: End) {
        self.try_link(a, b).unwrap_or_else(|why| panic!("{why}"))
    }

    /// `link`, with `Err` when the machine will not make a veth pair.
    pub fn try_link(&mut self, a: End, b: End) -> Result<(), String> {
        self.links += 1;
        let (ia, ib) = (format!("va{}{}", self.links, self.tag), format!("vb{}{}", self.links, self.tag));
        let (ia, ib) = (truncate(&ia), truncate(&ib));
        let out = Command::new("ip")
            .args(["link", "add", &ia, "netns", a.ns, "type", "veth", "peer", "name", &ib, "netns", b.ns])
            .output()
            .expect("run ip link add");
        if !out.status.success() {
            return Err(format!("cannot create a veth pair: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        for (end, ifname) in [(&a, &ia), (&b, &ib)] {
            for addr in end.addrs {
                // nodad: usable at once, not tentative for a second or two.
                let mut args = vec!["ip", "addr", "add", addr, "dev", ifname];
                if addr.contains(':') {
                    args.push("nodad");
                }
                self.must(end.ns, &args);
            }
            self.must(end.ns, &["ip", "link", "set", ifname, "up"]);
        }
        Ok(())
    }

    /// Appends `rules` to the nat table in `ns`, each the arguments of one
    /// `iptables -t nat` call (`ip6tables` for `v6`); `Err` when refused.
    pub fn nat_rules(&self, ns: &str, v6: bool, rules: &[String]) -> Result<(), String> {
        let iptables = if v6 { "ip6tables" } else { "iptables" };
        for rule in rules {
            // -w: the legacy backend's lock is shared by all namespaces, and
            // other tests may be installing their rules at this very moment.
            let args: Vec<&str> = [iptables, "-w", "-t", "nat"].into_iter().chain(rule.split_whitespace()).collect();
            let out = self.exec(ns, &args);
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr);
                return Err(format!("cannot install the rule `{}`: {}", args.join(" "), why.trim()));
            }
        }
        Ok(())
    }

    /// A client namespace and a pod namespace joined by a veth pair, with
    /// `client_addr` and `pod_addr` (`ip/len`) on its ends and `nat_rules`
    /// appended in the pod (see `nat_rules`; IPv6 when the addresses are).
    /// Returns the client's and the pod's namespace; `Err` is a reason the
    /// machine cannot run the test.
    pub fn client_and_pod(
        &mut self,
        client_addr: &str,
        pod_addr: &str,
        nat_rules: &[String],
    ) -> Result<(String, String), String> {
        let (client, pod) = (self.namespace("cli")?, self.namespace("pod")?);
        self.try_link(End { ns: &client, addrs: &[client_addr] }, End { ns: &pod, addrs: &[pod_addr] })?;
        self.nat_rules(&pod, pod_addr.contains(':'), nat_rules)?;
        Ok((client, pod))
    }

    /// The `*.log` files in the world's directory, for a failure message.
    pub fn logs(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        let mut out = String::new();
        for log in logs {
            let name = log.file_name().unwrap_or_default().to_string_lossy().into_owned();
            out.push_str(&format!("\n--- {name}:\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
        }
        out
    }

    /// `ip netns exec <ns> <args>`, waited for.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {ns} {args:?}: {e}"))
    }

    /// Like `exec`, but a non-zero exit fails the test.
    pub fn must(&self, ns: &str, args: &[&str]) -> Output {
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

    /// Starts a long-running process in `ns`; it dies with the test thread
    /// (PR_SET_PDEATHSIG) should `Drop` never run. A uid change clears that
    /// signal: give `setpriv` `--pdeathsig KILL`.
    pub fn spawn(&mut self, name: &str, ns: &str, args: &[&str], stdout: Stdio, stderr: Stdio) -> &mut Child {
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
        self.children.push((name.to_string(), child));
        &mut self.children.last_mut().expect("just pushed").1
    }

    /// Like `spawn`, collecting the process's stdout and stderr lines.
    pub fn spawn_collected(&mut self, name: &str, ns: &str, args: &[&str]) -> (Lines, Lines) {
        let child = self.spawn(name, ns, args, Stdio::piped(), Stdio::piped());
        let (out, err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
        (collect(out), collect(err))
    }

    /// Asks `probe` for up to 10 s (see `wait`), while every process named
    /// in `watched` still runs.
    pub fn wait_for<T>(&mut self, watched: &[&str], mut probe: impl FnMut(&World) -> Option<T>) -> Option<T> {
        super::wait::until_sync(Duration::from_secs(10), || {
            for name in watched {
                self.assert_running(name);
            }
            probe(self)
        })
    }

    /// Panics if `name` has exited.
    pub fn assert_running(&mut self, name: &str) {
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name).expect("known child");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited early ({status})");
        }
    }
}

/// What a `recording_service` wrote: one JSON object per request, written
/// before it answered (so a request is there once its response is).
pub struct Record {
    pub path: PathBuf,
    /// The service's name in its `World` (for `World::wait_for`).
    pub peer: String,
}

impl Record {
    /// The file as it is now.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Every request recorded so far: `{"method", "path", "client",
    /// "traceparent": [..], "tracestate": [..]}`.
    pub fn all(&self) -> Vec<Value> {
        self.text().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The request for `path`, if it came.
    pub fn find(&self, path: &str) -> Option<Value> {
        self.all().into_iter().find(|v| v["path"] == path)
    }

    /// The request for `path`; fails the test if it never came.
    pub fn seen(&self, path: &str) -> Value {
        self.find(path).unwrap_or_else(|| panic!("{} never saw {path}:\n{}", self.peer, self.text()))
    }
}

fn peer_script(name: &str) -> String {
    super::tools::repo(&format!("tests/peers/{name}")).to_string_lossy().into_owned()
}

fn http_url(ip: &str, port: u16, path: &str) -> String {
    if ip.contains(':') { format!("http://[{ip}]:{port}{path}") } else { format!("http://{ip}:{port}{path}") }
}

impl World {
    /// Starts a peer named `name` in `ns`, its stderr in `name.log` (shown
    /// by `logs`).
    fn peer(&mut self, name: &str, ns: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).expect("create a peer's log");
        self.spawn(name, ns, args, Stdio::null(), log.into());
    }

    /// Waits until a GET of `url` from `ns` answers 200 with `body`, while
    /// `name` runs.
    fn wait_until_serving(&mut self, name: &str, ns: &str, url: &str, body: &str) {
        let up = self.wait_for(&[name], |_| {
            let call = Client::http1().get(url).timeout(Duration::from_secs(2));
            send(ns, call).ok().filter(|r| r.status == 200 && r.text() == body)
        });
        assert!(up.is_some(), "{name} never answered {url}{}", self.logs());
    }

    /// The pod's app (tests/peers/netns_app.py `app`), on `[::]:port` (IPv4
    /// too), knowing nothing of sidetrace: `GET /call?url=URL` fetches URL
    /// itself with no proxy (so only redirect rules can send the call
    /// through a sidecar), or through `&proxy=PROXY` (as an app with
    /// HTTP_PROXY does), and answers what came back (502 if nothing did);
    /// any other GET answers `body`. Ready once it answers on loopback.
    pub fn calling_app(&mut self, ns: &str, port: u16, body: &str) {
        let name = format!("app{port}");
        let port_s = port.to_string();
        self.peer(&name, ns, &["python3", &peer_script("netns_app.py"), "app", &port_s, body]);
        self.wait_until_serving(&name, ns, &http_url("127.0.0.1", port, "/probe"), body);
    }

    /// A service (tests/peers/netns_app.py `service`) on `bind:port`: a GET
    /// is answered `body`, a POST an empty 200 (as an OTLP/HTTP collector
    /// answers), and every request is first appended to `record` (which
    /// several services may share). Ready once it answers a GET of
    /// `/probe`, which it records too.
    pub fn recording_service(&mut self, ns: &str, bind: &str, port: u16, body: &str, record: &Path) -> Record {
        let name = format!("service{port}");
        let (port_s, record_s) = (port.to_string(), record.to_string_lossy().into_owned());
        self.peer(&name, ns, &["python3", &peer_script("netns_app.py"), "service", bind, &port_s, body, &record_s]);
        self.wait_until_serving(&name, ns, &http_url(bind, port, "/probe"), body);
        Record { path: record.to_path_buf(), peer: name }
    }

    /// A plain file server (`python3 -m http.server`) for `dir` on
    /// `bind:port`; ready once `probe` (a URL, from `ns`) answers `body`.
    pub fn file_server(&mut self, ns: &str, bind: &str, port: u16, dir: &Path, probe: &str, body: &str) {
        let name = format!("files{port}");
        let (port_s, dir_s) = (port.to_string(), dir.to_string_lossy().into_owned());
        self.peer(&name, ns, &["python3", "-m", "http.server", &port_s, "--bind", bind, "--directory", &dir_s]);
        self.wait_until_serving(&name, ns, probe, body);
    }

    /// An authoritative DNS server over UDP (tests/peers/dns_responder.py)
    /// on `bind:port`, answering an A question for each of `records`
    /// (`(name, ipv4)`), NODATA for another type, NXDOMAIN for any other
    /// name. Returns its log, one `NAME TYPE` line per question. Ready
    /// once it has answered a question (for `probe.invalid`, logged too).
    pub fn dns_responder(&mut self, ns: &str, bind: &str, port: u16, records: &[(&str, &str)]) -> PathBuf {
        let name = format!("dns{port}");
        let log = self.dir.join(format!("{name}-questions.txt"));
        let (port_s, log_s) = (port.to_string(), log.to_string_lossy().into_owned());
        let records: Vec<String> = records.iter().map(|(n, ip)| format!("{n}={ip}")).collect();
        let mut args = vec!["python3".to_string(), peer_script("dns_responder.py"), bind.into(), port_s, log_s];
        args.extend(records);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.peer(&name, ns, &args);
        let server: SocketAddr = format!("{bind}:{port}").parse().expect("an IPv4 bind address");
        let up = self.wait_for(&[&name], |_| dns_answers(ns, server).then_some(()));
        assert!(up.is_some(), "{name} never answered a question{}", self.logs());
        log
    }
}

/// Whether a DNS server at `server`, seen from inside `ns`, answers an A
/// question for `probe.invalid` within a second.
fn dns_answers(ns: &str, server: SocketAddr) -> bool {
    block_on_in(ns, async move {
        let Ok(sock) = tokio::net::UdpSocket::bind("0.0.0.0:0").await else { return false };
        // ID 0x5354, recursion desired, one question: probe.invalid A IN.
        let mut query = vec![0x53, 0x54, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["probe", "invalid"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        if sock.send_to(&query, server).await.is_err() {
            return false;
        }
        let mut answer = [0u8; 512];
        let got = tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut answer)).await;
        matches!(got, Ok(Ok((n, _))) if n >= 12 && answer[..2] == query[..2])
    })
}

/// Interface names have at most 15 bytes (IFNAMSIZ - 1).
fn truncate(name: &str) -> String {
    name.chars().take(15).collect()
}

impl Drop for World {
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

pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
