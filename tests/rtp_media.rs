//! The RTP media engine over real UDP sockets on 127.0.0.1: a test socket plays the SIP peer
//! and talks to a running `MediaHandle`.
//!
//! Nothing here asserts how long things take; the timeouts only keep a broken build from
//! hanging. Where ordering between a datagram and an event matters, the tests rely on
//! loopback delivery: a datagram is in the receiving socket's queue once `send` returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dialtone::bridge::{Mark, MarkId};
use dialtone::metrics::Metrics;
use dialtone::rtp::dtmf;
use dialtone::rtp::packet::{RtpHeader, build_vec, parse};
use dialtone::rtp::{
    MediaCodec, MediaCommand, MediaConfig, MediaEvent, MediaHandle, MediaStats, start,
};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

const PT: u8 = 0;
const TE: u8 = 101;
const SILENCE: u8 = 0xFF;
const PEER_SSRC: u32 = 0x5EED_0001;
/// Only there so a broken engine fails instead of hanging.
const GUARD: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("no {what}"))
}

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// A running media engine sending to `remote`; returns its handle and RTP address.
async fn engine(remote: SocketAddr, metrics: Arc<Metrics>) -> (MediaHandle, SocketAddr) {
    let rtp = socket().await;
    let local = rtp.local_addr().unwrap();
    let config = MediaConfig {
        rtp,
        rtcp: Some(socket().await),
        remote,
        codec: MediaCodec::Pcmu,
        payload_type: PT,
        telephone_event: Some(TE),
        ptime_ms: 20,
        seed: 1,
    };
    (start(config, metrics), local)
}

fn peer_packet(seq: u16, payload: &[u8]) -> Vec<u8> {
    let header = RtpHeader {
        payload_type: PT,
        marker: seq == 0,
        sequence: seq,
        timestamp: 160 * u32::from(seq),
        ssrc: PEER_SSRC,
    };
    build_vec(&header, payload).unwrap()
}

/// A packet received by the peer.
#[derive(Debug, Clone)]
struct Received {
    header: RtpHeader,
    payload: Vec<u8>,
}

impl Received {
    fn is_audio(&self, byte: u8) -> bool {
        self.header.payload_type == PT && self.payload.first() == Some(&byte)
    }
}

fn decode(datagram: &[u8]) -> Option<Received> {
    parse(datagram).ok().map(|view| Received {
        header: view.header,
        payload: view.payload.to_vec(),
    })
}

/// Everything already queued on the peer's socket.
fn drain(peer: &UdpSocket) -> Vec<Received> {
    let mut buf = [0u8; 1500];
    let mut packets = Vec::new();
    while let Ok(len) = peer.try_recv(&mut buf) {
        packets.extend(decode(&buf[..len]));
    }
    packets
}

/// The next RTP packet arriving at the peer.
async fn receive(peer: &UdpSocket) -> Received {
    let mut buf = [0u8; 1500];
    loop {
        let len = within("RTP packet", peer.recv(&mut buf)).await.unwrap();
        if let Some(packet) = decode(&buf[..len]) {
            return packet;
        }
    }
}

/// Waits for an event matching `wanted`, skipping the others.
async fn event_where(handle: &mut MediaHandle, wanted: impl Fn(&MediaEvent) -> bool) -> MediaEvent {
    loop {
        let event = within("media event", handle.events.recv())
            .await
            .expect("media ended early");
        if wanted(&event) {
            return event;
        }
    }
}

/// Stops the engine and returns its final statistics; the event channel then closes.
async fn stop(mut handle: MediaHandle) -> MediaStats {
    handle.commands.send(MediaCommand::Stop).await.unwrap();
    let mut stats = None;
    while let Some(event) = within("end of media", handle.events.recv()).await {
        if let MediaEvent::Stats(s) = event {
            stats = Some(s);
        }
    }
    stats.expect("final statistics")
}

fn assert_consecutive(packets: &[Received]) {
    for pair in packets.windows(2) {
        assert_eq!(
            pair[1].header.sequence,
            pair[0].header.sequence.wrapping_add(1)
        );
        assert_eq!(pair[1].header.ssrc, pair[0].header.ssrc);
    }
}

