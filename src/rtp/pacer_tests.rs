//! Tests of the pacer on a virtual clock: stream continuity, marker bits, marks, clear,
//! hold, stalls and DTMF.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::rtp::dtmf::decode;
use crate::rtp::packet::parse;

const PT: u8 = 0;
const TE: u8 = 101;
const SILENCE: u8 = 0xFF;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pacer(t0: Instant) -> Pacer {
    let config = PacerConfig {
        payload_type: PT,
        telephone_event: Some(TE),
        clock_rate: 8000,
        silence: vec![SILENCE; 160],
    };
    Pacer::new(config, &mut StdRng::seed_from_u64(7), t0)
}

/// A received packet, decoded for assertions.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    header: RtpHeader,
    payload: Vec<u8>,
    sent: Sent,
}

/// Drives the pacer on its own deadlines until `until`, collecting every packet.
fn run(p: &mut Pacer, until: Instant) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Some(at) = p.poll_timeout().filter(|t| *t <= until) {
        while let Some(sent) = p.next_send(at) {
            let view = parse(&sent.packet).unwrap();
            out.push(Seen {
                at,
                header: view.header,
                payload: view.payload.to_vec(),
                sent: sent.clone(),
            });
        }
    }
    out
}

fn assert_continuous(seen: &[Seen]) {
    for pair in seen.windows(2) {
        assert_eq!(
            pair[1].header.sequence,
            pair[0].header.sequence.wrapping_add(1),
            "sequence numbers are consecutive"
        );
        assert_eq!(pair[1].header.ssrc, pair[0].header.ssrc);
    }
}

#[test]
fn silence_is_sent_every_20_ms_from_the_start() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    assert_eq!(p.poll_timeout(), Some(t0));
    let seen = run(&mut p, t0 + ms(190));
    assert_eq!(seen.len(), 10);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.at, t0 + ms(20 * i as u64));
        assert_eq!(s.sent.content, Content::Silence);
        assert_eq!(s.payload, vec![SILENCE; 160]);
        assert_eq!(s.header.payload_type, PT);
        assert_eq!(
            s.header.timestamp,
            seen[0].header.timestamp.wrapping_add(160 * i as u32)
        );
        // Only the very first packet of the stream has the marker bit.
        assert_eq!(s.header.marker, i == 0);
    }
    assert_continuous(&seen);
    assert_eq!(p.packets_sent(), 10);
    assert_eq!(p.octets_sent(), 1600);
}

#[test]
fn the_same_seed_gives_the_same_stream() {
    let t0 = Instant::now();
    let a = run(&mut pacer(t0), t0);
    let b = run(&mut pacer(t0), t0);
    assert_eq!(a[0].header, b[0].header);
}

#[test]
fn talk_spurts_start_with_the_marker_bit_and_timestamps_stay_continuous() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    let mut seen = run(&mut p, t0 + ms(20));
    for tag in 1..=3 {
        p.play(vec![tag; 160]);
    }
    seen.extend(run(&mut p, t0 + ms(120)));
    p.play(vec![9; 160]);
    seen.extend(run(&mut p, t0 + ms(160)));
    let kinds: Vec<(Content, bool)> = seen
        .iter()
        .map(|s| (s.sent.content, s.header.marker))
        .collect();
    use Content::{Audio, Silence};
    assert_eq!(
        kinds,
        [
            (Silence, true),
            (Silence, false),
            (Audio, true),
            (Audio, false),
            (Audio, false),
            (Silence, false),
            (Silence, false),
            (Audio, true),
            (Silence, false),
        ]
    );
    assert_continuous(&seen);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            s.header.timestamp,
            seen[0].header.timestamp.wrapping_add(160 * i as u32)
        );
    }
    assert_eq!(seen[2].payload, vec![1; 160]);
    assert_eq!(seen[7].payload, vec![9; 160]);
}

