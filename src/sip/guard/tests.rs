//! Tests of the decisions, framing and answers against the RFC 4475 torture archive.

use std::net::SocketAddr;
use std::path::PathBuf;

use rsipstack::sip::{HeadersExt, SipMessage};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transport::SipConnection;

use super::framing::{needs_tidy, tidy_equals};
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Pass,
    Answer(u16, Problem),
    Drop(Unanswered),
}

use Expect::{Answer, Drop, Pass};
use HeaderName as H;

/// Every file of the RFC 4475 archive and the guard's decision. Where the RFC allows a
/// liberal element to accept (`trws`, `baddate`) or leaves the choice open (`badbranch`),
/// the message is passed on; everything else the RFC calls invalid is answered or dropped.
/// `inv2543` is valid RFC 2543 that RFC 3261 elements "that want to maintain backwards
/// compatibility" accept (RFC 4475 §3.4.1): the stack keys transactions by From tag and
/// cannot, so it is answered 400 rather than silently dropped.
const TORTURE: [(&str, Expect); 50] = [
    ("wsinv.dat", Pass),
    ("intmeth.dat", Answer(501, Problem::UnknownMethod)),
    ("esc01.dat", Pass),
    ("escnull.dat", Pass),
    ("esc02.dat", Answer(501, Problem::UnknownMethod)),
    ("lwsdisp.dat", Pass),
    ("longreq.dat", Pass),
    ("dblreq.dat", Pass),
    ("semiuri.dat", Pass),
    ("transports.dat", Pass),
    ("mpart01.dat", Pass),
    ("unreason.dat", Pass),
    ("noreason.dat", Pass),
    ("badinv01.dat", Answer(400, Problem::Malformed(H::Via))),
    ("clerr.dat", Answer(400, Problem::ContentLengthTooLarge)),
    ("ncl.dat", Answer(400, Problem::Malformed(H::ContentLength))),
    ("scalar02.dat", Answer(400, Problem::CSeqTooLarge)),
    ("scalarlg.dat", Drop(Unanswered::Response)),
    ("quotbal.dat", Answer(400, Problem::Malformed(H::To))),
    ("ltgtruri.dat", Answer(400, Problem::RequestUri)),
    ("lwsruri.dat", Answer(400, Problem::RequestLine)),
    ("lwsstart.dat", Answer(400, Problem::RequestLine)),
    ("trws.dat", Pass),
    ("escruri.dat", Answer(400, Problem::RequestUri)),
    ("baddate.dat", Pass),
    ("regbadct.dat", Answer(400, Problem::Malformed(H::Contact))),
    ("badaspec.dat", Answer(400, Problem::Malformed(H::To))),
    ("baddn.dat", Answer(400, Problem::NoEmptyLine)),
    ("badvers.dat", Answer(505, Problem::Version)),
    ("mismatch01.dat", Answer(400, Problem::CSeqMethod)),
    ("mismatch02.dat", Answer(501, Problem::UnknownMethod)),
    ("bigcode.dat", Drop(Unanswered::Response)),
    ("badbranch.dat", Pass),
    ("insuf.dat", Answer(400, Problem::Missing(H::From))),
    ("unkscm.dat", Pass),
    ("novelsc.dat", Pass),
    ("unksm2.dat", Pass),
    ("bext01.dat", Pass),
    ("invut.dat", Pass),
    ("regaut01.dat", Pass),
    ("multi01.dat", Answer(400, Problem::Duplicate(H::From))),
    (
        "mcl01.dat",
        Answer(400, Problem::Duplicate(H::ContentLength)),
    ),
    ("bcast.dat", Pass),
    ("zeromf.dat", Pass),
    ("cparam01.dat", Pass),
    ("cparam02.dat", Pass),
    ("regescrt.dat", Pass),
    ("sdp01.dat", Pass),
    ("inv2543.dat", Answer(400, Problem::MissingFromTag)),
    ("test.dat", Drop(Unanswered::NoVia)),
];

fn torture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip-torture")
}

