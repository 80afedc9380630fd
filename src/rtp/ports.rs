//! Local ports for media: a configured range and binding an RTP/RTCP pair in it.
//!
//! RTP goes on an even port and RTCP on the next one (RFC 3550 §11). [`bind_pair`] tries even
//! ports of the range in random order, a bounded number of times; nothing is tracked between
//! calls, the operating system says when a port is taken.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use rand::{Rng, RngExt};
use tokio::net::UdpSocket;

/// How many pairs [`bind_pair`] tries before giving up.
pub const MAX_ATTEMPTS: usize = 64;

/// An inclusive range of UDP ports for media, written `start-end` (e.g. `20000-29999`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

/// Why a port range is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    #[error("port range {0:?} is not of the form start-end")]
    Syntax(String),
    #[error("port range {start}-{end} is empty or reversed")]
    Reversed { start: u16, end: u16 },
    #[error("port range {start}-{end} holds no even port with its odd neighbour")]
    NoPair { start: u16, end: u16 },
    #[error("port 0 cannot be part of a media port range")]
    Zero,
}

/// Why no RTP/RTCP pair could be bound.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("no free RTP/RTCP port pair in {range} after {attempts} attempts")]
    Exhausted { range: PortRange, attempts: usize },
    #[error("cannot bind media port {port}: {source}")]
    Bind { port: u16, source: io::Error },
}

impl PortRange {
    /// Checks the range: `0 < start <= end`, and it holds at least one even/odd pair.
    pub fn new(start: u16, end: u16) -> Result<Self, PortRangeError> {
        if start == 0 {
            return Err(PortRangeError::Zero);
        }
        if start > end {
            return Err(PortRangeError::Reversed { start, end });
        }
        let range = Self { start, end };
        if range.pairs() == 0 {
            return Err(PortRangeError::NoPair { start, end });
        }
        Ok(range)
    }

    /// The first even port of the range.
    fn first_even(self) -> u32 {
        u32::from(self.start).next_multiple_of(2)
    }

    /// How many even ports `p` with `p + 1` also in the range there are.
    pub fn pairs(self) -> usize {
        let first = self.first_even();
        let end = u32::from(self.end);
        if first + 1 > end {
            0
        } else {
            ((end - 1 - first) / 2 + 1) as usize
        }
    }

    /// The RTP port of the `index`-th pair.
    fn pair(self, index: usize) -> u16 {
        (self.first_even() + 2 * index as u32) as u16
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || PortRangeError::Syntax(s.to_owned());
        let (start, end) = s.trim().split_once('-').ok_or_else(syntax)?;
        let start = start.trim().parse().map_err(|_| syntax())?;
        let end = end.trim().parse().map_err(|_| syntax())?;
        Self::new(start, end)
    }
}

/// Binds an RTP socket on an even port of `range` and an RTCP socket on the next port, both
/// on `ip`. Pairs are tried in random order, at most [`MAX_ATTEMPTS`] of them; a port in use
/// means the next pair, any other bind error is returned at once.
pub async fn bind_pair(ip: IpAddr, range: PortRange) -> Result<(UdpSocket, UdpSocket), PortError> {
    let pairs = range.pairs();
    let attempts = pairs.min(MAX_ATTEMPTS);
    // Walk the pairs from a random one with a random stride coprime with their number, so
    // every pair is tried at most once and concurrent calls spread over the range.
    let (first, stride) = {
        let mut rng = rand::rng();
        (
            rng.random_range(0..pairs.max(1)),
            stride_for(pairs, rng.next_u64()),
        )
    };
    for attempt in 0..attempts {
        let index = (first + attempt * stride) % pairs.max(1);
        let port = range.pair(index);
        let rtp = match bind(ip, port).await {
            Ok(socket) => socket,
            Err(error) if is_taken(&error) => continue,
            Err(source) => return Err(PortError::Bind { port, source }),
        };
        match bind(ip, port + 1).await {
            Ok(rtcp) => return Ok((rtp, rtcp)),
            Err(error) if is_taken(&error) => continue,
            Err(source) => {
                return Err(PortError::Bind {
                    port: port + 1,
                    source,
                });
            }
        }
    }
    Err(PortError::Exhausted { range, attempts })
}

