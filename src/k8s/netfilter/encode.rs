//! The rules as nf_tables netlink messages, in one batch that the kernel
//! applies all or nothing (`NFNL_MSG_BATCH_BEGIN` … `NFNL_MSG_BATCH_END`,
//! net/netfilter/nfnetlink.c). Message and attribute layouts are the
//! kernel's (include/uapi/linux/netfilter/nf_tables.h); the
//! `netlink-packet-netfilter` crate lays them out.
//!
//! Each rule is encoded the way `nft` 1.0.6 encodes the same text (compare
//! `nft --debug=netlink`), so that `nft list` prints it back exactly as
//! `text` does: in the `inet` family an address match carries its
//! `meta nfproto` dependency and a port match its `meta l4proto tcp`; a
//! prefix on a byte boundary loads only its bytes, any other loads the whole
//! address and masks it.
//!
//! Replacing is `add table; delete table; add table …` in one batch, the
//! idiom nft scripts use: adding an existing table is a no-op, so the delete
//! never fails for want of a table, and no moment exists in which the pod
//! has half of its rules.

use super::cidr::Cidr;
use super::rules::{Chain, Hook, NAT_DST_PRIORITY, Rule, TABLE, Table};
use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, Expressions, Hook as NlHook, HookNumber, Immediate,
    InetHookNumber, ListAttribute, Meta, MetaKey, NfTablesMessage, Operator, Payload, Register, RuleAttribute,
    RuleMessage, TableAttribute, TableFlags, TableMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use std::net::IpAddr;

/// `NFNL_SUBSYS_NFTABLES` (include/uapi/linux/netfilter/nfnetlink.h): the
/// batch messages name the subsystem they carry in `res_id`.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NF_ACCEPT` (include/uapi/linux/netfilter.h), the chains' policy.
const NF_ACCEPT: u32 = 1;
/// `enum nft_payload_bases`.
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
/// `enum nft_redir_attributes`; `NF_NAT_RANGE_PROTO_SPECIFIED`
/// (include/uapi/linux/netfilter/nf_nat.h) says the port is given.
const NFTA_REDIR_REG_PROTO_MIN: u16 = 1;
const NFTA_REDIR_FLAGS: u16 = 3;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const IPPROTO_TCP: u8 = 6;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// `IFNAMSIZ`: interface names are compared as the kernel stores them.
const IFNAMSIZ: usize = 16;
/// Offsets of the fields matched, in their headers (RFC 791, 8200, 9293).
const IPV4_DADDR: u32 = 16;
const IPV6_DADDR: u32 = 24;
const TCP_DPORT: u32 = 2;

/// A batch ready to send, and what each acknowledged message did, so an
/// error from the kernel can say which step failed.
#[derive(Debug)]
pub struct Batch {
    pub bytes: Vec<u8>,
    /// The sequence number of `NFNL_MSG_BATCH_BEGIN`, which the kernel
    /// answers only when it refuses the batch as a whole.
    pub begin_seq: u32,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub seq: u32,
    pub what: String,
}

/// Installs `table`, replacing any earlier `table inet sidetrace`.
pub fn replace(table: &Table, first_seq: u32) -> Batch {
    let mut b = Builder::new(first_seq);
    b.push("add table inet sidetrace", NLM_F_CREATE, new_table());
    b.push("delete table inet sidetrace", 0, NfTablesMessage::DeleteTable(table_named()));
    b.push("add table inet sidetrace", NLM_F_CREATE, new_table());
    for chain in &table.chains {
        b.push(&format!("add chain {}", chain.hook.name()), NLM_F_CREATE, new_chain(chain));
        for rule in &chain.rules {
            let what = format!("add rule {}: {rule}", chain.hook.name());
            b.push(&what, NLM_F_CREATE | NLM_F_APPEND, new_rule(chain.hook, rule));
        }
    }
    b.finish()
}

/// Removes `table inet sidetrace` if it is there; nothing else.
pub fn delete(first_seq: u32) -> Batch {
    let mut b = Builder::new(first_seq);
    b.push("add table inet sidetrace", NLM_F_CREATE, new_table());
    b.push("delete table inet sidetrace", 0, NfTablesMessage::DeleteTable(table_named()));
    b.finish()
}

