//! Tests of the jitter buffer on a virtual clock, with G.711 pass-through as the codec.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

use super::*;
use crate::rtp::codec::Codec;

const SSRC: u32 = 0x1111;
const SILENCE: u8 = 0xFF;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn header(seq: u16, ts: u32) -> RtpHeader {
    RtpHeader {
        payload_type: 0,
        marker: false,
        sequence: seq,
        timestamp: ts,
        ssrc: SSRC,
    }
}

fn buffer() -> (JitterBuffer, Codec) {
    (
        JitterBuffer::new(JitterConfig::for_codec(MediaCodec::Pcmu)),
        Codec::new(MediaCodec::Pcmu).unwrap(),
    )
}

/// Every frame due at `at`.
fn due(jb: &mut JitterBuffer, codec: &mut Codec, at: Instant) -> Vec<PlayoutFrame> {
    std::iter::from_fn(|| jb.pop(at, codec)).collect()
}

/// The frames of `n` ticks after the first one is due.
fn frames(jb: &mut JitterBuffer, codec: &mut Codec, n: u32) -> Vec<PlayoutFrame> {
    let first = jb.poll_timeout().expect("started");
    (0..n)
        .flat_map(|i| due(jb, codec, first + FRAME * i))
        .collect()
}

/// The first byte of each frame: the tests fill each packet with one tag byte.
fn tags(frames: &[PlayoutFrame]) -> Vec<u8> {
    frames.iter().map(|f| f.audio[0]).collect()
}

#[test]
fn nothing_before_the_first_packet_then_frames_after_the_delay() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    assert_eq!(jb.poll_timeout(), None);
    assert!(jb.pop(t0 + ms(1000), &mut codec).is_none());
    assert_eq!(jb.push(t0, &header(10, 1600), &[1; 160]), Arrival::Resynced);
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(60)));
    assert!(jb.pop(t0 + ms(59), &mut codec).is_none());
    let frame = jb.pop(t0 + ms(60), &mut codec).unwrap();
    assert_eq!(frame.audio, vec![1; 160]);
    assert!(!frame.concealed);
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(80)));
}

#[test]
fn reordered_packets_play_in_order() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    for (i, seq) in [0u16, 2, 1, 3, 5, 4].into_iter().enumerate() {
        let arrival = jb.push(
            t0 + ms(20 * i as u64),
            &header(seq, 160 * u32::from(seq)),
            &[seq as u8 + 1; 160],
        );
        if seq == 1 || seq == 4 {
            assert_eq!(arrival, Arrival::Reordered);
        }
    }
    let out = frames(&mut jb, &mut codec, 6);
    assert_eq!(tags(&out), [1, 2, 3, 4, 5, 6]);
    assert!(out.iter().all(|f| !f.concealed));
    let stats = jb.stats();
    assert_eq!(
        (stats.reordered, stats.lost, stats.concealed_frames),
        (2, 0, 0)
    );
}

#[test]
fn duplicates_are_dropped_before_and_after_playing() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(0, 0), &[1; 160]);
    jb.push(t0, &header(1, 160), &[2; 160]);
    assert_eq!(jb.push(t0, &header(1, 160), &[2; 160]), Arrival::Duplicate);
    let out = frames(&mut jb, &mut codec, 1);
    assert_eq!(tags(&out), [1]);
    // Packet 0 has been played: a copy now is a duplicate, not a late packet.
    assert_eq!(
        jb.push(t0 + ms(70), &header(0, 0), &[1; 160]),
        Arrival::Duplicate
    );
    jb.push(t0 + ms(70), &header(2, 320), &[3; 160]);
    let out = due(&mut jb, &mut codec, t0 + ms(100));
    assert_eq!(tags(&out), [2, 3]);
    assert_eq!(jb.stats().duplicate, 2);
    assert_eq!(jb.stats().late, 0);
}

#[test]
fn a_lost_packet_is_concealed_with_silence_and_counted() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    for seq in [0u16, 1, 3, 4] {
        jb.push(
            t0,
            &header(seq, 160 * u32::from(seq)),
            &[seq as u8 + 1; 160],
        );
    }
    let out = frames(&mut jb, &mut codec, 5);
    assert_eq!(tags(&out), [1, 2, SILENCE, 4, 5]);
    assert_eq!(out[2].audio, vec![SILENCE; 160]);
    assert_eq!(
        out.iter().map(|f| f.concealed).collect::<Vec<_>>(),
        [false, false, true, false, false]
    );
    let stats = jb.stats();
    assert_eq!((stats.concealed_frames, stats.lost), (1, 1));
}