#[test]
fn a_mark_is_reported_with_the_packet_of_the_last_frame_before_it() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    for _ in 0..10 {
        p.play(vec![1; 160]);
    }
    assert_eq!(p.mark(MarkId(1)), None);
    p.play(vec![2; 160]);
    assert_eq!(p.mark(MarkId(2)), None);
    assert_eq!(p.mark(MarkId(3)), None);
    let seen = run(&mut p, t0 + ms(300));
    let with_marks: Vec<(usize, Vec<MarkId>)> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.sent.played.is_empty())
        .map(|(i, s)| (i, s.sent.played.clone()))
        .collect();
    assert_eq!(
        with_marks,
        [(9, vec![MarkId(1)]), (10, vec![MarkId(2), MarkId(3)])]
    );
    assert_eq!(seen[9].payload, vec![1; 160]);
    assert_eq!(seen[10].payload, vec![2; 160]);
    assert_eq!(seen[11].sent.content, Content::Silence);
}

#[test]
fn a_mark_with_nothing_queued_is_reported_at_once() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    assert_eq!(p.mark(MarkId(5)), Some(MarkId(5)));
    p.play(vec![1; 160]);
    run(&mut p, t0);
    assert_eq!(p.mark(MarkId(6)), Some(MarkId(6)));
}

#[test]
fn clear_flushes_at_once_and_returns_every_pending_mark() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    for i in 0..50u8 {
        p.play(vec![i; 160]);
        if i % 10 == 9 {
            p.mark(MarkId(u64::from(i)));
        }
    }
    let before = run(&mut p, t0 + ms(100));
    assert_eq!(before.len(), 6);
    assert_eq!(
        p.clear(),
        [MarkId(9), MarkId(19), MarkId(29), MarkId(39), MarkId(49)]
    );
    assert_eq!(p.queued_frames(), 0);
    let after = run(&mut p, t0 + ms(200));
    assert!(after.iter().all(|s| s.sent.content == Content::Silence));
    assert!(after.iter().all(|s| s.sent.played.is_empty()));
    assert_eq!(p.clear(), Vec::<MarkId>::new());
}

#[test]
fn the_grid_does_not_drift_when_polled_late() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    let mut seen = Vec::new();
    for n in 0..50u64 {
        // Every poll comes 7 ms after its deadline.
        let at = p.poll_timeout().unwrap() + ms(7);
        while let Some(sent) = p.next_send(at) {
            seen.push(sent);
        }
        assert_eq!(p.poll_timeout(), Some(t0 + ms(20 * (n + 1))));
    }
    assert_eq!(seen.len(), 50);
}

#[test]
fn a_short_stall_is_caught_up_and_a_long_one_skipped() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    run(&mut p, t0);
    // 60 ms late for slot 1: slots 1..=4 are all sent now.
    let burst: Vec<Sent> = std::iter::from_fn(|| p.next_send(t0 + ms(80))).collect();
    assert_eq!(burst.len(), 4);
    // A second of silence from the task: the missed slots are skipped.
    let first = parse(&burst[0].packet).unwrap().header;
    let late = p.next_send(t0 + ms(1100)).unwrap();
    let header = parse(&late.packet).unwrap().header;
    assert!(p.next_send(t0 + ms(1100)).is_none());
    assert_eq!(p.poll_timeout(), Some(t0 + ms(1120)));
    assert_eq!(header.sequence, first.sequence.wrapping_add(4));
    assert_eq!(header.timestamp, first.timestamp.wrapping_add(160 * 54));
    assert!(header.marker);
}

#[test]
fn hold_stops_sending_and_timestamps_follow_real_time() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    p.play(vec![1; 160]);
    p.play(vec![2; 160]);
    let before = run(&mut p, t0);
    p.hold(true, t0 + ms(10));
    assert!(p.is_held());
    assert_eq!(p.poll_timeout(), None);
    assert!(p.next_send(t0 + ms(500)).is_none());
    p.hold(false, t0 + ms(1005));
    assert_eq!(p.poll_timeout(), Some(t0 + ms(1020)));
    let after = run(&mut p, t0 + ms(1020));
    assert_eq!(after.len(), 1);
    let (a, b) = (&before[0].header, &after[0].header);
    assert_eq!(b.sequence, a.sequence.wrapping_add(1));
    assert_eq!(b.timestamp, a.timestamp.wrapping_add(160 * 51));
    assert!(b.marker);
    // The queue survived the hold.
    assert_eq!(after[0].payload, vec![2; 160]);
}

