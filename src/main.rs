//! The `sidetrace` commands: `run` (parse, configure, run until SIGTERM,
//! SIGINT or `POST /shutdown`), `collector` (src/collector), the Kubernetes
//! commands `inject`, `webhook`, `wait-ready` and `init-net`, and `demo`.
//!
//! Exit codes: 0 after a clean stop, 2 for bad input (a flag, a variable,
//! a file named by one), 1 when the system refuses (a port in use, a
//! thread that cannot start, a disk that fails).

use clap::{Parser, Subcommand};
use sidetrace::config::{Config, RunArgs};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sidetrace",
    version,
    about = "A transparent HTTP sidecar proxy that records a span for every request it carries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sidecar proxy.
    Run(Box<RunArgs>),
    /// Receive OTLP traces and logs, store them durably, and serve the query API and UI.
    Collector(Box<sidetrace::collector::CollectorArgs>),
    /// Inject the sidecar into Kubernetes manifests (YAML or JSON) and print them as YAML.
    Inject(Box<sidetrace::k8s::cli::InjectCommand>),
    /// Serve the mutating admission webhook that injects the sidecar into new pods.
    Webhook(Box<sidetrace::k8s::webhook::WebhookArgs>),
    /// Wait until a sidecar's /ready answers 200 (a non-native sidecar's postStart hook).
    WaitReady(sidetrace::k8s::wait_ready::WaitReadyArgs),
    /// Install the pod's redirect rules (nftables, table inet sidetrace) in this network namespace.
    InitNet(sidetrace::k8s::init_net::InitNetArgs),
    /// Run the zero-code demo: producer → consumer → store, each behind its own sidecar, none with
    /// tracing code; prints whole traces and per-route figures.
    Demo(sidetrace::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // One line naming the flag and the reason; clap's usage hint
            // follows on --help.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("sidetrace: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Collector(args) => sidetrace::collector::run(&args),
        Command::Inject(cmd) => sidetrace::k8s::cli::run(&cmd),
        Command::Webhook(args) => sidetrace::k8s::webhook::run(&args),
        Command::WaitReady(args) => sidetrace::k8s::wait_ready::run(&args),
        Command::InitNet(args) => sidetrace::k8s::init_net::main(&args),
        Command::Demo(args) => sidetrace::demo::main(&args),
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let config = match Config::from_args(args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sidetrace: {e}");
            return ExitCode::from(2);
        }
    };
    // The filter was checked with the rest of the configuration.
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_default();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    // This runtime runs the export pipeline, the admin server and signal
    // handling; requests are served by the worker threads (`workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sidetrace: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let sidecar = match sidetrace::Sidecar::start(config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sidetrace: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!(
            service = config.resource.service_name(),
            inbound = ?sidecar.inbound,
            outbound = ?sidecar.outbound,
            admin = ?sidecar.admin,
            api = ?sidecar.api,
            app = %config.app,
            "sidetrace started"
        );
        tracing::info!(config = %config.printable(), "configuration");
        tokio::select! {
            () = sidetrace::drain::stop_signal() => {}
            () = sidecar.shutdown_requested() => {}
        }
        tracing::info!("shutting down: draining in-flight requests");
        let drained = sidecar.shutdown().await;
        tracing::info!(drained, "stopped");
        ExitCode::SUCCESS
    })
}