struct Builder {
    seq: u32,
    begin_seq: u32,
    bytes: Vec<u8>,
    steps: Vec<Step>,
}

impl Builder {
    fn new(first_seq: u32) -> Builder {
        let mut b = Builder { seq: first_seq, begin_seq: first_seq, bytes: Vec::new(), steps: Vec::new() };
        b.emit(NLM_F_REQUEST, control(ControlMessage::BatchBegin));
        b
    }

    /// Appends one nf_tables message that the kernel acknowledges.
    fn push(&mut self, what: &str, flags: u16, msg: NfTablesMessage) {
        let seq = self.seq;
        let inet = NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0);
        self.emit(NLM_F_REQUEST | NLM_F_ACK | flags, NetfilterMessage::new(inet, msg));
        self.steps.push(Step { seq, what: what.to_string() });
    }

    fn finish(mut self) -> Batch {
        self.emit(NLM_F_REQUEST, control(ControlMessage::BatchEnd));
        Batch { bytes: self.bytes, begin_seq: self.begin_seq, steps: self.steps }
    }

    fn emit(&mut self, flags: u16, msg: NetfilterMessage) {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let start = self.bytes.len();
        self.bytes.resize(start + m.buffer_len(), 0);
        m.serialize(&mut self.bytes[start..]);
        self.seq = self.seq.wrapping_add(1);
    }
}

fn control(msg: ControlMessage) -> NetfilterMessage {
    NetfilterMessage::new(NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES), msg)
}

fn table_named() -> TableMessage {
    TableMessage { attributes: vec![TableAttribute::Name(TABLE.into())] }
}

fn new_table() -> NfTablesMessage {
    let mut t = table_named();
    t.attributes.push(TableAttribute::Flags(TableFlags::empty()));
    NfTablesMessage::NewTable(t)
}

fn new_chain(chain: &Chain) -> NfTablesMessage {
    let hook = match chain.hook {
        Hook::Prerouting => InetHookNumber::PreRouting,
        Hook::Output => InetHookNumber::LocalOut,
    };
    NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(TABLE.into()),
            ChainAttribute::Name(chain.hook.name().into()),
            ChainAttribute::Hook(vec![
                NlHook::Number(HookNumber::Inet(hook)),
                // The kernel reads the priority as a signed 32-bit number.
                NlHook::Priority(NAT_DST_PRIORITY as u32),
            ]),
            ChainAttribute::Policy(NF_ACCEPT),
            ChainAttribute::Type("nat".into()),
        ],
    })
}

fn new_rule(hook: Hook, rule: &Rule) -> NfTablesMessage {
    let expressions = expressions(rule).into_iter().map(ListAttribute::from).collect();
    NfTablesMessage::NewRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(TABLE.into()),
            RuleAttribute::Chain(hook.name().into()),
            RuleAttribute::Expressions(expressions),
        ],
    })
}

