//! Tests of the media session on a virtual clock: datagrams in, outputs drained.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::rtp::dtmf;
use crate::rtp::packet::{RtpHeader, build_vec, parse};

const PT: u8 = 0;
const TE: u8 = 101;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config() -> SessionConfig {
    SessionConfig {
        codec: MediaCodec::Pcmu,
        payload_type: PT,
        telephone_event: Some(TE),
        ptime_ms: 20,
        remote: addr(4000),
        rtcp_mux: false,
        seed: 42,
    }
}

fn session(t0: Instant) -> MediaSession {
    MediaSession::new(
        config(),
        t0,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )
    .unwrap()
}

fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let header = RtpHeader {
        payload_type: pt,
        marker: false,
        sequence: seq,
        timestamp: ts,
        ssrc: 0xCAFE,
    };
    build_vec(&header, payload).unwrap()
}

/// Runs the session on its own deadlines up to `until`, returning every output with its time.
fn drive(s: &mut MediaSession, until: Instant) -> Vec<(Instant, Output)> {
    let mut out: Vec<(Instant, Output)> = std::iter::from_fn(|| s.poll_output())
        .map(|o| (until, o))
        .collect();
    while let Some(at) = s.poll_timeout().filter(|t| *t <= until) {
        s.handle_timeout(at);
        out.extend(std::iter::from_fn(|| s.poll_output()).map(|o| (at, o)));
    }
    out
}

fn rtp_sent(outputs: &[(Instant, Output)]) -> Vec<(SocketAddr, RtpHeader, Vec<u8>)> {
    outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Transmit(t) if t.channel == Channel::Rtp => {
                let view = parse(&t.payload).unwrap();
                Some((t.destination, view.header, view.payload.to_vec()))
            }
            _ => None,
        })
        .collect()
}

fn audio(outputs: &[(Instant, Output)]) -> Vec<Vec<u8>> {
    outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Audio(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn invalid_payload_types_are_rejected() {
    let t0 = Instant::now();
    let wall = UNIX_EPOCH;
    let bad = SessionConfig {
        payload_type: 200,
        ..config()
    };
    assert!(matches!(
        MediaSession::new(bad, t0, wall),
        Err(MediaError::InvalidPayloadType(200))
    ));
    let rtcp_like = SessionConfig {
        telephone_event: Some(72),
        ..config()
    };
    assert!(MediaSession::new(rtcp_like, t0, wall).is_err());
    let clash = SessionConfig {
        telephone_event: Some(PT),
        ..config()
    };
    assert!(matches!(
        MediaSession::new(clash, t0, wall),
        Err(MediaError::PayloadTypeClash(0))
    ));
}

#[test]
fn no_caller_audio_before_the_first_packet_then_a_frame_every_20_ms() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let out = drive(&mut s, t0 + ms(500));
    assert!(audio(&out).is_empty());
    // Silence goes out to the SDP address all along.
    let sent = rtp_sent(&out);
    assert_eq!(sent.len(), 26);
    assert!(
        sent.iter()
            .all(|(to, h, _)| *to == addr(4000) && h.payload_type == PT)
    );
    let at = t0 + ms(500);
    for i in 0..3u16 {
        s.handle_rtp(
            at,
            addr(4000),
            &rtp(PT, i, 160 * u32::from(i), &[i as u8 + 1; 160]),
        );
    }
    let out = drive(&mut s, at + ms(200));
    let frames = audio(&out);
    assert_eq!(frames.len(), 8);
    assert_eq!(frames[0], vec![1; 160]);
    assert_eq!(frames[2], vec![3; 160]);
    assert_eq!(frames[3], vec![0xFF; 160]);
    let stats = s.stats();
    assert_eq!(stats.packets_in, 3);
    assert_eq!(stats.concealed_frames, 0);
}

#[test]
fn malformed_and_unknown_packets_are_counted_and_dropped() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.handle_rtp(t0, addr(4000), &[0x80, 0, 1]);
    s.handle_rtp(t0, addr(4000), &[0x40; 20]);
    s.handle_rtp(t0, addr(4000), &rtp(96, 1, 0, &[0; 160]));
    s.handle_rtp(t0, addr(4000), &rtp(TE, 2, 0, &[1, 2]));
    s.handle_rtcp(t0, addr(4001), &[0x80, 201, 0, 9]);
    let stats = s.stats();
    assert_eq!(stats.packets_malformed, 3);
    assert_eq!(stats.packets_unknown_pt, 1);
    assert_eq!(stats.rtcp_malformed, 1);
    assert_eq!(stats.packets_in, 2);
    assert!(audio(&drive(&mut s, t0 + ms(200))).is_empty());
}

