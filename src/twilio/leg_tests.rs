//! Tests of the Media Stream leg adapter, driven through in-memory channels.

use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::Message;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use crate::bridge::MarkId;

const STREAM_SID: &str = "MZ00000000000000000000000000000001";

/// Twilio's side of a Media Stream socket, over channels.
struct TestSocket {
    inbound: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
    outbound: mpsc::UnboundedSender<Message>,
}

impl futures_util::Stream for TestSocket {
    type Item = Result<Message, axum::Error>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inbound.poll_recv(cx)
    }
}

impl futures_util::Sink<Message> for TestSocket {
    type Error = axum::Error;

    fn poll_ready(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), axum::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), axum::Error> {
        self.outbound
            .send(message)
            .map_err(|_| axum::Error::new("socket closed"))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), axum::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), axum::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// One adapter under test, with Twilio's side of the socket and the host's side of the leg.
struct Harness {
    to_leg: mpsc::UnboundedSender<Result<Message, axum::Error>>,
    from_leg: mpsc::UnboundedReceiver<Message>,
    legs: mpsc::UnboundedReceiver<CallerLeg>,
    counters: Arc<TwilioCounters>,
    task: JoinHandle<()>,
}

impl Harness {
    fn start(configure: impl FnOnce(&mut MediaContext)) -> Self {
        let (to_leg, inbound) = mpsc::unbounded_channel::<Result<Message, axum::Error>>();
        let (outbound, from_leg) = mpsc::unbounded_channel::<Message>();
        let (leg_tx, legs) = mpsc::unbounded_channel();
        let counters = Arc::new(TwilioCounters::default());
        let mut ctx = MediaContext::new(
            Arc::new(move |leg| {
                let _ = leg_tx.send(leg);
                Box::pin(async {})
            }),
            counters.clone(),
        );
        configure(&mut ctx);
        let task = tokio::spawn(run_media_socket(TestSocket { inbound, outbound }, ctx));
        Self {
            to_leg,
            from_leg,
            legs,
            counters,
            task,
        }
    }

    fn send(&self, value: Value) {
        self.send_text(&value.to_string());
    }

    fn send_text(&self, text: &str) {
        let _ = self.to_leg.send(Ok(Message::Text(text.into())));
    }