/// The rule's expressions, in the order the kernel runs them.
pub fn expressions(rule: &Rule) -> Vec<Expressions> {
    match rule {
        Rule::SkipTcpPorts(ports) => {
            let mut e = vec![meta(MetaKey::L4Proto), cmp(Operator::Equal, vec![IPPROTO_TCP])];
            e.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, TCP_DPORT, 2));
            if ports.first() == ports.last() {
                e.push(cmp(Operator::Equal, ports.first().to_be_bytes().to_vec()));
            } else {
                // Ports are compared as stored, big-endian, which orders
                // them as numbers.
                e.push(cmp(Operator::GreatherThanEqual, ports.first().to_be_bytes().to_vec()));
                e.push(cmp(Operator::LessThanEqual, ports.last().to_be_bytes().to_vec()));
            }
            e.push(verdict_return());
            e
        }
        // The socket's owner as the kernel stores it: host byte order.
        Rule::SkipSocketUid(uid) => {
            vec![meta(MetaKey::SocketUserId), cmp(Operator::Equal, uid.to_ne_bytes().to_vec()), verdict_return()]
        }
        Rule::SkipOutputInterface(name) => {
            let mut padded = name.as_bytes().to_vec();
            padded.resize(IFNAMSIZ, 0);
            vec![meta(MetaKey::Oifname), cmp(Operator::Equal, padded), verdict_return()]
        }
        Rule::SkipDestination(cidr) => {
            let mut e = destination(cidr);
            e.push(verdict_return());
            e
        }
        Rule::RedirectTcp(port) => vec![
            meta(MetaKey::L4Proto),
            cmp(Operator::Equal, vec![IPPROTO_TCP]),
            Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Reg1),
                Immediate::Data(DataAttribute::Value(port.to_be_bytes().to_vec())),
            ]),
            // `redir` has no typed form in the crate; its attributes are
            // big-endian u32s (nft_redir.c, nft_redir_init).
            Expressions::Other {
                expression_type: "redir".into(),
                attributes: vec![
                    DefaultNla::new(NFTA_REDIR_REG_PROTO_MIN, u32::from(Register::Reg1).to_be_bytes().to_vec()),
                    DefaultNla::new(NFTA_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED.to_be_bytes().to_vec()),
                ],
            },
        ],
    }
}

/// `ip daddr PREFIX` / `ip6 daddr PREFIX`, with the family check an `inet`
/// table needs before it may read an IP header field.
fn destination(cidr: &Cidr) -> Vec<Expressions> {
    let (nfproto, offset) = match cidr.network() {
        IpAddr::V4(_) => (NFPROTO_IPV4, IPV4_DADDR),
        IpAddr::V6(_) => (NFPROTO_IPV6, IPV6_DADDR),
    };
    let mut e = vec![meta(MetaKey::Nfproto), cmp(Operator::Equal, vec![nfproto])];
    let len = cidr.prefix_len();
    if len > 0 && len.is_multiple_of(8) {
        let n = usize::from(len / 8);
        e.push(payload(NFT_PAYLOAD_NETWORK_HEADER, offset, n as u32));
        e.push(cmp(Operator::Equal, cidr.octets()[..n].to_vec()));
    } else {
        let full = cidr.octets().len();
        e.push(payload(NFT_PAYLOAD_NETWORK_HEADER, offset, full as u32));
        e.push(Expressions::Bitwise(vec![
            Bitwise::SourceRegister(Register::Reg1),
            Bitwise::DestinationRegister(Register::Reg1),
            Bitwise::Length(full as u32),
            Bitwise::Mask(DataAttribute::Value(cidr.mask())),
            Bitwise::Xor(DataAttribute::Value(vec![0; full])),
        ]));
        e.push(cmp(Operator::Equal, cidr.octets()));
    }
    e
}

fn meta(key: MetaKey) -> Expressions {
    Expressions::Meta(vec![Meta::DestinationRegister(Register::Reg1), Meta::Key(key)])
}

fn cmp(op: Operator, value: Vec<u8>) -> Expressions {
    Expressions::Cmp(vec![Cmp::SourceRegister(Register::Reg1), Cmp::Op(op), Cmp::Data(DataAttribute::Value(value))])
}

fn payload(base: u32, offset: u32, len: u32) -> Expressions {
    Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
}

