//! The only way tests start sidetrace.
//!
//! `TestProxy` is a sidecar with its addresses, its spans, its parsed
//! `/metrics` (or the raw answer to a scraper's `Accept`) and its
//! `/api/stats`. `TestProxy::to(app)` builds one, then either
//!
//! - `start()`: in this process (`Sidecar::start(Config::local_with(…))`),
//!   every listener on an ephemeral loopback port; its spans are the
//!   `SpanRecord`s of its ring, and its export statistics are at hand
//!   (`sidecar()`); or
//! - `spawn()`: the real binary (`sidetrace run`), for what needs a
//!   process of its own: signals, exit codes, its own memory, a spool
//!   across SIGKILL, a network namespace (`wrapped` in `ip netns exec`).
//!   Its listeners default to ephemeral loopback ports too; the addresses
//!   come from its start-up line, which it prints once every listener is
//!   bound (so it is ready when `spawn` returns). It is killed on drop.
//!
//! Commands other than `run` go through `sidetrace(args)` (one that must
//! end: bad input, `--help`, `inject`, `wait-ready`, `init-net`, `wrapped`
//! like a spawned proxy when it must run in a network namespace or as
//! another user) or `command(args)` (a long-running one, e.g. the webhook,
//! in a `Process`). All of them run without the caller's `SIDETRACE_*` and
//! `OTEL_*` variables.

use super::client::Client;
use super::metrics::Metrics;
use super::process::Process;
use serde_json::Value;
use sidetrace::Sidecar;
use sidetrace::config::Config;
use sidetrace::trace::SpanRecord;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_sidetrace");

/// How long spans may take to reach the ring, or a process to start.
const SETTLE: Duration = Duration::from_secs(10);

/// Strips the caller's configuration from a command's environment.
fn clean_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        // KUBERNETES_SERVICE_*: a webhook under test run inside a pod must
        // not find the real API server.
        if k.starts_with("SIDETRACE_") || k.starts_with("OTEL_") || k.starts_with("KUBERNETES_") {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("NO_COLOR", "1")
}

/// `sidetrace ARGS` as a command, in a clean environment.
pub fn command(args: &[&str]) -> Command {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    wrapped_command(&[], &args)
}

/// `WRAPPER… sidetrace ARGS` (the wrapper's words first, e.g. `ip netns
/// exec NS`), in a clean environment: the wrapper passes it on.
fn wrapped_command(wrapper: &[String], args: &[String]) -> Command {
    let mut cmd = match wrapper.split_first() {
        None => Command::new(BIN),
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(BIN);
            cmd
        }
    };
    cmd.args(args);
    clean_env(&mut cmd);
    cmd
}

/// One run of a sidetrace command that must end by itself.
pub struct Invocation {
    args: Vec<String>,
    wrapper: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
    limit: Duration,
}

pub fn sidetrace(args: &[&str]) -> Invocation {
    Invocation {
        args: args.iter().map(|a| a.to_string()).collect(),
        wrapper: Vec::new(),
        env: Vec::new(),
        stdin: Vec::new(),
        limit: Duration::from_secs(10),
    }
}

impl Invocation {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs the binary under `wrapper` (e.g. `ip netns exec NS`, `setpriv
    /// …`), as `Builder::wrapped` does.
    pub fn wrapped(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|w| w.to_string()).collect();
        self
    }

    pub fn stdin(mut self, input: &[u8]) -> Self {
        self.stdin = input.to_vec();
        self
    }

    /// How long it may run (10 s unless told).
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Runs it to its end; fails the test if it is still running after
    /// the limit (bad input must make it exit, not serve).
    pub fn output(mut self) -> Output {
        use std::io::Write;
        let mut cmd = wrapped_command(&self.wrapper, &self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // A command that fails on its flags exits before reading stdin.
        let stdin = child.stdin.take().unwrap();
        let input = std::mem::take(&mut self.stdin);
        let writer = std::thread::spawn(move || {
            let mut stdin = stdin;
            let _ = stdin.write_all(&input);
        });
        let ended = super::wait::until_sync(self.limit, || child.try_wait().unwrap().is_some());
        if ended.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {:?}", self.limit);
        }
        let _ = writer.join();
        child.wait_with_output().unwrap()
    }
}

/// A sidecar under test.
pub struct TestProxy {
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The trace API's own listener (`None` under `--api admin`, the
    /// spawned default, where it is on the admin port).
    pub api: Option<SocketAddr>,
    inner: Inner,
}

