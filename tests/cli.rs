//! The command line as users meet it: bad input gets one clear line and
//! exit code 2; every flag of every command is documented in README.md
//! with its variable; SIGTERM drains in-flight requests and exits 0.

mod support;

use std::time::Duration;
use support::proxy::sidetrace;
use support::{Client, TestProxy, apps, wait};

/// Arguments, environment, and what the error line must name.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let cases: &[Case] = &[
        (&["run", "--inbound", "nope"], &[], "--inbound"),
        (&["run", "--app", "localhost"], &[], "--app"),
        (&["run", "--access-log", "xml"], &[], "--access-log"),
        (&["run", "--opaque-ports", "25,http"], &[], "--opaque-ports"),
        (&["run", "--drain-timeout", "soon"], &[], "--drain-timeout"),
        (&["run", "--route", "users/{id}"], &[], "--route"),
        (&["run", "--trace-buffer", "0"], &[], "--trace-buffer"),
        (&["run", "--no-such-flag"], &[], "--no-such-flag"),
        (&["run"], &[("SIDETRACE_ACCESS_LOG", "xml")], "--access-log"),
        (&["run"], &[("OTEL_RESOURCE_ATTRIBUTES", "justakey")], "OTEL_RESOURCE_ATTRIBUTES"),
        (&["run", "--log", "info,[[["], &[], "--log"),
        (&["run", "--inbound", "127.0.0.1:8080"], &[], "--inbound"),
        (&["frobnicate"], &[], "frobnicate"),
    ];
    for (args, env, names) in cases {
        // Bind nothing real if parsing were to succeed by mistake.
        let argv: Vec<&str> = args.iter().copied().chain(["--admin", "off"]).collect();
        let mut run = sidetrace(&argv).limit(Duration::from_secs(2));
        for (k, v) in *env {
            run = run.env(k, v);
        }
        let out = run.output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: not one line:\n{stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr:?} does not name {names}");
    }
}

#[test]
fn a_port_in_use_is_an_error_with_several_workers_too() {
    let app = apps::refusing().to_string();
    let first = TestProxy::builder().flags(&["--app", &app, "--outbound", "off", "--admin", "off", "--workers", "2"]);
    let first = first.spawn();
    let inbound = first.inbound.unwrap().to_string();
    // Both would set SO_REUSEPORT; the second must not share the port.
    let args = ["run", "--inbound", &inbound, "--app", &app, "--outbound", "off", "--admin", "off", "--workers", "2"];
    let out = sidetrace(&args).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&inbound) && stderr.contains("--inbound"), "{stderr}");
    drop(first);
}

/// One option of a command's `--help`: its long flag and the variable
/// clap reads it from (`[env: NAME=]`), if any.
#[derive(Debug)]
struct Opt {
    flag: String,
    var: Option<String>,
}

/// Every option `sidetrace SUBCOMMAND --help` lists, read from clap's own
/// output.
fn options(subcommand: &str) -> Vec<Opt> {
    let out = sidetrace(&[subcommand, "--help"]).output();
    assert!(out.status.success(), "{subcommand} --help: {}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut opts: Vec<Opt> = Vec::new();
    for line in help.lines() {
        // clap indents an entry's first line by at most six spaces, its
        // description further.
        let indent = line.len() - line.trim_start().len();
        let words: Vec<&str> = line.split_whitespace().collect();
        if indent <= 6 && words.first().is_some_and(|w| w.starts_with('-')) {
            let flag = words.iter().map(|w| w.trim_end_matches(',')).find(|w| w.starts_with("--"));
            let flag = flag.unwrap_or_else(|| panic!("{subcommand}: an option without a long flag: {line:?}"));
            opts.push(Opt { flag: flag.to_string(), var: None });
        }
        if let Some(at) = line.find("[env: ") {
            let var: String = line[at + 6..].chars().take_while(|c| *c != '=' && *c != ']').collect();
            opts.last_mut().expect("an [env: …] inside an option's entry").var = Some(var);
        }
    }
    assert!(opts.len() >= 3, "{subcommand} --help lists no options?\n{help}");
    opts.retain(|o| o.flag != "--help" && o.flag != "--version");
    opts
}

/// Whether `word` occurs in `text` as a whole word: not as a piece of a
/// longer flag or variable (`--retry-max` inside `--retry-max-elapsed`).
fn has_word(text: &str, word: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(part) && !after.is_some_and(part)
    })
}

#[test]
fn has_word_sees_whole_flags_only() {
    assert!(has_word("| `--retry-max DURATION` |", "--retry-max"));
    assert!(!has_word("| `--retry-max-elapsed DURATION` |", "--retry-max"));
    assert!(!has_word("`SIDETRACE_RETRY_MAX_ELAPSED`", "SIDETRACE_RETRY_MAX"));
    assert!(has_word("--log, SIDETRACE_LOG.", "SIDETRACE_LOG"));
}

#[test]
fn readme_documents_every_flag_of_every_command_with_its_variable() {
    let readme = support::tools::read("README.md");
    let mut missing = Vec::new();
    for subcommand in ["run", "inject", "webhook", "wait-ready", "init-net", "demo"] {
        for o in options(subcommand) {
            if !has_word(&readme, &o.flag) {
                missing.push(format!("sidetrace {subcommand} {}", o.flag));
            }
            match &o.var {
                Some(var) if !has_word(&readme, var) => {
                    missing.push(format!("{var} (sidetrace {subcommand} {})", o.flag))
                }
                Some(_) => {}
                // Every flag of the sidecar itself can come from a variable,
                // as an injector sets them.
                None if subcommand == "run" => missing.push(format!("a variable for sidetrace run {}", o.flag)),
                None => {}
            }
        }
    }
    assert!(missing.is_empty(), "README.md lacks (as a whole word):\n{}", missing.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let app = apps::echo().await;
    let flags = ["--outbound", "off", "--admin", "off", "--access-log", "json", "--drain-timeout", "10s"];
    let mut proxy = TestProxy::to(app.addr).flags(&flags).spawn();
    let inbound = proxy.inbound.unwrap();
    let url = format!("{}/slow/1500", proxy.inbound_url());
    let slow = tokio::spawn(async move { Client::http1().get(&url).send().await });
    // Signal once the request is in flight: the app has it.
    let in_flight = wait::until(Duration::from_secs(10), async || !app.seen.lock().unwrap().is_empty()).await;
    assert!(in_flight.is_some(), "the request never reached the app");
    proxy.process().signal(libc::SIGTERM);
    let r = slow.await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "slow hello\n"), "the in-flight request finished");
    let status = proxy.process().wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", proxy.output());
    // Its access log line was flushed before exit.
    let lines = proxy.process().stdout_lines();
    assert!(lines.iter().any(|l| l.contains("\"path\":\"/slow/1500\"") && l.contains("\"status\":200")), "{lines:?}");
    // And the listener is gone.
    assert!(tokio::net::TcpStream::connect(inbound).await.is_err());
}