#[test]
fn sending_latches_to_the_source_of_negotiated_media_only() {
    let t0 = Instant::now();
    let mut s = session(t0);
    // Unknown payload types from elsewhere never move the destination.
    for i in 0..10u16 {
        s.handle_rtp(t0, addr(6000), &rtp(96, i, 0, &[0; 160]));
    }
    assert_eq!(s.remote(), addr(4000));
    for i in 0..3u16 {
        s.handle_rtp(t0, addr(5000), &rtp(PT, i, 160 * u32::from(i), &[1; 160]));
    }
    assert_eq!(s.remote(), addr(5000));
    assert_eq!(s.stats().latched, 1);
    let sent = rtp_sent(&drive(&mut s, t0 + ms(40)));
    assert!(sent.iter().all(|(to, _, _)| *to == addr(5000)));
    // A re-negotiation points elsewhere again.
    s.set_remote(addr(7000));
    let sent = rtp_sent(&drive(&mut s, t0 + ms(80)));
    assert!(sent.iter().all(|(to, _, _)| *to == addr(7000)));
}

#[test]
fn caller_dtmf_is_reported_once_and_is_not_audio_loss() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.handle_rtp(t0, addr(4000), &rtp(PT, 0, 0, &[1; 160]));
    let mut seq = 1;
    for i in 1..=5u16 {
        s.handle_rtp(
            t0,
            addr(4000),
            &rtp(TE, seq, 160, &dtmf::encode(3, false, 10, 160 * i)),
        );
        seq += 1;
    }
    for _ in 0..3 {
        s.handle_rtp(
            t0,
            addr(4000),
            &rtp(TE, seq, 160, &dtmf::encode(3, true, 10, 800)),
        );
        seq += 1;
    }
    s.handle_rtp(t0, addr(4000), &rtp(PT, seq, 1440, &[2; 160]));
    let out = drive(&mut s, t0 + ms(400));
    let digits: Vec<char> = out
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Dtmf(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(digits, ['3']);
    assert_eq!(s.stats().dtmf_in, 1);
    assert_eq!(s.stats().packets_lost, 0);
    assert_eq!(s.stats().concealed_frames, 0);
}

#[test]
fn a_mark_is_played_right_after_the_packet_of_its_last_frame() {
    let t0 = Instant::now();
    let mut s = session(t0);
    drive(&mut s, t0);
    // 200 ms of audio, then a mark.
    s.play(&[0x55; 1600]);
    s.mark(MarkId(7));
    let out = drive(&mut s, t0 + ms(400));
    let played_at = out
        .iter()
        .position(|(_, o)| *o == Output::Played(MarkId(7)))
        .unwrap();
    let audio_packets: Vec<usize> = out
        .iter()
        .enumerate()
        .filter(|(_, (_, o))| matches!(o, Output::Transmit(t) if parse(&t.payload).unwrap().payload[0] == 0x55))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(audio_packets.len(), 10);
    assert_eq!(played_at, audio_packets[9] + 1);
}

#[test]
fn a_partial_frame_is_completed_with_silence() {
    let t0 = Instant::now();
    let mut s = session(t0);
    drive(&mut s, t0);
    s.play(&[0x55; 200]);
    let sent = rtp_sent(&drive(&mut s, t0 + ms(40)));
    assert_eq!(sent[0].2, vec![0x55; 160]);
    assert_eq!(sent[1].2[..40], [0x55; 40]);
    assert_eq!(sent[1].2[40..], [0xFF; 120]);
}