    /// Sends `connected` and `start` and returns the leg handed to the host.
    async fn connect(&mut self) -> CallerLeg {
        self.send(json!({"event":"connected","protocol":"Call","version":"1.0.0"}));
        self.send(json!({
            "event":"start","sequenceNumber":"1","streamSid":STREAM_SID,
            "start":{"streamSid":STREAM_SID,"accountSid":"AC1","callSid":"CA1","tracks":["inbound"],
                "customParameters":{"From":"+15550001111","To":"+15550002222"},
                "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}
        }));
        self.legs.recv().await.expect("leg handed to the host")
    }

    /// The next message the adapter wrote, as JSON (`None` for a close frame).
    async fn next_out(&mut self) -> Option<Value> {
        match self.from_leg.recv().await.expect("adapter wrote") {
            Message::Text(text) => Some(serde_json::from_str(&text).expect("json")),
            Message::Close(_) => None,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn media(payload: &str) -> Value {
    json!({"event":"media","sequenceNumber":"3","streamSid":STREAM_SID,
        "media":{"track":"inbound","chunk":"1","timestamp":"20","payload":payload}})
}

fn mark(id: u64) -> Mark {
    Mark {
        id: MarkId(id),
        label: format!("{id}:item_abc:4800"),
    }
}

fn payload_of(message: &Value) -> Vec<u8> {
    assert_eq!(message["event"], "media");
    assert_eq!(message["streamSid"], STREAM_SID);
    let payload = message["media"]["payload"].as_str().expect("payload");
    BASE64.decode(payload).expect("base64")
}

#[tokio::test]
async fn start_hands_the_leg_to_the_host() {
    let mut h = Harness::start(|_| {});
    let leg = h.connect().await;
    assert_eq!(leg.info.kind, LegKind::Twilio);
    assert_eq!(leg.info.call_id, "CA1");
    assert_eq!(leg.info.from, "+15550001111");
    assert_eq!(leg.info.to, "+15550002222");
    assert_eq!(leg.info.format, AudioFormat::Pcmu);
    assert_eq!(leg.info.dtmf, DtmfMode::InBand);
    assert_eq!(h.counters.snapshot().streams_started, 1);
}

#[tokio::test]
async fn missing_parameters_read_as_empty() {
    let mut h = Harness::start(|_| {});
    h.send(json!({"event":"start","start":{"streamSid":STREAM_SID,"callSid":"CA2"}}));
    let leg = h.legs.recv().await.expect("leg");
    assert_eq!(leg.info.call_id, "CA2");
    assert_eq!((leg.info.from.as_str(), leg.info.to.as_str()), ("", ""));
}

#[tokio::test]
async fn inbound_media_dtmf_and_marks_become_events() {
    let mut h = Harness::start(|_| {});
    let mut leg = h.connect().await;

    h.send(media(&BASE64.encode([0x7F; 160])));
    assert_eq!(
        leg.io.next_event().await,
        Some(LegEvent::Audio(vec![0x7F; 160].into()))
    );

    h.send(
        json!({"event":"dtmf","streamSid":STREAM_SID,"sequenceNumber":"5",
        "dtmf":{"track":"inbound_track","digit":"#"}}),
    );
    assert_eq!(leg.io.next_event().await, Some(LegEvent::Dtmf('#')));

    h.send(json!({"event":"mark","streamSid":STREAM_SID,"mark":{"name":"responsePart"}}));
    h.send(json!({"event":"mark","streamSid":STREAM_SID,"mark":{"name":"7:item_abc:4800"}}));
    assert_eq!(leg.io.next_event().await, Some(LegEvent::Played(MarkId(7))));

    let snap = h.counters.snapshot();
    assert_eq!((snap.frames_in, snap.dtmf_in), (1, 1));
    assert_eq!((snap.marks_played, snap.marks_foreign), (1, 1));
}

#[tokio::test]
async fn malformed_input_does_not_end_the_leg() {
    let mut h = Harness::start(|_| {});
    let mut leg = h.connect().await;

    h.send_text("{not json");
    h.send(json!({"event":"media","media":{}}));
    h.send(media("!!! not base64 !!!"));
    h.send(json!({"event":"dtmf","dtmf":{"digit":"xyz"}}));
    h.send(json!({"event":"future-event"}));
    let _ = h.to_leg.send(Ok(Message::Binary(vec![1, 2, 3].into())));
    h.send(media(&BASE64.encode([1, 2, 3])));

    assert_eq!(
        leg.io.next_event().await,
        Some(LegEvent::Audio(vec![1, 2, 3].into()))
    );
    let snap = h.counters.snapshot();
    assert_eq!(snap.malformed_messages, 4);
    assert_eq!(snap.frames_dropped, 1);
    assert_eq!(snap.frames_in, 1);
}

#[tokio::test]
async fn play_is_reframed_and_marks_follow_their_audio() {
    let mut h = Harness::start(|_| {});
    let mut leg = h.connect().await;
    let audio: Vec<u8> = (0..400u32).map(|i| (i % 200) as u8).collect();

    leg.io.send(LegCommand::Play(audio.clone().into())).await;
    leg.io.send(LegCommand::Mark(mark(3))).await;
    leg.io.flush().await;

    // The segment goes out as one media message, padded to whole frames.
    let sent = payload_of(&h.next_out().await.expect("media"));
    assert_eq!(sent.len(), 480);
    assert_eq!(sent[..400], audio[..]);
    assert!(sent[400..].iter().all(|&b| b == 0xFF));
    assert_eq!(
        h.next_out().await,
        Some(json!({"event":"mark","streamSid":STREAM_SID,"mark":{"name":"3:item_abc:4800"}}))
    );
    let snap = h.counters.snapshot();
    assert_eq!((snap.frames_out, snap.marks_sent), (3, 1));
}

#[tokio::test]
async fn clear_drops_the_partial_frame() {
    let mut h = Harness::start(|_| {});
    let mut leg = h.connect().await;

    leg.io.send(LegCommand::Play(vec![0x10; 100].into())).await;
    leg.io.send(LegCommand::Clear).await;
    leg.io.send(LegCommand::Mark(mark(1))).await;
    leg.io.flush().await;

    assert_eq!(
        h.next_out().await,
        Some(json!({"event":"clear","streamSid":STREAM_SID}))
    );
    assert_eq!(h.next_out().await.expect("mark")["event"], "mark");
    assert_eq!(h.counters.snapshot().clears_sent, 1);
}

#[tokio::test]
async fn stop_ends_the_leg() {
    let mut h = Harness::start(|_| {});
    let mut leg = h.connect().await;
    h.send(
        json!({"event":"stop","sequenceNumber":"5","streamSid":STREAM_SID,
        "stop":{"accountSid":"AC1","callSid":"CA1"}}),
    );
    assert_eq!(leg.io.next_event().await, Some(LegEvent::Gone));
    assert_eq!(leg.io.next_event().await, None);
    assert_eq!(h.next_out().await, None, "close frame");
    h.task.await.expect("adapter finished");
}

#[tokio::test]
async fn socket_close_ends_the_leg() {
    let mut h = Harness::start(|_| {});
    let mut leg = h.connect().await;
    drop(h.to_leg);
    assert_eq!(leg.io.next_event().await, Some(LegEvent::Gone));
    h.task.await.expect("adapter finished");
}

#[tokio::test]
async fn closing_the_leg_closes_the_socket() {
    let mut h = Harness::start(|_| {});
    let mut leg = h.connect().await;
    leg.io.close().await;
    assert_eq!(h.next_out().await, None, "close frame");
    assert_eq!(leg.io.next_event().await, Some(LegEvent::Gone));
    h.task.await.expect("adapter finished");
}

#[tokio::test]
async fn hangup_without_rest_closes_the_socket() {
    let mut h = Harness::start(|_| {});
    let mut leg = h.connect().await;
    leg.io.send(LegCommand::Hangup).await;
    assert_eq!(h.next_out().await, None, "close frame");
    assert_eq!(leg.io.next_event().await, Some(LegEvent::Gone));
    h.task.await.expect("adapter finished");
}

#[tokio::test]
async fn no_start_within_the_frame_bound_closes_the_socket() {
    let mut h = Harness::start(|ctx| ctx.max_frames_before_start = 3);
    h.send(json!({"event":"connected"}));
    h.send_text("garbage");
    h.send(media(""));
    assert_eq!(h.next_out().await, None, "close frame");
    h.task.await.expect("adapter finished");
    assert!(h.legs.recv().await.is_none(), "no call was started");
    let snap = h.counters.snapshot();
    assert_eq!((snap.streams_rejected, snap.streams_started), (1, 0));
}

#[tokio::test]
async fn stop_before_start_closes_the_socket() {
    let mut h = Harness::start(|_| {});
    h.send(json!({"event":"stop"}));
    assert_eq!(h.next_out().await, None, "close frame");
    h.task.await.expect("adapter finished");
    assert!(h.legs.recv().await.is_none());
}

#[tokio::test]
async fn control_without_rest() {
    let mut h = Harness::start(|_| {});
    let leg = h.connect().await;
    assert_eq!(
        leg.io.control().transfer("+15550003333".into()).await,
        Err(TRANSFER_NEEDS_TOKEN.to_owned())
    );
    assert!(leg.io.control().send_dtmf("123".into()).await.is_err());
}

#[test]
fn caller_audio_reuses_one_buffer_once_each_frame_is_dropped() {
    let mut buf = BytesMut::new();
    let first = decode_audio(&BASE64.encode([7u8; 160]), &mut buf).expect("valid base64");
    assert_eq!(first[..], [7u8; 160]);
    let at = first.as_ptr();
    drop(first);
    let second = decode_audio(&BASE64.encode([9u8; 160]), &mut buf).expect("valid base64");
    assert_eq!(second[..], [9u8; 160]);
    assert_eq!(
        second.as_ptr(),
        at,
        "the dropped frame's allocation is taken back"
    );
    assert!(decode_audio("!!!", &mut buf).is_none());
}
