//! Outbound SIP calls placed with `dialtone call` (the server's `POST /calls`): straight to a
//! SIP URI, and through a trunk whose proxy challenges the INVITE with digest authentication.
//! SIPp answers as the far end and says "stop"; the embedded engine hears it as the first turn
//! and its script ends the call with `end_call`, so the far end receives a BYE. (A far end that
//! echoed our audio back would feed the echo agent its own voice, turn after turn.)

mod sip_support;

use std::process::Command;
use std::time::Duration;

use sip_support::{BridgeProcess, free_port, path_str, spawn_sipp, temp_file, wait_sipp};

const END_CALL: &str = "[[turn]]\nturn = 1\ntool = \"end_call\"\nsay_first = true\n";

fn far_end(scenario: &str, port: u16) -> std::process::Child {
    let mut args: Vec<String> = vec!["-sf".into(), scenario.into()];
    args.extend(
        [
            "-key",
            "speech",
            "../data/stop_8k.ulaw,1,0",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &free_port().to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "60s",
        ]
        .map(String::from),
    );
    spawn_sipp(&args)
}

fn dialtone_call(bridge: &BridgeProcess, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["call", to, "--server", &bridge.http.to_string()])
        .env_remove("DIALTONE_API_TOKEN")
        .output()
        .expect("dialtone call runs")
}

#[test]
fn a_call_to_a_sip_uri_is_bridged_and_ended_by_the_bridge() {
    let script = temp_file("end_call.toml", END_CALL);
    let bridge = BridgeProcess::start(&["--engine-script", path_str(&script)]);
    let port = free_port();
    let uas = far_end("uas_speech_answer.xml", port);
    std::thread::sleep(Duration::from_millis(500));
    let out = dialtone_call(&bridge, &format!("sip:100@127.0.0.1:{port}"));
    assert!(
        out.status.success(),
        "dialtone call failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        bridge.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("call_id"));
    let uas = wait_sipp(uas, Duration::from_secs(60));
    assert!(
        uas.succeeded(),
        "the far end failed:\n{}\n{}",
        uas.output,
        bridge.log()
    );
    assert_eq!(bridge.metric("dialtone_calls_total{leg=\"sip\"}"), 1);
    assert_eq!(
        bridge.metric("dialtone_calls_ended_total{reason=\"hangup_action\"}"),
        1,
        "{}",
        bridge.log()
    );
}

#[test]
fn a_number_goes_through_the_trunk_with_digest_credentials() {
    let port = free_port();
    let config = temp_file(
        "dialtone.toml",
        &format!(
            "[[trunk]]\nname = \"carrier\"\nproxy = \"sip:127.0.0.1:{port}\"\nusername = \"alice\"\npassword = \"secret\"\nallow = [\"127.0.0.1\"]\n"
        ),
    );
    let script = temp_file("end_call.toml", END_CALL);
    let bridge = BridgeProcess::start(&[
        "--config",
        path_str(&config),
        "--engine-script",
        path_str(&script),
    ]);
    let uas = far_end("uas_auth_answer.xml", port);
    std::thread::sleep(Duration::from_millis(500));
    let out = dialtone_call(&bridge, "+15551230000");
    assert!(
        out.status.success(),
        "dialtone call failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        bridge.log()
    );
    let uas = wait_sipp(uas, Duration::from_secs(60));
    assert!(
        uas.succeeded(),
        "the trunk refused us:\n{}\n{}",
        uas.output,
        bridge.log()
    );
}

#[test]
fn an_unreachable_number_is_a_clear_error() {
    let bridge = BridgeProcess::start(&[]);
    let out = dialtone_call(&bridge, "+15551230000");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trunk"), "{err}");
}
