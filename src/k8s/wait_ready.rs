//! `sidetrace wait-ready`: polls a sidecar's `GET /ready` until it answers
//! 200, or gives up after `--timeout`. It is the postStart hook of a
//! non-native sidecar: the kubelet starts a pod's containers in order and
//! waits for each one's postStart hook, so the app starts only once the
//! proxy is ready. The image is `FROM scratch` (no shell, no curl), hence a
//! subcommand of the binary itself; plain blocking HTTP/1.1, no runtime.

use clap::Args;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct WaitReadyArgs {
    /// The sidecar's admin address.
    #[arg(long, env = "SIDETRACE_WAIT_READY_ADMIN", default_value = "127.0.0.1:15020", value_name = "ADDR")]
    pub admin: SocketAddr,

    /// Give up (exit 1) after this long.
    #[arg(long, env = "SIDETRACE_WAIT_READY_TIMEOUT", default_value = "60s", value_parser = crate::config::parse::duration, value_name = "DURATION")]
    pub timeout: Duration,
}

const POLL: Duration = Duration::from_millis(200);

pub fn run(args: &WaitReadyArgs) -> ExitCode {
    let deadline = Instant::now() + args.timeout;
    loop {
        if ready(args.admin) {
            return ExitCode::SUCCESS;
        }
        if Instant::now() + POLL > deadline {
            eprintln!("sidetrace wait-ready: http://{}/ready did not answer 200 within {:?}", args.admin, args.timeout);
            return ExitCode::from(1);
        }
        std::thread::sleep(POLL);
    }
}

/// One `GET /ready`; anything but a 200 status line is "not yet".
pub fn ready(admin: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.set_write_timeout(Some(Duration::from_secs(1)))?;
        // One write: a request split over segments may meet a server that
        // answers and closes after the first, resetting the connection.
        s.write_all(format!("GET /ready HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes())?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    attempt().unwrap_or(false)
}
