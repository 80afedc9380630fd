//! Address ranges of the SIP access rules: [`Cidr`] (`192.0.2.0/24`, `2001:db8::/32`, or a
//! bare address) and [`AccessList`], the ranges a rule lets in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address or CIDR range (e.g. \"192.0.2.0/24\", \"2001:db8::/32\")")]
    Address(String),
    /// The part after `/` is not a prefix length the address family allows.
    #[error("prefix length {prefix:?} is not a number from 0 to {max}")]
    Prefix { prefix: String, max: u8 },
}

/// A range of IP addresses: a network address and a prefix length. Host bits written after
/// the prefix are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `prefix` leading bits of `address`.
    pub fn new(address: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(address);
        if prefix > max {
            return Err(CidrError::Prefix {
                prefix: prefix.to_string(),
                max,
            });
        }
        let network = match address {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
        };
        Ok(Cidr { network, prefix })
    }

    /// The range holding only `address` (`/32` or `/128`).
    pub fn host(address: IpAddr) -> Cidr {
        Cidr {
            network: address,
            prefix: max_prefix(address),
        }
    }

    /// Reads `address/prefix`, or a bare address (a single host).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(address.to_string()))?;
        let Some(prefix) = prefix else {
            return Ok(Cidr::host(address));
        };
        let max = max_prefix(address);
        let bad_prefix = || CidrError::Prefix {
            prefix: prefix.to_string(),
            max,
        };
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_prefix());
        }
        let length: u8 = prefix.parse().map_err(|_| bad_prefix())?;
        Cidr::new(address, length).map_err(|_| bad_prefix())
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, as seen
    /// on dual-stack sockets) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(network)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// The address ranges a rule lets in; empty lets nobody in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList(pub Vec<Cidr>);

impl AccessList {
    /// The loopback ranges: `127.0.0.0/8` and `::1`.
    pub fn loopback() -> AccessList {
        AccessList(vec![
            Cidr {
                network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Cidr::host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ])
    }

    /// Whether `ip` is in one of the ranges.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }

    /// Whether the list lets nobody in.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn ipv4_ranges() {
        let cidr = Cidr::parse("198.51.100.0/24").expect("parses");
        assert!(cidr.contains(ip("198.51.100.0")));
        assert!(cidr.contains(ip("198.51.100.255")));
        assert!(!cidr.contains(ip("198.51.101.1")));
        assert!(!cidr.contains(ip("2001:db8::1")));
        assert!(cidr.contains(ip("::ffff:198.51.100.7")));
        assert_eq!(cidr.to_string(), "198.51.100.0/24");

        let host_bits = Cidr::parse(" 10.1.2.3/8 ").expect("parses");
        assert_eq!(host_bits.to_string(), "10.0.0.0/8");
        assert!(host_bits.contains(ip("10.255.0.1")));

        let everything = Cidr::parse("0.0.0.0/0").expect("parses");
        assert!(everything.contains(ip("203.0.113.9")));
        assert!(!everything.contains(ip("::1")));

        let host = Cidr::parse("192.0.2.10").expect("parses");
        assert_eq!(host.prefix_len(), 32);
        assert!(host.contains(ip("192.0.2.10")));
        assert!(!host.contains(ip("192.0.2.11")));
    }

    #[test]
    fn ipv6_ranges() {
        let cidr = Cidr::parse("2001:db8::/32").expect("parses");
        assert!(cidr.contains(ip("2001:db8:ffff::1")));
        assert!(!cidr.contains(ip("2001:db9::1")));
        assert!(!cidr.contains(ip("32.1.13.184")));
        let host = Cidr::parse("::1").expect("parses");
        assert_eq!(host.prefix_len(), 128);
        assert!(host.contains(ip("::1")));
        assert!(!host.contains(ip("::2")));
        assert!(Cidr::parse("::/0").expect("parses").contains(ip("fe80::1")));
        assert_eq!(
            Cidr::parse("2001:db8::1/64").expect("parses").network(),
            ip("2001:db8::")
        );
    }

    #[test]
    fn bad_ranges() {
        for bad in ["", "/8", "10.0.0/8", "example.com", "fe80::1%eth0"] {
            assert!(
                matches!(Cidr::parse(bad), Err(CidrError::Address(_))),
                "{bad}"
            );
        }
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "::/129",
            "::/999",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
        ] {
            assert!(
                matches!(Cidr::parse(bad), Err(CidrError::Prefix { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            Cidr::parse("10.0.0.0/33").unwrap_err().to_string(),
            "prefix length \"33\" is not a number from 0 to 32"
        );
        assert!(Cidr::new(ip("::1"), 129).is_err());
    }

    #[test]
    fn access_lists() {
        let loopback = AccessList::loopback();
        assert!(loopback.allows(ip("127.0.0.1")));
        assert!(loopback.allows(ip("127.8.9.10")));
        assert!(loopback.allows(ip("::1")));
        assert!(loopback.allows(ip("::ffff:127.0.0.1")));
        assert!(!loopback.allows(ip("192.0.2.1")));
        assert!(!AccessList::default().allows(ip("127.0.0.1")));
        assert!(AccessList::default().is_empty());
    }
}
