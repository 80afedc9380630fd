//! `dialtone serve` against SIP peers nobody on the team wrote, on loopback, on the embedded
//! (echo) engine: a baresip softphone that hears its own words come back, a SIPp caller that
//! puts the call on hold and takes it off again, a call over TCP, a graceful shutdown with a
//! call in progress (new calls get 503, the call gets a BYE after the drain period), and an
//! OPTIONS ping.
//!
//! Nothing here asserts how long things take: every wait is for an event, bounded only so a
//! broken build fails instead of hanging.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

mod sip_support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dialtone::audio::g711::{ulaw_decode, ulaw_encode};
use sip_support::{BridgeProcess, Capture, contains, free_port, path_str, root, spawn_sipp_uac};

/// The prompt every caller here speaks (8 kHz µ-law, no header).
const PROMPT: &str = "tests/data/book_table_8k.ulaw";
/// Samples per 20 ms packet at 8 kHz.
const PACKET: usize = 160;

fn speech(loops: i32) -> String {
    format!("../data/book_table_8k.ulaw,{loops},0")
}

fn prompt() -> Vec<u8> {
    std::fs::read(root().join(PROMPT)).expect("the prompt is in tests/data")
}

/// Waits until `done` holds, polling, for at most `limit`; whether it did.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One metric of the bridge; a bridge that is gone fails the test with its log.
fn metric(bridge: &BridgeProcess, series: &str) -> u64 {
    if let Err(e) = std::net::TcpStream::connect(bridge.http) {
        panic!("the bridge does not answer ({e}):\n{}", bridge.log());
    }
    bridge.metric(series)
}

/// A caller's signalling and media ports, apart (SIPp binds media + 2 as well).
fn caller_ports(signalling: fn() -> u16) -> (u16, u16) {
    loop {
        let (port, media) = (signalling(), free_port());
        if port.abs_diff(media) > 2 {
            return (port, media);
        }
    }
}

