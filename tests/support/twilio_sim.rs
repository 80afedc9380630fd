//! A Twilio Media Streams client for tests: it connects to the bridge's `/twilio/media` the way
//! Twilio does (`connected`, `start`, then 20 ms `media` frames), and plays what the bridge
//! sends at real time, like Twilio's player:
//! - `media` payloads queue up and play 20 ms per 20 ms;
//! - a `mark` is echoed once every frame queued before it has played;
//! - `clear` drops the queue and echoes every pending mark at once.
//!
//! It records what it played, how much had played when each `clear` arrived, and whether the
//! bridge closed the stream.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FRAME: Duration = Duration::from_millis(20);

#[derive(Debug)]
enum Queued {
    Audio(Vec<u8>),
    Mark(String),
}

/// What the simulated Twilio has seen and played.
#[derive(Debug, Default)]
pub struct SimState {
    queue: VecDeque<Queued>,
    /// Start of the frame playing now.
    frame_started: Option<Instant>,
    /// Whole frames played since the last `clear` (or the start).
    played_frames_since_clear: u64,
    /// Every byte played, in order.
    pub played: Vec<u8>,
    /// Milliseconds played when each `clear` arrived (counted since the previous clear).
    pub played_ms_at_clear: Vec<u64>,
    pub marks_echoed: Vec<String>,
    /// Media frames received from the bridge.
    pub frames_received: usize,
    pub closed: bool,
    pub closed_at: Option<Instant>,
    /// When the queue last became empty after playing.
    pub drained_at: Option<Instant>,
    /// Raw messages from the bridge, in order, with their arrival time.
    pub log: Vec<(Instant, Value)>,
}

impl SimState {
    fn played_ms_now(&self, now: Instant) -> u64 {
        let partial = self.frame_started.map_or(0, |s| {
            now.saturating_duration_since(s).min(FRAME).as_millis() as u64
        });
        self.played_frames_since_clear * 20 + partial
    }
}

/// A simulated Twilio call.
pub struct TwilioSim {
    pub state: Arc<Mutex<SimState>>,
    outgoing: mpsc::UnboundedSender<Message>,
    stream_sid: String,
}

impl TwilioSim {
    /// Connects to `ws://addr/twilio/media`, sends `connected` and `start`.
    pub async fn connect(
        addr: std::net::SocketAddr,
        from: &str,
        to: &str,
        call_sid: &str,
        signature: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{addr}/twilio/media").into_client_request()?;
        if let Some(sig) = signature {
            request
                .headers_mut()
                .insert("X-Twilio-Signature", sig.parse().expect("header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let (mut sink, mut stream) = ws.split();
        let state = Arc::new(Mutex::new(SimState::default()));
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();

        // Writer.
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });

        // Reader: queue media and marks, act on clear.
        let reader_state = Arc::clone(&state);
        let reader_tx = tx.clone();
        let stream_sid = format!("MZ{}", &call_sid.trim_start_matches("CA"));
        let sid = stream_sid.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else {
                    if let Message::Close(_) = msg {
                        break;
                    }
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let now = Instant::now();
                let mut st = reader_state.lock().unwrap();
                st.log.push((now, v.clone()));
                match v["event"].as_str() {
                    Some("media") => {
                        let payload = v["media"]["payload"].as_str().unwrap_or("");
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(payload)
                            .unwrap_or_default();
                        st.frames_received += bytes.len().div_ceil(160);
                        for chunk in bytes.chunks(160) {
                            st.queue.push_back(Queued::Audio(chunk.to_vec()));
                        }
                    }
                    Some("mark") => {
                        let name = v["mark"]["name"].as_str().unwrap_or("").to_owned();
                        st.queue.push_back(Queued::Mark(name));
                    }
                    Some("clear") => {
                        let heard = st.played_ms_now(now);
                        st.played_ms_at_clear.push(heard);
                        st.played_frames_since_clear = 0;
                        st.frame_started = None;
                        let marks: Vec<String> = st
                            .queue
                            .drain(..)
                            .filter_map(|q| match q {
                                Queued::Mark(n) => Some(n),
                                Queued::Audio(_) => None,
                            })
                            .collect();
                        for name in marks {
                            st.marks_echoed.push(name.clone());
                            let _ = reader_tx.send(mark_echo(&sid, &name));
                        }
                    }
                    _ => {}
                }
            }
            let mut st = reader_state.lock().unwrap();
            st.closed = true;
            st.closed_at = Some(Instant::now());
        });

