//! Receiving RFC 4733 events: one digit per key press, however the packets arrive.
//!
//! An event is identified by (SSRC, RTP timestamp, event code): every packet of one key press
//! carries the timestamp of its start. The digit is reported once, when the event ends: on the
//! first packet with the end bit, or [`EVENT_TIMEOUT`] after the last packet if every end packet
//! was lost, or when a newer event starts. Repeated end packets, retransmitted updates and
//! stale packets of older events are ignored, as are packets with a zero duration.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{DtmfError, decode, digit_for_event};

/// How long after its last packet an event without an end packet is considered over.
pub const EVENT_TIMEOUT: Duration = Duration::from_millis(250);

/// How many finished events are remembered to swallow their late repeats.
const REMEMBERED: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventKey {
    ssrc: u32,
    timestamp: u32,
    event: u8,
}

#[derive(Debug, Clone, Copy)]
struct Active {
    key: EventKey,
    last_packet: Instant,
}

/// Sans-IO receiver of telephone events. Feed packets with [`on_packet`](Self::on_packet),
/// drain digits with [`poll`](Self::poll), and call `poll` again at
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct DtmfReceiver {
    timeout: Duration,
    active: Option<Active>,
    finished: VecDeque<EventKey>,
    /// SSRC and start timestamp of the newest event seen, to recognise stale packets.
    newest: Option<(u32, u32)>,
    ready: VecDeque<char>,
}

impl Default for DtmfReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl DtmfReceiver {
    /// A receiver that ends events without end packets after [`EVENT_TIMEOUT`].
    pub fn new() -> Self {
        Self::with_timeout(EVENT_TIMEOUT)
    }

