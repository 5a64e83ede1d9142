//! `sidetrace init-net`: installs (or, with `--cleanup`, removes) the pod's
//! redirect rules in the network namespace it runs in, as an init container
//! with NET_ADMIN does before the app starts. `--dry-run` prints the rules
//! and touches nothing. The rules themselves are `netfilter`'s.
//!
//! Exit codes: 0 done, 1 the kernel refused (e.g. no CAP_NET_ADMIN), 2 bad
//! input; one line on stderr either way.

use super::netfilter::{self, Cidr, Options, PortRange, Table, encode, text};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};
use std::io::Write;
use std::process::ExitCode;

#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(after_help = "Every flag can also be set with the environment variable named in brackets.")]
pub struct InitNetArgs {
    /// The proxy's user id; its own connections are never redirected.
    #[arg(long, env = "SIDETRACE_INIT_PROXY_UID", default_value_t = super::PROXY_UID, value_name = "UID", value_parser = proxy_uid)]
    pub proxy_uid: u32,

    /// Where inbound TCP connections are redirected (`sidetrace run --inbound`).
    #[arg(long, env = "SIDETRACE_INIT_INBOUND_PORT", default_value_t = super::INBOUND_PORT, value_name = "PORT", value_parser = port)]
    pub inbound_port: u16,

    /// Where the app's outbound TCP connections are redirected (`sidetrace run --outbound`).
    #[arg(long, env = "SIDETRACE_INIT_OUTBOUND_PORT", default_value_t = super::OUTBOUND_PORT, value_name = "PORT", value_parser = port)]
    pub outbound_port: u16,

    /// The admin port (`sidetrace run --admin`): inbound connections to it are not redirected.
    #[arg(long, env = "SIDETRACE_INIT_ADMIN_PORT", default_value_t = super::ADMIN_PORT, value_name = "PORT", value_parser = port)]
    pub admin_port: u16,

    /// Inbound ports (or ranges such as 8000-8100) that reach the app directly, comma-separated.
    #[arg(long, env = "SIDETRACE_INIT_SKIP_INBOUND_PORTS", value_name = "PORTS", value_parser = port_ranges, default_value = "")]
    pub skip_inbound_ports: PortRanges,

    /// Destination ports (or ranges) the app reaches directly, comma-separated.
    #[arg(long, env = "SIDETRACE_INIT_SKIP_OUTBOUND_PORTS", value_name = "PORTS", value_parser = port_ranges, default_value = "")]
    pub skip_outbound_ports: PortRanges,

    /// Destination prefixes (10.96.0.0/12, fd00::/8, or single addresses) the app reaches directly, comma-separated.
    #[arg(long, env = "SIDETRACE_INIT_SKIP_OUTBOUND_CIDRS", value_name = "CIDRS", value_parser = cidrs, default_value = "")]
    pub skip_outbound_cidrs: Cidrs,

    /// Print the rules in nft syntax (`nft list` format) and change nothing; needs no privilege.
    #[arg(long, env = "SIDETRACE_INIT_DRY_RUN", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Remove sidetrace's rules (table inet sidetrace) instead of installing them.
    #[arg(long, env = "SIDETRACE_INIT_CLEANUP", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub cleanup: bool,
}

/// A comma-separated list as parsed; empty for none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortRanges(pub Vec<PortRange>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cidrs(pub Vec<Cidr>);

fn list<T: std::str::FromStr<Err = String>>(s: &str) -> Result<Vec<T>, String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::parse).collect()
}

fn port_ranges(s: &str) -> Result<PortRanges, String> {
    list(s).map(PortRanges)
}

fn cidrs(s: &str) -> Result<Cidrs, String> {
    list(s).map(Cidrs)
}

fn port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{s:?} is not a port (1-65535)")),
    }
}