#[test]
fn dtmf_is_sent_in_the_same_stream_with_audio_held_back() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    let mut seen = run(&mut p, t0);
    let job = p.send_dtmf("1#").unwrap();
    p.play(vec![7; 160]);
    seen.extend(run(&mut p, t0 + ms(20 * 20)));
    assert_continuous(&seen);
    let events: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.sent.content == Content::Dtmf)
        .collect();
    assert_eq!(events.len(), 16);
    for (digit, packets) in [(1u8, &events[..8]), (11, &events[8..])] {
        let ts = packets[0].header.timestamp;
        assert!(packets[0].header.marker);
        for (i, s) in packets.iter().enumerate() {
            assert_eq!(s.header.payload_type, TE);
            assert_eq!(s.header.timestamp, ts, "one timestamp per event");
            assert_eq!(s.header.marker, i == 0);
            let event = decode(&s.payload).unwrap();
            assert_eq!(event.event, digit);
            assert_eq!(event.end, i >= 5);
        }
    }
    // Slots: 1 silence, 8 event, 3 gap, 8 event, then the queued audio.
    let shape: Vec<Content> = seen.iter().map(|s| s.sent.content).collect();
    assert_eq!(shape[1..9], [Content::Dtmf; 8]);
    assert_eq!(shape[9..12], [Content::Silence; 3]);
    assert_eq!(shape[12..20], [Content::Dtmf; 8]);
    assert_eq!(shape[20], Content::Audio);
    assert!(seen[20].header.marker);
    let done: Vec<usize> = (0..seen.len())
        .filter(|&i| seen[i].sent.dtmf_done.is_some())
        .collect();
    assert_eq!(done, [19]);
    assert_eq!(seen[19].sent.dtmf_done, Some(job));
    // The second event starts on its own slot's timestamp.
    assert_eq!(
        events[8].header.timestamp,
        seen[0].header.timestamp.wrapping_add(160 * 12)
    );
}

#[test]
fn dtmf_needs_telephone_event_and_digits() {
    let t0 = Instant::now();
    let config = PacerConfig {
        payload_type: PT,
        telephone_event: None,
        clock_rate: 8000,
        silence: vec![SILENCE; 160],
    };
    let mut p = Pacer::new(config, &mut StdRng::seed_from_u64(1), t0);
    assert!(matches!(
        p.send_dtmf("1"),
        Err(PacerError::NoTelephoneEvent)
    ));
    let mut p = pacer(t0);
    assert!(matches!(p.send_dtmf(""), Err(PacerError::NoDigits)));
    assert!(matches!(p.send_dtmf("1x"), Err(PacerError::Dtmf(_))));
}

#[test]
fn hold_abandons_digit_strings() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    let job = p.send_dtmf("123").unwrap();
    run(&mut p, t0 + ms(40));
    assert_eq!(p.hold(true, t0 + ms(50)), [job]);
    p.hold(false, t0 + ms(100));
    let after = run(&mut p, t0 + ms(200));
    assert!(after.iter().all(|s| s.sent.content == Content::Silence));
}

#[test]
fn rtp_timestamps_follow_the_clock() {
    let t0 = Instant::now();
    let mut p = pacer(t0);
    let first = parse(&p.next_send(t0).unwrap().packet)
        .unwrap()
        .header
        .timestamp;
    assert_eq!(p.rtp_timestamp_at(t0), first);
    assert_eq!(p.rtp_timestamp_at(t0 + ms(1000)), first.wrapping_add(8000));
}
