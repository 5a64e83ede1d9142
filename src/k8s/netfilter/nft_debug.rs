//! Test support: prints decoded rule expressions the way
//! `nft --debug=netlink` prints the expressions nft itself sends
//! (libnftnl's `*_snprintf` for each expression), so the encoder's tests can
//! compare with what nft 1.0.6 generates for the same rule text.

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload, Nla};
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute, Meta, MetaKey,
    NfTablesMessage, Operator, Payload, Register, RuleAttribute, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};

/// Every message of a serialized batch, decoded.
pub fn decode(mut bytes: &[u8]) -> Vec<NetlinkMessage<NetfilterMessage>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = NetlinkBuffer::new_checked(bytes).expect("a netlink header").length() as usize;
        out.push(NetlinkMessage::deserialize(&bytes[..len]).expect("a message the crate can read back"));
        bytes = &bytes[len..];
    }
    out
}

/// The expressions of a NEWRULE message, as nft's debug lines.
pub fn rule_lines(msg: &NetlinkMessage<NetfilterMessage>) -> Vec<String> {
    let NetlinkPayload::InnerMessage(m) = &msg.payload else { panic!("not a netfilter message: {msg:?}") };
    let NetfilterMessageInner::NfTables(NfTablesMessage::NewRule(rule)) = &m.inner else { panic!("not a rule: {m:?}") };
    let exprs = rule.attributes.iter().find_map(|a| match a {
        RuleAttribute::Expressions(e) => Some(e),
        _ => None,
    });
    exprs.expect("a rule has expressions").iter().map(line).collect()
}

fn line(elem: &ListAttribute<ExpressionAttribute>) -> String {
    let ListAttribute::Element(attrs) = elem else { panic!("not an expression: {elem:?}") };
    let data = attrs.iter().find_map(|a| match a {
        ExpressionAttribute::Data(d) => Some(d),
        _ => None,
    });
    match data.expect("expression data") {
        Expressions::Meta(a) => {
            let key = a.iter().find_map(|m| if let Meta::Key(k) = m { Some(*k) } else { None });
            let dreg = a.iter().find_map(|m| if let Meta::DestinationRegister(r) = m { Some(*r) } else { None });
            format!("[ meta load {} => reg {} ]", meta_key(key.expect("key")), reg(dreg))
        }
        Expressions::Cmp(a) => {
            let op = a.iter().find_map(|c| if let Cmp::Op(o) = c { Some(*o) } else { None });
            let sreg = a.iter().find_map(|c| if let Cmp::SourceRegister(r) = c { Some(*r) } else { None });
            let data = a.iter().find_map(|c| if let Cmp::Data(d) = c { Some(value(d)) } else { None });
            format!("[ cmp {} reg {} {} ]", op_name(op.expect("op")), reg(sreg), words(&data.expect("data")))
        }
        Expressions::Payload(a) => {
            let (mut base, mut offset, mut len, mut dreg) = (0, 0, 0, None);
            for p in a {
                match p {
                    Payload::Base(b) => base = *b,
                    Payload::Offset(o) => offset = *o,
                    Payload::Len(l) => len = *l,
                    Payload::DestinationRegister(r) => dreg = Some(*r),
                    other => panic!("unexpected payload attribute {other:?}"),
                }
            }
            let base = ["link", "network", "transport"][base as usize];
            format!("[ payload load {len}b @ {base} header + {offset} => reg {} ]", reg(dreg))
        }
        Expressions::Bitwise(a) => {
            let (mut sreg, mut dreg, mut mask, mut xor) = (None, None, vec![], vec![]);
            for b in a {
                match b {
                    Bitwise::SourceRegister(r) => sreg = Some(*r),
                    Bitwise::DestinationRegister(r) => dreg = Some(*r),
                    Bitwise::Mask(d) => mask = value(d),
                    Bitwise::Xor(d) => xor = value(d),
                    Bitwise::Length(_) => {}
                    other => panic!("unexpected bitwise attribute {other:?}"),
                }
            }
            format!("[ bitwise reg {} = ( reg {} & {} ) ^ {} ]", reg(dreg), reg(sreg), words(&mask), words(&xor))
        }
        Expressions::Immediate(a) => {
            let dreg = a.iter().find_map(|i| if let Immediate::DestinationRegister(r) = i { Some(*r) } else { None });
            let data = a.iter().find_map(|i| if let Immediate::Data(d) = i { Some(d) } else { None });
            match data.expect("immediate data") {
                DataAttribute::Verdict(v) => {
                    let code = v.iter().find_map(|c| if let VerdictAttribute::Code(c) = c { Some(*c) } else { None });
                    assert_eq!(code, Some(Verdict::Return), "only return is used");
                    format!("[ immediate reg {} return ]", reg(dreg))
                }
                d => format!("[ immediate reg {} {} ]", reg(dreg), words(&value(d))),
            }
        }
        Expressions::Other { expression_type, attributes } if expression_type == "redir" => {
            let u32_of = |kind: u16| {
                let nla = attributes.iter().find(|n| n.kind() == kind).expect("redir attribute");
                let mut buf = vec![0; nla.value_len()];
                nla.emit_value(&mut buf);
                u32::from_be_bytes(buf.try_into().expect("a u32"))
            };
            format!("[ redir proto_min reg {} flags 0x{:x} ]", u32_of(1), u32_of(3))
        }
        other => panic!("unexpected expression {other:?}"),
    }
}

fn value(d: &DataAttribute) -> Vec<u8> {
    match d {
        DataAttribute::Value(v) => v.clone(),
        other => panic!("not a value: {other:?}"),
    }
}

/// libnftnl prints register data as host-order 32-bit words of a
/// zero-filled buffer.
fn words(bytes: &[u8]) -> String {
    let words: Vec<String> = bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            format!("0x{:08x}", u32::from_ne_bytes(w))
        })
        .collect();
    words.join(" ")
}

fn reg(r: Option<Register>) -> u32 {
    u32::from(r.expect("a register"))
}

fn meta_key(k: MetaKey) -> &'static str {
    match k {
        MetaKey::L4Proto => "l4proto",
        MetaKey::SocketUserId => "skuid",
        MetaKey::Oifname => "oifname",
        MetaKey::Nfproto => "nfproto",
        other => panic!("unexpected meta key {other:?}"),
    }
}

fn op_name(o: Operator) -> &'static str {
    match o {
        Operator::Equal => "eq",
        Operator::NotEqual => "neq",
        Operator::LessThan => "lt",
        Operator::LessThanEqual => "lte",
        Operator::GreaterThan => "gt",
        Operator::GreatherThanEqual => "gte",
        other => panic!("unexpected operator {other:?}"),
    }
}