enum Inner {
    InProcess(Box<Sidecar>),
    Process(Process),
}

type Edit = Box<dyn FnOnce(&mut Config)>;

/// What a `TestProxy` will be.
pub struct Builder {
    app: Option<SocketAddr>,
    service: String,
    flags: Vec<String>,
    edits: Vec<Edit>,
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
}

impl TestProxy {
    /// A sidecar whose inbound side forwards to `app`.
    pub fn to(app: SocketAddr) -> Builder {
        Builder { app: Some(app), ..TestProxy::builder() }
    }

    /// A sidecar with no app of its own (outbound tests): in this process
    /// its app is a refusing port; a spawned one gets no `--app`.
    pub fn builder() -> Builder {
        Builder {
            app: None,
            service: "test-service".into(),
            flags: Vec::new(),
            edits: Vec::new(),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// In this process, from a whole configuration: the only in-process
    /// start (`Builder::start` comes here too).
    pub async fn start(config: Config) -> TestProxy {
        let sidecar = Sidecar::start(config).await.expect("the sidecar starts");
        TestProxy {
            inbound: sidecar.inbound,
            outbound: sidecar.outbound,
            admin: sidecar.admin,
            api: sidecar.api,
            inner: Inner::InProcess(Box::new(sidecar)),
        }
    }

    pub fn inbound_url(&self) -> String {
        format!("http://{}", self.inbound.expect("an inbound listener"))
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin.expect("an admin listener"))
    }

    /// The in-process sidecar: its ring, export statistics and encoder.
    pub fn sidecar(&self) -> &Sidecar {
        match &self.inner {
            Inner::InProcess(s) => s,
            Inner::Process(_) => panic!("a spawned sidetrace is reached through its admin port, not as a Sidecar"),
        }
    }

    /// The spawned process: its pid, signals, exit, output.
    pub fn process(&mut self) -> &mut Process {
        match &mut self.inner {
            Inner::Process(p) => p,
            Inner::InProcess(_) => panic!("an in-process sidecar has no process of its own"),
        }
    }

    /// Every span in the ring now (in-process).
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.sidecar().ring.newest(usize::MAX)
    }

    /// Every span in the ring once it holds at least `n` (in-process);
    /// fails the test if they do not arrive in time.
    pub async fn wait_for_spans(&self, n: usize) -> Vec<SpanRecord> {
        let ring = &self.sidecar().ring;
        let found = super::wait::until(SETTLE, async || {
            let all = ring.newest(usize::MAX);
            (all.len() >= n).then_some(all)
        })
        .await;
        found.unwrap_or_else(|| {
            let all = ring.newest(usize::MAX);
            panic!("expected {n} spans, have {}: {all:#?}", all.len())
        })
    }

    /// The spans `/api/traces` shows (OTLP/JSON), newest first, flattened.
    pub async fn api_spans(&self) -> Vec<Value> {
        let r = Client::http1().get(&format!("{}/api/traces?limit=1000", self.admin_url())).send().await;
        assert_eq!(r.status, 200, "/api/traces: {}", r.text());
        let doc: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/api/traces: {e}: {}", r.text()));
        super::otlp::spans(&doc)
    }

