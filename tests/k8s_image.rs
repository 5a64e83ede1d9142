//! The container image (issue 10, must-show 5), built and run with the real
//! tools: `deploy/Dockerfile` is clean under hadolint; buildah builds it
//! from the static binary (`--profile image`, glibc linked statically);
//! podman runs it with a read-only root filesystem as uid 2102:
//! `sidetrace --version`, a request each way through the sidecar with its
//! spans in the admin API, upstream and collector names resolved through
//! the container's /etc/hosts and through DNS (a static glibc has no NSS
//! modules to load; its built-in `files` and `dns` sources do the work),
//! and `sidetrace init-net` from the same image, as root with only
//! NET_ADMIN, as an init container runs it.
//!
//! The running container shares a network namespace that the test creates
//! (`--network ns:…`), with the app, a collector and a DNS responder on its
//! loopback. Podman keeps its images in a storage root of the test's own
//! under `target/image-build`.
//!
//! Where the machine cannot build or run containers, the test says so in
//! one line: a failure under `CI=true`, a printed skip elsewhere.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::netns::{self, World, require, text, unavailable};
use support::otlp::{int_attr, string_attr};
use support::{Client, collectors};

const IMAGE: &str = "localhost/sidetrace:test";
const APP_BODY: &str = "hello from the app beside the container\n";
const HOSTS_NAME: &str = "hosts-app.sidetrace.test";
const DNS_NAME: &str = "dns-app.sidetrace.test";
const COLLECTOR_NAME: &str = "collector.sidetrace.test";
const MISSING_NAME: &str = "nowhere.sidetrace.test";

fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/image-build")
}

/// podman and buildah with the test's own storage and `containers.conf`
/// (runc; cgroupfs and file events for machines without systemd; the
/// ulimits the issue names).
struct Engine {
    root: PathBuf,
    runroot: PathBuf,
    conf: PathBuf,
}

impl Engine {
    fn new() -> Engine {
        let dir = build_dir();
        let conf = dir.join("containers.conf");
        std::fs::create_dir_all(&dir).expect("create target/image-build");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .expect("write containers.conf");
        // Podman refuses a runroot longer than 50 characters: a short one
        // in /tmp, named after the storage it belongs to.
        let root = dir.join("storage");
        let hash = root
            .to_string_lossy()
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
        Engine { runroot: std::env::temp_dir().join(format!("sidetrace-podman-{:08x}", hash as u32)), root, conf }
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", "vfs"])
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        self.command(tool).args(args).output().unwrap_or_else(|e| panic!("{tool} {args:?}: {e}"))
    }

    fn must(&self, tool: &str, args: &[&str]) -> Output {
        let out = self.run(tool, args);
        assert!(out.status.success(), "{tool} {}: {}", args.join(" "), stderr(&out));
        out
    }
}

/// Removes the container however the test ends.
struct Container<'a> {
    engine: &'a Engine,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.engine.run("podman", &["rm", "--force", "--time", "0", &self.name]);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn dockerfile_is_clean_under_hadolint() {
    let hadolint = std::env::var("SIDETRACE_TEST_HADOLINT")
        .unwrap_or_else(|_| format!("{}/target/test-venv/bin/hadolint", env!("CARGO_MANIFEST_DIR")));
    let dockerfile = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/Dockerfile");
    let out = match Command::new(&hadolint).arg(dockerfile).output() {
        Ok(out) => out,
        Err(e) => return unavailable("the hadolint test", &format!("cannot run {hadolint} ({e})")),
    };
    assert!(out.status.success(), "hadolint deploy/Dockerfile:\n{}{}", text(&out), stderr(&out));
}

/// The static binary, built as the README says (into a target directory of
/// its own, so this build never waits on the one running the tests).
fn static_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", build_dir())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--quiet", "--profile", "image", "--target", "x86_64-unknown-linux-gnu", "--bin", "sidetrace"])
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "the static build failed:\n{}", stderr(&out));
    build_dir().join("x86_64-unknown-linux-gnu/image/sidetrace")
}

/// The build context the Dockerfile expects: the binary and a CA bundle.
fn context(binary: &Path) -> PathBuf {
    let ctx = build_dir().join("context");
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(&ctx).expect("create the build context");
    std::fs::copy(binary, ctx.join("sidetrace")).expect("copy the binary");
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", ctx.join("ca-certificates.crt"))
        .expect("copy /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates)");
    ctx
}

