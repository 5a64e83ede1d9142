//! A TCP port or an inclusive range of them (`5432`, `8000-8100`), as the
//! `--skip-*-ports` lists take them (Linkerd's skip annotations accept
//! ranges too). Port 0 is no port a connection can be made to, so it is
//! refused rather than silently matching nothing.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> PortRange {
        PortRange { first: port, last: port }
    }

    pub fn first(&self) -> u16 {
        self.first
    }

    pub fn last(&self) -> u16 {
        self.last
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

fn port(s: &str, whole: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{whole:?} is not a port (1-65535) or a range of ports (8000-8100)")),
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let whole = s.trim();
        let (first, last) = match whole.split_once('-') {
            Some((a, b)) => (port(a, whole)?, port(b, whole)?),
            None => {
                let p = port(whole, whole)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!("{whole:?}: a range goes from the lower port to the higher"));
        }
        Ok(PortRange { first, last })
    }
}

/// As `nft list` prints a port match: `22` or `8000-8100`.
impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}-{}", self.first, self.last) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ports_and_ranges() {
        assert_eq!("22".parse::<PortRange>(), Ok(PortRange::single(22)));
        assert_eq!(" 8000-8100 ".parse::<PortRange>().map(|r| r.to_string()), Ok("8000-8100".into()));
        assert_eq!("7-7".parse::<PortRange>(), Ok(PortRange::single(7)));
    }

    #[test]
    fn bad_ports_are_refused_with_the_input_named() {
        for bad in ["0", "65536", "http", "", "10-", "-10", "9-8", "1-2-3"] {
            let e = bad.parse::<PortRange>().expect_err(bad);
            assert!(e.contains(&format!("{:?}", bad.trim())), "{bad}: {e}");
        }
    }
}