#[tokio::test]
async fn caller_audio_is_reordered_deduplicated_and_a_gap_concealed() {
    let metrics = Arc::new(Metrics::new());
    let peer = socket().await;
    let (mut handle, engine_addr) = engine(peer.local_addr().unwrap(), metrics.clone()).await;

    // Junk first: it is counted and dropped.
    peer.send_to(&[0x80, 0x00, 0x01], engine_addr)
        .await
        .unwrap();
    peer.send_to(&[0x13; 40], engine_addr).await.unwrap();
    // 50 packets: 25 missing, 5/6 and 30/31 swapped, 10 sent twice.
    let mut order: Vec<u16> = (0..50).filter(|&s| s != 25).collect();
    order.swap(5, 6);
    order.swap(29, 30);
    order.insert(11, 10);
    for seq in order {
        let packet = peer_packet(seq, &[seq as u8 + 1; 160]);
        peer.send_to(&packet, engine_addr).await.unwrap();
    }

    let mut frames = Vec::new();
    while frames.len() < 50 {
        if let MediaEvent::Audio(frame) =
            event_where(&mut handle, |e| matches!(e, MediaEvent::Audio(_))).await
        {
            frames.push(frame);
        }
    }
    for (i, frame) in frames.iter().enumerate() {
        let expected = if i == 25 { SILENCE } else { i as u8 + 1 };
        assert_eq!(frame, &vec![expected; 160], "frame {i}");
    }

    let stats = stop(handle).await;
    assert_eq!(stats.concealed_frames, 1);
    assert_eq!(stats.packets_lost, 1);
    assert_eq!(stats.packets_duplicate, 1);
    assert_eq!(stats.packets_reordered, 2);
    assert_eq!(stats.packets_late, 0);
    assert_eq!(stats.packets_malformed, 2);
    assert_eq!(stats.packets_in, 50);
    assert_eq!(metrics.counter("rtp_concealed_frames_total", &[]), 1);
    assert_eq!(metrics.counter("rtp_packets_in_total", &[]), 50);
}

#[tokio::test]
async fn a_mark_is_played_after_its_last_packet_was_sent() {
    let metrics = Arc::new(Metrics::new());
    let peer = socket().await;
    let (mut handle, engine_addr) = engine(peer.local_addr().unwrap(), metrics).await;
    // The stream runs from the start: silence.
    let first = receive(&peer).await;
    assert_eq!(first.payload, vec![SILENCE; 160]);

    handle
        .commands
        .send(MediaCommand::Play(vec![0x55; 1600]))
        .await
        .unwrap();
    let mark = Mark {
        id: MarkId(1),
        label: "1:item:200".to_owned(),
    };
    handle
        .commands
        .send(MediaCommand::Mark(mark))
        .await
        .unwrap();
    event_where(&mut handle, |e| *e == MediaEvent::Played(MarkId(1))).await;

    // Every audio packet is already at the peer when the mark is reported.
    let received = drain(&peer);
    let audio: Vec<Received> = received
        .iter()
        .filter(|p| p.is_audio(0x55))
        .cloned()
        .collect();
    assert_eq!(audio.len(), 10);
    assert_consecutive(&audio);
    for pair in audio.windows(2) {
        assert_eq!(
            pair[1].header.timestamp,
            pair[0].header.timestamp.wrapping_add(160)
        );
    }
    assert!(
        audio[0].header.marker,
        "a talk spurt starts with the marker bit"
    );
    assert!(audio[1..].iter().all(|p| !p.header.marker));
    let mut stream = vec![first];
    stream.extend(received);
    assert_consecutive(&stream);
    assert!(
        stream
            .iter()
            .all(|p| p.header.ssrc == stream[0].header.ssrc)
    );
    // Symmetric RTP: it comes from the socket we send to.
    let mut buf = [0u8; 1500];
    let (_, from) = within("RTP packet", peer.recv_from(&mut buf))
        .await
        .unwrap();
    assert_eq!(from, engine_addr);
    stop(handle).await;
}