#[test]
fn image_builds_and_runs_read_only_as_the_proxy_user() {
    let test = "the container image test";
    if let Err(why) = require(&["buildah", "podman", "runc", "python3"]) {
        return unavailable(test, &why);
    }
    if !Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        return unavailable(test, "no CA bundle at /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates)");
    }
    let engine = Engine::new();
    let ctx = context(&static_binary());
    let dockerfile = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/Dockerfile");
    let built = engine.run("buildah", &["build", "--quiet", "-f", dockerfile, "-t", IMAGE, &ctx.to_string_lossy()]);
    assert!(built.status.success(), "buildah build: {}", stderr(&built));

    // A scratch image has no dynamic loader: that this runs at all shows
    // the binary is static.
    let version = engine
        .run("podman", &["run", "--rm", "--read-only", "--user", "2102", "--network", "none", IMAGE, "--version"]);
    if !version.status.success() && stderr(&version).contains("OCI runtime") {
        return unavailable(test, &format!("podman cannot run containers here: {}", stderr(&version).trim()));
    }
    assert!(version.status.success(), "sidetrace --version in the image: {}", stderr(&version));
    assert_eq!(text(&version).trim(), format!("sidetrace {}", env!("CARGO_PKG_VERSION")));

    proxies_and_resolves_names(&engine);
    init_net_runs_from_the_image(&engine);
}

fn proxies_and_resolves_names(engine: &Engine) {
    let mut w = World::new("i");
    let ns = w.namespace("img").unwrap_or_else(|e| panic!("a network namespace for the container: {e}"));
    let app_record = w.dir.join("app.jsonl");
    let app = w.recording_service(&ns, "127.0.0.1", 8080, APP_BODY, &app_record);
    let collector_record = w.dir.join("collector.jsonl");
    let collector_seen = collectors::recording_in(&mut w, &ns, "127.0.0.1", 4318, &collector_record);
    let dns_log = w.dns_responder(&ns, "127.0.0.1", 53, &[(DNS_NAME, "127.0.0.1")]);

    let name = format!("sidetrace-test-{}", std::process::id());
    let network = format!("ns:/run/netns/{ns}");
    let hosts = [format!("{HOSTS_NAME}:127.0.0.1"), format!("{COLLECTOR_NAME}:127.0.0.1")];
    let collector = format!("http://{COLLECTOR_NAME}:4318");
    let container = Container { engine, name: name.clone() };
    let _ = engine.run("podman", &["rm", "--force", &name]);
    engine.must(
        "podman",
        &[
            "run",
            "--detach",
            "--name",
            &name,
            "--read-only",
            "--user",
            "2102",
            "--cap-drop",
            "all",
            "--network",
            &network,
            "--dns",
            "127.0.0.1",
            "--add-host",
            &hosts[0],
            "--add-host",
            &hosts[1],
            IMAGE,
            "run",
            "--inbound",
            "127.0.0.1:15006",
            "--app",
            "127.0.0.1:8080",
            "--outbound",
            "127.0.0.1:15001",
            "--admin",
            "127.0.0.1:15020",
            "--service-name",
            "image-test",
            "--otlp-endpoint",
            &collector,
            "--export-delay",
            "100ms",
        ],
    );
    let logs = || {
        let out = engine.run("podman", &["logs", &name]);
        format!("container output:\n{}{}", text(&out), stderr(&out))
    };
    let ready = w.wait_for(&[&app.peer], |_| {
        let call = Client::http1().get("http://127.0.0.1:15020/ready").timeout(Duration::from_secs(2));
        netns::send(&ns, call).ok().filter(|r| r.text().trim() == "ready")
    });
    assert!(ready.is_some(), "the sidecar in the container never became ready\n{}", logs());

    // Each call's status, or why none came; through the outbound listener
    // as an app with HTTP_PROXY calls, naming the host in the URL.
    let status = |url: &str, via: Option<&str>| {
        let mut call = Client::http1().get(url).timeout(Duration::from_secs(10));
        if let Some(proxy) = via {
            call = call.via(proxy.parse().expect("an address"));
        }
        netns::send(&ns, call).map(|r| r.status.as_u16()).map_err(|f| f.to_string())
    };
    assert_eq!(status("http://127.0.0.1:15006/inbound", None), Ok(200), "{}", logs());
    let proxy = Some("127.0.0.1:15001");
    let via_hosts = format!("http://{HOSTS_NAME}:8080/via-hosts");
    let via_dns = format!("http://{DNS_NAME}:8080/via-dns");
    let missing = format!("http://{MISSING_NAME}:8080/missing");
    assert_eq!(status(&via_hosts, proxy), Ok(200), "a name from /etc/hosts\n{}", logs());
    assert_eq!(status(&via_dns, proxy), Ok(200), "a name from DNS\n{}", logs());
    assert_eq!(status(&missing, proxy), Ok(502), "a name nobody knows\n{}", logs());

    let api = "127.0.0.1:15021".parse().expect("an address");
    let spans = w.wait_for(&[&app.peer], |_| {
        let spans = netns::api_spans(&ns, api);
        let paths: Vec<&str> = spans.iter().filter_map(|s| string_attr(s, "url.path")).collect();
        ["/inbound", "/via-hosts", "/via-dns", "/missing"].iter().all(|p| paths.contains(p)).then_some(spans)
    });
    let spans = spans.unwrap_or_else(|| panic!("the spans never reached the admin API\n{}", logs()));
    let by_path = |p: &str| spans.iter().find(|s| string_attr(s, "url.path") == Some(p)).expect("span");
    assert_eq!(by_path("/inbound")["kind"], 2, "SERVER");
    for (path, host) in [("/via-hosts", HOSTS_NAME), ("/via-dns", DNS_NAME)] {
        let s = by_path(path);
        assert_eq!(s["kind"], 3, "CLIENT: {s}");
        assert_eq!(string_attr(s, "server.address"), Some(host), "{s}");
        assert_eq!(int_attr(s, "http.response.status_code"), Some(200), "{s}");
    }
    let questions = std::fs::read_to_string(&dns_log).unwrap_or_default();
    assert!(questions.lines().any(|l| l == format!("{DNS_NAME} 1")), "the A question went to DNS:\n{questions}");
    assert!(!questions.contains(HOSTS_NAME), "/etc/hosts answered first, with no DNS question:\n{questions}");
    assert!(questions.contains(MISSING_NAME), "{questions}");
    for path in ["/inbound", "/via-hosts", "/via-dns"] {
        app.seen(path);
    }

    // The exporter resolved the collector's name from /etc/hosts too.
    let exported = w.wait_for(&[&collector_seen.peer], |_| collector_seen.find("/v1/traces"));
    assert!(exported.is_some(), "no export reached {collector}\n{}", logs());
    drop(container);
}

