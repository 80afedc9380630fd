//! Every client event the bridge sends is checked against the Realtime API's own schema (the
//! GA models of the `openai` Python package), over calls that make the bridge send each kind:
//! session set-up, greeting, caller audio (µ-law and PCM16), barge-in with and without
//! `response.cancel`, DTMF, and a tool call's output.
//!
//! The validator needs Python with `openai` installed; `tests/run.sh` sets that up in
//! `target/py`. Set `DIALTONE_PYTHON` to use another interpreter.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use dialtone::audio::{AudioFormat, tone};
use serde_json::json;
use support::realtime_sim::{RealtimeSim, RtConn};
use support::twilio_sim::TwilioSim;
use support::{Bridge, Model, data};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn start_response(conn: &mut RtConn, id: &str, item: &str, audio: &[u8]) {
    conn.send(
        json!({"type":"response.created","response":{"id":id,"status":"in_progress","output":[]}}),
    );
    for chunk in audio.chunks(4800) {
        conn.send(
            json!({"type":"response.output_audio.delta","response_id":id,"item_id":item,
            "output_index":0,"content_index":0,"delta":b64(chunk)}),
        );
    }
}

fn finish_response(conn: &mut RtConn, id: &str, item: &str) {
    conn.send(
        json!({"type":"response.output_audio.done","response_id":id,"item_id":item,
        "output_index":0,"content_index":0}),
    );
    conn.send(
        json!({"type":"response.done","response":{"id":id,"status":"completed",
        "output":[{"id":item,"type":"message","role":"assistant"}]}}),
    );
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("DIALTONE_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_event_matches_the_realtime_schema() {
    let mut rt = RealtimeSim::start().await;
    let bridge = Bridge::start_in("tests/data/dialplans", Model::Url(rt.url()), None).await;

    // Call 1, default route (µ-law): greeting, audio, barge-in, DTMF, a failing transfer.
    let sim = TwilioSim::connect(bridge.addr, "+14155550100", "+14155550199", "CA1", None)
        .await
        .unwrap();
    let mut conn = rt.accept(SECS(5)).await.expect("connection");
    conn.send(json!({"type":"session.created","session":{"id":"sess_1"}}));
    conn.expect("session.update", SECS(5))
        .await
        .expect("session.update");
    conn.send(json!({"type":"session.updated","session":{}}));
    conn.expect("response.create", SECS(5))
        .await
        .expect("greeting");
    let greeting = tone::tone(&[523.0], 1500, 0.3, AudioFormat::Pcmu);
    start_response(&mut conn, "resp_1", "item_1", &greeting);
    finish_response(&mut conn, "resp_1", "item_1");
    sim.speak(&data("book_table_8k.ulaw")[..4000]).await;
    conn.send(json!({"type":"input_audio_buffer.speech_started","audio_start_ms":100,"item_id":"item_u1"}));
    conn.expect("conversation.item.truncate", SECS(3))
        .await
        .expect("truncate");
    conn.send(
        json!({"type":"input_audio_buffer.speech_stopped","audio_end_ms":900,"item_id":"item_u1"}),
    );
    sim.dtmf('5');
    sim.dtmf('#');
    conn.expect("conversation.item.create", SECS(3))
        .await
        .expect("dtmf note");
    conn.expect("response.create", SECS(3))
        .await
        .expect("dtmf response");
    conn.send(json!({"type":"response.created","response":{"id":"resp_2","status":"in_progress","output":[]}}));
    conn.send(json!({"type":"response.function_call_arguments.done","response_id":"resp_2","item_id":"fc_1",
        "output_index":0,"call_id":"call_1","name":"transfer_call","arguments":"{\"target\":\"+15551230000\"}"}));
    conn.send(
        json!({"type":"response.done","response":{"id":"resp_2","status":"completed","output":[]}}),
    );
    let output = conn
        .expect("conversation.item.create", SECS(5))
        .await
        .expect("tool output");
    assert_eq!(output["item"]["type"], "function_call_output");
    assert_eq!(output["item"]["call_id"], "call_1");
    conn.expect("response.create", SECS(3))
        .await
        .expect("response after the output");
    sim.hang_up();

    // Call 2, PCM16 route without interrupt_response: the bridge cancels the response.
    let sim = TwilioSim::connect(bridge.addr, "+14155550100", "+15550001", "CA2", None)
        .await
        .unwrap();
    let mut conn = rt.accept(SECS(5)).await.expect("second connection");
    conn.send(json!({"type":"session.created","session":{"id":"sess_2"}}));
    let update = conn.expect("session.update", SECS(5)).await.unwrap();
    assert_eq!(
        update["session"]["audio"]["output"]["format"]["rate"],
        24000
    );
    conn.send(json!({"type":"session.updated","session":{}}));
    sim.speak(&data("book_table_8k.ulaw")[..3200]).await;
    let append = conn
        .expect("input_audio_buffer.append", SECS(3))
        .await
        .unwrap();
    let pcm = base64::engine::general_purpose::STANDARD
        .decode(append["audio"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        pcm.len() % 960,
        0,
        "20 ms of PCM16 at 24 kHz per µ-law frame"
    );
    let speech = tone::tone(&[440.0], 2000, 0.3, AudioFormat::Pcm16);
    start_response(&mut conn, "resp_3", "item_3", &speech[..48 * 1000]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    conn.send(json!({"type":"input_audio_buffer.speech_started","audio_start_ms":100,"item_id":"item_u2"}));
    let cancel = conn
        .expect("response.cancel", SECS(3))
        .await
        .expect("cancel");
    assert_eq!(cancel["response_id"], "resp_3");
    conn.expect("conversation.item.truncate", SECS(3))
        .await
        .expect("truncate");
    sim.hang_up();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Validate everything the bridge sent.
    let events = rt.received.lock().unwrap().clone();
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("realtime-client-events.jsonl");
    std::fs::write(&file, events.join("\n") + "\n").unwrap();
    let kinds: std::collections::BTreeSet<String> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(e).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for kind in [
        "session.update",
        "input_audio_buffer.append",
        "response.create",
        "conversation.item.truncate",
        "conversation.item.create",
        "response.cancel",
    ] {
        assert!(kinds.contains(kind), "the scenario sends {kind}: {kinds:?}");
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/validate_realtime_events.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the schema validator ({}): {e}; run tests/run.sh, which installs it",
                python().display()
            )
        });
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client events failed the Realtime schema:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
}