pub(super) fn torture(name: &str) -> Vec<u8> {
    let path = torture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expect(data: &[u8]) -> Expect {
    match inspect(data) {
        Verdict::Pass(_) => Pass,
        Verdict::Answer(r) => Answer(r.status.code(), r.problem),
        Verdict::Drop { kind, .. } => Drop(kind),
    }
}

fn source() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

/// The message a passed datagram becomes, as the stack would receive it.
fn framed(data: &[u8]) -> Vec<u8> {
    let Verdict::Pass(framing) = inspect(data) else {
        panic!("not passed: {:?}", inspect(data));
    };
    let mut buf = data.to_vec();
    buf.resize(8192.max(data.len() + 64), 0);
    let n = framing.apply(&mut buf, data.len());
    buf.truncate(n);
    buf
}

fn answer(data: &[u8], from: SocketAddr) -> (String, SocketAddr) {
    let Verdict::Answer(rejection) = inspect(data) else {
        panic!("not answered: {:?}", inspect(data));
    };
    let (bytes, to) = build_answer(data, rejection, from).expect("an answer");
    (String::from_utf8_lossy(&bytes).into_owned(), to)
}

#[test]
fn every_torture_file_gets_its_decision() {
    for (name, expected) in TORTURE {
        assert_eq!(expect(&torture(name)), expected, "{name}");
    }
}

#[test]
fn the_decisions_cover_the_index_and_agree_with_its_verdicts() {
    let index = std::fs::read_to_string(torture_dir().join("index.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = index
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), TORTURE.len());
    for row in rows {
        let (file, verdict, liberal, bytes) = (row[0], row[3], row[4], row[5]);
        let decision = TORTURE
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, e)| *e)
            .unwrap_or_else(|| panic!("{file} has no decision"));
        assert_eq!(
            torture(file).len().to_string(),
            bytes,
            "{file} is the archived file"
        );
        let fits = match (verdict, liberal, decision) {
            // Accepted: handed on, or answered 501 because the method is unknown.
            ("accept", _, Pass) => true,
            ("accept", _, Answer(501, Problem::UnknownMethod)) => {
                matches!(file, "intmeth.dat" | "esc02.dat")
            }
            ("accept", _, Answer(400, Problem::MissingFromTag)) => file == "inv2543.dat",
            ("either", _, Pass | Answer(400, _)) => true,
            ("reject", "yes" | "partly", Pass | Answer(400, _)) => true,
            ("reject", _, Answer(400, _)) => file != "badvers.dat",
            ("reject", _, Answer(505, _)) => file == "badvers.dat",
            ("reject", _, Answer(501, _)) => file == "mismatch02.dat",
            ("reject", _, Drop(Unanswered::Response)) => {
                matches!(file, "scalarlg.dat" | "bigcode.dat")
            }
            // Not one of the RFC's tests: no Via to answer by.
            ("reject", _, Drop(Unanswered::NoVia)) => file == "test.dat",
            _ => false,
        };
        assert!(fits, "{file}: {verdict}/{liberal} but {decision:?}");
    }
}

#[test]
fn what_is_passed_on_parses_in_the_stack() {
    for (name, expected) in TORTURE {
        if expected != Pass {
            continue;
        }
        let message = framed(&torture(name));
        let parsed = SipMessage::try_from(message.as_slice())
            .unwrap_or_else(|e| panic!("{name}: the stack refuses it: {e}"));
        if matches!(parsed, SipMessage::Request(_)) {
            let received = SipConnection::update_msg_received(
                parsed,
                source(),
                rsipstack::sip::transport::Transport::Udp,
            )
            .unwrap_or_else(|e| panic!("{name}: the stack cannot read its Via: {e}"));
            let SipMessage::Request(request) = received else {
                panic!("{name}: no longer a request");
            };
            // What the endpoint needs before it creates a transaction.
            TransactionKey::from_request(&request, TransactionRole::Server)
                .unwrap_or_else(|e| panic!("{name}: no transaction key: {e}"));
        }
    }
}

#[test]
fn only_the_first_message_of_a_datagram_is_passed() {
    let message = framed(&torture("dblreq.dat"));
    assert!(message.starts_with(b"REGISTER sip:example.com SIP/2.0\r\n"));
    assert!(message.ends_with(b"Content-Length: 0\r\n\r\n"));
    assert!(!message.windows(6).any(|w| w == b"INVITE"));
}