#[test]
fn a_packet_after_its_time_is_dropped_as_late() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    for seq in [0u16, 1, 3] {
        jb.push(
            t0,
            &header(seq, 160 * u32::from(seq)),
            &[seq as u8 + 1; 160],
        );
    }
    let out = frames(&mut jb, &mut codec, 3);
    assert!(out[2].concealed);
    assert_eq!(
        jb.push(t0 + ms(101), &header(2, 320), &[3; 160]),
        Arrival::Late
    );
    assert_eq!(jb.stats().late, 1);
    let out = due(&mut jb, &mut codec, t0 + ms(120));
    assert_eq!(tags(&out), [4]);
}

#[test]
fn sequence_and_timestamp_wrap_around() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    let first_ts = u32::MAX - 319;
    let seqs = [65_533u16, 65_534, 65_535, 0, 1, 2];
    for (i, seq) in seqs.into_iter().enumerate() {
        let ts = first_ts.wrapping_add(160 * i as u32);
        assert_ne!(
            jb.push(
                t0 + ms(20 * i as u64),
                &header(seq, ts),
                &[i as u8 + 1; 160]
            ),
            Arrival::Late
        );
    }
    let out = frames(&mut jb, &mut codec, 6);
    assert_eq!(tags(&out), [1, 2, 3, 4, 5, 6]);
    let stats = jb.stats();
    assert_eq!(
        (stats.resyncs, stats.lost, stats.concealed_frames),
        (0, 0, 0)
    );
}

#[test]
fn reordering_across_the_wrap() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(65_535, 0), &[1; 160]);
    jb.push(t0, &header(1, 320), &[3; 160]);
    assert_eq!(jb.push(t0, &header(0, 160), &[2; 160]), Arrival::Reordered);
    assert_eq!(tags(&frames(&mut jb, &mut codec, 3)), [1, 2, 3]);
}

#[test]
fn a_new_ssrc_restarts_the_timeline() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(100, 5_000), &[1; 160]);
    jb.push(t0, &header(101, 5_160), &[2; 160]);
    assert_eq!(tags(&frames(&mut jb, &mut codec, 1)), [1]);
    // Another source takes over with unrelated numbers.
    let other = RtpHeader {
        ssrc: 0x2222,
        ..header(7, 90_000)
    };
    let at = t0 + ms(65);
    assert_eq!(jb.push(at, &other, &[9; 160]), Arrival::Resynced);
    assert_eq!(jb.stats().resyncs, 1);
    // It plays on the first tick at least one delay later (t0 + 140 ms); until then silence,
    // and the old stream's buffered packet is gone.
    let out = due(&mut jb, &mut codec, t0 + ms(140));
    assert_eq!(tags(&out), [SILENCE, SILENCE, SILENCE, 9]);
    assert!(out.iter().all(|f| !f.concealed));
}

#[test]
fn a_large_sequence_jump_restarts_the_timeline() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(10, 1_600), &[1; 160]);
    assert_eq!(
        jb.push(t0, &header(500, 1_760), &[2; 160]),
        Arrival::Resynced
    );
    assert_eq!(jb.stats().resyncs, 1);
    assert_eq!(tags(&frames(&mut jb, &mut codec, 1)), [2]);
}

#[test]
fn the_newest_packet_behind_playout_moves_the_timeline() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(0, 0), &[1; 160]);
    assert_eq!(tags(&frames(&mut jb, &mut codec, 3)), [1, SILENCE, SILENCE]);
    // The sender paused and resumed without advancing its timestamps (marker bit set).
    let at = t0 + ms(110);
    let resumed = RtpHeader {
        marker: true,
        ..header(1, 160)
    };
    assert_eq!(jb.push(at, &resumed, &[2; 160]), Arrival::Resynced);
    jb.push(at, &header(2, 320), &[3; 160]);
    // Next tick is t0 + 120 ms; the first at least one delay after `at` is t0 + 180 ms.
    let out = due(&mut jb, &mut codec, t0 + ms(200));
    assert_eq!(tags(&out), [SILENCE, SILENCE, SILENCE, 2, 3]);
}

#[test]
fn silence_suppression_gaps_are_silence_not_loss() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(0, 0), &[1; 160]);
    // Next talk spurt 100 ms later in both timestamp and time, sequence unbroken.
    jb.push(t0 + ms(100), &header(1, 800), &[2; 160]);
    let out = frames(&mut jb, &mut codec, 6);
    assert_eq!(tags(&out), [1, SILENCE, SILENCE, SILENCE, SILENCE, 2]);
    assert!(out.iter().all(|f| !f.concealed));
    assert_eq!(jb.stats().lost, 0);
}

#[test]
fn telephone_event_sequence_numbers_are_not_loss() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(0, 0), &[1; 160]);
    for seq in 1..=3u16 {
        jb.note_other(&header(seq, 160));
    }
    jb.push(t0 + ms(60), &header(4, 640), &[2; 160]);
    let out = frames(&mut jb, &mut codec, 5);
    assert_eq!(tags(&out), [1, SILENCE, SILENCE, SILENCE, 2]);
    assert!(out.iter().all(|f| !f.concealed));
    assert_eq!(jb.stats().lost, 0);
}

