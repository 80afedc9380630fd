use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;
use crate::audio::AudioFormat;

const TRUNK_OFFER: &str = "v=0\r\n\
o=- 3911823411 3911823411 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const G711: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

fn local() -> LocalMedia {
    LocalMedia {
        ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        port: 30000,
    }
}

fn origin() -> SdpOrigin {
    SdpOrigin::new(1000)
}

/// Builds an offer from the trunk template with the `m=` line and media attributes replaced.
fn offer_with(media: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n{media}"
    )
}

/// Asserts that `sdp` has CRLF line ends only and parses as SDP; returns the parsed session.
fn check_sdp(sdp: &str) -> sdp_types::Session {
    assert!(sdp.ends_with("\r\n"), "no final CRLF: {sdp:?}");
    for (i, b) in sdp.bytes().enumerate() {
        match b {
            b'\n' => assert_eq!(sdp.as_bytes()[i - 1], b'\r', "bare LF: {sdp:?}"),
            b'\r' => assert_eq!(sdp.as_bytes().get(i + 1), Some(&b'\n'), "bare CR: {sdp:?}"),
            _ => {}
        }
    }
    match sdp_types::Session::parse(sdp.as_bytes()) {
        Ok(session) => session,
        Err(err) => panic!("answer does not parse ({err}): {sdp}"),
    }
}

/// Answers `offer` and checks the answer's form and m= line count.
fn answer_ok(offer: &str, prefs: &[Codec]) -> (Negotiated, String) {
    let (negotiated, sdp) = answer(offer, prefs, &local(), &mut origin()).expect("answer");
    let session = check_sdp(&sdp);
    let offered_m = offer
        .lines()
        .filter(|l| l.trim_start().starts_with("m="))
        .count();
    assert_eq!(session.medias.len(), offered_m, "m= line count: {sdp}");
    (negotiated, sdp)
}

fn lines(sdp: &str) -> Vec<&str> {
    sdp.split("\r\n").filter(|l| !l.is_empty()).collect()
}

#[test]
fn typical_trunk_offer_gets_pcmu_and_telephone_event() {
    let (n, sdp) = answer_ok(TRUNK_OFFER, &G711);
    assert_eq!(
        n,
        Negotiated {
            remote: "198.51.100.7:40000".parse().unwrap(),
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
            ptime_ms: 20,
            direction: Direction::SendRecv,
            held: false,
        }
    );
    assert!(n.we_send() && n.we_receive());
    assert_eq!(
        lines(&sdp),
        [
            "v=0",
            "o=- 1000 1000 IN IP4 203.0.113.5",
            "s=-",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=sendrecv",
        ]
    );
}

#[test]
fn our_preference_order_wins() {
    let (n, sdp) = answer_ok(TRUNK_OFFER, &[Codec::Pcma, Codec::Pcmu]);
    assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
    assert!(sdp.contains("m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"));
}

#[test]
fn pcma_only_offer() {
    let offer = offer_with("m=audio 40000 RTP/AVP 8\r\n");
    let (n, sdp) = answer_ok(&offer, &G711);
    assert_eq!(
        (n.codec, n.payload_type, n.telephone_event),
        (Codec::Pcma, 8, None)
    );
    assert_eq!(n.codec.leg_format(), AudioFormat::Pcma);
    assert!(sdp.contains("m=audio 30000 RTP/AVP 8\r\n"));
    assert!(!sdp.contains("telephone-event"));
}

#[test]
fn g729_only_is_no_common_codec() {
    let offer = offer_with("m=audio 40000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\n");
    let err = answer(&offer, &G711, &local(), &mut origin()).unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.status_code(), 488);
    assert_eq!(err.warn_code(), 305);
    assert!(!err.reason().is_empty());
}

#[test]
fn dynamic_telephone_event_number_is_reused() {
    let offer = offer_with(
        "m=audio 40000 RTP/AVP 0 96\r\na=rtpmap:96 TELEPHONE-EVENT/8000\r\na=fmtp:96 0-15\r\n",
    );
    let (n, sdp) = answer_ok(&offer, &G711);
    assert_eq!(n.telephone_event, Some(96));
    assert!(sdp.contains("m=audio 30000 RTP/AVP 0 96\r\n"));
    assert!(sdp.contains("a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n"));
}

