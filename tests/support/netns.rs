//! Network namespaces for tests: a world of namespaces joined by veth
//! pairs, the processes started inside them, HTTP calls made from inside
//! one (`block_on_in`), and its teardown in `Drop` (panic or not). Only
//! the namespaces, interfaces and addresses a test creates itself are ever
//! touched.
//!
//! Such tests need root and `ip netns` (and whatever else `require` is
//! asked for). Where the machine lacks them, `unavailable` makes the test
//! fail under CI (see `tools::require`: CI must not pass without them) and
//! skip with a printed line elsewhere.

use super::client::{Client, Failure, Response};
pub use super::process::{Lines, collect};
use super::proxy::TestProxy;
use serde_json::Value;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
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
    block_on_in(ns, Client::http1().get(url).timeout(Duration::from_secs(10)).try_send())
}

/// The spans a sidecar in `ns` shows on its admin port (OTLP/JSON).
pub fn api_spans(ns: &str, admin: SocketAddr) -> Vec<Value> {
    let r = get(ns, &format!("http://{admin}/api/traces?limit=1000")).unwrap_or_else(|f| panic!("/api/traces: {f}"));
    assert_eq!(r.status, 200, "/api/traces: {}", r.text());
    let doc: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/api/traces ({e}): {}", r.text()));
    super::otlp::spans(&doc)
}

/// The span of the request for `path` from the spawned `proxy` in `ns`,
/// polled (spans reach the admin API asynchronously) while it runs.
pub fn wait_for_span(proxy: &mut TestProxy, ns: &str, path: &str) -> Value {
    let admin = proxy.admin.expect("the proxy's admin port");
    let found = super::wait::until_sync(Duration::from_secs(10), || {
        proxy.process().assert_running();
        api_spans(ns, admin).into_iter().find(|s| super::otlp::string_attr(s, "url.path") == Some(path))
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