#[test]
fn spaces_around_equals_are_removed_where_the_stack_reads_tags() {
    let message = framed(&torture("wsinv.dat"));
    let Ok(SipMessage::Request(request)) = SipMessage::try_from(message.as_slice()) else {
        panic!("wsinv does not parse once framed");
    };
    let from = request
        .from_header()
        .unwrap()
        .tag()
        .unwrap()
        .map(|t| t.to_string());
    let to = request
        .to_header()
        .unwrap()
        .tag()
        .unwrap()
        .map(|t| t.to_string());
    assert_eq!(from.as_deref(), Some("98asjd8"));
    assert_eq!(to.as_deref(), Some("1918181833n"));
    assert_eq!(request.body.len(), 150, "the body is untouched");
    assert!(message.ends_with(b"a=rtpmap:31 LPC\r\n"));
    // Quoted strings keep their spaces; only spaces next to '=' go.
    let mut value = *b"\"a = b\" <sip:x@y> ; tag =\r\n  1 ;q= 0.5";
    let n = tidy_equals(&mut value);
    assert_eq!(&value[..n], b"\"a = b\" <sip:x@y> ; tag=1 ;q=0.5");
    assert!(!needs_tidy(&value[..n]));
}

#[test]
fn a_body_without_content_length_is_the_rest_of_the_datagram() {
    let data = inv2543_with_from_tag();
    let message = framed(&data);
    let Ok(SipMessage::Request(request)) = SipMessage::try_from(message.as_slice()) else {
        panic!("inv2543 does not parse once framed");
    };
    assert!(request.body.starts_with(b"v=0\r\n"));
    assert!(data.ends_with(&request.body));
    assert_eq!(request.body.len(), 105);
    let Ok(SipMessage::Request(request)) = SipMessage::try_from(framed(&data).as_slice()) else {
        panic!("not a request");
    };
    TransactionKey::from_request(&request, TransactionRole::Server).expect("a key");
}

#[test]
fn answers_copy_the_request_and_parse() {
    for (name, expected) in TORTURE {
        let Answer(code, problem) = expected else {
            continue;
        };
        let data = torture(name);
        let (text, to) = answer(&data, source());
        let expected_port = if name == "quotbal.dat" { 5050 } else { 5060 };
        assert_eq!(
            to,
            SocketAddr::from(([127, 0, 0, 1], expected_port)),
            "{name}"
        );
        assert!(
            text.starts_with(&format!("SIP/2.0 {code} {problem}\r\n")),
            "{name}: {text}"
        );
        let Ok(SipMessage::Response(response)) = SipMessage::try_from(text.as_bytes()) else {
            panic!("{name}: the answer does not parse:\n{text}");
        };
        assert_eq!(u16::from(response.status_code.clone()), code, "{name}");
        assert!(response.via_header().is_ok(), "{name}: {text}");
        assert!(text.contains("received=127.0.0.1"), "{name}: {text}");
        assert_eq!(text.contains("\r\nAllow: "), code == 501, "{name}: {text}");
        assert!(
            text.ends_with("Content-Length: 0\r\n\r\n"),
            "{name}: {text}"
        );
        if name != "insuf.dat" {
            let to_line = text.lines().find(|l| l.starts_with("To: ")).unwrap();
            assert!(to_line.contains(";tag="), "{name}: {to_line}");
            assert!(text.contains("\r\nCall-ID: "), "{name}");
        }
        assert!(text.contains("\r\nCSeq: "), "{name}");
    }
}

