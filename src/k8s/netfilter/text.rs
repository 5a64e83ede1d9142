//! The rules in `nft` syntax, exactly as `nft list table inet sidetrace`
//! prints them once installed (nftables 1.0.6, Debian 12): `--dry-run`
//! prints this, the namespace test compares it with the kernel's listing,
//! and it is valid input for `nft -f`.
//!
//! Only the prerouting hook has a named NAT priority in `nft`'s output
//! (`dstnat`); the same priority on the output hook prints as `-100`
//! (nftables' `std_prio_family_hook_compat`).

use super::rules::{Chain, Hook, NAT_DST_PRIORITY, Rule, TABLE, Table};
use std::fmt;

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table inet {TABLE} {{")?;
        for (i, chain) in self.chains.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{chain}")?;
        }
        writeln!(f, "}}")
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.hook.name();
        let priority = match self.hook {
            Hook::Prerouting => "dstnat".to_string(),
            Hook::Output => NAT_DST_PRIORITY.to_string(),
        };
        writeln!(f, "\tchain {name} {{")?;
        writeln!(f, "\t\ttype nat hook {name} priority {priority}; policy accept;")?;
        for rule in &self.rules {
            writeln!(f, "\t\t{rule}")?;
        }
        writeln!(f, "\t}}")
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::SkipTcpPorts(ports) => write!(f, "tcp dport {ports} return"),
            Rule::SkipSocketUid(uid) => write!(f, "meta skuid {uid} return"),
            Rule::SkipOutputInterface(name) => write!(f, "oifname \"{name}\" return"),
            Rule::SkipDestination(cidr) if cidr.network().is_ipv4() => write!(f, "ip daddr {cidr} return"),
            Rule::SkipDestination(cidr) => write!(f, "ip6 daddr {cidr} return"),
            Rule::RedirectTcp(port) => write!(f, "meta l4proto tcp redirect to :{port}"),
        }
    }
}

/// What `--cleanup --dry-run` prints: the one command that cleanup runs.
pub fn delete_command() -> String {
    format!("delete table inet {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::super::rules::Options;
    use super::*;

    #[test]
    fn prints_as_nft_lists_it() {
        let table = Table::for_pod(&Options {
            proxy_uid: 2102,
            inbound_port: 15006,
            outbound_port: 15001,
            admin_port: 15020,
            skip_inbound_ports: vec!["22".parse().unwrap()],
            skip_outbound_ports: vec!["8000-8100".parse().unwrap()],
            skip_outbound_cidrs: vec!["10.96.0.0/12".parse().unwrap(), "fd00::1".parse().unwrap()],
        });
        let expected = "table inet sidetrace {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\ttcp dport 22 return
\t\ttcp dport 15020 return
\t\tmeta l4proto tcp redirect to :15006
\t}

\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tmeta skuid 2102 return
\t\toifname \"lo\" return
\t\ttcp dport 8000-8100 return
\t\tip daddr 10.96.0.0/12 return
\t\tip6 daddr fd00::1 return
\t\tmeta l4proto tcp redirect to :15001
\t}
}
";
        assert_eq!(table.to_string(), expected);
    }

    #[test]
    fn cleanup_deletes_only_its_own_table() {
        assert_eq!(delete_command(), "delete table inet sidetrace\n");
    }
}
