//! End to end over real sockets on 127.0.0.1:0: the bridge, a simulated Twilio that plays what
//! it receives at real time, a Realtime server (the embedded engine, or a scriptable test
//! server), and a stand-in for Twilio's REST API.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use dialtone::audio::{AudioFormat, tone};
use serde_json::{Value, json};
use support::realtime_sim::{RealtimeSim, RtConn};
use support::rest_sim::RestSim;
use support::twilio_sim::TwilioSim;
use support::{Bridge, Model, contains, data};

const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Session set-up from the model's side; answers the greeting with a short empty response.
async fn open_session(conn: &mut RtConn) {
    conn.send(json!({"type":"session.created","session":{"id":"sess_1","type":"realtime"}}));
    let update = conn
        .expect("session.update", SECS(5))
        .await
        .expect("session.update");
    assert_eq!(
        update["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    conn.send(json!({"type":"session.updated","session":update["session"]}));
    let greeting = conn
        .expect("response.create", SECS(5))
        .await
        .expect("greeting");
    assert!(
        greeting["response"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("Dialtone"))
    );
    conn.send(json!({"type":"response.created","response":{"id":"resp_greet","status":"in_progress","output":[]}}));
    conn.send(json!({"type":"response.done","response":{"id":"resp_greet","status":"completed","output":[]}}));
}

/// A whole response with `ms` of audio for `item`, streamed all at once.
fn send_response(conn: &mut RtConn, response: &str, item: &str, audio: &[u8]) {
    conn.send(json!({"type":"response.created","response":{"id":response,"status":"in_progress","output":[]}}));
    conn.send(json!({"type":"response.output_item.added","response_id":response,"output_index":0,
        "item":{"id":item,"type":"message","role":"assistant","status":"in_progress","content":[]}}));
    for chunk in audio.chunks(800) {
        conn.send(
            json!({"type":"response.output_audio.delta","response_id":response,"item_id":item,
            "output_index":0,"content_index":0,"delta":b64(chunk)}),
        );
    }
    conn.send(
        json!({"type":"response.output_audio.done","response_id":response,"item_id":item,
        "output_index":0,"content_index":0}),
    );
    conn.send(
        json!({"type":"response.done","response":{"id":response,"status":"completed",
        "output":[{"id":item,"type":"message","role":"assistant","status":"completed"}]}}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_audio_reaches_the_model_byte_for_byte() {
    let mut rt = RealtimeSim::start().await;
    let bridge = Bridge::start(Model::Url(rt.url()), None).await;
    let sim = TwilioSim::connect(bridge.addr, "+14155550100", "+14155550199", CALL_SID, None)
        .await
        .expect("connect");
    let mut conn = rt.accept(SECS(5)).await.expect("the bridge connects");
    assert!(conn.path.contains("model=gpt-realtime"), "{}", conn.path);
    open_session(&mut conn).await;

    let speech = &data("book_table_8k.ulaw")[..8000];
    sim.speak(speech).await;
    let mut got = Vec::new();
    while got.len() < speech.len() {
        let ev = conn
            .expect("input_audio_buffer.append", SECS(3))
            .await
            .expect("caller audio");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ev["audio"].as_str().unwrap())
            .unwrap();
        got.extend_from_slice(&bytes);
    }
    // µ-law both ways: passed through untouched.
    assert!(
        contains(&got, speech),
        "the caller's audio arrives unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_clears_and_truncates_to_what_twilio_played() {
    let mut rt = RealtimeSim::start().await;
    let bridge = Bridge::start(Model::Url(rt.url()), None).await;
    let sim = TwilioSim::connect(bridge.addr, "+14155550100", "+14155550199", CALL_SID, None)
        .await
        .unwrap();
    let mut conn = rt.accept(SECS(5)).await.unwrap();
    open_session(&mut conn).await;

    // 3 s of assistant audio, delivered far faster than real time.
    let audio = tone::tone(&[440.0], 3000, 0.3, AudioFormat::Pcmu);
    send_response(&mut conn, "resp_1", "item_a", &audio);
    assert!(sim.wait_for(SECS(5), |s| s.played.len() >= 8 * 1000).await);
    tokio::time::sleep(Duration::from_millis(370)).await;
    conn.send(json!({"type":"input_audio_buffer.speech_started","audio_start_ms":1000,"item_id":"item_user"}));

    let truncate = conn
        .expect("conversation.item.truncate", SECS(3))
        .await
        .expect("a truncate");
    assert!(
        sim.wait_for(SECS(2), |s| !s.played_ms_at_clear.is_empty())
            .await,
        "clear sent"
    );
    let played = sim.state.lock().unwrap().played_ms_at_clear[0];
    let end = truncate["audio_end_ms"].as_u64().unwrap();
    assert_eq!(truncate["item_id"], "item_a");
    assert_eq!(truncate["content_index"], 0);
    assert!(
        end.abs_diff(played) <= 20,
        "truncated at {end} ms; simulated Twilio had played {played} ms"
    );
    assert!(end < 3000);
    // Playback stopped: nothing more is played after the clear.
    let frames = sim.state.lock().unwrap().frames_received;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.state.lock().unwrap().frames_received, frames);
    assert_eq!(bridge.metrics.counter("truncates_total", &[]), 1);
    assert_eq!(bridge.metrics.counter("barge_ins_total", &[]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_digits_reach_the_model() {
    let mut rt = RealtimeSim::start().await;
    let bridge = Bridge::start(Model::Url(rt.url()), None).await;
    let sim = TwilioSim::connect(bridge.addr, "+14155550100", "+14155550199", CALL_SID, None)
        .await
        .unwrap();
    let mut conn = rt.accept(SECS(5)).await.unwrap();
    open_session(&mut conn).await;
    for d in ['1', '2', '#'] {
        sim.dtmf(d);
    }
    let item = conn
        .expect("conversation.item.create", SECS(3))
        .await
        .expect("digits as a user message");
    assert_eq!(item["item"]["role"], "user");
    assert!(
        item["item"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("12#")
    );
    assert!(conn.expect("response.create", SECS(2)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_engine_echoes_the_caller() {
    let bridge = Bridge::start(Model::Embedded(None), None).await;
    let sim = TwilioSim::connect(bridge.addr, "+14155550100", "+14155550199", CALL_SID, None)
        .await
        .unwrap();
    let speech = data("book_table_8k.ulaw");
    sim.speak(&speech).await;
    // The middle second of the spoken part, byte for byte (µ-law end to end).
    let probe = speech[16_000..24_000].to_vec();
    let heard = sim
        .wait_for(SECS(20), |s| contains(&s.played, &probe))
        .await;
    assert!(heard, "the caller hears their own words back");
    assert!(bridge.metrics.counter("calls_total", &[("leg", "twilio")]) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_hangs_up_after_the_goodbye_played() {
    let rest = RestSim::start().await;
    let script = "[[turn]]\nturn = 1\ntool = \"end_call\"\nsay_first = true\n";
    let bridge = Bridge::start(Model::Embedded(Some(script)), Some(&rest.base)).await;
    let sig = Bridge::media_signature();
    let sim = TwilioSim::connect(
        bridge.addr,
        "+14155550100",
        "+14155550199",
        CALL_SID,
        Some(&sig),
    )
    .await
    .unwrap();
    let speech = data("stop_8k.ulaw");
    sim.speak(&speech).await;
    let hung_up = sim.wait_for(SECS(20), |s| s.closed).await;
    assert!(hung_up, "the bridge ends the call");
    let updates = rest.updates();
    assert_eq!(updates.len(), 1, "{updates:?}");
    let update = &updates[0];
    assert_eq!(update.call, CALL_SID);
    assert_eq!(update.field("Status"), Some("completed"));
    assert!(
        update
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    );
    // The goodbye (the echo of "stop") was played in full before the hangup.
    let st = sim.state.lock().unwrap();
    let spoken = &speech[5_000..9_000];
    assert!(contains(&st.played, spoken), "the goodbye was heard");
    let drained = st.drained_at.expect("playback drained");
    assert!(
        update.at + Duration::from_millis(25) >= drained,
        "hung up before the goodbye ended"
    );
    assert_eq!(
        bridge.metrics.counter(
            "tool_calls_total",
            &[("action", "hangup"), ("outcome", "ok")]
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_call_reaches_the_rest_api_with_the_target() {
    let rest = RestSim::start().await;
    let script = "[[turn]]\nturn = 1\ntool = \"transfer_call\"\narguments = { target = \"+15551234567\" }\nsay_first = false\n";
    let bridge = Bridge::start(Model::Embedded(Some(script)), Some(&rest.base)).await;
    let sig = Bridge::media_signature();
    let sim = TwilioSim::connect(
        bridge.addr,
        "+14155550100",
        "+14155550199",
        CALL_SID,
        Some(&sig),
    )
    .await
    .unwrap();
    sim.speak(&data("transfer_sales_8k.ulaw")).await;
    let start = Instant::now();
    while rest.updates().is_empty() && start.elapsed() < SECS(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let updates = rest.updates();
    assert_eq!(updates.len(), 1, "{updates:?}");
    let twiml = updates[0].field("Twiml").expect("Twiml");
    assert!(twiml.contains("<Dial>"), "{twiml}");
    assert!(twiml.contains("+15551234567"), "{twiml}");
    assert!(
        sim.wait_for(SECS(5), |s| s.closed).await,
        "the stream ends after a transfer"
    );
    assert_eq!(
        bridge.metrics.counter(
            "tool_calls_total",
            &[("action", "transfer"), ("outcome", "ok")]
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_are_refused_when_a_token_is_set() {
    let rest = RestSim::start().await;
    let bridge = Bridge::start(Model::Embedded(None), Some(&rest.base)).await;
    let http = reqwest::Client::new();
    let form = [
        ("From", "+14155550100"),
        ("To", "+14155550199"),
        ("CallSid", CALL_SID),
    ];
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    let unsigned = http
        .post(format!("http://{}/twilio/voice", bridge.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);

    let params: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig = dialtone::twilio::signature::compute(
        support::AUTH_TOKEN,
        &format!("{}/twilio/voice", support::PUBLIC_URL),
        &params,
    );
    let signed = http
        .post(format!("http://{}/twilio/voice", bridge.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let twiml = signed.text().await.unwrap();
    assert!(twiml.contains("wss://bridge.test/twilio/media"), "{twiml}");

    let ws = TwilioSim::connect(bridge.addr, "+1", "+2", CALL_SID, None).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(resp)) = ws else {
        panic!("unsigned upgrade accepted");
    };
    assert_eq!(resp.status(), 403);
    let wrong = TwilioSim::connect(bridge.addr, "+1", "+2", CALL_SID, Some("bm9wZQ==")).await;
    assert!(wrong.is_err(), "a wrong signature is refused");
    // Every refusal is counted once, in a /metrics whose families are each declared once (a
    // family declared twice makes Prometheus reject the whole scrape).
    let text = http
        .get(format!("http://{}/metrics", bridge.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut families: Vec<&str> = text
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
        "a metric family is declared twice:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "dialtone_twilio_signature_rejected_total 3"),
        "{text}"
    );
    assert!(bridge.metrics.counter("calls_total", &[("leg", "twilio")]) == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hanging_up_ends_the_call() {
    let mut rt = RealtimeSim::start().await;
    let bridge = Bridge::start(Model::Url(rt.url()), None).await;
    let sim = TwilioSim::connect(bridge.addr, "+14155550100", "+14155550199", CALL_SID, None)
        .await
        .unwrap();
    let mut conn = rt.accept(SECS(5)).await.unwrap();
    open_session(&mut conn).await;
    sim.hang_up();
    let start = Instant::now();
    while bridge
        .metrics
        .counter("calls_ended_total", &[("reason", "caller_hangup")])
        == 0
        && start.elapsed() < SECS(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        bridge
            .metrics
            .counter("calls_ended_total", &[("reason", "caller_hangup")]),
        1
    );
    // The Realtime connection is closed with the call.
    let rest: Vec<Value> = conn.collect(Duration::from_millis(300)).await;
    assert!(rest.iter().all(|e| e["type"] != "response.create"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_calls_places_a_twilio_call_pointing_at_our_stream() {
    let rest = RestSim::start().await;
    let bridge = Bridge::start_full(
        "dialplans",
        Model::Embedded(None),
        Some(&rest.base),
        Some("AC22222222222222222222222222222222"),
    )
    .await;
    let http = reqwest::Client::new();
    let placed = http
        .post(format!("http://{}/calls", bridge.addr))
        .json(&json!({"to": "+15551234567", "from": "+15550001111", "via": "twilio", "route": "default"}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let body: Value = placed.json().await.unwrap();
    assert_eq!(body["call_id"], "CA11111111111111111111111111111111");
    let updates = rest.updates();
    assert_eq!(updates.len(), 1);
    let create = &updates[0];
    assert_eq!(create.account, "AC22222222222222222222222222222222");
    assert_eq!(create.field("To"), Some("+15551234567"));
    assert_eq!(create.field("From"), Some("+15550001111"));
    let twiml = create.field("Twiml").unwrap();
    assert!(twiml.contains("wss://bridge.test/twilio/media"), "{twiml}");
    assert!(twiml.contains(r#"name="Route" value="default""#), "{twiml}");

    // Unknown routes and missing caller ids are the client's mistake.
    let bad = http
        .post(format!("http://{}/calls", bridge.addr))
        .json(&json!({"to": "+15551234567", "via": "twilio"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = http
        .post(format!("http://{}/calls", bridge.addr))
        .json(&json!({"to": "+15551234567", "route": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
