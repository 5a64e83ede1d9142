//! An address prefix (`10.96.0.0/12`, `fd00::/8`, or a bare address) as
//! `--skip-outbound-cidrs` takes it. Host bits are cleared when parsed, as
//! `nft` itself does, so the rule printed by `--dry-run` is the rule the
//! kernel lists.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// `addr/prefix_len` with the host bits cleared; `None` if the length is
    /// longer than the address.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Cidr> {
        let network = match addr {
            IpAddr::V4(a) if prefix_len <= 32 => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & v4_mask(prefix_len))),
            IpAddr::V6(a) if prefix_len <= 128 => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & v6_mask(prefix_len))),
            _ => return None,
        };
        Some(Cidr { network, prefix_len })
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The address's full length in bits: 32 or 128.
    pub fn max_len(&self) -> u8 {
        match self.network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// The network's bytes in network order (4 or 16).
    pub fn octets(&self) -> Vec<u8> {
        match self.network {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// The prefix's mask in network order (4 or 16 bytes).
    pub fn mask(&self) -> Vec<u8> {
        match self.network {
            IpAddr::V4(_) => v4_mask(self.prefix_len).to_be_bytes().to_vec(),
            IpAddr::V6(_) => v6_mask(self.prefix_len).to_be_bytes().to_vec(),
        }
    }
}

fn v4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn v6_mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address prefix (e.g. 10.96.0.0/12)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Cidr::new(addr, len).ok_or_else(|| format!("{s:?} is not an address prefix"))
    }
}

/// As `nft list` prints a prefix: the bare address for a full-length one.
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix_len == self.max_len() {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix_len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn host_bits_are_cleared_as_nft_does() {
        assert_eq!(cidr("10.96.0.1/12").to_string(), "10.96.0.0/12");
        assert_eq!(cidr("fd00::1/8").to_string(), "fd00::/8");
        assert_eq!(cidr("2001:db8:ffff::/33").to_string(), "2001:db8:8000::/33");
    }

    #[test]
    fn a_bare_address_is_a_full_length_prefix() {
        assert_eq!(cidr("10.1.2.3"), cidr("10.1.2.3/32"));
        assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3");
        assert_eq!(cidr("fd00::7/128").to_string(), "fd00::7");
    }

    #[test]
    fn zero_length_prefixes_cover_a_whole_family() {
        assert_eq!(cidr("1.2.3.4/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").mask(), vec![0; 16]);
    }

    #[test]
    fn masks_and_octets_are_in_network_order() {
        let c = cidr("10.96.0.0/12");
        assert_eq!(c.mask(), vec![255, 240, 0, 0]);
        assert_eq!(c.octets(), vec![10, 96, 0, 0]);
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_input_named() {
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "/8", "10.0.0.0/x", "", "example.com/8"] {
            let e = bad.parse::<Cidr>().expect_err(bad);
            assert!(e.contains(&format!("{:?}", bad.trim())), "{bad}: {e}");
        }
    }
}
