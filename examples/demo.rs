//! The zero-code demo: two services with no tracing code, a sidecar beside
//! each, and whole traces at the end.
//!
//! ```text
//! producer ─► producer sidecar (outbound, HTTP proxy) ─► consumer sidecar (inbound) ─► consumer
//!              CLIENT span, injects traceparent           SERVER span, child of the CLIENT span
//! ```
//!
//! Run with `cargo run --release --example demo [-- --seconds N --interval-ms N]`.

mod apps;

use sidetrace::Sidecar;
use sidetrace::config::Config;
use sidetrace::trace::{SpanId, SpanRecord, TraceId};
use sidetrace::vocab::Direction;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const USAGE: &str = "usage: demo [--seconds N] [--interval-ms N]   (defaults: 5 s, one call every 5 ms)";

struct Args {
    seconds: u64,
    interval_ms: u64,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args { seconds: 5, interval_ms: 5 };
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        let slot = match flag.as_str() {
            "--seconds" => &mut args.seconds,
            "--interval-ms" => &mut args.interval_ms,
            "-h" | "--help" => return Ok(None),
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        let value = inline.or_else(|| argv.next()).ok_or_else(|| format!("{flag} needs a value"))?;
        *slot = value
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{flag}: expected a positive whole number, got {value:?}"))?;
    }
    Ok(Some(args))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("demo: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns whether at least one trace joined across the two sidecars.
async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let app_listener = TcpListener::bind("127.0.0.1:0").await?;
    let app_addr = app_listener.local_addr()?;
    let app = tokio::spawn(apps::consumer::run(app_listener));

    let expected = args.seconds * 1000 / args.interval_ms;
    // The ring must hold the whole run, or the summary would miss its start.
    let config =
        |app, name| Config { trace_buffer: (expected as usize + 1000).max(10_000), ..Config::local(app, name) };
    let consumer = Sidecar::start(config(app_addr, "consumer")).await?;
    // The producer serves nothing, so its sidecar's inbound side has no app
    // behind it; only its outbound side is used.
    let producer = Sidecar::start(config(SocketAddr::from(([127, 0, 0, 1], 9)), "producer")).await?;
    let (proxy, target) =
        (producer.outbound.ok_or("no outbound listener")?, consumer.inbound.ok_or("no inbound listener")?);

    println!("sidetrace demo: producer ─► producer sidecar ─► consumer sidecar ─► consumer");
    println!("  consumer app       {app_addr}");
    println!("  consumer sidecar   inbound {target}, forwarding to the consumer app");
    println!("  producer sidecar   outbound {proxy}, the producer's HTTP proxy");
    // One call at a time, as a simple app makes them: a slow answer delays
    // the next call, so the rate achieved can fall below one per interval.
    println!(
        "\ncalling GET http://{target}/orders/<id> and /inventory/<sku> for {} s, one call at a time, at most one every {} ms ...",
        args.seconds, args.interval_ms
    );
    let started = Instant::now();
    let tally =
        apps::producer::run(proxy, target, Duration::from_millis(args.interval_ms), Duration::from_secs(args.seconds))
            .await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "producer: {} calls answered, {:.0}/s ({} ok, {} with 5xx), {} failed without an answer",
        tally.answered(),
        tally.answered() as f64 / elapsed,
        tally.ok,
        tally.server_errors,
        tally.failed
    );

    settle(&[&producer, &consumer], tally.answered()).await;
    let client_spans: Vec<SpanRecord> =
        producer.ring.newest(usize::MAX).into_iter().filter(|s| s.direction == Direction::Outbound).collect();
    let server_spans: Vec<SpanRecord> =
        consumer.ring.newest(usize::MAX).into_iter().filter(|s| s.direction == Direction::Inbound).collect();

    println!("\nspans recorded");
    for (name, sidecar) in [("producer sidecar", &producer), ("consumer sidecar", &consumer)] {
        let (recorded, dropped) =
            (sidecar.stats.recorded.load(Ordering::Relaxed), sidecar.stats.dropped_queue_full.load(Ordering::Relaxed));
        println!("  {name:<18} {recorded:>6} ({dropped} dropped)");
    }

    let mut joined = join(&client_spans, &server_spans);
    println!(
        "\ntraces joined: {}/{} producer CLIENT spans have a consumer SERVER child",
        joined.len(),
        client_spans.len()
    );
    // The first call also pays for opening connections; a median one is typical.
    joined.sort_by_key(|(client, _)| client.duration_nanos());
    if let Some((client, server)) = joined.get(joined.len() / 2) {
        print_trace(client, &producer, server, &consumer);
    }

    // The same numbers as each sidecar's GET /api/stats.
    println!("\noutbound: producer sidecar, CLIENT spans, {elapsed:.1} s");
    print!("{}", producer.metrics.stats().table(Direction::Outbound));
    println!("\ninbound: consumer sidecar, SERVER spans, {elapsed:.1} s");
    print!("{}", consumer.metrics.stats().table(Direction::Inbound));

    println!("\nadmin (until shutdown): /live /ready /api/traces");
    for (name, sidecar) in [("producer sidecar", &producer), ("consumer sidecar", &consumer)] {
        println!("  {name:<18} http://{}/api/traces", sidecar.admin.map_or("-".into(), |a| a.to_string()));
    }
    let (p, c) = tokio::join!(producer.shutdown(), consumer.shutdown());
    app.abort();
    println!("\nshut down: {}", if p && c { "both sidecars drained" } else { "drain timed out" });
    if joined.is_empty() {
        eprintln!("demo: no trace joined a producer CLIENT span to a consumer SERVER span");
    }
    Ok(!joined.is_empty())
}

/// A span reaches the ring through the export task a moment after its
/// response ends; wait for every sidecar to show at least `expected`.
async fn settle(sidecars: &[&Sidecar], expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let done = |s: &Sidecar| {
        let recorded = s.stats.recorded.load(Ordering::Relaxed);
        recorded >= expected && s.ring.len() as u64 + s.stats.dropped_queue_full.load(Ordering::Relaxed) >= recorded
    };
    while Instant::now() < deadline && !sidecars.iter().all(|s| done(s)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pairs each CLIENT span with the SERVER span that names it as parent.
fn join<'a>(clients: &'a [SpanRecord], servers: &'a [SpanRecord]) -> Vec<(&'a SpanRecord, &'a SpanRecord)> {
    let by_parent: HashMap<(TraceId, SpanId), &SpanRecord> =
        servers.iter().filter_map(|s| Some(((s.trace_id, s.parent_span_id?), s))).collect();
    clients.iter().filter_map(|c| Some((c, *by_parent.get(&(c.trace_id, c.span_id))?))).collect()
}

fn print_trace(client: &SpanRecord, producer: &Sidecar, server: &SpanRecord, consumer: &Sidecar) {
    println!("  example trace {} (the median CLIENT duration)", client.trace_id);
    let line = |indent: &str, span: &SpanRecord, sidecar: &Sidecar, kind: &str| {
        let name = format!("{indent}{}", sidecar.encoder.span(span).name);
        let status = span.status.map_or("-".into(), |s| s.to_string());
        println!(
            "    {name:<28} {:<9} {kind:<6} {status:>3} {:>8.2} ms",
            sidecar.encoder.resource.service_name(),
            ms(span)
        );
    };
    line("", client, producer, "CLIENT");
    line("└─ ", server, consumer, "SERVER");
}

fn ms(span: &SpanRecord) -> f64 {
    span.duration_nanos() as f64 / 1e6
}