#[test]
fn an_idle_stream_keeps_producing_silence_without_counting_it() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(0, 0), &[1; 160]);
    let out = frames(&mut jb, &mut codec, 50);
    assert_eq!(out.len(), 50);
    assert!(
        out[1..]
            .iter()
            .all(|f| f.audio == vec![SILENCE; 160] && !f.concealed)
    );
    assert_eq!(jb.stats().concealed_frames, 0);
}

#[test]
fn ten_and_thirty_ms_packets_are_reframed_to_twenty() {
    for ptime in [10u32, 30] {
        let (mut jb, mut codec) = buffer();
        let t0 = Instant::now();
        let len = 8 * ptime as usize;
        // 240 ms of audio whose bytes count up, so the framing is visible.
        for i in 0..(240 / ptime) {
            let ts = i * len as u32;
            let payload: Vec<u8> = (0..len).map(|j| ((ts as usize + j) / 80) as u8).collect();
            jb.push(
                t0 + ms(u64::from(i * ptime)),
                &header(i as u16, ts),
                &payload,
            );
        }
        let out = frames(&mut jb, &mut codec, 12);
        assert_eq!(out.len(), 12);
        for (k, frame) in out.iter().enumerate() {
            assert_eq!(frame.audio.len(), 160);
            assert!(!frame.concealed, "ptime {ptime}, frame {k}");
            // Frame k holds bytes 160k..160k+160: tags 2k and 2k+1.
            assert_eq!(frame.audio[0], 2 * k as u8, "ptime {ptime}, frame {k}");
            assert_eq!(
                frame.audio[159],
                2 * k as u8 + 1,
                "ptime {ptime}, frame {k}"
            );
        }
    }
}

#[test]
fn a_lost_thirty_ms_packet_is_concealed_in_the_frames_it_spanned() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    for i in [0u32, 2, 3] {
        jb.push(t0, &header(i as u16, 240 * i), &[i as u8 + 1; 240]);
    }
    let out = frames(&mut jb, &mut codec, 6);
    // Packet 1 covered 30..60 ms: the second half of frame 1 and all of frame 2.
    assert_eq!(out[1].audio[..80], [1; 80]);
    assert_eq!(out[1].audio[80..], [SILENCE; 80]);
    assert_eq!(out[2].audio, vec![SILENCE; 160]);
    assert_eq!(out[3].audio, vec![3; 160]);
    assert_eq!(jb.stats().concealed_frames, 2);
    assert_eq!(jb.stats().lost, 1);
}

#[test]
fn a_packet_too_far_ahead_restarts_the_timeline() {
    let (mut jb, _codec) = buffer();
    let t0 = Instant::now();
    jb.push(t0, &header(0, 0), &[1; 160]);
    // 3 s ahead with the next sequence number: beyond the 2 s capacity.
    assert_eq!(
        jb.push(t0, &header(1, 24_000), &[2; 160]),
        Arrival::Resynced
    );
}

#[test]
fn a_stalled_reader_skips_instead_of_rushing() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    for seq in 0..100u16 {
        jb.push(t0, &header(seq, 160 * u32::from(seq)), &[seq as u8; 160]);
    }
    // The first pop happens a second late: only the current frame comes out.
    let out = due(&mut jb, &mut codec, t0 + ms(60 + 1000));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].audio[0], 50);
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(60 + 1020)));
}

#[test]
fn catching_up_a_few_frames_hands_them_all_out() {
    let (mut jb, mut codec) = buffer();
    let t0 = Instant::now();
    for seq in 0..10u16 {
        jb.push(t0, &header(seq, 160 * u32::from(seq)), &[seq as u8; 160]);
    }
    let out = due(&mut jb, &mut codec, t0 + ms(60 + 60));
    assert_eq!(tags(&out), [0, 1, 2, 3]);
}

#[cfg(feature = "opus")]
#[test]
fn opus_packets_become_20_ms_frames_of_pcm16_at_24_khz() {
    let mut jb = JitterBuffer::new(JitterConfig::for_codec(MediaCodec::Opus));
    let mut codec = Codec::new(MediaCodec::Opus).unwrap();
    let t0 = Instant::now();
    for seq in [0u16, 1, 3] {
        let payload = codec.encode(&[0u8; 960]).unwrap();
        jb.push(t0, &header(seq, 960 * u32::from(seq)), &payload);
    }
    let out = frames(&mut jb, &mut codec, 4);
    assert!(out.iter().all(|f| f.audio.len() == 960));
    assert_eq!(
        out.iter().map(|f| f.concealed).collect::<Vec<_>>(),
        [false, false, true, false]
    );
}
