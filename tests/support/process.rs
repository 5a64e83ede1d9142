//! A child process the test owns: its output collected line by line as it
//! comes (for diagnostics, and for tests that read an access log), killed
//! and reaped when the test lets go of it, whether the test passes or
//! panics. Peers (Python servers, Prometheus, openssl) and the sidetrace
//! binary itself (`proxy::TestProxy::spawn`, `proxy::Server`) run in one.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Lines of a child's output, filled by a thread while the child runs.
pub type Lines = Arc<Mutex<Vec<String>>>;

pub struct Process {
    name: String,
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts `cmd` with stdin closed and stdout and stderr collected;
    /// `name` says which process a failure message is about.
    pub fn spawn(name: &str, cmd: &mut Command) -> Process {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let (stdout, out_reader) = collect_joined(child.stdout.take().expect("piped stdout"));
        let (stderr, err_reader) = collect_joined(child.stderr.take().expect("piped stderr"));
        Process { name: name.to_string(), child, stdout, stderr, readers: vec![out_reader, err_reader] }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, which we have not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}): {}", self.name, std::io::Error::last_os_error());
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on our own child")
    }

    /// Panics with the process's own words if it has ended.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited early ({status})\n{}", self.name, self.output());
        }
    }

    /// Waits, for at most `limit`, until the process ends and its output
    /// has been read to the end; panics if it does not end in time.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = super::wait::until_sync(limit, || self.exited());
        let status = status.unwrap_or_else(|| panic!("{} still runs after {limit:?}\n{}", self.name, self.output()));
        // The pipes close with the process; the readers end right after.
        let done = super::wait::until_sync(Duration::from_secs(5), || self.readers.iter().all(|r| r.is_finished()));
        assert!(done.is_some(), "{}'s output pipes stayed open after it exited", self.name);
        status
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Everything it printed so far, for a failure message.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout:\n{}\n--- {} stderr:\n{}",
            self.name,
            self.stdout.lock().unwrap().join("\n"),
            self.name,
            self.stderr_text()
        )
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects a pipe's lines on a thread that ends with the pipe.
pub fn collect(pipe: impl Read + Send + 'static) -> Lines {
    collect_joined(pipe).0
}

fn collect_joined(pipe: impl Read + Send + 'static) -> (Lines, JoinHandle<()>) {
    let lines = Lines::default();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

/// A field of `/proc/PID/status` in KiB (`"VmRSS:"`, `"VmHWM:"`): a
/// process's memory as the kernel counts it.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Lets this process (and the proxies it starts) hold `n` more descriptors.
pub fn raise_fd_limit(n: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max.min(lim.rlim_cur.max(n + 1024));
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    assert!(lim.rlim_cur >= n + 256, "the descriptor limit {} is too low for {n} connections", lim.rlim_cur);
}