#[test]
fn telephone_event_at_another_rate_is_left_out() {
    let offer = offer_with("m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/48000\r\n");
    let (n, sdp) = answer_ok(&offer, &G711);
    assert_eq!(n.telephone_event, None);
    assert!(sdp.contains("m=audio 30000 RTP/AVP 0\r\n"));
}

#[test]
fn sendonly_is_answered_recvonly_and_held() {
    let offer = TRUNK_OFFER.replace("a=sendrecv", "a=sendonly");
    let (n, sdp) = answer_ok(&offer, &G711);
    assert_eq!(n.direction, Direction::SendOnly);
    assert!(n.held);
    assert_eq!(n.local_direction(), Direction::RecvOnly);
    assert!(!n.we_send() && n.we_receive());
    assert!(sdp.ends_with("a=recvonly\r\n"));
}

#[test]
fn inactive_is_answered_inactive_and_held() {
    let offer = TRUNK_OFFER.replace("a=sendrecv", "a=inactive");
    let (n, sdp) = answer_ok(&offer, &G711);
    assert_eq!(n.direction, Direction::Inactive);
    assert!(n.held);
    assert!(sdp.ends_with("a=inactive\r\n"));
}

#[test]
fn recvonly_is_answered_sendonly_not_held() {
    let offer = TRUNK_OFFER.replace("a=sendrecv", "a=recvonly");
    let (n, sdp) = answer_ok(&offer, &G711);
    assert!(!n.held);
    assert!(n.we_send() && !n.we_receive());
    assert!(sdp.ends_with("a=sendonly\r\n"));
}

#[test]
fn legacy_zero_address_hold() {
    let offer = TRUNK_OFFER.replace("c=IN IP4 198.51.100.7", "c=IN IP4 0.0.0.0");
    let (n, sdp) = answer_ok(&offer, &G711);
    assert!(n.held);
    assert_eq!(n.remote, "0.0.0.0:40000".parse::<SocketAddr>().unwrap());
    assert_eq!(n.direction, Direction::SendRecv);
    assert_eq!(n.local_direction(), Direction::Inactive);
    assert!(sdp.ends_with("a=inactive\r\n"));
}

#[test]
fn session_and_media_level_precedence() {
    let offer = "v=0\r\nc=IN IP4 192.0.2.1\r\na=sendonly\r\n\
        m=audio 5004 RTP/AVP 0\r\nc=IN IP4 192.0.2.99\r\na=sendrecv\r\n";
    let (n, _) = answer_ok(offer, &G711);
    assert_eq!(n.remote, "192.0.2.99:5004".parse::<SocketAddr>().unwrap());
    assert_eq!(n.direction, Direction::SendRecv);

    let offer = "v=0\r\nc=IN IP4 192.0.2.1\r\na=sendonly\r\nm=audio 5004 RTP/AVP 0\r\n";
    let (n, sdp) = answer_ok(offer, &G711);
    assert_eq!(n.remote, "192.0.2.1:5004".parse::<SocketAddr>().unwrap());
    assert_eq!(n.direction, Direction::SendOnly);
    assert!(sdp.ends_with("a=recvonly\r\n"));
}

#[test]
fn ptime_is_honoured_within_limits() {
    for (attrs, expected) in [
        ("a=ptime:30\r\n", 30),
        ("a=ptime:10\r\n", 10),
        ("a=ptime:60\r\n", 60),
        ("a=ptime:20.0\r\n", 20),
        ("a=ptime:25\r\n", 20),
        ("a=ptime:5\r\n", 20),
        ("a=ptime:200\r\n", 20),
        ("a=ptime:abc\r\n", 20),
        ("a=ptime\r\n", 20),
        ("a=ptime:40\r\na=maxptime:30\r\n", 30),
        ("a=maxptime:10\r\n", 10),
        ("", 20),
    ] {
        let offer = offer_with(&format!("m=audio 40000 RTP/AVP 0\r\n{attrs}"));
        let (n, sdp) = answer_ok(&offer, &G711);
        assert_eq!(n.ptime_ms, expected, "{attrs:?}");
        assert!(
            sdp.contains(&format!("a=ptime:{expected}\r\n")),
            "{attrs:?}"
        );
    }
}