#[tokio::test]
async fn clear_stops_the_audio_within_one_packet() {
    let metrics = Arc::new(Metrics::new());
    let peer = socket().await;
    let (mut handle, _) = engine(peer.local_addr().unwrap(), metrics).await;
    // Two seconds of audio with a mark at the end.
    handle
        .commands
        .send(MediaCommand::Play(vec![0x55; 16_000]))
        .await
        .unwrap();
    let mark = Mark {
        id: MarkId(9),
        label: "9:item:2000".to_owned(),
    };
    handle
        .commands
        .send(MediaCommand::Mark(mark))
        .await
        .unwrap();
    let mut audio = 0;
    while audio < 3 {
        if receive(&peer).await.is_audio(0x55) {
            audio += 1;
        }
    }
    handle.commands.send(MediaCommand::Clear).await.unwrap();
    // Clearing reports the pending mark at once.
    event_where(&mut handle, |e| *e == MediaEvent::Played(MarkId(9))).await;
    audio += drain(&peer).iter().filter(|p| p.is_audio(0x55)).count();
    // From here on: at most the one packet that was already on its way, then silence.
    let next: Vec<Received> = {
        let mut next = Vec::new();
        for _ in 0..10 {
            next.push(receive(&peer).await);
        }
        next
    };
    let late = next.iter().filter(|p| p.is_audio(0x55)).count();
    assert!(late <= 1, "{late} audio packets after the clear");
    assert!(next[1..].iter().all(|p| p.payload == vec![SILENCE; 160]));
    assert!(audio + late < 100, "the rest of the audio was dropped");
    stop(handle).await;
}

#[tokio::test]
async fn dtmf_goes_out_as_rfc_4733_events() {
    let metrics = Arc::new(Metrics::new());
    let peer = socket().await;
    let (handle, _) = engine(peer.local_addr().unwrap(), metrics).await;
    let (done, finished) = oneshot::channel();
    handle
        .commands
        .send(MediaCommand::SendDtmf {
            digits: "1#".to_owned(),
            done,
        })
        .await
        .unwrap();
    assert_eq!(within("DTMF completion", finished).await.unwrap(), Ok(()));

    let mut stream = drain(&peer);
    while stream
        .iter()
        .filter(|p| p.header.payload_type == TE)
        .count()
        < 16
    {
        stream.push(receive(&peer).await);
    }
    assert_consecutive(&stream);
    let events: Vec<&Received> = stream
        .iter()
        .filter(|p| p.header.payload_type == TE)
        .collect();
    assert_eq!(events.len(), 16);
    for (digit, packets) in [(1u8, &events[..8]), (11, &events[8..])] {
        let start = packets[0].header.timestamp;
        assert!(packets[0].header.marker);
        let mut ends = 0;
        for packet in packets {
            assert_eq!(packet.header.timestamp, start, "one timestamp per event");
            let event = dtmf::decode(&packet.payload).unwrap();
            assert_eq!(event.event, digit);
            assert!(event.duration > 0);
            ends += usize::from(event.end);
        }
        assert_eq!(ends, 3, "the end packet goes out three times");
    }
    assert_ne!(events[0].header.timestamp, events[8].header.timestamp);
    stop(handle).await;
}

#[tokio::test]
async fn sending_latches_to_where_the_media_comes_from() {
    let metrics = Arc::new(Metrics::new());
    // The SDP address: a socket that never sends (as behind a NAT).
    let announced = socket().await;
    let peer = socket().await;
    let (handle, engine_addr) = engine(announced.local_addr().unwrap(), metrics.clone()).await;
    receive(&announced).await;
    for seq in 0..5 {
        let packet = peer_packet(seq, &[1; 160]);
        peer.send_to(&packet, engine_addr).await.unwrap();
    }
    let mut buf = [0u8; 1500];
    let (len, from) = within("latched RTP", peer.recv_from(&mut buf))
        .await
        .unwrap();
    assert_eq!(from, engine_addr);
    let packet = decode(&buf[..len]).unwrap();
    assert_eq!(packet.header.payload_type, PT);
    let stats = stop(handle).await;
    assert_eq!(stats.latched, 1);
    assert_eq!(metrics.counter("rtp_latched_total", &[]), 1);
}

#[tokio::test]
async fn the_media_ends_when_the_commands_are_dropped() {
    let metrics = Arc::new(Metrics::new());
    let peer = socket().await;
    let (handle, _) = engine(peer.local_addr().unwrap(), metrics).await;
    let MediaHandle {
        mut events,
        commands,
    } = handle;
    drop(commands);
    let mut last = None;
    while let Some(event) = within("end of media", events.recv()).await {
        last = Some(event);
    }
    assert!(matches!(last, Some(MediaEvent::Stats(_))));
}