#[test]
fn answers_go_where_rfc_3261_sends_them() {
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let request = |via: &str| {
        format!(
            "FOO sip:a@b.example SIP/2.0\r\n{via}From: <sip:c@d.example>;tag=1\r\n\
             To: <sip:a@b.example>\r\nCall-ID: x\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let cases = [
        ("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n", 5060),
        ("Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1\r\n", 5070),
        (
            "v: SIP / 2.0 / UDP\r\n 192.0.2.1 : 5070 ;branch=z9hG4bK1\r\n",
            5070,
        ),
        (
            "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport\r\n",
            40000,
        ),
        ("Via: SIP/2.0/TLS example.com;branch=z9hG4bK1\r\n", 5061),
        ("Via: garbage\r\n", 40000),
    ];
    for (via, port) in cases {
        let (text, to) = answer(request(via).as_bytes(), from);
        assert_eq!(
            to,
            SocketAddr::from(([127, 0, 0, 1], port)),
            "{via}: {text}"
        );
    }
    let (text, _) = answer(
        request("Via: SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bK1;received=1.2.3.4\r\n")
            .as_bytes(),
        from,
    );
    assert!(
        text.contains(
            "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;received=127.0.0.1;rport=40000\r\n"
        ),
        "{text}"
    );
    let (text, to) = answer(
        request("Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n").as_bytes(),
        from,
    );
    assert_eq!(to.port(), 5062);
    assert!(!text.contains("received="), "{text}");
    let v6: SocketAddr = "[::1]:40000".parse().unwrap();
    let (text, to) = answer(
        request("Via: SIP/2.0/UDP [::1]:5062;branch=z9hG4bK1\r\n").as_bytes(),
        v6,
    );
    assert_eq!(to, "[::1]:5062".parse::<SocketAddr>().unwrap());
    assert!(!text.contains("received="), "{text}");
    // Without any Via there is nowhere to answer.
    let no_via = "FOO sip:a@b.example SIP/2.0\r\nCSeq: 1 FOO\r\n\r\n";
    assert_eq!(expect(no_via.as_bytes()), Drop(Unanswered::NoVia));
}

#[test]
fn a_to_tag_is_kept_and_a_new_one_is_stable() {
    let data = torture("mismatch01.dat");
    let (first, _) = answer(&data, source());
    let (second, _) = answer(&data, source());
    assert_eq!(first, second, "a retransmission gets the same answer");
    let data = torture("lwsruri.dat");
    let (text, _) = answer(&data, source());
    assert!(
        text.contains("\r\nTo: sip:user@example.com;tag=3xfe-9921883-z9f\r\n"),
        "{text}"
    );
}

#[test]
fn folded_headers_are_unfolded_in_answers() {
    let data = b"FOO sip:a@b.example SIP/2.0\r\nVia: SIP/2.0/UDP\r\n 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:c@d.example>\r\n ;tag=1\r\nTo: <sip:a@b.example>\r\nCall-ID: x\r\n\
        CSeq: 1\r\n\tFOO\r\n\r\n";
    let (text, _) = answer(data, source());
    assert!(
        text.contains("\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;received"),
        "{text}"
    );
    assert!(
        text.contains("\r\nFrom: <sip:c@d.example> ;tag=1\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nCSeq: 1\tFOO\r\n"), "{text}");
}

#[test]
fn keepalives_pass_and_leading_crlfs_are_removed() {
    assert_eq!(expect(b"\r\n\r\n"), Pass);
    assert_eq!(expect(b""), Pass);
    let mut data = b"\r\n\r\n".to_vec();
    data.extend_from_slice(&torture("zeromf.dat"));
    let message = framed(&data);
    assert_eq!(message, torture("zeromf.dat"));
}

const OPTIONS: &str = "OPTIONS sip:a@b.example SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
    From: <sip:c@d.example>;tag=1\r\nTo: <sip:a@b.example>\r\nCall-ID: x@y\r\n\
    CSeq: 1 OPTIONS\r\nContact: <sip:c@192.0.2.1>\r\nContent-Length: 0\r\n\r\n";

/// Edits of [`OPTIONS`] (first occurrence of the first string replaced by the second) and
/// the decision each gets.
#[rustfmt::skip]
const MISTAKES: &[(&str, &str, Expect)] = &[
    ("OPTIONS sip:a@b.example SIP/2.0", "options sip:a@b.example SIP/2.0", Answer(501, Problem::UnknownMethod)),
    ("SIP/2.0\r\n", "SIP/3.0\r\n", Answer(505, Problem::Version)),
    ("SIP/2.0\r\n", "SIP/2\r\n", Answer(400, Problem::RequestLine)),
    ("SIP/2.0\r\n", "SIP/2.0.1\r\n", Answer(400, Problem::RequestLine)),
    ("SIP/2.0\r\n", "SIP/2.0 \t \r\n", Pass),
    ("OPTIONS sip", "OPTIONS\tsip", Answer(400, Problem::RequestLine)),
    ("sip:a@b.example SIP", "sip: SIP", Answer(400, Problem::RequestUri)),
    ("sip:a@b.example SIP", "sip:a@b.example:99999 SIP", Answer(400, Problem::RequestUri)),
    ("sip:a@b.example SIP", "sip:a@[::1 SIP", Answer(400, Problem::RequestUri)),
    ("sip:a@b.example SIP", "a@b.example SIP", Answer(400, Problem::RequestUri)),
    ("sip:a@b.example SIP", "tel:+15551230000 SIP", Pass),
    ("sip:a@b.example SIP", "sip:a?b@[::1]:5060;x=y SIP", Pass),
    ("Max-Forwards: 70\r\n", "Max-Forwards: seventy\r\n", Answer(400, Problem::Malformed(H::MaxForwards))),
    ("Max-Forwards: 70\r\n", "", Pass),
    ("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n", Answer(400, Problem::HeaderLine)),
    ("Max-Forwards: 70\r\n", "Max Forwards: 70\r\n", Answer(400, Problem::HeaderLine)),
    ("Max-Forwards: 70\r\n", "Max-Forwards: 70\n", Answer(400, Problem::LineEnding)),
    ("Max-Forwards: 70\r\n", "Max-Forwards: 7\r0\r\n", Answer(400, Problem::LineEnding)),
    ("Call-ID: x@y\r\n", "Call-ID: x y\r\n", Answer(400, Problem::Malformed(H::CallId))),
    ("Call-ID: x@y\r\n", "i: x@y\r\n", Pass),
    ("Call-ID: x@y\r\n", "Call-ID:\r\n  x@y\r\n", Pass),
    ("Call-ID: x@y\r\n", "", Answer(400, Problem::Missing(H::CallId))),
    ("CSeq: 1 OPTIONS\r\n", "CSeq: OPTIONS\r\n", Answer(400, Problem::Malformed(H::CSeq))),
    ("CSeq: 1 OPTIONS\r\n", "CSeq: 1OPTIONS\r\n", Answer(400, Problem::Malformed(H::CSeq))),
    ("CSeq: 1 OPTIONS\r\n", "CSeq: 4294967295 OPTIONS\r\n", Pass),
    ("CSeq: 1 OPTIONS\r\n", "CSeq: 4294967296 OPTIONS\r\n", Answer(400, Problem::CSeqTooLarge)),
    ("CSeq: 1 OPTIONS\r\n", "CSeq: 1 INVITE\r\n", Answer(400, Problem::CSeqMethod)),
    ("<sip:c@d.example>;tag=1", "<sip:c@d.example>", Answer(400, Problem::MissingFromTag)),
    ("<sip:c@d.example>;tag=1", "<sip:c@d.example> ; TAG = 1", Pass),
    ("Via: SIP/2.0/UDP 192.0.2.1;", "Via: SIP/2.0/UDP192.0.2.1;", Answer(400, Problem::Malformed(H::Via))),
    ("Via: SIP/2.0/UDP 192.0.2.1;", "Via: SIP/2.0 192.0.2.1;", Answer(400, Problem::Malformed(H::Via))),
    ("branch=z9hG4bK1\r\n", "branch=z9hG4bK1, SIP/2.0/TCP [2001:db8::1]:5061;rport\r\n", Pass),
    ("branch=z9hG4bK1\r\n", "branch=z9hG4bK1,\r\n", Answer(400, Problem::Malformed(H::Via))),
    ("branch=z9hG4bK1\r\n", "branch=\r\n", Answer(400, Problem::Malformed(H::Via))),
    ("\r\nMax-Forwards", "\r\n Max-Forwards", Answer(400, Problem::Malformed(H::Via))),
    ("<sip:c@d.example>;tag=1", "\"C D\" <sip:c@d.example>;tag=1", Pass),
    ("<sip:c@d.example>;tag=1", "C D <sip:c@d.example>;tag=1", Pass),
    ("<sip:c@d.example>;tag=1", "Jos\u{e9} <sip:c@d.example>;tag=1", Pass),
    ("<sip:c@d.example>;tag=1", "C;D <sip:c@d.example>;tag=1", Answer(400, Problem::Malformed(H::From))),
    ("<sip:c@d.example>;tag=1", "<sip:c@d.example>;;tag=1", Answer(400, Problem::Malformed(H::From))),
    ("<sip:c@d.example>;tag=1", "<sip:c@d.example>;tag=\"1", Answer(400, Problem::Malformed(H::From))),
    ("<sip:c@d.example>;tag=1", "<sip:c@d.example>tag=1", Answer(400, Problem::Malformed(H::From))),
    ("<sip:c@d.example>;tag=1", "<sip:c@d.example;tag=1", Answer(400, Problem::Malformed(H::From))),
    ("<sip:c@d.example>;tag=1", "sip:c@d.example;tag=1", Pass),
    ("<sip:c@d.example>;tag=1", "sip:c@d.example?x=y;tag=1", Answer(400, Problem::Malformed(H::From))),
    ("<sip:c@192.0.2.1>", "*", Pass),
    ("<sip:c@192.0.2.1>", "<sip:c@192.0.2.1>;expires=60, \"x, y\" <sip:e@f.example>", Pass),
    ("<sip:c@192.0.2.1>", "<sip:c@192.0.2.1>;+sip.instance=\"<urn:uuid:1>\"", Pass),
    ("<sip:c@192.0.2.1>", "<sip:c@192.0.2.1>,", Answer(400, Problem::Malformed(H::Contact))),
    ("Content-Length: 0\r\n\r\n", "Content-Length: 0\r\nContent-Length: 0\r\n\r\n", Answer(400, Problem::Duplicate(H::ContentLength))),
    ("Content-Length: 0\r\n\r\n", "Content-Length: 0\r\n", Answer(400, Problem::NoEmptyLine)),
    ("Content-Length: 0\r\n\r\n", "Content-Length: 1\r\n\r\n", Answer(400, Problem::ContentLengthTooLarge)),
    ("Content-Length: 0\r\n\r\n", "Content-Length: 0 0\r\n\r\n", Answer(400, Problem::Malformed(H::ContentLength))),
    ("Content-Length: 0\r\n\r\n", "Content-Length: 99999999999999999999999\r\n\r\n", Answer(400, Problem::ContentLengthTooLarge)),
    ("Content-Length: 0\r\n\r\n", "Content-Length: 0\r\n\r\nleftover", Pass),
    ("Content-Length: 0\r\n\r\n", "\r\n", Pass),
    ("Content-Length: 0\r\n\r\n", "\r\n body", Pass),
    ("OPTIONS sip:a@b.example SIP/2.0\r\n", "OPTIONS sip:a@b.example SIP/2.0\r\n folded\r\n", Answer(400, Problem::HeaderLine)),
];

#[test]
fn single_mistakes_are_named() {
    assert_eq!(expect(OPTIONS.as_bytes()), Pass);
    for (from, to, expected) in MISTAKES {
        assert!(OPTIONS.contains(from), "{from:?}");
        let data = OPTIONS.replacen(from, to, 1);
        assert_eq!(expect(data.as_bytes()), *expected, "{from:?} -> {to:?}");
    }
    // Bytes that are not UTF-8 in a header (built by hand: a str cannot hold them).
    let mut data = OPTIONS.as_bytes().to_vec();
    let at = OPTIONS.find("Max-Forwards: 70").unwrap() + "Max-Forwards: 7".len();
    data[at] = 0xff;
    assert_eq!(expect(&data), Answer(400, Problem::NotUtf8));
}

#[test]
fn acks_are_never_answered() {
    let ack = OPTIONS.replace("OPTIONS", "ACK");
    assert_eq!(expect(ack.as_bytes()), Pass);
    let broken = ack.replace("Call-ID: x@y\r\n", "");
    assert_eq!(expect(broken.as_bytes()), Drop(Unanswered::Ack));
    let broken = ack.replace("ACK sip", "ACK  sip");
    assert_eq!(expect(broken.as_bytes()), Drop(Unanswered::Ack));
    let broken = ack.replace("ACK sip", "ACK\tsip");
    assert_eq!(expect(broken.as_bytes()), Drop(Unanswered::Ack));
}

#[test]
fn invalid_responses_are_dropped() {
    let ok = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:c@d.example>;tag=1\r\nTo: <sip:a@b.example>;tag=2\r\nCall-ID: x@y\r\n\
        CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(expect(ok.as_bytes()), Pass);
    let dropped = Drop(Unanswered::Response);
    for (from, to) in [
        ("180 Ringing", "099 Early"),
        ("180 Ringing", "700 Late"),
        ("180 Ringing", "1800 Ringing"),
        ("180 Ringing", "18 Ringing"),
        ("180 Ringing", "180Ringing"),
        ("SIP/2.0 180", "SIP/3.0 180"),
        ("CSeq: 1 INVITE\r\n", ""),
        ("CSeq: 1 INVITE\r\n", "CSeq: 99999999999 INVITE\r\n"),
        ("Call-ID: x@y\r\n", "Call-ID: x@y\r\nCall-ID: z\r\n"),
        ("Content-Length: 0", "Content-Length: 10"),
    ] {
        let data = ok.replacen(from, to, 1);
        assert_eq!(expect(data.as_bytes()), dropped, "{from:?} -> {to:?}");
    }
    assert_eq!(expect(ok.replace("180 Ringing", "180 ").as_bytes()), Pass);
    assert_eq!(expect(ok.replace("180 Ringing", "180").as_bytes()), Pass);
}

/// `inv2543.dat` with a From tag, to exercise its missing Content-Length alone.
fn inv2543_with_from_tag() -> Vec<u8> {
    let data = torture("inv2543.dat");
    let text = String::from_utf8(data).unwrap();
    let tagged = text.replace("user=phone>\r\n", "user=phone>;tag=1\r\n");
    assert_ne!(tagged, text);
    tagged.into_bytes()
}

#[test]
fn a_length_that_does_not_fit_the_buffer_is_not_added() {
    let data = inv2543_with_from_tag();
    let Verdict::Pass(framing) = inspect(&data) else {
        panic!("inv2543 not passed");
    };
    let mut buf = data.clone();
    let n = framing.apply(&mut buf, data.len());
    assert_eq!(&buf[..n], data.as_slice(), "handed on as it came");
}

/// Every prefix of every file, and thousands of one- and two-byte corruptions of each:
/// the guard decides without panicking and everything it builds is sound.
#[test]
fn no_input_makes_the_guard_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const INTERESTING: &[u8] = b"\r\n \t:;,<>\"\\/@?=0-9aZ\x00\xff\x80";
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let check = |data: &[u8]| match inspect(data) {
        Verdict::Pass(framing) => {
            let mut buf = data.to_vec();
            buf.resize(data.len() + 32, 0);
            let n = framing.apply(&mut buf, data.len());
            assert!(n <= buf.len());
        }
        Verdict::Answer(rejection) => {
            if let Some((bytes, to)) = build_answer(data, rejection, from) {
                assert_eq!(to.ip(), from.ip(), "answers go to the source address");
                assert!(bytes.ends_with(b"\r\n\r\n"));
            }
        }
        Verdict::Drop { .. } => {}
    };
    for (name, _) in TORTURE {
        let data = torture(name);
        for end in 0..=data.len() {
            check(&data[..end]);
        }
        for _ in 0..1500 {
            let mut mutated = data.clone();
            for _ in 0..1 + next() % 2 {
                let at = (next() % mutated.len() as u64) as usize;
                let r = next();
                mutated[at] = if r % 3 == 0 {
                    r.to_le_bytes()[1]
                } else {
                    INTERESTING[(r % INTERESTING.len() as u64) as usize]
                };
            }
            check(&mutated);
        }
    }
}
