//! SIP calls from real SIPp callers into `dialtone serve` on loopback, on the embedded engine:
//! speech with the echo heard back, CANCEL while ringing, RFC 4733 DTMF, the bridge hanging up
//! after `end_call`, a REFER transfer to a SIPp transfer target, and 100 concurrent calls.

mod sip_support;

use std::time::Duration;

use sip_support::{
    BridgeProcess, Capture, free_port, path_str, root, run_sipp, spawn_sipp, spawn_sipp_uac,
    temp_file, wait_sipp,
};

fn speech(name: &str) -> String {
    format!("../data/{name}_8k.ulaw,1,0")
}

#[test]
fn a_speech_call_hears_its_echo() {
    let bridge = BridgeProcess::start(&[]);
    let (port, media) = (free_port(), free_port());
    let capture = Capture::start(media, "echo");
    let run = spawn_sipp_uac(
        bridge.sip,
        "uac_ulaw_speech.xml",
        &[
            "-key",
            "speech",
            &speech("book_table"),
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
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    let frames: std::collections::HashSet<&[u8]> = packets
        .iter()
        .filter(|(pt, _)| *pt == 0)
        .map(|(_, p)| p.as_slice())
        .collect();
    let received = packets.iter().filter(|(pt, _)| *pt == 0).count();
    assert!(
        received > 50 * 5,
        "at least 5 s of RTP came back: {received} packets"
    );
    // Every 20 ms frame of the spoken part (µ-law passes through untouched) should come back
    // byte for byte; a few may be lost to concealment on a loaded machine.
    let prompt = std::fs::read(root().join("tests/data/book_table_8k.ulaw")).unwrap();
    let spoken: Vec<&[u8]> = prompt[4_000..38_400].chunks(160).collect();
    let echoed = spoken.iter().filter(|f| frames.contains(*f)).count();
    assert!(
        echoed * 10 >= spoken.len() * 8,
        "the caller's own words come back: {echoed} of {} frames",
        spoken.len()
    );
    assert!(bridge.metric("dialtone_calls_total{leg=\"sip\"}") >= 1);
}

#[test]
fn cancel_while_ringing_gets_487() {
    let bridge = BridgeProcess::start(&[]);
    let run = run_sipp(
        bridge.sip,
        "uac_cancel.xml",
        &["-d", "1000", "-m", "1"],
        Duration::from_secs(30),
    );
    assert!(
        run.succeeded(),
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
}

#[test]
fn rfc4733_digits_reach_the_call() {
    let bridge = BridgeProcess::start(&[]);
    let run = run_sipp(
        bridge.sip,
        "uac_dtmf.xml",
        &[
            "-key",
            "speech",
            &speech("transfer_sales"),
            "-d",
            "3000",
            "-m",
            "1",
        ],
        Duration::from_secs(60),
    );
    assert!(
        run.succeeded(),
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    // 1, 2, 3 and #, each once however many end packets repeated it.
    assert_eq!(
        bridge.metric("dialtone_dtmf_digits_total"),
        4,
        "{}",
        bridge.log()
    );
}

#[test]
fn the_bridge_hangs_up_after_end_call() {
    let script = temp_file(
        "end_call.toml",
        "[[turn]]\nturn = 1\ntool = \"end_call\"\nsay_first = true\n",
    );
    let bridge = BridgeProcess::start(&["--engine-script", path_str(&script)]);
    let run = run_sipp(
        bridge.sip,
        "uac_wait_bye.xml",
        &["-key", "speech", &speech("stop"), "-m", "1"],
        Duration::from_secs(60),
    );
    assert!(
        run.succeeded(),
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    assert_eq!(
        bridge.metric("dialtone_calls_ended_total{reason=\"hangup_action\"}"),
        1,
        "{}",
        bridge.log()
    );
}

#[test]
fn transfer_call_sends_a_refer_the_target_receives() {
    let target_port = free_port();
    let script = temp_file(
        "transfer.toml",
        &format!(
            "[[turn]]\nturn = 1\ntool = \"transfer_call\"\nsay_first = false\narguments = {{ target = \"sip:sales@127.0.0.1:{target_port}\" }}\n"
        ),
    );
    let bridge = BridgeProcess::start(&["--engine-script", path_str(&script)]);
    let target = spawn_sipp(&[
        "-sf".into(),
        "uas_transfer_target.xml".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        target_port.to_string(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-mp".into(),
        free_port().to_string(),
        "-rtp_echo".into(),
        "-m".into(),
        "1".into(),
        "-nostdin".into(),
        "-timeout".into(),
        "90s".into(),
    ]);
    let caller = run_sipp(
        bridge.sip,
        "uac_refer_transfer.xml",
        &[
            "-key",
            "speech",
            &speech("transfer_sales"),
            "-d",
            "2000",
            "-m",
            "1",
        ],
        Duration::from_secs(70),
    );
    let target = wait_sipp(target, Duration::from_secs(30));
    assert!(
        caller.succeeded(),
        "caller failed:\n{}\n{}",
        caller.output,
        bridge.log()
    );
    assert!(
        target.succeeded(),
        "transfer target failed:\n{}",
        target.output
    );
    assert_eq!(
        bridge.metric("dialtone_tool_calls_total{action=\"transfer\",outcome=\"ok\"}"),
        1
    );
}

#[test]
fn a_hundred_concurrent_calls_all_succeed() {
    let bridge = BridgeProcess::start(&[]);
    let run = run_sipp(
        bridge.sip,
        "uac_ulaw_speech.xml",
        &[
            "-key",
            "speech",
            &speech("book_table"),
            "-d",
            "8000",
            "-r",
            "25",
            "-l",
            "100",
            "-m",
            "100",
        ],
        Duration::from_secs(120),
    );
    assert!(run.succeeded(), "SIPp failed:\n{}", run.output);
    assert_eq!(bridge.metric("dialtone_calls_total{leg=\"sip\"}"), 100);
    assert_eq!(bridge.metric("dialtone_calls_active{leg=\"sip\"}"), 0);
}

#[test]
fn callers_off_the_allow_list_must_pass_digest_authentication() {
    let config = temp_file(
        "dialtone.toml",
        "[sip]\nallow = []\n\n[[trunk]]\nname = \"pbx\"\nusername = \"alice\"\npassword = \"secret\"\nchallenge = true\n",
    );
    let bridge = BridgeProcess::start(&["--config", path_str(&config)]);
    let run = run_sipp(
        bridge.sip,
        "uac_auth_speech.xml",
        &["-key", "speech", &speech("stop"), "-d", "3000", "-m", "1"],
        Duration::from_secs(40),
    );
    assert!(
        run.succeeded(),
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    assert_eq!(bridge.metric("dialtone_calls_total{leg=\"sip\"}"), 1);
    // Without credentials the plain scenario gets a 401 it cannot answer: no call.
    let plain = run_sipp(
        bridge.sip,
        "uac_ulaw_speech.xml",
        &["-key", "speech", &speech("stop"), "-d", "1000", "-m", "1"],
        Duration::from_secs(20),
    );
    assert!(!plain.succeeded());
    assert_eq!(bridge.metric("dialtone_calls_total{leg=\"sip\"}"), 1);
}

#[test]
fn a_failed_transfer_keeps_the_call_and_tells_the_model() {
    let script = temp_file(
        "transfer.toml",
        "[[turn]]\nturn = 1\ntool = \"transfer_call\"\nsay_first = false\narguments = { target = \"sip:sales@127.0.0.1:5999\" }\n",
    );
    let bridge = BridgeProcess::start(&["--engine-script", path_str(&script)]);
    let run = run_sipp(
        bridge.sip,
        "uac_refer_fail.xml",
        &[
            "-key",
            "speech",
            &speech("transfer_sales"),
            "-d",
            "3000",
            "-m",
            "1",
        ],
        Duration::from_secs(60),
    );
    assert!(
        run.succeeded(),
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    assert_eq!(
        bridge.metric("dialtone_tool_calls_total{action=\"transfer\",outcome=\"error\"}"),
        1,
        "{}",
        bridge.log()
    );
    assert_eq!(
        bridge.metric("dialtone_calls_ended_total{reason=\"caller_hangup\"}"),
        1
    );
}

#[test]
fn the_dtmf_tool_sends_rfc4733_events() {
    let script = temp_file(
        "press.toml",
        "[[turn]]\nturn = 1\ntool = \"press\"\nsay_first = false\narguments = { digits = \"12#\" }\n",
    );
    let bridge = BridgeProcess::start(&[
        "--dialplans",
        "tests/data/dialplans",
        "--engine-script",
        path_str(&script),
    ]);
    let (port, media) = (free_port(), free_port());
    let capture = Capture::start(media, "dtmf-out");
    let run = spawn_sipp_uac(
        bridge.sip,
        "uac_ulaw_speech.xml",
        &["-key", "speech", &speech("stop"), "-d", "7000", "-m", "1"],
        port,
        media,
        Duration::from_secs(40),
    );
    let packets = capture.finish();
    assert!(
        run.succeeded(),
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    // Telephone events (PT 101): the event codes whose end bit is set, in order, once each.
    let mut ended: Vec<u8> = packets
        .iter()
        .filter(|(pt, p)| *pt == 101 && p.len() >= 4 && p[1] & 0x80 != 0)
        .map(|(_, p)| p[0])
        .collect();
    ended.dedup();
    assert_eq!(ended, [1, 2, 11], "{}", bridge.log());
    assert_eq!(
        bridge.metric("dialtone_tool_calls_total{action=\"dtmf\",outcome=\"ok\"}"),
        1
    );
}

#[test]
fn an_invite_without_sdp_gets_our_offer_and_the_ack_answers_it() {
    let bridge = BridgeProcess::start(&[]);
    let run = run_sipp(
        bridge.sip,
        "uac_no_offer.xml",
        &["-key", "speech", &speech("stop"), "-d", "4000", "-m", "1"],
        Duration::from_secs(40),
    );
    assert!(
        run.succeeded(),
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    assert!(bridge.metric("dialtone_rtp_packets_in_total") > 100);
}

#[test]
fn metrics_declare_each_family_once_with_sip_on() {
    let bridge = BridgeProcess::start(&[]);
    let run = run_sipp(
        bridge.sip,
        "uac_ulaw_speech.xml",
        &["-key", "speech", &speech("stop"), "-d", "1000", "-m", "1"],
        Duration::from_secs(30),
    );
    assert!(
        run.succeeded(),
        "SIPp failed:\n{}\n{}",
        run.output,
        bridge.log()
    );
    let text = bridge.metrics();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or(&text);
    let mut families: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let declared = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(
        families.len(),
        declared,
        "a metric family is declared twice:\n{body}"
    );
    // Every sample belongs to a declared family (counters' samples carry the family's name).
    for sample in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = sample.split(['{', ' ']).next().unwrap_or("");
        assert!(
            families.binary_search(&name).is_ok(),
            "{name} has no # TYPE line:\n{body}"
        );
    }
}
