//! The pod's NAT redirect rules for `sidetrace init-net`: a pure model of
//! which rules come out for which options (`rules`, with its value types
//! `cidr` and `ports`), its `nft` text (`text`, what `--dry-run` prints), its
//! netlink encoding (`encode`) and the one exchange with the kernel
//! (`socket`). No iptables or nft binary is needed, so the image can be
//! `FROM scratch`.

pub mod cidr;
pub mod encode;
#[cfg(test)]
mod nft_debug;
pub mod ports;
pub mod rules;
pub mod socket;
pub mod text;

pub use cidr::Cidr;
pub use ports::PortRange;
pub use rules::{Options, Table};
pub use socket::Error;
