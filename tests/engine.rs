//! End-to-end tests of the local engine over real WebSockets: a TCP listener served by
//! `engine::serve`, and the in-process duplex pipe of `engine::in_process`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use dialtone::audio::AudioFormat;
use dialtone::audio::tone::tone;
use dialtone::engine::{EngineConfig, EngineScript, in_process, serve};
use dialtone::realtime::event::ServerEvent;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Guards against a hung test only; nothing is asserted about time.
const HANG_GUARD: Duration = Duration::from_secs(60);

struct Client<S> {
    ws: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, event: Value) {
        self.ws
            .send(Message::text(event.to_string()))
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(HANG_GUARD, self.ws.next())
                .await
                .expect("engine went quiet")
                .expect("engine closed the connection")
                .unwrap();
            if let Message::Text(text) = frame {
                let event: Value = serde_json::from_str(text.as_str()).unwrap();
                // Every event also parses with the bridge's own types.
                ServerEvent::parse(text.as_str()).unwrap();
                return event;
            }
        }
    }

    /// Events up to and including the first of type `last`.
    async fn until(&mut self, last: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await;
            let done = event["type"] == last;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Appends `audio` as 20 ms µ-law frames, as fast as the socket takes them.
    async fn append_pcmu(&mut self, audio: &[u8]) {
        for frame in audio.chunks(AudioFormat::Pcmu.frame_bytes()) {
            let event = json!({"type": "input_audio_buffer.append", "audio": BASE64.encode(frame)});
            self.ws
                .feed(Message::text(event.to_string()))
                .await
                .unwrap();
        }
        self.ws.flush().await.unwrap();
    }

    async fn use_pcmu(&mut self) {
        self.send(json!({"type": "session.update", "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcmu"},
                          "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                             "prefix_padding_ms": 300, "silence_duration_ms": 500}},
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
            }
        }}))
        .await;
        let updated = self.next().await;
        assert_eq!(updated["type"], "session.updated", "{updated}");
        assert_eq!(
            updated["session"]["audio"]["input"]["format"]["type"],
            "audio/pcmu"
        );
    }

    /// Speaks `spoken_ms` of tone between silences; returns the events through `response.done`.
    async fn caller_turn(&mut self, spoken_ms: u64) -> Vec<Value> {
        let f = AudioFormat::Pcmu;
        let mut audio = f.silence_frame().repeat(25);
        audio.extend(tone(&[440.0], spoken_ms, 0.3, f));
        audio.extend(f.silence_frame().repeat(50));
        self.append_pcmu(&audio).await;
        self.until("response.done").await
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn echo_ms(events: &[Value]) -> u64 {
    let bytes: usize = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| BASE64.decode(e["delta"].as_str().unwrap()).unwrap().len())
        .sum();
    AudioFormat::Pcmu.ms_of(bytes)
}

/// Asserts the caller-turn sequence, with deltas and other events in between allowed.
fn assert_turn(events: &[Value], spoken_ms: u64) {
    let kinds = types(events);
    let position = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    let order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.done",
    ];
    let positions: Vec<usize> = order.iter().map(|k| position(k)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{kinds:?}");
    let committed = &events[position("input_audio_buffer.committed")];
    assert_eq!(
        committed["item_id"],
        events[position("input_audio_buffer.speech_started")]["item_id"]
    );
    assert_eq!(
        events[position("response.done")]["response"]["status"],
        "completed"
    );
    // The echo is the spoken part plus at most the prefix padding and the hangover.
    let echo = echo_ms(events);
    assert!(
        (spoken_ms..=spoken_ms + 300 + 500 + 20).contains(&echo),
        "echo of {echo} ms for {spoken_ms} ms spoken"
    );
}

#[tokio::test]
async fn tcp_server_detects_a_turn_and_echoes_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Arc::new(EngineConfig {
        script: None,
        realtime_factor: 20,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, config, async {
        let _ = stopped.await;
    }));

    let url = format!("ws://{addr}/v1/realtime?model=gpt-realtime-mini");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut client = Client { ws };
    let created = client.next().await;
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["model"], "gpt-realtime-mini");
    client.use_pcmu().await;

    let events = client.caller_turn(1000).await;
    assert_turn(&events, 1000);
    let events = client.caller_turn(600).await;
    assert_turn(&events, 600);

    client.ws.close(None).await.unwrap();
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn in_process_pipe_speaks_the_same_protocol() {
    let script: EngineScript =
        "[[turn]]\nturn = 1\ntool = \"end_call\"\narguments = { reason = \"bye\" }\n"
            .parse()
            .unwrap();
    let config = Arc::new(EngineConfig {
        script: Some(script),
        realtime_factor: 20,
    });
    let stream = in_process(config);
    let (ws, _) = tokio_tungstenite::client_async("ws://localhost/v1/realtime", stream)
        .await
        .unwrap();
    let mut client = Client { ws };
    let created = client.next().await;
    assert_eq!(created["session"]["model"], "gpt-realtime");

    // Garbage is answered with an error and the session goes on.
    client.ws.send(Message::text("{oops")).await.unwrap();
    let error = client.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "invalid_json");

    client.use_pcmu().await;
    let events = client.caller_turn(800).await;
    assert_turn(&events, 800);
    let call = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .expect("scripted call");
    assert_eq!(call["name"], "end_call");
    assert_eq!(call["arguments"], r#"{"reason":"bye"}"#);
    let audio_done = types(&events)
        .iter()
        .position(|k| *k == "response.output_audio.done")
        .unwrap();
    let call_at = types(&events)
        .iter()
        .position(|k| *k == "response.function_call_arguments.done")
        .unwrap();
    assert!(audio_done < call_at, "the goodbye is said before the call");

    client
        .send(json!({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call["call_id"], "output": "{\"ok\":true}"}}))
        .await;
    assert_eq!(client.next().await["type"], "conversation.item.added");
    assert_eq!(client.next().await["type"], "conversation.item.done");
    client.send(json!({"type": "response.create"})).await;
    let events = client.until("response.done").await;
    assert_eq!(echo_ms(&events), 600, "a chime answers the tool result");
}
