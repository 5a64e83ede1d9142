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

pub use super::process::{Lines, collect};
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
        self.links += 1;
        let (ia, ib) = (format!("va{}{}", self.links, self.tag), format!("vb{}{}", self.links, self.tag));
        let (ia, ib) = (truncate(&ia), truncate(&ib));
        let out = Command::new("ip")
            .args(["link", "add", &ia, "netns", a.ns, "type", "veth", "peer", "name", &ib, "netns", b.ns])
            .output()
            .expect("run ip link add");
        assert!(out.status.success(), "cannot create a veth pair: {}", String::from_utf8_lossy(&out.stderr));
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
