//! Process health as the Prometheus conventions name it (`process_*`, as
//! client_golang's process collector does), read from /proc at scrape time.

use super::writer::{Kind, SECONDS, Writer};
use std::fmt;

#[derive(Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub threads: u64,
    pub start_time_seconds: f64,
}

/// Reads the current process; `None` where /proc is missing.
pub fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse::<u64>().ok()?;
    // SAFETY: sysconf and getrlimit only read process-wide settings.
    let (ticks, page, max_fds) = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 { lim.rlim_cur } else { 0 };
        (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE), max)
    };
    let mut p = parse_stat(&stat, ticks.max(1) as f64, page.max(1) as u64, btime)?;
    p.max_fds = max_fds;
    p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Some(p)
}

/// `/proc/self/stat` (proc(5)): fields after the parenthesised command,
/// which may itself hold spaces and parentheses.
fn parse_stat(stat: &str, ticks_per_second: f64, page: u64, btime: u64) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field n is f[n - 3].
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Process {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks_per_second,
        threads: field(20)?,
        start_time_seconds: btime as f64 + field(22)? as f64 / ticks_per_second,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        ..Process::default()
    })
}

pub fn render(w: &mut Writer) -> fmt::Result {
    let Some(p) = read() else { return Ok(()) };
    let mut f = w.family(
        "process_cpu_seconds",
        Kind::Counter,
        Some(&SECONDS),
        "Total user and system CPU time spent in seconds.",
    )?;
    f.counter(&[], p.cpu_seconds)?;
    let gauges = [
        ("process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", p.virtual_bytes),
        ("process_open_fds", "Number of open file descriptors.", p.open_fds),
        ("process_max_fds", "Maximum number of open file descriptors.", p.max_fds),
        ("process_threads", "Number of OS threads in the process.", p.threads),
    ];
    for (name, help, v) in gauges {
        w.family(name, Kind::Gauge, None, help)?.gauge(&[], v)?;
    }
    let help = "Start time of the process since unix epoch in seconds.";
    w.family("process_start_time_seconds", Kind::Gauge, None, help)?.gauge(&[], p.start_time_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_an_awkward_name() {
        let line = "4242 (side trace) (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 3000 18446744073709551615";
        let p = parse_stat(line, 100.0, 4096, 1_700_000_000).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!(p.virtual_bytes, 123_456_789);
        assert_eq!(p.resident_bytes, 3000 * 4096);
    }

    #[test]
    fn reads_this_process() {
        let p = read().expect("/proc is there");
        assert!(p.resident_bytes > 0 && p.threads >= 1 && p.open_fds >= 3 && p.max_fds >= p.open_fds);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0 * 365.0);
    }
}
