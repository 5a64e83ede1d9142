//! The one exchange with the kernel: a batch goes out over a
//! `NETLINK_NETFILTER` socket and every message in it is acknowledged.
//!
//! nfnetlink runs a batch in the sender's context and answers each message
//! that asked for an acknowledgement exactly once, success or error, after
//! the whole batch committed or aborted (`nfnetlink_rcv_batch`,
//! net/netfilter/nfnetlink.c). Without CAP_NET_ADMIN in the socket's
//! network namespace the batch is refused as a whole with one `EPERM`
//! answer to its first message (`nfnetlink_rcv`).

use super::encode::Batch;
use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::NetfilterMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

/// How long to wait for answers that should already be queued when `send`
/// returns.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open a netfilter netlink socket: {0}")]
    Socket(io::Error),
    #[error(
        "changing the network namespace's NAT rules needs CAP_NET_ADMIN (run as root, or give the container the NET_ADMIN capability)"
    )]
    PermissionDenied,
    #[error("the kernel refused `{what}`: {source}")]
    Refused { what: String, source: io::Error },
    #[error("cannot send the rules to the kernel: {0}")]
    Send(io::Error),
    #[error("cannot read the kernel's answer: {0}")]
    Receive(io::Error),
    #[error("the kernel's answer is not a netlink message: {0}")]
    Malformed(String),
    #[error("the kernel answered {answered} of {expected} changes and then nothing")]
    Incomplete { answered: usize, expected: usize },
}

/// Sends `batch` and waits for its answers: `Ok` once the kernel has
/// acknowledged every change, else the first error in batch order.
pub fn apply(batch: &Batch) -> Result<(), Error> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(Error::Socket)?;
    sock.bind_auto().map_err(Error::Socket)?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(Error::Socket)?;
    socket2::SockRef::from(&sock).set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(Error::Socket)?;
    sock.send(&batch.bytes, 0).map_err(Error::Send)?;

    let mut answers: BTreeMap<u32, i32> = BTreeMap::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Stop when every step is answered, or when the batch as a whole was
    // refused (an answer to a message that asked for none).
    let done = |a: &BTreeMap<u32, i32>| {
        batch.steps.iter().all(|s| a.contains_key(&s.seq)) || a.get(&batch.begin_seq).is_some_and(|c| *c != 0)
    };
    while !done(&answers) {
        buf.clear();
        match sock.recv(&mut buf, 0) {
            Ok(_) => read_answers(&buf, &mut answers)?,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
            Err(e) => return Err(Error::Receive(e)),
        }
    }
    verdict(batch, &answers)
}

/// Collects `sequence number → error code` (0 for an acknowledgement)
/// from one datagram, which may hold several messages.
fn read_answers(mut bytes: &[u8], answers: &mut BTreeMap<u32, i32>) -> Result<(), Error> {
    while !bytes.is_empty() {
        let header = NetlinkBuffer::new_checked(bytes).map_err(|e| Error::Malformed(e.to_string()))?;
        let len = (header.length() as usize).min(bytes.len());
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&bytes[..len])
            .map_err(|e| Error::Malformed(e.to_string()))?;
        if let NetlinkPayload::Error(e) = msg.payload {
            answers.insert(msg.header.sequence_number, e.raw_code());
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        let next = (len + 3) & !3;
        bytes = bytes.get(next..).unwrap_or_default();
    }
    Ok(())
}

/// The outcome, from the answers: the first error in batch order wins.
fn verdict(batch: &Batch, answers: &BTreeMap<u32, i32>) -> Result<(), Error> {
    let batch_error = answers.get(&batch.begin_seq).copied().filter(|c| *c != 0).map(|c| (c, "the batch".to_string()));
    let step_error =
        batch.steps.iter().find_map(|s| answers.get(&s.seq).filter(|c| **c != 0).map(|c| (*c, s.what.clone())));
    if let Some((code, what)) = batch_error.or(step_error) {
        let source = io::Error::from_raw_os_error(code.abs());
        return Err(match code.abs() {
            libc::EPERM | libc::EACCES => Error::PermissionDenied,
            _ => Error::Refused { what, source },
        });
    }
    let answered = batch.steps.iter().filter(|s| answers.contains_key(&s.seq)).count();
    if answered < batch.steps.len() {
        return Err(Error::Incomplete { answered, expected: batch.steps.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::encode::{Step, delete};
    use super::*;

    fn batch() -> Batch {
        delete(10)
    }

    fn steps(b: &Batch) -> Vec<Step> {
        b.steps.clone()
    }

    #[test]
    fn every_step_acknowledged_is_success() {
        let b = batch();
        let answers = steps(&b).iter().map(|s| (s.seq, 0)).collect();
        assert!(verdict(&b, &answers).is_ok());
    }

    #[test]
    fn eperm_on_the_batch_is_a_missing_capability() {
        let answers = BTreeMap::from([(10, -libc::EPERM)]);
        assert!(matches!(verdict(&batch(), &answers), Err(Error::PermissionDenied)));
        let line = Error::PermissionDenied.to_string();
        assert!(line.contains("CAP_NET_ADMIN") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn the_first_refused_step_is_named() {
        let b = batch();
        let s = steps(&b);
        let answers = BTreeMap::from([(s[0].seq, 0), (s[1].seq, -libc::ENOENT)]);
        let e = verdict(&b, &answers).expect_err("refused");
        assert!(matches!(&e, Error::Refused { what, .. } if what == "delete table inet sidetrace"), "{e}");
    }

    #[test]
    fn missing_answers_are_an_error_not_a_success() {
        let b = batch();
        let answers = BTreeMap::from([(steps(&b)[0].seq, 0)]);
        assert!(matches!(verdict(&b, &answers), Err(Error::Incomplete { answered: 1, expected: 2 })));
    }
}