/// As an init container runs it: root with no capability but NET_ADMIN,
/// read-only, in the pod's network namespace; as the proxy user it is
/// refused with one line.
fn init_net_runs_from_the_image(engine: &Engine) {
    let mut w = World::new("n");
    let ns = w.namespace("imgnet").unwrap_or_else(|e| panic!("a network namespace for init-net: {e}"));
    let network = format!("ns:/run/netns/{ns}");
    let init = |user: &str, flags: &[&str]| {
        let mut args = vec!["run", "--rm", "--read-only", "--user", user, "--cap-drop", "all", "--network", &network];
        if user == "0" {
            args.extend(["--cap-add", "NET_ADMIN"]);
        }
        args.extend([IMAGE, "init-net"]);
        args.extend(flags);
        engine.run("podman", &args)
    };
    let dry = init("2102", &["--dry-run"]);
    assert!(dry.status.success(), "init-net --dry-run as the proxy user: {}", stderr(&dry));

    let installed = init("0", &[]);
    assert!(installed.status.success(), "init-net with NET_ADMIN: {}", stderr(&installed));
    assert_eq!(text(&installed), format!("installed:\n{}", text(&dry)));
    // Read with nft where the machine has it; CI must.
    let nft = support::tools::require("the image test's ruleset check", require(&["nft"])).is_some();
    if nft {
        let listed = w.must(&ns, &["nft", "list", "table", "inet", "sidetrace"]);
        assert_eq!(text(&listed), text(&dry), "the rules in the namespace are the dry run's");
    }

    let denied = init("2102", &[]);
    assert_eq!(denied.status.code(), Some(1), "init-net without NET_ADMIN: {}", stderr(&denied));
    let line: Vec<String> = stderr(&denied).lines().filter(|l| l.contains("sidetrace")).map(String::from).collect();
    assert!(line.len() == 1 && line[0].contains("CAP_NET_ADMIN"), "{line:?}");

    let cleaned = init("0", &["--cleanup"]);
    assert!(cleaned.status.success(), "init-net --cleanup: {}", stderr(&cleaned));
    if nft {
        assert_eq!(text(&w.must(&ns, &["nft", "list", "ruleset"])), "", "cleanup leaves nothing");
    }
}