fn verdict_return() -> Expressions {
    Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(Verdict::Return)])),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::nft_debug::{decode, rule_lines};
    use super::super::rules::Options;
    use super::*;
    use netlink_packet_core::NLM_F_ACK;
    use netlink_packet_netfilter::NetfilterMessageInner;

    /// What `nft --debug=netlink -f` (nftables 1.0.6, Debian 12) sends for
    /// each rule text, captured in a scratch network namespace. The encoder
    /// must send the same expressions, so that `nft list` prints the rule
    /// back as `text` writes it.
    const NFT_SENDS: &[(&str, &[&str])] = &[
        ("tcp dport 22 return", &[L4PROTO, TCP, DPORT, "[ cmp eq reg 1 0x00001600 ]", RETURN]),
        ("tcp dport 15020 return", &[L4PROTO, TCP, DPORT, "[ cmp eq reg 1 0x0000ac3a ]", RETURN]),
        ("tcp dport 5432 return", &[L4PROTO, TCP, DPORT, "[ cmp eq reg 1 0x00003815 ]", RETURN]),
        (
            "tcp dport 8000-8100 return",
            &[L4PROTO, TCP, DPORT, "[ cmp gte reg 1 0x0000401f ]", "[ cmp lte reg 1 0x0000a41f ]", RETURN],
        ),
        ("meta skuid 2102 return", &["[ meta load skuid => reg 1 ]", "[ cmp eq reg 1 0x00000836 ]", RETURN]),
        (
            "oifname \"lo\" return",
            &["[ meta load oifname => reg 1 ]", "[ cmp eq reg 1 0x00006f6c 0x00000000 0x00000000 0x00000000 ]", RETURN],
        ),
        (
            "ip daddr 10.96.0.0/12 return",
            &[
                NFPROTO,
                "[ cmp eq reg 1 0x00000002 ]",
                "[ payload load 4b @ network header + 16 => reg 1 ]",
                "[ bitwise reg 1 = ( reg 1 & 0x0000f0ff ) ^ 0x00000000 ]",
                "[ cmp eq reg 1 0x0000600a ]",
                RETURN,
            ],
        ),
        (
            "ip daddr 10.1.2.3 return",
            &[
                NFPROTO,
                "[ cmp eq reg 1 0x00000002 ]",
                "[ payload load 4b @ network header + 16 => reg 1 ]",
                "[ cmp eq reg 1 0x0302010a ]",
                RETURN,
            ],
        ),
        (
            "ip daddr 0.0.0.0/0 return",
            &[
                NFPROTO,
                "[ cmp eq reg 1 0x00000002 ]",
                "[ payload load 4b @ network header + 16 => reg 1 ]",
                "[ bitwise reg 1 = ( reg 1 & 0x00000000 ) ^ 0x00000000 ]",
                "[ cmp eq reg 1 0x00000000 ]",
                RETURN,
            ],
        ),
        (
            "ip6 daddr fd00::/8 return",
            &[
                NFPROTO,
                "[ cmp eq reg 1 0x0000000a ]",
                "[ payload load 1b @ network header + 24 => reg 1 ]",
                "[ cmp eq reg 1 0x000000fd ]",
                RETURN,
            ],
        ),
        (
            "ip6 daddr 2001:db8::/33 return",
            &[
                NFPROTO,
                "[ cmp eq reg 1 0x0000000a ]",
                "[ payload load 16b @ network header + 24 => reg 1 ]",
                "[ bitwise reg 1 = ( reg 1 & 0xffffffff 0x00000080 0x00000000 0x00000000 ) ^ 0x00000000 0x00000000 0x00000000 0x00000000 ]",
                "[ cmp eq reg 1 0xb80d0120 0x00000000 0x00000000 0x00000000 ]",
                RETURN,
            ],
        ),
        (
            "ip6 daddr ::ffff:10.0.0.0/104 return",
            &[
                NFPROTO,
                "[ cmp eq reg 1 0x0000000a ]",
                "[ payload load 13b @ network header + 24 => reg 1 ]",
                "[ cmp eq reg 1 0x00000000 0x00000000 0xffff0000 0x0000000a ]",
                RETURN,
            ],
        ),
        (
            "meta l4proto tcp redirect to :15006",
            &[L4PROTO, TCP, "[ immediate reg 1 0x00009e3a ]", "[ redir proto_min reg 1 flags 0x2 ]"],
        ),
        (
            "meta l4proto tcp redirect to :15001",
            &[L4PROTO, TCP, "[ immediate reg 1 0x0000993a ]", "[ redir proto_min reg 1 flags 0x2 ]"],
        ),
    ];
    const L4PROTO: &str = "[ meta load l4proto => reg 1 ]";
    const TCP: &str = "[ cmp eq reg 1 0x00000006 ]";
    const DPORT: &str = "[ payload load 2b @ transport header + 2 => reg 1 ]";
    const NFPROTO: &str = "[ meta load nfproto => reg 1 ]";
    const RETURN: &str = "[ immediate reg 0 return ]";

    fn table() -> Table {
        Table::for_pod(&Options {
            proxy_uid: 2102,
            inbound_port: 15006,
            outbound_port: 15001,
            admin_port: 15020,
            skip_inbound_ports: vec!["22".parse().unwrap()],
            skip_outbound_ports: vec!["5432".parse().unwrap(), "8000-8100".parse().unwrap()],
            skip_outbound_cidrs: [
                "10.96.0.0/12",
                "10.1.2.3",
                "0.0.0.0/0",
                "fd00::/8",
                "2001:db8::/33",
                "::ffff:10.0.0.0/104",
            ]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect(),
        })
    }

    fn kind(m: &NetlinkMessage<NetfilterMessage>) -> String {
        match &m.payload {
            NetlinkPayload::InnerMessage(n) => match &n.inner {
                NetfilterMessageInner::None(c) => format!("{c:?}"),
                NetfilterMessageInner::NfTables(t) => {
                    format!("{t:?}").split('(').next().unwrap_or_default().to_string()
                }
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_rule_is_encoded_as_nft_encodes_it() {
        let table = table();
        let msgs = decode(&replace(&table, 1).bytes);
        let rules: Vec<&NetlinkMessage<NetfilterMessage>> = msgs.iter().filter(|m| kind(m) == "NewRule").collect();
        let texts: Vec<String> = table.chains.iter().flat_map(|c| c.rules.iter().map(Rule::to_string)).collect();
        assert_eq!(rules.len(), texts.len());
        for (msg, text) in rules.iter().zip(&texts) {
            let expected = NFT_SENDS
                .iter()
                .find(|(t, _)| t == text)
                .unwrap_or_else(|| panic!("no capture of nft's encoding for {text:?}"))
                .1;
            assert_eq!(rule_lines(msg), expected, "{text}");
        }
    }

    #[test]
    fn replacing_is_one_batch_that_adds_deletes_then_builds_the_table() {
        let table = table();
        let batch = replace(&table, 100);
        let msgs = decode(&batch.bytes);
        let kinds: Vec<String> = msgs.iter().map(kind).collect();
        let rules = |c: usize| table.chains[c].rules.len();
        let mut expected = vec!["BatchBegin", "NewTable", "DeleteTable", "NewTable", "NewChain"];
        expected.extend(std::iter::repeat_n("NewRule", rules(0)));
        expected.push("NewChain");
        expected.extend(std::iter::repeat_n("NewRule", rules(1)));
        expected.push("BatchEnd");
        assert_eq!(kinds, expected);

        // Sequence numbers count up from the first; every message but the
        // batch's own two asks for an acknowledgement, and `steps` names it.
        let seqs: Vec<u32> = msgs.iter().map(|m| m.header.sequence_number).collect();
        assert_eq!(seqs, (100..100 + msgs.len() as u32).collect::<Vec<_>>());
        let acked: Vec<u32> =
            msgs.iter().filter(|m| m.header.flags & NLM_F_ACK != 0).map(|m| m.header.sequence_number).collect();
        assert_eq!(acked, batch.steps.iter().map(|s| s.seq).collect::<Vec<_>>());
        assert_eq!(batch.steps[4].what, "add rule prerouting: tcp dport 22 return");
    }

    #[test]
    fn cleanup_adds_then_deletes_so_a_missing_table_is_no_error() {
        let kinds: Vec<String> = decode(&delete(7).bytes).iter().map(kind).collect();
        assert_eq!(kinds, ["BatchBegin", "NewTable", "DeleteTable", "BatchEnd"]);
    }

    #[test]
    fn the_batch_names_the_nftables_subsystem_and_every_message_the_inet_family() {
        for m in decode(&replace(&table(), 1).bytes) {
            let NetlinkPayload::InnerMessage(n) = &m.payload else { panic!("{m:?}") };
            match &n.inner {
                NetfilterMessageInner::None(_) => assert_eq!(n.header.res_id, NFNL_SUBSYS_NFTABLES),
                _ => assert_eq!(n.header.family, NetfilterProtoFamily::Inet),
            }
        }
    }
}
