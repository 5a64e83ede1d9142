//! `sidetrace webhook`: the mutating admission webhook. HTTPS (rustls,
//! certificate reloaded when its files change: `tls`), an axum router with
//! `POST /mutate` (`review` answers the AdmissionReview with the same
//! injection `sidetrace inject` uses), `GET /live` and `GET /ready`.
//!
//! The review carries the pod; the annotations of its Namespace come from
//! the Kubernetes API (`namespaces`: `get` on namespaces, cached), and the
//! injector's defaults from the webhook's flags.

pub mod namespaces;
pub mod review;
pub mod tls;

use super::defaults::InjectArgs;
use super::inject::Injector;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// HTTPS listener for the API server's AdmissionReview requests.
    #[arg(long, env = "SIDETRACE_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// The serving certificate (PEM, leaf first); reloaded when the file changes.
    #[arg(long, env = "SIDETRACE_WEBHOOK_TLS_CERT", value_name = "FILE")]
    pub tls_cert: PathBuf,

    /// The certificate's private key (PEM); reloaded with it.
    #[arg(long, env = "SIDETRACE_WEBHOOK_TLS_KEY", value_name = "FILE")]
    pub tls_key: PathBuf,

    /// How often, at most, a TLS handshake checks whether the certificate files changed.
    #[arg(long, env = "SIDETRACE_WEBHOOK_CERT_CHECK_INTERVAL", default_value = "5s", value_parser = crate::config::parse::duration, value_name = "DURATION")]
    pub cert_check_interval: Duration,

    /// The webhook's own log filter (tracing-subscriber syntax), on stderr.
    #[arg(long, env = "SIDETRACE_LOG", default_value = "info", value_name = "FILTER")]
    pub log: String,

    #[command(flatten)]
    pub kube: namespaces::KubeArgs,

    #[command(flatten)]
    pub defaults: InjectArgs,
}

/// Start-up failures of the webhook, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr} (--listen): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl WebhookError {
    pub fn exit_code(&self) -> u8 {
        match self {
            WebhookError::Config(_) => 2,
            WebhookError::Bind { .. } | WebhookError::Runtime(_) => 1,
        }
    }
}

pub fn run(args: &WebhookArgs) -> ExitCode {
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidetrace webhook: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn start(args: &WebhookArgs) -> Result<(), WebhookError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .map_err(|e| WebhookError::Config(format!("invalid value {:?} for '--log': {e}", args.log)))?;
    let injector = args.defaults.injector().map_err(WebhookError::Config)?;
    let namespaces = namespaces::Namespaces::new(&args.kube).map_err(WebhookError::Config)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = tls::ReloadingCert::load(&args.tls_cert, &args.tls_key, args.cert_check_interval, provider.clone())
        .map_err(WebhookError::Config)?;
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(cert));
    let mut tls = tls;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(WebhookError::Runtime)?;
    runtime.block_on(async {
        let listener =
            TcpListener::bind(args.listen).await.map_err(|source| WebhookError::Bind { addr: args.listen, source })?;
        tracing::info!(listen = %args.listen, image = %injector.image, "sidetrace webhook started");
        if let Some(why) = namespaces.unavailable() {
            tracing::warn!("namespace annotations will not be read: {why}");
        }
        let hook = Arc::new(Hook { injector, namespaces });
        tokio::select! {
            () = crate::web::serve(listener, router(hook), Some(Arc::new(tls))) => {}
            () = crate::drain::stop_signal() => tracing::info!("stopping"),
        }
        Ok(())
    })
}

/// The routes; `/mutate` bodies may be as large as a pod object can be
/// (the API server's default request limit is 3 MiB).
pub fn router(hook: Arc<Hook>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/live", get(|| async { "ok\n" }))
        .route("/ready", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(4 << 20))
        .with_state(hook)
}

/// What `/mutate` needs: the injector and the namespaces' annotations.
pub struct Hook {
    pub injector: Injector,
    pub namespaces: namespaces::Namespaces,
}

async fn mutate(State(hook): State<Arc<Hook>>, body: Bytes) -> Response {
    let review = match review::read(&body) {
        Ok(review) => review,
        Err(e) => {
            tracing::warn!(error = %e, "malformed AdmissionReview");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let lookup = match review.pod_namespace() {
        Some(name) => Some(hook.namespaces.annotations(name).await),
        None => None,
    };
    let namespace = match &lookup {
        None => Ok(None),
        Some(Ok(a)) => Ok(Some(&**a)),
        Some(Err(why)) => Err(why.as_str()),
    };
    let answer = review::answer(&review, namespace, &hook.injector);
    ([(header::CONTENT_TYPE, "application/json")], answer.to_string()).into_response()
}