/// Like [`free_port`], free for TCP too (SIPp over TCP and baresip listen on both).
fn caller_port_udp_tcp() -> u16 {
    loop {
        let port = free_port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A fresh, empty directory under the test temp dir.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits for a child process to exit, up to `limit` (then kills it); whether it exited.
fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let exited = wait_for(limit, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    exited
}

// ---------------------------------------------------------------------------------------------
// WAV files (8 kHz mono PCM16, as baresip's aufile reads and its sndfile writes them)

fn wav_bytes(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap();
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The samples of a mono 16-bit PCM WAV at `rate`; panics on anything else.
fn wav_samples(data: &[u8], rate: u32) -> Vec<i16> {
    assert!(
        data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WAVE",
        "not a WAV file"
    );
    let mut i = 12;
    let mut format_ok = false;
    while i + 8 <= data.len() {
        let id = &data[i..i + 4];
        let len = u32::from_le_bytes(data[i + 4..i + 8].try_into().unwrap()) as usize;
        let body = &data[i + 8..(i + 8 + len).min(data.len())];
        if id == b"fmt " {
            let u16_at = |o: usize| u16::from_le_bytes([body[o], body[o + 1]]);
            let rate_found = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(
                (u16_at(0), u16_at(2), rate_found, u16_at(14)),
                (1, 1, rate, 16),
                "PCM, mono, {rate} Hz, 16 bits"
            );
            format_ok = true;
        } else if id == b"data" {
            assert!(format_ok, "fmt chunk before data");
            return body
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// µ-law codes in one canonical form (the two codes for zero become one), so audio that went
/// through any standard G.711 decoder and back compares byte for byte.
fn canonical_ulaw(codes: impl IntoIterator<Item = u8>) -> Vec<u8> {
    codes
        .into_iter()
        .map(|c| ulaw_encode(ulaw_decode(c)))
        .collect()
}

/// Whether µ-law audio has speech in it (mean magnitude well above the noise floor).
fn is_loud(codes: &[u8]) -> bool {
    let sum: u64 = codes
        .iter()
        .map(|&c| u64::from(ulaw_decode(c).unsigned_abs()))
        .sum();
    !codes.is_empty() && sum / codes.len() as u64 > 300
}

/// The prompt's 20 ms pieces with speech in them.
fn loud_pieces(prompt: &[u8]) -> Vec<&[u8]> {
    prompt
        .chunks_exact(PACKET)
        .filter(|piece| is_loud(piece))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A tcpdump capture of signalling and media together, in the order the packets crossed
// loopback.

/// One UDP datagram seen on loopback.
struct Datagram {
    src_port: u16,
    dst_port: u16,
    payload: Vec<u8>,
}

impl Datagram {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// A SIP message: its start line begins with `start` and it carries `CSeq: <cseq>`.
    fn is_sip(&self, start: &str, cseq: &str) -> bool {
        let text = self.text();
        text.starts_with(start) && text.contains(&format!("CSeq: {cseq}"))
    }

    /// An RTP packet (version 2, not RTCP).
    fn is_rtp(&self) -> bool {
        self.payload.len() >= 12
            && self.payload[0] >> 6 == 2
            && !(72..=76).contains(&(self.payload[1] & 0x7F))
    }
}

/// The payload of an RTP packet with payload type `pt`.
fn rtp_payload(packet: &[u8], pt: u8) -> Option<&[u8]> {
    if packet.len() < 12 || packet[0] >> 6 != 2 || packet[1] & 0x7F != pt {
        return None;
    }
    let start = 12 + 4 * usize::from(packet[0] & 0x0F);
    packet.get(start..)
}

struct Tap {
    child: Child,
    file: PathBuf,
}

impl Tap {
    /// Starts capturing UDP on `lo` that matches `filter` (a pcap filter on top of `udp`).
    fn start(name: &str, filter: &str) -> Self {
        let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{}.pcap",
            std::process::id(),
            free_port()
        ));
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-n", "-U", "-w"])
            .arg(&file)
            .arg(format!("udp and ({filter})"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump is installed (tests/run.sh installs it)");
        // tcpdump says "listening on lo" once it captures.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("tcpdump starts capturing");
        Self { child, file }
    }

    /// Stops the capture and returns the datagrams in capture order.
    fn finish(mut self) -> Vec<Datagram> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        if !wait_child(&mut self.child, Duration::from_secs(10)) {
            panic!("tcpdump did not stop");
        }
        let data = std::fs::read(&self.file).unwrap_or_default();
        let _ = std::fs::remove_file(&self.file);
        udp_from_pcap(&data)
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// UDP datagrams over IPv4 in a pcap file (Ethernet or Linux SLL framing).
fn udp_from_pcap(data: &[u8]) -> Vec<Datagram> {
    let mut out = Vec::new();
    if data.len() < 24 {
        return out;
    }
    let link_len = match u32::from_le_bytes(data[20..24].try_into().unwrap()) {
        1 => 14,
        113 => 16,
        276 => 20,
        0 => 4,
        other => panic!("unexpected pcap link type {other}"),
    };
    let mut i = 24;
    while i + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[i + 8..i + 12].try_into().unwrap()) as usize;
        let pkt = &data[(i + 16).min(data.len())..(i + 16 + caplen).min(data.len())];
        i += 16 + caplen;
        if pkt.len() < link_len + 20 {
            continue;
        }
        let ip = &pkt[link_len..];
        let ihl = usize::from(ip[0] & 0x0F) * 4;
        if ip[0] >> 4 != 4 || ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let udp = &ip[ihl..];
        out.push(Datagram {
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            payload: udp[8..].to_vec(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The bridge's process id (BridgeProcess keeps its child to itself): the process that owns the
// socket listening on the bridge's HTTP address.

// ---------------------------------------------------------------------------------------------

/// Copies `tests/baresip/` into `dir` with baresip's SIP port set to `port`.
fn baresip_config(dir: &Path, port: u16) {
    let source = root().join("tests/baresip");
    for name in ["accounts", "contacts"] {
        std::fs::copy(source.join(name), dir.join(name)).unwrap();
    }
    let config = std::fs::read_to_string(source.join("config")).unwrap();
    let config: String = config
        .lines()
        .map(|line| {
            if line.starts_with("sip_listen") {
                format!("sip_listen\t\t127.0.0.1:{port}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(config.contains(&format!("127.0.0.1:{port}")));
    std::fs::write(dir.join("config"), config).unwrap();
}

#[test]
fn a_baresip_softphone_hears_its_echo() {
    let bridge = BridgeProcess::start(&[]);
    let dir = fresh_dir("baresip");
    baresip_config(&dir, caller_port_udp_tcp());
    // The microphone: the prompt, then 12 s of silence for the echo to come back in (baresip
    // hangs up when the file ends).
    let spoken = prompt();
    let mut mic: Vec<i16> = spoken.iter().map(|&c| ulaw_decode(c)).collect();
    mic.resize(mic.len() + 12 * 8000, 0);
    std::fs::write(dir.join("mic.wav"), wav_bytes(&mic, 8000)).unwrap();
    std::fs::create_dir_all(dir.join("recordings")).unwrap();

    let output = std::fs::File::create(dir.join("baresip.log")).unwrap();
    let mut baresip = Command::new("baresip")
        .args(["-f", ".", "-e"])
        .arg(format!("/dial sip:100@{}", bridge.sip))
        .args(["-t", "25"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .expect("baresip is installed (Debian package baresip-core)");
    let exited = wait_child(&mut baresip, Duration::from_secs(90));
    let baresip_log = || {
        String::from_utf8_lossy(&std::fs::read(dir.join("baresip.log")).unwrap_or_default())
            .replace('\r', "\n")
            .lines()
            .filter(|l| !l.contains("audio="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(exited, "baresip did not exit:\n{}", baresip_log());

    let received = std::fs::read_dir(dir.join("recordings"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
        })
        .unwrap_or_else(|| {
            panic!(
                "baresip recorded no call:\n{}\n{}",
                baresip_log(),
                bridge.log()
            )
        });
    let heard = wav_samples(&std::fs::read(&received).unwrap(), 8000);
    let heard = canonical_ulaw(heard.into_iter().map(ulaw_encode));
    let spoken = canonical_ulaw(spoken);
    let pieces = loud_pieces(&spoken);
    assert!(pieces.len() > 100, "the prompt has speech in it");
    let found = pieces.iter().filter(|p| contains(&heard, p)).count();
    // Every piece of speech comes back bit for bit; a few may be lost on the way (a late
    // packet in baresip's jitter buffer), but not more than one in ten.
    assert!(
        found * 10 >= pieces.len() * 9,
        "the softphone heard {found} of {} pieces of its speech ({} samples received):\n{}\n{}",
        pieces.len(),
        heard.len(),
        baresip_log(),
        bridge.log()
    );

    assert!(
        wait_for(Duration::from_secs(10), || {
            metric(&bridge, "dialtone_calls_active{leg=\"sip\"}") == 0
        }),
        "the call ended"
    );
    assert_eq!(metric(&bridge, "dialtone_calls_total{leg=\"sip\"}"), 1);
    assert_eq!(
        metric(
            &bridge,
            "dialtone_calls_ended_total{reason=\"caller_hangup\"}"
        ),
        1,
        "{}",
        bridge.metrics()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hold_stops_our_rtp_and_the_callers_audio_until_resumed() {
    let bridge = BridgeProcess::start(&[]);
    let (port, media) = caller_ports(free_port);
    // The caller says its sentence (speech from 0.5 s to 4.7 s), then 3 s of silence that end
    // its turn once the call is resumed. The hold starts 2 s in and lasts 4 s: the first
    // words reach the model before the hold, the rest are said while held.
    let mut words = prompt();
    words.resize(words.len() + 3 * 8000, 0xFF);
    let words_dir = fresh_dir("hold");
    let words_file = words_dir.join("speech.ulaw");
    std::fs::write(&words_file, &words).unwrap();
    let key = format!("{},1,0", path_str(&words_file));
    let tap = Tap::start("hold", &format!("port {media} or port {port}"));
    let run = spawn_sipp_uac(
        bridge.sip,
        "uac_hold.xml",
        &["-key", "speech", &key, "-m", "1"],
        port,
        media,
        Duration::from_secs(60),
    );
    let packets = tap.finish();
    let _ = std::fs::remove_dir_all(&words_dir);
    assert!(
        run.succeeded(),
        "SIPp failed (a 200 without a=recvonly / a=sendrecv fails it):\n{}\n{}",
        run.output,
        bridge.log()
    );
    assert_eq!(
        bridge.log().matches("hold state changed").count(),
        2,
        "{}",
        bridge.log()
    );

    let bridge_sip = bridge.sip.port();
    let position = |what: &str, pred: &dyn Fn(&Datagram) -> bool| {
        packets
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no {what} in the capture"))
    };
    let held_at = position("200 for the hold re-INVITE", &|d| {
        d.src_port == bridge_sip && d.is_sip("SIP/2.0 200", "2 INVITE")
    });
    let resume_at = position("resuming re-INVITE", &|d| {
        d.dst_port == bridge_sip && d.is_sip("INVITE ", "3 INVITE")
    });
    let resumed_at = position("200 for the resuming re-INVITE", &|d| {
        d.src_port == bridge_sip && d.is_sip("SIP/2.0 200", "3 INVITE")
    });
    assert!(held_at < resume_at && resume_at < resumed_at);

    // What the bridge sent the caller, in capture order.
    let ours = |d: &Datagram| d.dst_port == media && d.src_port != bridge_sip && d.is_rtp();
    let rtp_between = |from: usize, to: usize| packets[from..to].iter().filter(|d| ours(d)).count();
    let before = rtp_between(0, held_at);
    let during = rtp_between(held_at, resume_at);
    let after = rtp_between(resumed_at, packets.len());
    // The hold lasts 4 s (200 packets at 20 ms). A packet or a short catch-up burst already
    // on its way when the 200 left is tolerated, nothing more.
    assert!(
        during < 10,
        "the bridge kept sending RTP while held: {during} packets"
    );
    assert!(before > 25, "RTP flowed before the hold: {before} packets");
    assert!(
        after > 25,
        "RTP flowed again after the hold: {after} packets"
    );

    // The echo engine says back what reached the model, byte for byte.
    let echoed: Vec<u8> = packets
        .iter()
        .filter(|d| ours(d))
        .filter_map(|d| rtp_payload(&d.payload, 0))
        .flat_map(<[u8]>::to_vec)
        .collect();
    // The caller's packets with speech in them, by where they were captured. Frames still in
    // the bridge's jitter buffer when a re-INVITE arrives may fall on either side of it, so
    // the 25 packets (500 ms) before each re-INVITE and the 5 after the hold's 200 are left
    // out.
    let spoken: Vec<(usize, &[u8])> = packets
        .iter()
        .enumerate()
        .filter(|(_, d)| d.src_port == media && d.is_rtp())
        .filter_map(|(i, d)| rtp_payload(&d.payload, 0).map(|p| (i, p)))
        .collect();
    let hold_invite = position("hold re-INVITE", &|d| {
        d.dst_port == bridge_sip && d.is_sip("INVITE ", "2 INVITE")
    });
    let split = |from: usize, to: usize, skip_first: usize, skip_last: usize| {
        let inside: Vec<&[u8]> = spoken
            .iter()
            .filter(|(i, _)| (from..to).contains(i))
            .map(|(_, p)| *p)
            .collect();
        let keep = inside.len().saturating_sub(skip_first + skip_last);
        inside
            .into_iter()
            .skip(skip_first)
            .take(keep)
            .filter(|p| is_loud(p))
            .collect::<Vec<_>>()
    };
    let said_before = split(0, hold_invite, 0, 25);
    let said_while_held = split(held_at, resume_at, 5, 25);
    assert!(
        said_before.len() > 20 && said_while_held.len() > 20,
        "speech before the hold ({}) and during it ({})",
        said_before.len(),
        said_while_held.len()
    );
    let heard_back = said_before.iter().filter(|p| contains(&echoed, p)).count();
    assert!(
        heard_back * 10 >= said_before.len() * 9,
        "the words said before the hold come back after it: {heard_back} of {}\n{}",
        said_before.len(),
        bridge.log()
    );
    let leaked = said_while_held
        .iter()
        .filter(|p| contains(&echoed, p))
        .count();
    assert_eq!(
        leaked,
        0,
        "words said while held reached the model ({leaked} of {} packets came back)",
        said_while_held.len()
    );
}

#[test]
fn a_call_over_tcp_hears_its_echo() {
    let bridge = BridgeProcess::start(&[]);
    let (port, media) = caller_ports(caller_port_udp_tcp);
    let capture = Capture::start(media, "tcp-echo");
    let run = spawn_sipp_uac(
        bridge.sip,
        "uac_ulaw_speech.xml",
        &[
            "-t",
            "t1",
            "-key",
            "speech",
            &speech(1),
            "-d",
            "14000",
            "-m",
            "1",
        ],
        port,
        media,
        Duration::from_secs(60),
    );
    let packets = capture.finish();
    assert!(
        run.succeeded(),
        "SIPp over TCP failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    let audio: Vec<u8> = packets
        .iter()
        .filter(|(pt, _)| *pt == 0)
        .flat_map(|(_, p)| p.clone())
        .collect();
    let spoken = prompt();
    let pieces = loud_pieces(&spoken);
    let found = pieces.iter().filter(|p| contains(&audio, p)).count();
    // Byte for byte, 20 ms at a time: a starved machine may slip a packet of silence into
    // the echo (the pacer does not wait for late audio), which must not fail the test.
    assert!(
        found * 10 >= pieces.len() * 9,
        "the caller's own words come back: {found} of {} pieces ({} bytes of RTP)",
        pieces.len(),
        audio.len()
    );
    assert_eq!(metric(&bridge, "dialtone_calls_total{leg=\"sip\"}"), 1);
}

#[test]
fn shutdown_refuses_new_calls_and_hangs_up_after_the_drain() {
    // BridgeProcess starts `serve` with `--drain-secs 2`. Three calls are in progress when
    // SIGTERM arrives; each must get its BYE once the drain period is over.
    const CALLS: u64 = 3;
    let mut bridge = BridgeProcess::start(&[]);
    let pid = bridge.pid();
    let sip = bridge.sip;
    let in_progress = std::thread::spawn(move || {
        let (port, media) = caller_ports(free_port);
        let calls = CALLS.to_string();
        spawn_sipp_uac(
            sip,
            "uac_long_wait_bye.xml",
            &[
                "-key",
                "speech",
                &speech(-1),
                "-m",
                &calls,
                "-l",
                &calls,
                "-r",
                "10",
            ],
            port,
            media,
            Duration::from_secs(60),
        )
    });
    assert!(
        wait_for(Duration::from_secs(30), || {
            metric(&bridge, "dialtone_calls_active{leg=\"sip\"}") == CALLS
                && bridge.log().matches("call answered").count() as u64 == CALLS
        }),
        "the calls are up:\n{}",
        bridge.log()
    );

    let (port, media) = caller_ports(free_port);
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_for(Duration::from_secs(10), || bridge
            .log()
            .contains("refusing new calls")),
        "the bridge starts shutting down:\n{}",
        bridge.log()
    );
    let refused = spawn_sipp_uac(
        sip,
        "uac_expect_503.xml",
        &["-m", "1"],
        port,
        media,
        Duration::from_secs(20),
    );
    let in_progress = in_progress.join().unwrap();
    assert!(
        refused.succeeded(),
        "a new INVITE while draining gets 503:\n{}\n{}",
        refused.output,
        bridge.log()
    );
    let log = bridge.log();
    let byes = log
        .lines()
        .filter(|l| l.contains("BYE sip:") && !l.contains("received"))
        .count();
    assert!(
        in_progress.succeeded(),
        "every call in progress gets a BYE from the bridge ({byes} BYEs in the log):\n{}\n{}",
        in_progress.output,
        log
    );
    // The bridge is already on its way out; a second SIGTERM changes nothing.
    let exit = bridge.terminate().expect("the bridge exits");
    assert!(exit.success(), "exit status {exit:?}:\n{}", bridge.log());
    // The calls went on through the drain period and were hung up when it was over.
    let log = bridge.log();
    let drained = log.find("drain period over");
    let ended = log.find("call ended reason=\"shutdown\"");
    assert!(
        drained.is_some() && ended.is_some() && drained < ended,
        "{log}"
    );
    assert_eq!(
        log.matches("call ended reason=\"shutdown\"").count() as u64,
        CALLS,
        "{log}"
    );
}

#[test]
fn options_ping_gets_200_with_allow() {
    let bridge = BridgeProcess::start(&[]);
    let (port, media) = caller_ports(free_port);
    let run = spawn_sipp_uac(
        bridge.sip,
        "uac_options.xml",
        &["-m", "1"],
        port,
        media,
        Duration::from_secs(20),
    );
    assert!(
        run.succeeded(),
        "SIPp failed (200 with Allow: INVITE, BYE and Accept: application/sdp expected):\n{}\n{}",
        run.output,
        bridge.log()
    );
    assert_eq!(
        metric(&bridge, "dialtone_sip_requests_total{method=\"OPTIONS\"}"),
        1,
        "{}",
        bridge.metrics()
    );
}
