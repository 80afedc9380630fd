//! Phone numbers never reach the log at debug level or above: a whole call (webhook, stream,
//! session, DTMF, barge-in, hangup) runs with a debug subscriber capturing every line, and no
//! run of the caller's or the called number's digits may appear in it.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::realtime_sim::RealtimeSim;
use support::twilio_sim::TwilioSim;
use support::{Bridge, Model, data};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_redacted_in_debug_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut rt = RealtimeSim::start().await;
    let bridge = Bridge::start(Model::Url(rt.url()), None).await;
    let http = reqwest::Client::new();
    let twiml = http
        .post(format!("http://{}/twilio/voice", bridge.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("From=%2B14155550100&To=%2B14155550199&CallSid=CA1")
        .send()
        .await
        .unwrap();
    assert_eq!(twiml.status(), 200);

    let sim = TwilioSim::connect(bridge.addr, "+14155550100", "+14155550199", "CA1", None)
        .await
        .unwrap();
    let mut conn = rt.accept(Duration::from_secs(5)).await.unwrap();
    conn.send(json!({"type":"session.created","session":{}}));
    conn.expect("session.update", Duration::from_secs(5))
        .await
        .unwrap();
    conn.send(json!({"type":"session.updated","session":{}}));
    sim.speak(&data("stop_8k.ulaw")[..1600]).await;
    sim.dtmf('7');
    sim.dtmf('#');
    conn.expect("conversation.item.create", Duration::from_secs(3))
        .await
        .unwrap();
    sim.hang_up();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("call started"), "the call was logged:\n{log}");
    for digits in ["4155550100", "4155550199", "555010", "555019"] {
        assert!(
            !log.contains(digits),
            "{digits} leaked into the log:\n{log}"
        );
    }
}