#[test]
fn video_first_is_rejected_audio_answered_second() {
    let offer = offer_with(
        "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
         m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    let (n, sdp) = answer_ok(&offer, &G711);
    assert_eq!(n.remote.port(), 40000);
    let m_lines: Vec<&str> = lines(&sdp)
        .into_iter()
        .filter(|l| l.starts_with("m="))
        .collect();
    assert_eq!(
        m_lines,
        ["m=video 0 RTP/AVP 96", "m=audio 30000 RTP/AVP 0 101"]
    );
}

#[test]
fn extra_audio_streams_are_rejected() {
    let offer = offer_with(
        "m=audio 0 RTP/AVP 8\r\n\
         m=audio 40000 RTP/SAVP 0\r\n\
         m=audio 40002 RTP/AVP 18\r\n\
         m=audio 40004 RTP/AVP 0\r\n\
         m=audio 40006 RTP/AVP 0\r\n",
    );
    let (n, sdp) = answer_ok(&offer, &G711);
    assert_eq!(n.remote.port(), 40004);
    let m_lines: Vec<&str> = lines(&sdp)
        .into_iter()
        .filter(|l| l.starts_with("m="))
        .collect();
    assert_eq!(
        m_lines,
        [
            "m=audio 0 RTP/AVP 8",
            "m=audio 0 RTP/SAVP 0",
            "m=audio 0 RTP/AVP 18",
            "m=audio 30000 RTP/AVP 0",
            "m=audio 0 RTP/AVP 0",
        ]
    );
}

#[test]
fn no_usable_audio() {
    for offer in [
        offer_with("m=audio 0 RTP/AVP 0\r\n"),
        offer_with("m=video 40000 RTP/AVP 96\r\n"),
        offer_with("m=audio 40000 RTP/SAVP 0\r\n"),
        offer_with("m=audio 70000 RTP/AVP 0\r\n"),
        offer_with(""),
        "v=0\r\nm=audio 40000 RTP/AVP 0\r\n".to_owned(),
        "v=0\r\nc=IN IP4 pbx.example.com\r\nm=audio 40000 RTP/AVP 0\r\n".to_owned(),
        "v=0\r\nc=IN IP4 224.2.1.1/127\r\nm=audio 40000 RTP/AVP 0\r\n".to_owned(),
    ] {
        let err = answer(&offer, &G711, &local(), &mut origin()).unwrap_err();
        assert_eq!(err, SdpError::NoAudio, "{offer}");
        assert_eq!((err.status_code(), err.warn_code()), (488, 304));
    }
}

#[test]
fn opus_only_when_preferred() {
    let offer = offer_with(
        "m=audio 40000 RTP/AVP 109 0 101\r\n\
         a=rtpmap:109 OPUS/48000/2\r\na=fmtp:109 minptime=10;useinbandfec=1\r\n\
         a=rtpmap:101 telephone-event/8000\r\n",
    );
    let (n, sdp) = answer_ok(&offer, &[Codec::Opus, Codec::Pcmu]);
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 109));
    assert_eq!(n.codec.leg_format(), AudioFormat::Pcm16);
    assert!(sdp.contains(
        "m=audio 30000 RTP/AVP 109 101\r\na=rtpmap:109 opus/48000/2\r\na=fmtp:109 useinbandfec=1\r\n"
    ));

    let (n, _) = answer_ok(&offer, &G711);
    assert_eq!(n.codec, Codec::Pcmu);

    let opus_only = offer_with("m=audio 40000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n");
    assert_eq!(
        answer(&opus_only, &G711, &local(), &mut origin()).unwrap_err(),
        SdpError::NoCommonCodec
    );
    let (n, _) = answer_ok(&opus_only, &[Codec::Opus]);
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 111));
}