        // Player: one frame per 20 ms; marks echo when reached.
        let player_state = Arc::clone(&state);
        let player_tx = tx.clone();
        let sid = stream_sid.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FRAME);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let mut st = player_state.lock().unwrap();
                if st.closed {
                    break;
                }
                if st.frame_started.take().is_some() {
                    st.played_frames_since_clear += 1;
                }
                loop {
                    match st.queue.pop_front() {
                        Some(Queued::Mark(name)) => {
                            st.marks_echoed.push(name.clone());
                            let _ = player_tx.send(mark_echo(&sid, &name));
                        }
                        Some(Queued::Audio(bytes)) => {
                            st.played.extend_from_slice(&bytes);
                            st.frame_started = Some(now);
                            break;
                        }
                        None => {
                            if st.drained_at.is_none_or(|d| d < now) {
                                st.drained_at = Some(now);
                            }
                            break;
                        }
                    }
                }
            }
        });

        let sim = Self {
            state,
            outgoing: tx,
            stream_sid,
        };
        sim.send(json!({"event":"connected","protocol":"Call","version":"1.0.0"}));
        sim.send(json!({
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": sim.stream_sid,
            "start": {
                "streamSid": sim.stream_sid,
                "accountSid": "AC00000000000000000000000000000000",
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {"From": from, "To": to, "CallSid": call_sid},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            }
        }));
        Ok(sim)
    }

    fn send(&self, v: Value) {
        let _ = self.outgoing.send(Message::text(v.to_string()));
    }

    /// Sends caller audio at real time, 20 ms per `media` message.
    pub async fn speak(&self, ulaw: &[u8]) {
        let mut tick = tokio::time::interval(FRAME);
        for (i, chunk) in ulaw.chunks(160).enumerate() {
            tick.tick().await;
            self.send(json!({
                "event": "media",
                "streamSid": self.stream_sid,
                "media": {
                    "track": "inbound",
                    "chunk": (i + 1).to_string(),
                    "timestamp": (i * 20).to_string(),
                    "payload": base64::engine::general_purpose::STANDARD.encode(chunk),
                }
            }));
        }
    }

    /// Sends `ms` of µ-law silence at real time.
    pub async fn silence(&self, ms: u64) {
        self.speak(&vec![0xFF; (ms * 8) as usize]).await;
    }

    pub fn dtmf(&self, digit: char) {
        self.send(json!({
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "dtmf": {"track": "inbound_track", "digit": digit.to_string()}
        }));
    }

    /// Sends `stop` and closes, as Twilio does when the caller hangs up.
    pub fn hang_up(&self) {
        self.send(json!({
            "event": "stop",
            "streamSid": self.stream_sid,
            "stop": {"accountSid": "AC00000000000000000000000000000000", "callSid": "CA"}
        }));
        let _ = self.outgoing.send(Message::Close(None));
    }

    /// Waits until `cond` holds on the state, or `limit` passes. Returns whether it held.
    pub async fn wait_for(&self, limit: Duration, cond: impl Fn(&SimState) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if cond(&self.state.lock().unwrap()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cond(&self.state.lock().unwrap())
    }

    pub fn played(&self) -> Vec<u8> {
        self.state.lock().unwrap().played.clone()
    }
}

fn mark_echo(stream_sid: &str, name: &str) -> Message {
    Message::text(
        json!({
            "event": "mark",
            "sequenceNumber": "9",
            "streamSid": stream_sid,
            "mark": {"name": name}
        })
        .to_string(),
    )
}