#[test]
fn clear_reports_pending_marks_at_once() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.mark(MarkId(1));
    s.play(&[0x55; 1600]);
    s.mark(MarkId(2));
    s.play(&[0x55; 1600]);
    s.mark(MarkId(3));
    drive(&mut s, t0 + ms(40));
    s.clear();
    let outs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(outs, [Output::Played(MarkId(2)), Output::Played(MarkId(3))]);
    let sent = rtp_sent(&drive(&mut s, t0 + ms(60)));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2, vec![0xFF; 160]);
}

#[test]
fn a_mark_before_any_audio_is_played_at_once() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.mark(MarkId(1));
    assert_eq!(s.poll_output(), Some(Output::Played(MarkId(1))));
}

#[test]
fn sent_dtmf_finishes_with_its_last_packet() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let job = s.send_dtmf("*").unwrap();
    let out = drive(&mut s, t0 + ms(400));
    let finished = out
        .iter()
        .position(
            |(_, o)| matches!(o, Output::DtmfFinished { job: j, result: Ok(()) } if *j == job),
        )
        .unwrap();
    let sent = rtp_sent(&out[..finished]);
    let events: Vec<_> = sent
        .iter()
        .filter(|(_, h, _)| h.payload_type == TE)
        .collect();
    assert_eq!(events.len(), 8);
    assert!(dtmf::decode(&events[7].2).unwrap().end);
    assert!(matches!(s.send_dtmf(""), Err(PacerError::NoDigits)));
}

#[test]
fn hold_stops_sending_and_abandons_dtmf() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let job = s.send_dtmf("123").unwrap();
    drive(&mut s, t0 + ms(40));
    s.hold(true, t0 + ms(50));
    let out = drive(&mut s, t0 + ms(2000));
    assert!(
        out.iter().any(
            |(_, o)| matches!(o, Output::DtmfFinished { job: j, result: Err(_) } if *j == job)
        )
    );
    assert!(rtp_sent(&out).is_empty());
    s.hold(false, t0 + ms(2000));
    // Slots at 2000, 2020, … 2100 ms.
    assert_eq!(rtp_sent(&drive(&mut s, t0 + ms(2100))).len(), 6);
}

#[test]
fn rtcp_reports_go_to_the_next_port_or_the_rtp_port_with_mux() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.handle_rtp(t0, addr(4000), &rtp(PT, 0, 0, &[1; 160]));
    let out = drive(&mut s, t0 + ms(8000));
    let reports: Vec<&Transmit> = out
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Transmit(t) if t.channel == Channel::Rtcp => Some(t),
            _ => None,
        })
        .collect();
    assert!(!reports.is_empty());
    assert!(reports.iter().all(|t| t.destination == addr(4001)));
    assert_eq!(reports[0].payload[1], 200, "a sender report");
    assert_eq!(s.stats().rtcp_out, reports.len() as u64);

    let mux = SessionConfig {
        rtcp_mux: true,
        ..config()
    };
    let mut s = MediaSession::new(mux, t0, UNIX_EPOCH).unwrap();
    let out = drive(&mut s, t0 + ms(8000));
    assert!(out.iter().any(|(_, o)| matches!(o, Output::Transmit(t) if t.channel == Channel::Rtcp && t.destination == addr(4000))));
    // RTCP arriving on the RTP port is recognised as such.
    s.close();
    let bye = std::iter::from_fn(|| s.poll_output())
        .find_map(|o| match o {
            Output::Transmit(t) if t.channel == Channel::Rtcp => Some(t.payload),
            _ => None,
        })
        .unwrap();
    let mut peer = session(t0);
    peer.handle_rtp(t0, addr(4000), &bye);
    assert_eq!(peer.stats().rtcp_in, 1);
    assert_eq!(peer.stats().packets_in, 0);
}

#[test]
fn close_abandons_dtmf_and_says_bye() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let job = s.send_dtmf("1").unwrap();
    s.close();
    let outs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    assert!(matches!(&outs[0], Output::DtmfFinished { job: j, result: Err(_) } if *j == job));
    assert!(
        matches!(&outs[1], Output::Transmit(t) if t.channel == Channel::Rtcp && t.destination == addr(4001))
    );
}