#[test]
fn static_types_match_with_or_without_rtpmap() {
    // No rtpmap for 0; a dynamic number mapped to PCMA; an rtpmap that contradicts PT 8.
    let offer = offer_with(
        "m=audio 40000 RTP/AVP 8 97 0\r\na=rtpmap:8 G722/8000\r\na=rtpmap:97 pcma/8000\r\n",
    );
    let (n, _) = answer_ok(&offer, &[Codec::Pcma]);
    assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 97));
    let (n, _) = answer_ok(&offer, &[Codec::Pcmu]);
    assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 0));
}

#[test]
fn tolerant_of_sloppy_offers() {
    // LF only, extra whitespace, no o=/s=/t=, unknown and valueless attributes, rtcp-mux,
    // a bogus payload type, and junk lines.
    let offer = "  v=0 \n\
        c=IN  IP4   198.51.100.7\n\
        x-junk\n\
        a=\n\
        a=:\n\
        m=audio   40000  RTP/AVP   300 abc 0   101  \n\
        a=rtcp-mux\n\
        a=rtpmap:300 PCMA/8000\n\
        a=rtpmap:101\n\
        a=rtpmap:101 telephone-event/8000\n\
        a=x-unknown:whatever\n\
        a=ptime:\n\
        a=sendrecv\n";
    let (n, _) = answer_ok(offer, &G711);
    assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 0));
    assert_eq!(n.telephone_event, Some(101));
    assert_eq!(
        n.remote,
        "198.51.100.7:40000".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn out_of_range_port_makes_only_that_stream_unusable() {
    let offer = offer_with("m=audio 99999 RTP/AVP 0\r\nm=audio 40000 RTP/AVP 0\r\n");
    let (n, sdp) = answer_ok(&offer, &G711);
    assert_eq!(n.remote.port(), 40000);
    assert!(sdp.contains("m=audio 0 RTP/AVP 0\r\nm=audio 30000 RTP/AVP 0\r\n"));
}

#[test]
fn ipv6() {
    let offer = "v=0\r\no=- 1 1 IN IP6 2001:db8::7\r\ns=-\r\nc=IN IP6 2001:db8::7\r\nt=0 0\r\n\
        m=audio 40000 RTP/AVP 0\r\n";
    let local6 = LocalMedia {
        ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5)),
        port: 30000,
    };
    let (n, sdp) = answer(offer, &G711, &local6, &mut origin()).unwrap();
    check_sdp(&sdp);
    assert_eq!(
        n.remote,
        "[2001:db8::7]:40000".parse::<SocketAddr>().unwrap()
    );
    assert!(sdp.contains("o=- 1000 1000 IN IP6 2001:db8::5\r\n"));
    assert!(sdp.contains("c=IN IP6 2001:db8::5\r\n"));
}

#[test]
fn avpf_profile_is_echoed() {
    let offer = offer_with("m=audio 40000 rtp/avpf 0\r\n");
    let (_, sdp) = answer_ok(&offer, &G711);
    assert!(sdp.contains("m=audio 30000 RTP/AVPF 0\r\n"));
}

#[test]
fn garbage_is_an_error() {
    let huge = format!("{TRUNK_OFFER}{}", "a=x\r\n".repeat(MAX_SDP_LEN / 5));
    for (input, expected) in [
        ("", SdpError::NoAudio),
        ("hello", SdpError::NoAudio),
        ("v=1\r\nm=audio 40000 RTP/AVP 0\r\n", SdpError::NoAudio),
        ("\u{0}\u{1}==\r\n\r\n", SdpError::NoAudio),
        ("{\"sdp\": true}", SdpError::NoAudio),
        ("v=0", SdpError::NoAudio),
        (huge.as_str(), SdpError::TooLarge { len: huge.len() }),
    ] {
        assert_eq!(
            answer(input, &G711, &local(), &mut origin()).unwrap_err(),
            expected
        );
        assert_eq!(parse_answer(input, &G711, 101).unwrap_err(), expected);
    }
}

