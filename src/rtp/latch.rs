//! Latching ("comedia", RFC 7362): send media where the peer's media actually comes from.
//!
//! A peer behind NAT announces an address in SDP that cannot be reached; its packets arrive
//! from the NAT's public address instead. After [`LATCH_AFTER`] consecutive valid packets
//! (negotiated payload types only — the caller checks that) from one address other than the
//! current destination, sending switches to that address. Once a stream has been seen, a new
//! address must also carry that stream's SSRC, so a stray or hostile sender cannot take the
//! media over with a single burst of foreign packets.

use std::net::SocketAddr;

/// Consecutive packets from a new address before sending switches to it.
pub const LATCH_AFTER: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    from: SocketAddr,
    ssrc: u32,
    count: u32,
}

/// Sans-IO choice of the address we send RTP to.
#[derive(Debug, Clone)]
pub struct Latch {
    remote: SocketAddr,
    /// The SSRC of the stream we receive, once known.
    stream: Option<u32>,
    candidate: Option<Candidate>,
}

impl Latch {
    /// Starts by sending to the address from the SDP.
    pub fn new(remote: SocketAddr) -> Self {
        Self {
            remote,
            stream: None,
            candidate: None,
        }
    }

    /// Where RTP goes now.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Points sending at a new address (the peer re-negotiated) and forgets the stream.
    pub fn set_remote(&mut self, remote: SocketAddr) {
        self.remote = remote;
        self.stream = None;
        self.candidate = None;
    }

    /// Records one packet with a negotiated payload type. Returns `true` when sending has
    /// just switched to `from`.
    pub fn observe(&mut self, from: SocketAddr, ssrc: u32) -> bool {
        if from == self.remote {
            self.candidate = None;
            self.stream.get_or_insert(ssrc);
            return false;
        }
        if self.stream.is_some_and(|stream| stream != ssrc) {
            return false;
        }
        let count = match self.candidate {
            Some(c) if c.from == from && c.ssrc == ssrc => c.count + 1,
            _ => 1,
        };
        if count < LATCH_AFTER {
            self.candidate = Some(Candidate { from, ssrc, count });
            return false;
        }
        self.remote = from;
        self.stream = Some(ssrc);
        self.candidate = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn latches_after_a_few_packets_from_a_new_address() {
        let mut latch = Latch::new(addr(4000));
        assert!(!latch.observe(addr(5000), 1));
        assert!(!latch.observe(addr(5000), 1));
        assert!(latch.observe(addr(5000), 1));
        assert_eq!(latch.remote(), addr(5000));
        // Further packets from there change nothing.
        assert!(!latch.observe(addr(5000), 1));
    }

    #[test]
    fn packets_from_the_current_address_reset_the_count() {
        let mut latch = Latch::new(addr(4000));
        latch.observe(addr(5000), 1);
        latch.observe(addr(5000), 1);
        latch.observe(addr(4000), 1);
        assert!(!latch.observe(addr(5000), 1));
        assert_eq!(latch.remote(), addr(4000));
    }

    #[test]
    fn a_known_stream_only_moves_with_its_own_ssrc() {
        let mut latch = Latch::new(addr(4000));
        latch.observe(addr(4000), 1);
        for _ in 0..10 {
            assert!(!latch.observe(addr(6000), 2));
        }
        assert_eq!(latch.remote(), addr(4000));
        for _ in 0..2 {
            latch.observe(addr(6000), 1);
        }
        assert!(latch.observe(addr(6000), 1));
    }

    #[test]
    fn alternating_sources_never_latch() {
        let mut latch = Latch::new(addr(4000));
        for _ in 0..10 {
            assert!(!latch.observe(addr(5000), 1));
            assert!(!latch.observe(addr(5001), 1));
        }
        assert_eq!(latch.remote(), addr(4000));
    }

    #[test]
    fn a_new_remote_starts_over() {
        let mut latch = Latch::new(addr(4000));
        latch.observe(addr(4000), 1);
        latch.set_remote(addr(7000));
        assert_eq!(latch.remote(), addr(7000));
        latch.observe(addr(8000), 2);
        latch.observe(addr(8000), 2);
        assert!(latch.observe(addr(8000), 2));
    }
}