/// A stride that visits every index of `0..pairs` once: coprime with `pairs`.
fn stride_for(pairs: usize, random: u64) -> usize {
    if pairs <= 2 {
        return 1;
    }
    // Candidates 1..pairs; 1 is always coprime, so the search ends.
    let mut stride = 1 + (random % (pairs as u64 - 1)) as usize;
    while gcd(stride, pairs) != 1 {
        stride = stride % (pairs - 1) + 1;
    }
    stride
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

async fn bind(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::new(ip, port)).await
}

fn is_taken(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn parses_ranges() {
        assert_eq!(
            "20000-29999".parse::<PortRange>(),
            Ok(PortRange {
                start: 20000,
                end: 29999
            })
        );
        assert_eq!(" 10000 - 10001 ".parse::<PortRange>().unwrap().pairs(), 1);
        assert_eq!("20000-29999".parse::<PortRange>().unwrap().pairs(), 5000);
        // An odd start still works: the first pair is start + 1.
        let odd = "10001-10004".parse::<PortRange>().unwrap();
        assert_eq!((odd.pairs(), odd.pair(0)), (1, 10002));
        assert_eq!(odd.to_string(), "10001-10004");
    }

    #[test]
    fn rejects_bad_ranges() {
        assert!(matches!(
            "20000".parse::<PortRange>(),
            Err(PortRangeError::Syntax(_))
        ));
        assert!(matches!(
            "a-b".parse::<PortRange>(),
            Err(PortRangeError::Syntax(_))
        ));
        assert!(matches!(
            "1-70000".parse::<PortRange>(),
            Err(PortRangeError::Syntax(_))
        ));
        assert_eq!(
            "30000-20000".parse::<PortRange>(),
            Err(PortRangeError::Reversed {
                start: 30000,
                end: 20000
            })
        );
        assert_eq!(
            "10001-10002".parse::<PortRange>(),
            Err(PortRangeError::NoPair {
                start: 10001,
                end: 10002
            })
        );
        assert_eq!("0-100".parse::<PortRange>(), Err(PortRangeError::Zero));
        assert!(PortRange::new(65535, 65535).is_err());
    }

    #[test]
    fn strides_visit_every_pair() {
        for pairs in [1usize, 2, 3, 4, 6, 10, 64, 5000] {
            for random in [0u64, 1, 2, 7, 12345, u64::MAX] {
                let stride = stride_for(pairs, random);
                let mut seen: Vec<usize> = (0..pairs).map(|i| (3 + i * stride) % pairs).collect();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), pairs, "pairs {pairs}, stride {stride}");
            }
        }
    }

    /// An even/odd pair of free ports, found by asking the OS for one.
    async fn free_pair() -> PortRange {
        loop {
            let probe = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
            let port = probe.local_addr().unwrap().port();
            drop(probe);
            if port % 2 == 0 && port < u16::MAX {
                return PortRange::new(port, port + 1).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn binds_an_even_port_and_the_next_one() {
        let range = free_pair().await;
        let (rtp, rtcp) = match bind_pair(LOCALHOST, range).await {
            Ok(pair) => pair,
            // Another process took the probed pair in the meantime: nothing to test.
            Err(PortError::Exhausted { .. }) => return,
            Err(error) => panic!("{error}"),
        };
        let rtp_port = rtp.local_addr().unwrap().port();
        assert_eq!(rtp_port % 2, 0);
        assert_eq!(rtcp.local_addr().unwrap().port(), rtp_port + 1);
        assert_eq!(rtp_port, range.start);
    }

    #[tokio::test]
    async fn a_taken_range_is_exhausted() {
        let range = free_pair().await;
        // Hold the RTCP port of the only pair: RTP binds, RTCP does not.
        let Ok(_holder) = UdpSocket::bind((LOCALHOST, range.end)).await else {
            return;
        };
        match bind_pair(LOCALHOST, range).await {
            Err(PortError::Exhausted { attempts: 1, .. }) => {}
            other => panic!("expected exhaustion, got {other:?}"),
        }
    }
}