    /// The access log of a spawned sidetrace (`--access-log json`): its
    /// stdout lines so far, parsed.
    pub fn access_log(&mut self) -> Vec<Value> {
        self.process().stdout_lines().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The access log line whose `path` is `path`, once it is written (the
    /// log has a thread of its own).
    pub fn wait_for_access_log(&mut self, path: &str) -> Value {
        let found = super::wait::until_sync(SETTLE, || self.access_log().into_iter().find(|l| l["path"] == path));
        found.unwrap_or_else(|| panic!("no access log line for {path}\n{}", self.output()))
    }

    /// `/metrics` in the classic text format, parsed.
    pub async fn metrics(&self) -> Metrics {
        let r = Client::http1().get(&format!("{}/metrics", self.admin_url())).send().await;
        assert_eq!(r.status, 200, "/metrics: {}", r.text());
        Metrics::parse(&r.text())
    }

    /// `/metrics` as a scraper that sends `Accept: accept` gets it: the
    /// whole answer (its `content-type` says which format; the protobuf
    /// format is bytes, not text).
    pub async fn scrape(&self, accept: &str) -> super::client::Response {
        let r = Client::http1().get(&format!("{}/metrics", self.admin_url())).header("accept", accept).send().await;
        assert_eq!(r.status, 200, "/metrics (Accept: {accept}): {}", r.text());
        r
    }

    /// `/api/stats`, parsed.
    pub async fn stats(&self) -> Value {
        let r = Client::http1().get(&format!("{}/api/stats", self.admin_url())).send().await;
        assert_eq!(r.status, 200, "/api/stats: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/api/stats: {e}: {}", r.text()))
    }

    /// What a spawned sidetrace printed, for a failure message.
    pub fn output(&self) -> String {
        match &self.inner {
            Inner::Process(p) => p.output(),
            Inner::InProcess(_) => String::from("(in-process: its log is the test's)"),
        }
    }

    /// Drains and stops an in-process sidecar; whether the drain finished
    /// in time.
    pub async fn shutdown(self) -> bool {
        match self.inner {
            Inner::InProcess(s) => (*s).shutdown().await,
            Inner::Process(_) => panic!("stop a spawned sidetrace with a signal"),
        }
    }
}

impl Builder {
    /// `service.name` (default `test-service`).
    pub fn service(mut self, name: &str) -> Self {
        self.service = name.to_string();
        self
    }

    /// More `sidetrace run` flags.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// Changes the configuration directly (in-process only), for what no
    /// flag sets.
    pub fn config(mut self, edit: impl FnOnce(&mut Config) + 'static) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// An environment variable for the spawned process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs the spawned binary under `wrapper` (e.g. `ip netns exec NS`,
    /// `setpriv …`): the wrapper's words come first, then the binary.
    pub fn wrapped(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|w| w.to_string()).collect();
        self
    }

    /// In this process.
    pub async fn start(self) -> TestProxy {
        assert!(self.env.is_empty() && self.wrapper.is_empty(), "env and wrapped are for spawned proxies");
        let app = self.app.unwrap_or_else(super::apps::refusing);
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let mut config = Config::local_with(app, &self.service, &flags);
        for edit in self.edits {
            edit(&mut config);
        }
        TestProxy::start(config).await
    }

    /// The real binary, ready when this returns.
    pub fn spawn(self) -> TestProxy {
        assert!(self.edits.is_empty(), "config edits are for in-process proxies; give a spawned one flags");
        assert!(
            !self.flags.iter().any(|f| f == "--log"),
            "a spawned TestProxy logs at info: it reads its addresses from the start-up line"
        );
        let given = |flag: &str| self.flags.iter().any(|f| f == flag);
        let mut args: Vec<String> = vec!["run".into()];
        let app = self.app.map(|a| a.to_string());
        let defaults = [
            ("--inbound", Some("127.0.0.1:0")),
            ("--outbound", Some("127.0.0.1:0")),
            ("--admin", Some("127.0.0.1:0")),
            // One port per test: the trace API on the admin listener.
            ("--api", Some("admin")),
            ("--access-log", Some("off")),
            ("--service-name", Some(self.service.as_str())),
            ("--app", app.as_deref()),
        ];
        for (flag, value) in defaults {
            if let (false, Some(value)) = (given(flag), value) {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        args.extend(["--log".into(), "info".into()]);
        args.extend(self.flags.iter().cloned());
        let mut cmd = wrapped_command(&self.wrapper, &args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut process = Process::spawn("sidetrace", &mut cmd);
        let started = super::wait::until_sync(SETTLE, || {
            process.assert_running();
            let lines = process.stderr.lock().unwrap();
            lines.iter().map(|l| strip_ansi(l)).find(|l| l.contains("sidetrace started"))
        });
        let line = started.unwrap_or_else(|| panic!("sidetrace did not start in {SETTLE:?}\n{}", process.output()));
        TestProxy {
            inbound: listener(&line, "inbound"),
            outbound: listener(&line, "outbound"),
            admin: listener(&line, "admin"),
            api: listener(&line, "api"),
            inner: Inner::Process(process),
        }
    }
}

/// `key=Some(ADDR)` of the start-up line (`None` when it is off).
fn listener(line: &str, key: &str) -> Option<SocketAddr> {
    let value = line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}=")))?;
    let addr = value.strip_prefix("Some(")?.strip_suffix(')')?;
    Some(addr.parse().unwrap_or_else(|e| panic!("{key}={value} in {line:?}: {e}")))
}

pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters… final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
