//! Value parsers for flags and variables: each turns text into a typed
//! value or says, in words a user can act on, what was expected. clap calls
//! them for flags and `SIDETRACE_*` variables; the `OTEL_*` rules in
//! `export` call them too.

use crate::trace::route::RoutePattern;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::time::Duration;

/// A listener address, or `off` to not listen at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Listen(None));
        }
        s.parse::<SocketAddr>()
            .map(|a| Listen(Some(a)))
            .map_err(|_| format!("expected IP:PORT (e.g. 127.0.0.1:15001) or 'off', got {s:?}"))
    }
}

/// Where the endpoints that show traffic are served: their own address,
/// the admin listener, or nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiListen {
    Addr(SocketAddr),
    Admin,
    Off,
}

impl std::str::FromStr for ApiListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(ApiListen::Off),
            "admin" => Ok(ApiListen::Admin),
            _ => s
                .parse::<SocketAddr>()
                .map(ApiListen::Addr)
                .map_err(|_| format!("expected IP:PORT (e.g. 127.0.0.1:15021), 'admin' or 'off', got {s:?}")),
        }
    }
}

pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected a duration such as 500ms, 10s or 1m)"))
}

/// A comma-separated port list; empty means none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

pub fn port_list(s: &str) -> Result<PortList, String> {
    if s.trim().is_empty() {
        return Ok(PortList::default());
    }
    s.split(',')
        .map(|p| p.trim().parse::<u16>().map_err(|_| format!("{p:?} is not a port number (0-65535)")))
        .collect::<Result<Vec<u16>, String>>()
        .map(PortList)
}

pub fn route(s: &str) -> Result<RoutePattern, String> {
    RoutePattern::parse(s)
}

pub fn sampling_rule(s: &str) -> Result<crate::trace::sampling::SamplingRule, String> {
    crate::trace::sampling::SamplingRule::parse(s)
}

pub fn nonzero(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive whole number, got {s:?}")),
    }
}

pub fn header_pair(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let name = HeaderName::from_bytes(k.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", k.trim()))?;
    let value = HeaderValue::from_str(v.trim())
        .map_err(|_| format!("the value of {:?} is not a valid header value", k.trim()))?;
    Ok((name, value))
}

pub fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0 to 1, got {s:?}")),
    }
}

/// Bytes, with an optional KiB/MiB/GiB (or K/M/G) suffix.
pub fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("expected a size such as 268435456 or 256MiB, got {s:?}"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("unknown size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// `sidetrace`'s own log filter, in tracing-subscriber's syntax.
pub fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(byte_size("256MiB"), Ok(256 << 20));
        assert_eq!(byte_size("1024"), Ok(1024));
        assert!(byte_size("12 parsecs").is_err());
    }

    #[test]
    fn listen_and_ports() {
        assert_eq!("off".parse::<Listen>(), Ok(Listen(None)));
        assert!("localhost:1".parse::<Listen>().is_err());
        assert_eq!(port_list(" 25, 587"), Ok(PortList(vec![25, 587])));
        assert_eq!(port_list(""), Ok(PortList::default()));
        assert!(port_list("25,http").is_err());
    }
}
