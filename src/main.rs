//! The `sidetrace` command: parse, configure, run until SIGTERM/SIGINT.

use clap::Parser;
use sidetrace::config::{Cli, Command, Config};
use std::process::ExitCode;

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
        Command::InitNet(args) => sidetrace::k8s::init_net::main(&args),
    }
}

fn run(args: &sidetrace::config::RunArgs) -> ExitCode {
    let config = match Config::from_args(args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sidetrace: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sidetrace: invalid value {:?} for '--log': {e}", args.log);
            return ExitCode::from(2);
        }
    };
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
                let code = if matches!(e, sidetrace::StartError::Export(_)) { 2 } else { 1 };
                return ExitCode::from(code);
            }
        };
        tracing::info!(
            service = config.resource.service_name(),
            inbound = ?sidecar.inbound,
            outbound = ?sidecar.outbound,
            admin = ?sidecar.admin,
            app = %config.app,
            "sidetrace started"
        );
        tracing::info!(config = %config.printable(), "configuration");
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let drained = sidecar.shutdown().await;
        tracing::info!(drained, "stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