/// Root's connections would all pass unredirected, the app's included.
fn proxy_uid(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("0 (root) would exempt every root process, the app's included; give the proxy its own uid".into()),
        Ok(uid) => Ok(uid),
        Err(_) => Err(format!("{s:?} is not a user id")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Options that parse one by one but not together.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Netfilter(#[from] netfilter::Error),
    #[error("cannot write the rules to stdout: {0}")]
    Stdout(std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Netfilter(_) | Error::Stdout(_) => 1,
        }
    }
}

impl InitNetArgs {
    /// The options as the rule model takes them, after the checks that
    /// involve more than one flag.
    pub fn options(&self) -> Result<Options, Error> {
        let own = [
            ("--inbound-port", self.inbound_port),
            ("--outbound-port", self.outbound_port),
            ("--admin-port", self.admin_port),
        ];
        for (i, (a, pa)) in own.iter().enumerate() {
            if let Some((b, _)) = own[i + 1..].iter().find(|(_, pb)| pb == pa) {
                return Err(Error::Usage(format!("{a} and {b} are both {pa}; the proxy needs each on its own port")));
            }
        }
        Ok(Options {
            proxy_uid: self.proxy_uid,
            inbound_port: self.inbound_port,
            outbound_port: self.outbound_port,
            admin_port: self.admin_port,
            skip_inbound_ports: self.skip_inbound_ports.0.clone(),
            skip_outbound_ports: self.skip_outbound_ports.0.clone(),
            skip_outbound_cidrs: self.skip_outbound_cidrs.0.clone(),
        })
    }
}

/// Runs the command; the exit code and one line on stderr on failure.
pub fn main(args: &InitNetArgs) -> ExitCode {
    match run(args, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidetrace init-net: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints (dry run) or applies; on success also says what it did.
pub fn run(args: &InitNetArgs, out: &mut dyn Write) -> Result<(), Error> {
    let table = Table::for_pod(&args.options()?);
    let printed = if args.cleanup { text::delete_command() } else { table.to_string() };
    if args.dry_run {
        return out.write_all(printed.as_bytes()).map_err(Error::Stdout);
    }
    let seq = first_sequence_number();
    let batch = if args.cleanup { encode::delete(seq) } else { encode::replace(&table, seq) };
    netfilter::socket::apply(&batch)?;
    let done =
        if args.cleanup { "removed table inet sidetrace\n".to_string() } else { format!("installed:\n{printed}") };
    out.write_all(done.as_bytes()).map_err(Error::Stdout)
}

/// The kernel only echoes sequence numbers back; like nft, start from the
/// clock.
fn first_sequence_number() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InitNetArgs,
    }

    /// Parses flags alone: the process environment is ignored.
    fn parse(flags: &[&str]) -> Result<InitNetArgs, String> {
        let cmd = <Cli as clap::CommandFactory>::command().mut_args(|a| a.env(None::<&str>));
        let argv = std::iter::once("init-net").chain(flags.iter().copied());
        let m = cmd.try_get_matches_from(argv).map_err(|e| e.to_string())?;
        <Cli as clap::FromArgMatches>::from_arg_matches(&m).map(|c| c.args).map_err(|e| e.to_string())
    }

    fn dry_run(flags: &[&str]) -> Result<String, Error> {
        let mut args = parse(flags).expect("flags parse");
        args.dry_run = true;
        let mut out = Vec::new();
        run(&args, &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn defaults_are_the_shared_constants() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            (a.proxy_uid, a.inbound_port, a.outbound_port, a.admin_port),
            (crate::k8s::PROXY_UID, crate::k8s::INBOUND_PORT, crate::k8s::OUTBOUND_PORT, crate::k8s::ADMIN_PORT)
        );
        assert!(a.skip_inbound_ports.0.is_empty() && a.skip_outbound_cidrs.0.is_empty());
    }

    #[test]
    fn lists_take_commas_spaces_and_empty_items() {
        let a =
            parse(&["--skip-inbound-ports", "22, 8000-8100,", "--skip-outbound-cidrs", "10.0.0.0/8,fd00::/8"]).unwrap();
        assert_eq!(a.skip_inbound_ports.0.len(), 2);
        assert_eq!(
            a.skip_outbound_cidrs.0.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["10.0.0.0/8", "fd00::/8"]
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (flags, named) in [
            (&["--inbound-port", "0"][..], "--inbound-port"),
            (&["--outbound-port", "http"], "--outbound-port"),
            (&["--proxy-uid", "0"], "--proxy-uid"),
            (&["--proxy-uid=-1"], "--proxy-uid"),
            (&["--skip-outbound-ports", "22,x"], "--skip-outbound-ports"),
            (&["--skip-outbound-cidrs", "10.0.0.0/33"], "--skip-outbound-cidrs"),
            (&["--skip-inbound-ports", "9-8"], "--skip-inbound-ports"),
        ] {
            let e = parse(flags).expect_err(&format!("{flags:?}"));
            assert!(e.contains(named), "{flags:?}: {e}");
        }
    }

    #[test]
    fn clashing_ports_are_usage_errors() {
        for flags in [&["--inbound-port", "15001"][..], &["--admin-port", "15006"], &["--outbound-port", "15020"]] {
            let e = dry_run(flags).expect_err(&format!("{flags:?}"));
            assert_eq!(e.exit_code(), 2, "{flags:?}: {e}");
        }
    }

    #[test]
    fn dry_run_prints_the_table_and_cleanup_dry_run_the_delete() {
        let out = dry_run(&["--skip-outbound-ports", "5432"]).unwrap();
        assert!(out.starts_with("table inet sidetrace {\n"), "{out}");
        assert!(out.contains("\t\ttcp dport 5432 return\n"), "{out}");
        assert_eq!(dry_run(&["--cleanup"]).unwrap(), "delete table inet sidetrace\n");
    }
}
