//! The pod's redirect rules as plain values: which rules come out for which
//! options. Nothing here touches the kernel; `text` prints these values in
//! `nft` syntax and `encode` turns them into netlink messages.
//!
//! One `inet` table (IPv4 and IPv6 alike) owned by sidetrace, with two NAT
//! chains at the destination-NAT priority (-100, where iptables' nat
//! PREROUTING and OUTPUT sit), in the spirit of Linkerd's proxy-init and
//! Istio's istio-iptables:
//!
//! - `prerouting` (connections arriving at the pod): the admin port and the
//!   skipped inbound ports pass; every other TCP connection is redirected to
//!   the inbound port.
//! - `output` (connections the pod's processes open): the proxy's own
//!   connections pass (by socket owner uid, so its upstream connections
//!   never loop back into it), as does everything leaving through `lo`
//!   (loopback destinations and the pod's own addresses, which the kernel
//!   routes through `lo`), the skipped outbound ports and prefixes; every
//!   other TCP connection is redirected to the outbound port.
//!
//! NAT chains see only a connection's first packet; conntrack applies the
//! verdict to the rest and keeps the original destination, which the proxy
//! reads back with `SO_ORIGINAL_DST` (netfilter's `redirect` is the same NAT
//! as iptables' `REDIRECT`).

use super::cidr::Cidr;
use super::ports::PortRange;

/// The table's name. Everything sidetrace installs lives in it, so
/// replacing or removing it never touches anyone else's rules.
pub const TABLE: &str = "sidetrace";

/// `NF_IP_PRI_NAT_DST` (include/uapi/linux/netfilter_ipv4.h).
pub const NAT_DST_PRIORITY: i32 = -100;

/// What init-net is asked to do, already parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub proxy_uid: u32,
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub admin_port: u16,
    pub skip_inbound_ports: Vec<PortRange>,
    pub skip_outbound_ports: Vec<PortRange>,
    pub skip_outbound_cidrs: Vec<Cidr>,
}

/// `table inet sidetrace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub chains: Vec<Chain>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub hook: Hook,
    pub rules: Vec<Rule>,
}

/// Where a chain is attached; both are `type nat` base chains at
/// `NAT_DST_PRIORITY` with policy accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Output,
}

impl Hook {
    /// The chain's name, which is also the hook's name in `nft` syntax.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Output => "output",
        }
    }
}

/// One rule. Each is a single match with its verdict; `return` in a base
/// chain ends the chain with its policy (accept), untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `tcp dport 22 return`, `tcp dport 8000-8100 return`
    SkipTcpPorts(PortRange),
    /// `meta skuid 2102 return`
    SkipSocketUid(u32),
    /// `oifname "lo" return`
    SkipOutputInterface(&'static str),
    /// `ip daddr 10.96.0.0/12 return`, `ip6 daddr fd00::/8 return`
    SkipDestination(Cidr),
    /// `meta l4proto tcp redirect to :15006`
    RedirectTcp(u16),
}