#[test]
fn offer_then_answer_round_trip() {
    let mut ours = origin();
    let offered = [Codec::Pcma, Codec::Pcmu];
    let sdp = offer(&offered, 101, &local(), &mut ours, Direction::SendRecv);
    let session = check_sdp(&sdp);
    assert_eq!(session.medias.len(), 1);
    assert_eq!(
        lines(&sdp),
        [
            "v=0",
            "o=- 1000 1000 IN IP4 203.0.113.5",
            "s=-",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 30000 RTP/AVP 8 0 101",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=sendrecv",
        ]
    );

    // The far end answers with its own preference.
    let far = LocalMedia {
        ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        port: 40000,
    };
    let (theirs, reply) = answer(&sdp, &[Codec::Pcmu], &far, &mut SdpOrigin::new(7)).unwrap();
    assert_eq!(
        theirs.remote,
        "203.0.113.5:30000".parse::<SocketAddr>().unwrap()
    );
    let n = parse_answer(&reply, &offered, 101).unwrap();
    assert_eq!(
        n.remote,
        "198.51.100.7:40000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 0));
    assert_eq!(n.telephone_event, Some(101));
    assert_eq!(
        (n.ptime_ms, n.direction, n.held),
        (20, Direction::SendRecv, false)
    );
}

#[test]
fn offer_with_opus_and_hold() {
    let sdp = offer(
        &[Codec::Opus, Codec::Pcmu, Codec::Opus],
        111,
        &local(),
        &mut origin(),
        Direction::SendOnly,
    );
    check_sdp(&sdp);
    assert!(sdp.contains(
        "m=audio 30000 RTP/AVP 111 0 101\r\n\
         a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n"
    ));
    assert!(sdp.ends_with("a=sendonly\r\n"));

    // An answer without rtpmap lines is read with the numbers we offered.
    let reply = "v=0\r\nc=IN IP4 198.51.100.7\r\nm=audio 40000 RTP/AVP 111 101\r\na=recvonly\r\n";
    let n = parse_answer(reply, &[Codec::Opus, Codec::Pcmu], 111).unwrap();
    assert_eq!((n.codec, n.payload_type), (Codec::Opus, 111));
    assert_eq!(n.telephone_event, Some(101));
    assert!(n.we_send() && !n.held);
}

#[test]
fn empty_prefs_and_bad_telephone_event_number() {
    let sdp = offer(&[], 8, &local(), &mut origin(), Direction::SendRecv);
    assert!(sdp.contains("m=audio 30000 RTP/AVP 0 101\r\n"));
    let (n, _) = answer_ok(TRUNK_OFFER, &[]);
    assert_eq!(n.codec, Codec::Pcmu);
}

#[test]
fn parse_answer_outcomes() {
    let base = "v=0\r\nc=IN IP4 198.51.100.7\r\n";
    let rejected = format!("{base}m=audio 0 RTP/AVP 0\r\n");
    assert_eq!(
        parse_answer(&rejected, &G711, 101).unwrap_err(),
        SdpError::NoAudio
    );
    let other_codec = format!("{base}m=audio 40000 RTP/AVP 18\r\n");
    assert_eq!(
        parse_answer(&other_codec, &G711, 101).unwrap_err(),
        SdpError::NoCommonCodec
    );
    let not_offered = format!("{base}m=audio 40000 RTP/AVP 8 0\r\n");
    let n = parse_answer(&not_offered, &[Codec::Pcmu], 101).unwrap();
    assert_eq!((n.codec, n.telephone_event), (Codec::Pcmu, None));
    let renumbered = format!(
        "{base}m=audio 40000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/8000\r\n\
         a=ptime:30\r\na=inactive\r\n"
    );
    let n = parse_answer(&renumbered, &G711, 101).unwrap();
    assert_eq!(n.telephone_event, Some(100));
    assert_eq!(
        (n.ptime_ms, n.direction, n.held),
        (30, Direction::Inactive, true)
    );
}

#[test]
fn origin_version_changes_only_with_content() {
    let mut o = SdpOrigin::new(u64::MAX);
    let id = o.session_id();
    assert!(id < 1 << 62);
    assert_eq!(o.version(), id);

    let (_, first) = answer(TRUNK_OFFER, &G711, &local(), &mut o).unwrap();
    assert_eq!(o.version(), id);
    // Re-answering the same offer (a session refresh) keeps the version.
    let (_, again) = answer(TRUNK_OFFER, &G711, &local(), &mut o).unwrap();
    assert_eq!((o.version(), &again), (id, &first));
    // A hold changes the answer and bumps the version.
    let hold = TRUNK_OFFER.replace("a=sendrecv", "a=sendonly");
    let (_, on_hold) = answer(&hold, &G711, &local(), &mut o).unwrap();
    assert_eq!(o.version(), id + 1);
    assert!(on_hold.contains(&format!("o=- {id} {} IN IP4", id + 1)));
    // Resuming changes it again; the session id never changes.
    answer(TRUNK_OFFER, &G711, &local(), &mut o).unwrap();
    assert_eq!((o.session_id(), o.version()), (id, id + 2));
    o.bump();
    assert_eq!(o.version(), id + 3);
}

#[test]
fn direction_and_codec_tables() {
    use Direction::*;
    for (offer, answer) in [
        (SendRecv, SendRecv),
        (SendOnly, RecvOnly),
        (RecvOnly, SendOnly),
        (Inactive, Inactive),
    ] {
        assert_eq!(offer.answer_to(), answer);
        assert_eq!(Direction::from_attribute(offer.attribute()), Some(offer));
    }
    assert_eq!(Direction::from_attribute("SENDONLY"), Some(SendOnly));
    assert_eq!(Direction::from_attribute("rtcp-mux"), None);
    assert_eq!((SendOnly.we_send(), SendOnly.we_receive()), (true, false));
    assert_eq!((Inactive.we_send(), Inactive.we_receive()), (false, false));

    assert_eq!(Codec::Pcmu.static_payload_type(), Some(0));
    assert_eq!(Codec::Pcma.static_payload_type(), Some(8));
    assert_eq!(Codec::Opus.static_payload_type(), None);
    assert_eq!(Codec::Opus.clock_rate(), 48_000);
    assert_eq!(Codec::Pcmu.leg_format(), AudioFormat::Pcmu);
    assert_eq!(Codec::Opus.leg_format(), AudioFormat::Pcm16);
}

#[test]
fn truncated_and_mangled_offers_never_panic() {
    let mixed = offer_with(
        "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
         m=audio 40000 RTP/AVP 111 0 8 101\r\nc=IN IP6 2001:db8::7\r\n\
         a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=ptime:30\r\na=maxptime:40\r\na=sendonly\r\n",
    );
    let prefs = [Codec::Opus, Codec::Pcma, Codec::Pcmu];
    for full in [TRUNK_OFFER, mixed.as_str()] {
        for end in (0..=full.len()).filter(|&i| full.is_char_boundary(i)) {
            for text in [&full[..end], &full[end..]] {
                if let Ok((_, sdp)) = answer(text, &prefs, &local(), &mut origin()) {
                    check_sdp(&sdp);
                }
                let _ = parse_answer(text, &prefs, 101);
            }
            // Replace one byte with something hostile.
            for junk in ["\r", "\n", " ", "=", "/", ":", "9", "\u{e9}"] {
                let start = end.saturating_sub(1);
                if !full.is_char_boundary(start) {
                    continue;
                }
                let mangled = format!("{}{junk}{}", &full[..start], &full[end..]);
                if let Ok((_, sdp)) = answer(&mangled, &prefs, &local(), &mut origin()) {
                    check_sdp(&sdp);
                }
                let _ = parse_answer(&mangled, &prefs, 101);
            }
        }
    }
}
