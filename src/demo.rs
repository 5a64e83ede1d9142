//! `sidetrace demo`: three services with no tracing code, none of them
//! forwarding a header, a sidecar beside each, and whole traces at the end.
//!
//! ```text
//! producer ─► [producer sidecar] ─► [consumer sidecar] ─► consumer ─► [consumer sidecar] ─► [store sidecar] ─► store
//!              CLIENT span            SERVER span                      CLIENT span, stitched   SERVER span
//! ```
//!
//! The consumer copies nothing from the request it serves to the call it
//! makes; its sidecar sees both and joins them (`--stitch`), so each call
//! is one trace of four spans across three services. Every sidecar exports
//! its spans and its access log (as OTLP log records) to a `sidetrace
//! collector` running in the same process, whose UI shows them all. The
//! services are plain hyper programs in examples/apps/, compiled in here so
//! that the demo needs nothing but the binary.

#[path = "../examples/apps/mod.rs"]
mod apps;

use crate::Sidecar;
use crate::collector;
use crate::config::Config;
use crate::trace::{SpanId, SpanRecord, Stitching, TraceId};
use crate::vocab::Direction;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How long to run, e.g. 10s or 2m [default: until Ctrl-C]
    #[arg(long, value_parser = positive_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// The producer's pace: at most one call every N milliseconds, one call at a time.
    #[arg(long, default_value = "5", value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub interval_ms: u64,

    /// Where the collector's UI listens (a free port if this one is taken).
    #[arg(long, default_value = "127.0.0.1:16686", value_name = "ADDR")]
    pub ui: SocketAddr,

    /// Run one of the demo's apps alone, with no sidecar and no collector:
    /// a container of deploy/examples/demo, beside the sidecar injection adds.
    #[arg(long, value_enum, value_name = "APP")]
    pub only: Option<App>,

    /// With --only consumer or store: where the app serves HTTP.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// With --only: the service the app calls, http://HOST:PORT (the
    /// producer's consumer, required; the consumer's store, else it answers
    /// alone). Called directly: in a pod, the redirect rules take the call
    /// through the sidecar.
    #[arg(long, value_parser = downstream, value_name = "URL")]
    pub downstream: Option<Downstream>,
}

/// The apps of examples/apps.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// Calls --downstream (the consumer) every --interval-ms.
    Producer,
    /// Serves /orders/{id} and /inventory/{sku} on --listen, asking --downstream (the store).
    Consumer,
    /// Serves /stock/{sku} on --listen.
    Store,
}

/// `--downstream`: the `host:port` of an `http://` URL.
#[derive(Clone, Debug)]
pub struct Downstream {
    host: String,
    port: u16,
}

impl Downstream {
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The first address the name resolves to (a Service's cluster IP).
    async fn resolve(&self) -> Result<SocketAddr, String> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port)).await;
        addrs
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| format!("--downstream {}: the name resolves to no address", self.authority()))
    }
}

fn downstream(s: &str) -> Result<Downstream, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err("expected http://HOST:PORT".into());
    }
    let host = uri.host().ok_or("expected http://HOST:PORT")?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok(Downstream { host, port: uri.port_u16().unwrap_or(80) })
}

/// The in-process collector: memory storage, loopback only.
async fn collector(ui: SocketAddr) -> Result<collector::Running, collector::CollectorError> {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        args: collector::CollectorArgs,
    }
    let args = |ui: SocketAddr| {
        let ui = ui.to_string();
        let argv = ["collector", "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--ui", &ui];
        <Flags as clap::Parser>::try_parse_from(argv.into_iter().chain(["--storage", "memory"]))
            .map(|f| f.args)
            .map_err(|e| collector::CollectorError::Config(e.to_string()))
    };
    match collector::serve(&args(ui)?).await {
        Err(collector::CollectorError::Bind { what: "--ui", .. }) => {
            collector::serve(&args(SocketAddr::new(ui.ip(), 0))?).await
        }
        other => other,
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse::duration(s).and_then(|d| if d.is_zero() { Err("must be above 0".into()) } else { Ok(d) })
}

