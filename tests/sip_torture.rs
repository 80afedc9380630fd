//! The RFC 4475 torture messages against `dialtone serve` on loopback: each file goes to the
//! bridge's SIP port as one UDP datagram, the first answer is checked against what the RFC
//! expects (`tests/data/sip-torture/index.tsv`), INVITEs that start calls are cancelled, and
//! the bridge must then still carry a normal SIPp call and shut down cleanly.
//!
//! Answers follow RFC 3261 §18.2.2: to the packet's source address at the top Via's sent-by
//! port (5060 when it names none). The messages' sent-by hosts are documentation addresses,
//! so each file is sent from 127.0.0.1 bound at that port, where the answer comes back. Ports
//! 5060, 5050 and 5061 must therefore be free on 127.0.0.1 while this test runs.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

mod sip_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sip_support::{BridgeProcess, free_port, root, spawn_sipp_uac};

/// How long the first answer to a file may take.
const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// How long a cancelled INVITE may take to end (200 to the CANCEL, 487 to the INVITE).
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// One row of `index.tsv`.
struct Row {
    file: String,
    section: String,
    verdict: String,
    liberal: String,
    handling: String,
}

fn torture_dir() -> PathBuf {
    root().join("tests/data/sip-torture")
}

fn index() -> Vec<Row> {
    let text = std::fs::read_to_string(torture_dir().join("index.tsv")).expect("index.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert!(c.len() >= 9, "index.tsv row: {l}");
            Row {
                file: c[0].into(),
                section: c[1].into(),
                verdict: c[3].into(),
                liberal: c[4].into(),
                handling: c[8].into(),
            }
        })
        .collect()
}