impl Table {
    /// The rules for a pod. Skipped ports and prefixes come sorted, each
    /// once, so the same options always give the same table.
    pub fn for_pod(o: &Options) -> Table {
        let mut inbound_skips = vec![PortRange::single(o.admin_port)];
        inbound_skips.extend(o.skip_inbound_ports.iter().copied());
        let mut prerouting: Vec<Rule> = sorted(inbound_skips).into_iter().map(Rule::SkipTcpPorts).collect();
        prerouting.push(Rule::RedirectTcp(o.inbound_port));

        let mut output = vec![Rule::SkipSocketUid(o.proxy_uid), Rule::SkipOutputInterface("lo")];
        output.extend(sorted(o.skip_outbound_ports.clone()).into_iter().map(Rule::SkipTcpPorts));
        output.extend(sorted(o.skip_outbound_cidrs.clone()).into_iter().map(Rule::SkipDestination));
        output.push(Rule::RedirectTcp(o.outbound_port));

        Table {
            chains: vec![
                Chain { hook: Hook::Prerouting, rules: prerouting },
                Chain { hook: Hook::Output, rules: output },
            ],
        }
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Options {
        Options {
            proxy_uid: 2102,
            inbound_port: 15006,
            outbound_port: 15001,
            admin_port: 15020,
            skip_inbound_ports: vec![],
            skip_outbound_ports: vec![],
            skip_outbound_cidrs: vec![],
        }
    }

    fn chain(t: &Table, hook: Hook) -> &[Rule] {
        &t.chains.iter().find(|c| c.hook == hook).expect("chain").rules
    }

    fn ports(s: &str) -> Vec<PortRange> {
        s.split(',').map(|p| p.parse().expect("port")).collect()
    }

    #[test]
    fn defaults_exempt_the_admin_port_inbound_and_the_proxy_and_loopback_outbound() {
        let t = Table::for_pod(&defaults());
        assert_eq!(t.chains.iter().map(|c| c.hook).collect::<Vec<_>>(), [Hook::Prerouting, Hook::Output]);
        assert_eq!(
            chain(&t, Hook::Prerouting),
            [Rule::SkipTcpPorts(PortRange::single(15020)), Rule::RedirectTcp(15006)]
        );
        assert_eq!(
            chain(&t, Hook::Output),
            [Rule::SkipSocketUid(2102), Rule::SkipOutputInterface("lo"), Rule::RedirectTcp(15001)]
        );
    }

    #[test]
    fn the_redirect_is_always_the_last_rule_so_every_exemption_is_seen_first() {
        let mut o = defaults();
        o.skip_inbound_ports = ports("22,8000-8100");
        o.skip_outbound_ports = ports("5432");
        o.skip_outbound_cidrs = vec!["10.96.0.0/12".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let t = Table::for_pod(&o);
        for c in &t.chains {
            let redirects: Vec<usize> =
                c.rules.iter().enumerate().filter(|(_, r)| matches!(r, Rule::RedirectTcp(_))).map(|(i, _)| i).collect();
            assert_eq!(redirects, [c.rules.len() - 1], "{c:?}");
        }
    }

    #[test]
    fn skipped_ports_and_prefixes_become_one_rule_each_sorted_and_deduplicated() {
        let mut o = defaults();
        o.skip_inbound_ports = ports("8000-8100,22,15020,22");
        o.skip_outbound_ports = ports("5432,443");
        o.skip_outbound_cidrs =
            ["fd00::/8", "10.96.0.0/12", "10.96.0.1/12"].iter().map(|c| c.parse().unwrap()).collect();
        let t = Table::for_pod(&o);
        let p = |s: &str| Rule::SkipTcpPorts(s.parse().unwrap());
        assert_eq!(chain(&t, Hook::Prerouting), [p("22"), p("8000-8100"), p("15020"), Rule::RedirectTcp(15006)]);
        assert_eq!(
            chain(&t, Hook::Output),
            [
                Rule::SkipSocketUid(2102),
                Rule::SkipOutputInterface("lo"),
                p("443"),
                p("5432"),
                Rule::SkipDestination("10.96.0.0/12".parse().unwrap()),
                Rule::SkipDestination("fd00::/8".parse().unwrap()),
                Rule::RedirectTcp(15001),
            ]
        );
    }

    #[test]
    fn inbound_skips_stay_inbound_and_outbound_skips_stay_outbound() {
        let mut o = defaults();
        o.skip_inbound_ports = ports("1111");
        o.skip_outbound_ports = ports("2222");
        let t = Table::for_pod(&o);
        let has = |hook, port: &str| chain(&t, hook).contains(&Rule::SkipTcpPorts(port.parse().unwrap()));
        assert!(has(Hook::Prerouting, "1111") && !has(Hook::Output, "1111"));
        assert!(has(Hook::Output, "2222") && !has(Hook::Prerouting, "2222"));
        assert!(!has(Hook::Output, "15020"), "the admin port is exempt inbound only");
    }

    #[test]
    fn the_ports_and_uid_given_are_the_ones_used() {
        let o = Options { proxy_uid: 7, inbound_port: 1, outbound_port: 2, admin_port: 3, ..defaults() };
        let t = Table::for_pod(&o);
        assert_eq!(chain(&t, Hook::Prerouting), [Rule::SkipTcpPorts(PortRange::single(3)), Rule::RedirectTcp(1)]);
        assert_eq!(chain(&t, Hook::Output)[0], Rule::SkipSocketUid(7));
        assert_eq!(chain(&t, Hook::Output).last(), Some(&Rule::RedirectTcp(2)));
    }
}