pub fn main(args: &DemoArgs) -> ExitCode {
    if args.only == Some(App::Producer) && args.downstream.is_none() {
        eprintln!("sidetrace demo: --only producer needs --downstream URL (the consumer)");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sidetrace demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match args.only {
        Some(app) => runtime.block_on(only(app, args)),
        None => runtime.block_on(run(args)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sidetrace demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn listen() -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let a = l.local_addr()?;
    Ok((l, a))
}

/// `--only APP`: one app, serving (or calling) until SIGTERM or Ctrl-C, or
/// for the producer until --duration.
async fn only(app: App, args: &DemoArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let downstream = match &args.downstream {
        Some(d) => Some((d.authority(), d.resolve().await?)),
        None => None,
    };
    let serve = match app {
        App::Producer => None,
        App::Consumer | App::Store => Some(
            TcpListener::bind(args.listen)
                .await
                .map_err(|e| format!("cannot listen on {} (--listen): {e}", args.listen))?,
        ),
    };
    match (app, serve, downstream) {
        (App::Store, Some(listener), _) => {
            println!("sidetrace demo: store serving http://{}/stock/<sku>", listener.local_addr()?);
            tokio::select! {
                () = apps::store::run(listener) => {}
                () = crate::drain::stop_signal() => {}
            }
        }
        (App::Consumer, Some(listener), store) => {
            let local = listener.local_addr()?;
            let serving = match store {
                Some((authority, addr)) => {
                    println!(
                        "sidetrace demo: consumer serving http://{local}/orders/<id>, asking the store {authority}"
                    );
                    let store = apps::consumer::Store { proxy: addr, authority: authority.into() };
                    tokio::spawn(apps::consumer::run_with_store(listener, store))
                }
                None => {
                    println!("sidetrace demo: consumer serving http://{local}/orders/<id>, with no store");
                    tokio::spawn(apps::consumer::run(listener))
                }
            };
            crate::drain::stop_signal().await;
            serving.abort();
        }
        (App::Producer, _, Some((authority, addr))) => {
            let interval = Duration::from_millis(args.interval_ms);
            println!("sidetrace demo: producer calling http://{authority} every {} ms", args.interval_ms);
            let run_for = args.duration.unwrap_or(Duration::from_secs(365 * 24 * 3600));
            let tally = tokio::select! {
                t = apps::producer::run_to(addr, &authority, interval, run_for) => t,
                () = crate::drain::stop_signal() => apps::producer::Tally::default(),
            };
            println!(
                "producer: {} calls answered ({} ok, {} with 5xx), {} failed without an answer",
                tally.answered(),
                tally.ok,
                tally.server_errors,
                tally.failed
            );
            return Ok(tally.answered() > 0 || args.duration.is_none());
        }
        (App::Producer, _, None) | (App::Consumer | App::Store, None, _) => unreachable!("checked in main"),
    }
    println!("stopping");
    Ok(true)
}

/// Returns whether at least one call made a whole three-hop trace.
async fn run(args: &DemoArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let interval = Duration::from_millis(args.interval_ms);
    // The ring must hold the whole run, or the summary would miss its start.
    let expected = args.duration.map_or(100_000, |d| (d.as_millis() / interval.as_millis().max(1)) as usize);
    let collector = collector(args.ui).await?;
    let endpoint = format!("http://{}", collector.otlp_http);
    let export = ["--otlp-endpoint", endpoint.as_str(), "--logs-exporter", "otlp", "--export-delay", "200ms"];
    let config = |app, name| Config {
        trace_buffer: (2 * expected + 1000).max(10_000),
        ..Config::local_with(app, name, &export)
    };

    let (store_listener, store_app) = listen().await?;
    let store_task = tokio::spawn(apps::store::run(store_listener));
    let store = Sidecar::start(config(store_app, "store")).await?;

    let (consumer_listener, consumer_app) = listen().await?;
    let consumer = Sidecar::start(config(consumer_app, "consumer")).await?;
    let store_inbound = store.inbound.ok_or("no inbound listener")?;
    let to_store = apps::consumer::Store {
        proxy: consumer.outbound.ok_or("no outbound listener")?,
        authority: store_inbound.to_string().into(),
    };
    let consumer_task = tokio::spawn(apps::consumer::run_with_store(consumer_listener, to_store));

    // The producer serves nothing, so its sidecar's inbound side has no app
    // behind it; only its outbound side is used.
    let producer = Sidecar::start(config(SocketAddr::from(([127, 0, 0, 1], 9)), "producer")).await?;
    let (proxy, target) =
        (producer.outbound.ok_or("no outbound listener")?, consumer.inbound.ok_or("no inbound listener")?);

    println!("sidetrace demo: producer ─► consumer ─► store, each behind its own sidecar, none with tracing code");
    println!("  producer            calls through its sidecar's outbound side {proxy}");
    println!("  consumer            {consumer_app}, behind its sidecar's inbound side {target}");
    println!("  store               {store_app}, behind its sidecar's inbound side {store_inbound}");
    println!("  collector           OTLP {}, every sidecar's spans and access log", collector.otlp_http);
    println!("\nthe UI, while the demo runs:  http://{}/ui", collector.ui);
    println!("  (each sidecar's own:  {})", {
        let each = [&producer, &consumer, &store].map(|s| s.admin.map_or("-".into(), |a| format!("http://{a}/ui")));
        each.join("  ")
    });
    let how_long = args.duration.map_or("until Ctrl-C".into(), |d| format!("for {}", humantime::format_duration(d)));
    println!(
        "\ncalling GET http://{target}/orders/<id> and /inventory/<sku> {how_long}, one call at a time, at most one every {} ms ...",
        interval.as_millis()
    );

    let started = Instant::now();
    let run_for = args.duration.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let calls = apps::producer::run(proxy, target, interval, run_for);
    let tally = tokio::select! {
        t = calls => t,
        _ = crate::drain::stop_signal() => {
            println!("\nstopping");
            apps::producer::Tally::default()
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let answered = match tally.answered() {
        0 => consumer.metrics.stats().routes.iter().filter(|r| r.direction == "inbound").map(|r| r.count).sum(),
        n => n,
    };
    println!(
        "producer: {answered} calls answered, {:.0}/s ({} ok, {} with 5xx), {} failed without an answer",
        answered as f64 / elapsed,
        tally.ok,
        tally.server_errors,
        tally.failed
    );

    settle(&[&producer, &consumer, &store], answered).await;
    let spans = |s: &Sidecar, d: Direction| -> Vec<SpanRecord> {
        s.ring.newest(usize::MAX).into_iter().filter(|x| x.direction == d).collect()
    };
    let hops = Hops {
        producer_client: spans(&producer, Direction::Outbound),
        consumer_server: spans(&consumer, Direction::Inbound),
        consumer_client: spans(&consumer, Direction::Outbound),
        store_server: spans(&store, Direction::Inbound),
    };

    println!("\nspans recorded");
    for (name, sidecar) in [("producer sidecar", &producer), ("consumer sidecar", &consumer), ("store sidecar", &store)]
    {
        let (recorded, dropped) =
            (sidecar.stats.recorded.load(Ordering::Relaxed), sidecar.stats.dropped_queue_full.load(Ordering::Relaxed));
        println!("  {name:<18} {recorded:>6} ({dropped} dropped)");
    }

    let mut whole = hops.whole_traces();
    // A call cut short by Ctrl-C has no answer, and no whole trace to show.
    let answered_calls = hops.producer_client.iter().filter(|s| s.status.is_some()).count();
    println!(
        "\nthree-hop traces: {}/{} answered producer calls are one trace producer → consumer → store (4 spans, 3 services)",
        whole.iter().filter(|t| t[0].status.is_some()).count(),
        answered_calls
    );
    let stitched = hops.consumer_client.iter().filter(|s| s.stitching == Stitching::Joined).count();
    println!(
        "  the consumer's calls to the store joined to the request they were made for: {stitched}/{}",
        hops.consumer_client.len()
    );
    // The first call also pays for opening connections; a median one is typical.
    whole.sort_by_key(|t| t[0].duration_nanos());
    if let Some(trace) = whole.get(whole.len() / 2) {
        print_trace(trace, [&producer, &consumer, &consumer, &store]);
    }

    // The same numbers as each sidecar's GET /api/stats.
    println!("\nper route, as each sidecar measured it ({elapsed:.1} s)");
    println!("producer sidecar, outbound (CLIENT spans)");
    print!("{}", producer.metrics.stats().table(Direction::Outbound));
    println!("consumer sidecar, inbound (SERVER spans)");
    print!("{}", consumer.metrics.stats().table(Direction::Inbound));
    println!("consumer sidecar, outbound (CLIENT spans)");
    print!("{}", consumer.metrics.stats().table(Direction::Outbound));
    println!("store sidecar, inbound (SERVER spans)");
    print!("{}", store.metrics.stats().table(Direction::Inbound));

    let (p, c, s) = tokio::join!(producer.shutdown(), consumer.shutdown(), store.shutdown());
    consumer_task.abort();
    store_task.abort();
    // The sidecars flushed their last batches to the collector on shutdown.
    match collected(collector.ui).await {
        Ok((services, logs)) => println!("\ncollector: services {services}; {logs} access-log lines stored"),
        Err(e) => println!("\ncollector: could not be asked ({e})"),
    }
    collector.stop();
    println!("\nshut down: {}", if p && c && s { "every sidecar drained" } else { "a drain timed out" });
    if whole.is_empty() {
        eprintln!("demo: no call made a whole producer → consumer → store trace");
    }
    Ok(!whole.is_empty())
}

/// What the collector holds: its services and how many log lines, asked
/// through its own API as the UI asks it.
async fn collected(ui: SocketAddr) -> Result<(String, String), Box<dyn std::error::Error>> {
    let get = |path: String| async move {
        let stream = tokio::net::TcpStream::connect(ui).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, ui.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let body = http_body_util::BodyExt::collect(sender.send_request(req).await?.into_body()).await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error>>(serde_json::from_slice::<serde_json::Value>(&body)?)
    };
    let services = get("/api/services".into()).await?;
    let names: Vec<&str> =
        services["services"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    let (mut logs, mut capped) = (0, false);
    for name in &names {
        // The API answers at most 1000 lines at a time.
        let n = get(format!("/api/logs?service={name}&limit=1000")).await?["logs"].as_array().map_or(0, Vec::len);
        logs += n;
        capped |= n == 1000;
    }
    Ok((names.join(", "), format!("{logs}{}", if capped { " or more" } else { "" })))
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

/// The spans of each hop, as its sidecar recorded them.
struct Hops {
    producer_client: Vec<SpanRecord>,
    consumer_server: Vec<SpanRecord>,
    consumer_client: Vec<SpanRecord>,
    store_server: Vec<SpanRecord>,
}

impl Hops {
    /// Every producer call whose trace runs through all four spans, each
    /// the child of the one before it.
    fn whole_traces(&self) -> Vec<[&SpanRecord; 4]> {
        let children = |spans: &[SpanRecord]| -> HashMap<(TraceId, SpanId), usize> {
            spans.iter().enumerate().filter_map(|(i, s)| Some(((s.trace_id, s.parent_span_id?), i))).collect()
        };
        let (cs, cc, ss) =
            (children(&self.consumer_server), children(&self.consumer_client), children(&self.store_server));
        let child = |map: &HashMap<(TraceId, SpanId), usize>, parent: &SpanRecord| {
            map.get(&(parent.trace_id, parent.span_id)).copied()
        };
        self.producer_client
            .iter()
            .filter_map(|a| {
                let b = &self.consumer_server[child(&cs, a)?];
                let c = &self.consumer_client[child(&cc, b)?];
                let d = &self.store_server[child(&ss, c)?];
                Some([a, b, c, d])
            })
            .collect()
    }
}

fn print_trace(trace: &[&SpanRecord; 4], sidecars: [&Sidecar; 4]) {
    println!("  example trace {} (the median producer call)", trace[0].trace_id);
    let kinds = ["CLIENT", "SERVER", "CLIENT", "SERVER"];
    for (i, (span, sidecar)) in trace.iter().zip(sidecars).enumerate() {
        let indent = if i == 0 { String::new() } else { format!("{}└─ ", "   ".repeat(i - 1)) };
        let name = format!("{indent}{}", sidecar.encoder.span(span).name);
        let status = span.status.map_or("-".into(), |s| s.to_string());
        println!(
            "    {name:<36} {:<9} {:<6} {status:>3} {:>8.2} ms",
            sidecar.encoder.resource.service_name(),
            kinds[i],
            span.duration_nanos() as f64 / 1e6
        );
    }
}