    /// A receiver with its own end-of-event timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            active: None,
            finished: VecDeque::with_capacity(REMEMBERED),
            newest: None,
            ready: VecDeque::new(),
        }
    }

    /// Takes one telephone-event packet. Errors only for a payload too short to decode.
    pub fn on_packet(
        &mut self,
        now: Instant,
        ssrc: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), DtmfError> {
        let event = decode(payload)?;
        if event.duration == 0 {
            return Ok(());
        }
        let key = EventKey {
            ssrc,
            timestamp,
            event: event.event,
        };
        if self.finished.contains(&key) || self.is_stale(key) {
            return Ok(());
        }
        match self.active {
            Some(ref mut active) if active.key == key => active.last_packet = now,
            Some(active) => {
                // A newer event started before the previous one ended: that one is over.
                self.finish(active.key);
                self.start(now, key);
            }
            None => self.start(now, key),
        }
        if event.end {
            self.finish(key);
        }
        Ok(())
    }

    /// The next digit whose key press has ended by `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<char> {
        if let Some(active) = self.active
            && now >= active.last_packet + self.timeout
        {
            self.finish(active.key);
        }
        self.ready.pop_front()
    }

    /// When an event without an end packet times out, if one is in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active.map(|active| active.last_packet + self.timeout)
    }

    fn start(&mut self, now: Instant, key: EventKey) {
        self.newest = Some((key.ssrc, key.timestamp));
        self.active = Some(Active {
            key,
            last_packet: now,
        });
    }

    /// Whether `key` belongs to an event older than the newest one of the same source.
    fn is_stale(&self, key: EventKey) -> bool {
        match self.newest {
            Some((ssrc, timestamp)) if ssrc == key.ssrc => {
                (key.timestamp.wrapping_sub(timestamp) as i32) < 0
            }
            _ => false,
        }
    }

    fn finish(&mut self, key: EventKey) {
        if self.active.is_some_and(|active| active.key == key) {
            self.active = None;
        }
        if self.finished.contains(&key) {
            return;
        }
        if self.finished.len() == REMEMBERED {
            self.finished.pop_front();
        }
        self.finished.push_back(key);
        if let Some(digit) = digit_for_event(key.event) {
            self.ready.push_back(digit);
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one
mod tests {
    use super::super::encode;
    use super::*;

    const SSRC: u32 = 0xABCD;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(rx: &mut DtmfReceiver, now: Instant) -> Vec<char> {
        std::iter::from_fn(|| rx.poll(now)).collect()
    }

    /// The packets a typical sender emits for one 100 ms key press at 8 kHz.
    fn key_press(rx: &mut DtmfReceiver, t0: Instant, ts: u32, event: u8) {
        for i in 1..=5u16 {
            let at = t0 + ms(20 * u64::from(i));
            rx.on_packet(at, SSRC, ts, &encode(event, false, 10, 160 * i))
                .unwrap();
        }
        for i in 0..3u64 {
            let at = t0 + ms(120 + 20 * i);
            rx.on_packet(at, SSRC, ts, &encode(event, true, 10, 800))
                .unwrap();
        }
    }

    #[test]
    fn three_end_packets_are_one_key_press() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        key_press(&mut rx, t0, 1000, 5);
        assert_eq!(drain(&mut rx, t0 + ms(200)), vec!['5']);
        // Nothing more, not even after the timeout.
        assert_eq!(drain(&mut rx, t0 + ms(2000)), Vec::<char>::new());
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn retransmitted_updates_and_late_end_packets_are_ignored() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        key_press(&mut rx, t0, 1000, 11);
        // A retransmitted update and another end packet arrive afterwards.
        rx.on_packet(t0 + ms(300), SSRC, 1000, &encode(11, false, 10, 320))
            .unwrap();
        rx.on_packet(t0 + ms(310), SSRC, 1000, &encode(11, true, 10, 800))
            .unwrap();
        assert_eq!(drain(&mut rx, t0 + ms(1000)), vec!['#']);
    }

    #[test]
    fn the_same_digit_twice_is_two_key_presses() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        key_press(&mut rx, t0, 1000, 1);
        key_press(&mut rx, t0 + ms(300), 3000, 1);
        assert_eq!(drain(&mut rx, t0 + ms(700)), vec!['1', '1']);
    }

    #[test]
    fn lost_end_packets_end_the_event_on_timeout() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        for i in 1..=3u16 {
            rx.on_packet(
                t0 + ms(20 * u64::from(i)),
                SSRC,
                500,
                &encode(7, false, 10, 160 * i),
            )
            .unwrap();
        }
        let last = t0 + ms(60);
        assert_eq!(rx.poll_timeout(), Some(last + EVENT_TIMEOUT));
        assert_eq!(rx.poll(last + EVENT_TIMEOUT - ms(1)), None);
        assert_eq!(rx.poll(last + EVENT_TIMEOUT), Some('7'));
        assert_eq!(rx.poll_timeout(), None);
        // The end packets turning up later do not report it again.
        rx.on_packet(t0 + ms(400), SSRC, 500, &encode(7, true, 10, 480))
            .unwrap();
        assert_eq!(drain(&mut rx, t0 + ms(500)), Vec::<char>::new());
    }

    #[test]
    fn a_new_event_ends_the_previous_one() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        rx.on_packet(t0, SSRC, 100, &encode(2, false, 10, 160))
            .unwrap();
        rx.on_packet(t0 + ms(40), SSRC, 900, &encode(3, false, 10, 160))
            .unwrap();
        assert_eq!(drain(&mut rx, t0 + ms(40)), vec!['2']);
        // Stale packets of the first event are ignored now.
        rx.on_packet(t0 + ms(50), SSRC, 100, &encode(2, true, 10, 800))
            .unwrap();
        assert_eq!(drain(&mut rx, t0 + ms(50)), Vec::<char>::new());
        assert_eq!(drain(&mut rx, t0 + ms(40) + EVENT_TIMEOUT), vec!['3']);
    }

    #[test]
    fn zero_duration_events_are_ignored() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        rx.on_packet(t0, SSRC, 100, &encode(4, false, 10, 0))
            .unwrap();
        rx.on_packet(t0, SSRC, 100, &encode(4, true, 10, 0))
            .unwrap();
        assert_eq!(rx.poll_timeout(), None);
        assert_eq!(drain(&mut rx, t0 + ms(1000)), Vec::<char>::new());
    }

    #[test]
    fn timestamps_wrap_without_stale_detection_going_wrong() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        rx.on_packet(t0, SSRC, u32::MAX - 100, &encode(1, true, 10, 800))
            .unwrap();
        rx.on_packet(t0 + ms(200), SSRC, 700, &encode(2, true, 10, 800))
            .unwrap();
        assert_eq!(drain(&mut rx, t0 + ms(200)), vec!['1', '2']);
    }

    #[test]
    fn flash_and_short_payloads_report_nothing() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        rx.on_packet(t0, SSRC, 100, &encode(16, true, 10, 800))
            .unwrap();
        assert!(rx.on_packet(t0, SSRC, 200, &[1, 2]).is_err());
        assert_eq!(drain(&mut rx, t0 + ms(1000)), Vec::<char>::new());
    }
}