/// Logical header lines (folds joined) of a raw message, read leniently.
fn headers(msg: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n").skip(1) {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

/// The first value of a header, by long or compact name.
fn header(msg: &[u8], long: &str, compact: Option<&str>) -> Option<String> {
    headers(msg)
        .into_iter()
        .find(|(n, _)| *n == long || Some(n.as_str()) == compact)
        .map(|(_, v)| v)
}

fn call_id(msg: &[u8]) -> Option<String> {
    header(msg, "call-id", Some("i"))
}

fn cseq(msg: &[u8]) -> Option<String> {
    header(msg, "cseq", None).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The top Via value (first of the first Via header).
fn top_via(msg: &[u8]) -> Option<String> {
    let via = header(msg, "via", Some("v"))?;
    Some(via.split(',').next().unwrap_or_default().trim().to_owned())
}

/// Where answers to this message go: the sent-by port of its top Via, 5060 (5061 for TLS)
/// when it names none; with `rport` the sending port itself, so 5060 serves there too.
fn answer_port(msg: &[u8]) -> u16 {
    let Some(via) = top_via(msg) else {
        return 5060;
    };
    let (head, params) = via.split_once(';').unwrap_or((&via, ""));
    if params
        .split(';')
        .any(|p| p.trim().eq_ignore_ascii_case("rport"))
    {
        return 5060;
    }
    // "SIP / 2.0 / UDP host : port": the third '/' field is the transport, then the sent-by.
    let Some(last) = head.splitn(3, '/').nth(2) else {
        return 5060;
    };
    let mut words = last.split_whitespace();
    let transport = words.next().unwrap_or_default();
    let sent_by: String = words.collect();
    let port = match sent_by.strip_prefix('[') {
        Some(v6) => v6.split_once(']').and_then(|(_, p)| p.strip_prefix(':')),
        None => sent_by.split_once(':').map(|(_, p)| p),
    };
    let default = if transport.eq_ignore_ascii_case("TLS") {
        5061
    } else {
        5060
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(default)
}

fn is_response(msg: &[u8]) -> bool {
    msg.starts_with(b"SIP/")
}

fn status(msg: &[u8]) -> Option<u16> {
    if !is_response(msg) {
        return None;
    }
    String::from_utf8_lossy(msg)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn request_method(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn request_uri(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg)
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// The test's UDP sockets on 127.0.0.1, by port.
struct Sockets(HashMap<u16, UdpSocket>);

impl Sockets {
    fn get(&mut self, port: u16) -> &UdpSocket {
        self.0.entry(port).or_insert_with(|| {
            let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
                panic!(
                    "127.0.0.1:{port} must be free for this test: answers to the torture \
                     messages go to that port (RFC 3261 §18.2.2): {e}"
                )
            });
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("read timeout");
            socket
        })
    }
}

/// Receives until `deadline` and returns the first message `matches` accepts.
fn receive(
    socket: &UdpSocket,
    deadline: Instant,
    matches: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if matches(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

/// Discards whatever is waiting on the socket (retransmissions of earlier answers).
fn drain(socket: &UdpSocket) {
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && socket.recv_from(&mut buf).is_ok() {}
}

/// Whether `answer` answers `request`: same Call-ID, or same CSeq when it has none.
fn answers(request: &[u8], answer: &[u8]) -> bool {
    if !is_response(answer) {
        return false;
    }
    match call_id(request) {
        Some(id) => call_id(answer).as_deref() == Some(id.as_str()),
        None => cseq(request).is_some() && cseq(answer) == cseq(request),
    }
}

/// A request in the dialog-less INVITE transaction of `invite` (CANCEL, or ACK for a non-2xx
/// final answer), built from the INVITE's own lines as RFC 3261 §9.1 and §17.1.1.3 require.
fn in_transaction(invite: &[u8], method: &str, to: &str) -> Vec<u8> {
    let number = cseq(invite)
        .and_then(|c| c.split(' ').next().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{method} {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {number} {method}\r\nContent-Length: 0\r\n\r\n",
        uri = request_uri(invite),
        via = top_via(invite).unwrap_or_default(),
        from = header(invite, "from", Some("f")).unwrap_or_default(),
        call_id = call_id(invite).unwrap_or_default(),
    )
    .into_bytes()
}

/// A request inside the dialog a 2xx created (ACK for the 2xx, then BYE).
fn in_dialog(invite: &[u8], ok: &[u8], method: &str, number: u64, port: u16) -> Vec<u8> {
    let target = header(ok, "contact", Some("m"))
        .map(|c| {
            c.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_else(|| request_uri(invite));
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}{number}{port};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {number} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        from = header(invite, "from", Some("f")).unwrap_or_default(),
        to = header(ok, "to", Some("t")).unwrap_or_default(),
        call_id = call_id(invite).unwrap_or_default(),
    )
    .into_bytes()
}

/// Ends the INVITE transaction a torture INVITE started: CANCEL while it rings, ACK its
/// final answer, and hang up should it have been answered after all. Returns whether it was
/// answered (2xx): the call then sent media toward the INVITE's documentation address, which
/// the CANCEL sent while ringing exists to prevent.
fn finish_invite(
    socket: &UdpSocket,
    bridge: SocketAddr,
    invite: &[u8],
    first: &[u8],
    log: &mut Vec<String>,
) -> bool {
    let send = |msg: &[u8]| {
        socket.send_to(msg, bridge).expect("send to the bridge");
    };
    let is_invite_final = |m: &[u8]| {
        answers(invite, m)
            && status(m).is_some_and(|s| s >= 200)
            && cseq(m).is_some_and(|c| c.ends_with(" INVITE"))
    };
    let final_answer = if status(first).is_some_and(|s| s < 200) {
        let to = header(invite, "to", Some("t")).unwrap_or_default();
        send(&in_transaction(invite, "CANCEL", &to));
        log.push("CANCEL sent".into());
        receive(socket, Instant::now() + CANCEL_WAIT, is_invite_final)
    } else {
        Some(first.to_vec())
    };
    let Some(answer) = final_answer else {
        log.push("no final answer to the INVITE".into());
        return false;
    };
    let code = status(&answer).unwrap_or_default();
    log.push(format!("INVITE ended with {code}"));
    if (200..300).contains(&code) {
        let port = socket.local_addr().map_or(5060, |a| a.port());
        let number = cseq(invite)
            .and_then(|c| c.split(' ').next().and_then(|n| n.parse::<u64>().ok()))
            .unwrap_or(1);
        send(&in_dialog(invite, &answer, "ACK", number, port));
        send(&in_dialog(invite, &answer, "BYE", number + 1, port));
        true
    } else {
        let to = header(&answer, "to", Some("t")).unwrap_or_default();
        send(&in_transaction(invite, "ACK", &to));
        false
    }
}

/// What a file got and whether that is what RFC 4475 expects of it.
struct Outcome {
    file: String,
    expected: &'static str,
    got: Option<u16>,
    ok: bool,
    notes: Vec<String>,
}

fn judge(row: &Row, msg: &[u8], got: Option<u16>) -> (&'static str, bool) {
    let response = is_response(msg);
    match (row.verdict.as_str(), row.liberal.as_str()) {
        _ if row.section == "(none)" => ("anything (not an RFC test)", true),
        ("accept", _) if response => ("no answer (a response)", got.is_none()),
        // The handling column names 400 as acceptable for some (sdp01, unksm2).
        ("accept", _) if row.handling.contains("400") => ("any answer", got.is_some()),
        // RFC 2543 syntax, accepted by "RFC 3261 elements that want to maintain backwards
        // compatibility" (RFC 4475 §3.4.1). The bridge's SIP stack keys transactions by From
        // tag, which this INVITE lacks: an answer (400 Missing From Tag) is required, silence
        // is not.
        ("accept", _) if row.file == "inv2543.dat" => ("any answer", got.is_some()),
        ("accept", _) => ("an answer other than 400", got.is_some_and(|c| c != 400)),
        ("reject", _) if response => ("no answer (an invalid response)", got.is_none()),
        ("reject", "yes" | "partly") | ("either", _) => ("400 or correct handling", got.is_some()),
        ("reject", _) if row.file == "badvers.dat" => ("505", got == Some(505)),
        ("reject", _) if row.file == "mismatch02.dat" => {
            ("501 or 400", matches!(got, Some(501 | 400)))
        }
        ("reject", _) => ("400", got == Some(400)),
        _ => ("a known verdict", false),
    }
}

/// A plain HTTP/1.0 GET that reports a bridge that stopped answering instead of panicking.
fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

fn sip_calls_active(bridge: &BridgeProcess) -> u64 {
    let metrics = try_http_get(bridge.http, "/metrics").unwrap_or_else(|e| {
        panic!(
            "/metrics: {e}; is dialtone still running?\n{}",
            bridge.log()
        )
    });
    let series = "dialtone_calls_active{leg=\"sip\"}";
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"))
}

#[test]
fn torture_messages_are_answered_as_rfc_4475_expects_and_the_bridge_keeps_serving() {
    let rows = index();
    assert_eq!(rows.len(), 50, "index.tsv lists the 50 archive files");
    let mut sockets = Sockets(HashMap::new());
    // Bound before the bridge starts, so that a busy port fails the test at once.
    sockets.get(5060);
    let mut bridge = BridgeProcess::start(&[]);

    let mut outcomes = Vec::new();
    for row in &rows {
        let msg = std::fs::read(torture_dir().join(&row.file)).expect("torture file");
        let socket = sockets.get(answer_port(&msg));
        drain(socket);
        socket
            .send_to(&msg, bridge.sip)
            .expect("send to the bridge");
        let first = receive(socket, Instant::now() + ANSWER_WAIT, |m| answers(&msg, m));
        let got = first.as_deref().and_then(status);
        let mut notes = Vec::new();
        let mut answered = false;
        if let Some(first) = &first {
            if !is_response(&msg) && request_method(&msg) == "INVITE" {
                answered = finish_invite(socket, bridge.sip, &msg, first, &mut notes);
            }
        }
        let (expected, ok) = judge(row, &msg, got);
        let ok = ok && !answered;
        outcomes.push(Outcome {
            file: row.file.clone(),
            expected,
            got,
            ok,
            notes,
        });
    }

    let report: String = outcomes
        .iter()
        .map(|o| {
            format!(
                "{:<16} {:<5} got {:<6} expected {}{}\n",
                o.file,
                if o.ok { "ok" } else { "FAIL" },
                o.got.map_or("none".into(), |c| c.to_string()),
                o.expected,
                if o.notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", o.notes.join(", "))
                },
            )
        })
        .collect();
    eprintln!("{report}");

    // No call is left behind.
    let deadline = Instant::now() + Duration::from_secs(15);
    while sip_calls_active(&bridge) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        sip_calls_active(&bridge),
        0,
        "calls left up:\n{report}\n{}",
        bridge.log()
    );

    // Still healthy: a normal call goes through.
    let (port, media) = (free_port(), free_port());
    let call = spawn_sipp_uac(
        bridge.sip,
        "uac_ulaw_speech.xml",
        &[
            "-key",
            "speech",
            "../data/book_table_8k.ulaw,1,0",
            "-d",
            "2000",
            "-m",
            "1",
        ],
        port,
        media,
        Duration::from_secs(60),
    );
    assert!(
        call.succeeded(),
        "SIPp call after the torture failed:\n{}\n{}",
        call.output,
        bridge.log()
    );
    let health = try_http_get(bridge.http, "/healthz")
        .unwrap_or_else(|e| panic!("/healthz: {e}\n{}", bridge.log()));
    assert!(
        health.lines().next().is_some_and(|l| l.contains(" 200 ")),
        "healthz: {health}"
    );
    assert!(
        !bridge.log().contains("panicked"),
        "a task panicked:\n{}",
        bridge.log()
    );

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    assert!(
        failed.is_empty(),
        "{} torture file(s) not handled as RFC 4475 expects:\n{report}",
        failed.len()
    );

    // It never crashed: it still ends cleanly on SIGTERM.
    let exit = bridge.terminate();
    assert!(
        exit.is_some_and(|s| s.success()),
        "dialtone exited with {exit:?}:\n{}",
        bridge.log()
    );
}
