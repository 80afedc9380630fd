//! One simulated Twilio call: a Media Streams client that connects to the bridge's
//! `/twilio/media` the way Twilio does (`connected`, `start`, then a `media` message of 160
//! bytes of µ-law every 20 ms), plays what the bridge sends at real time with Twilio's player
//! (`playback.rs`), echoes marks, and measures the latency of every marker it is sent.
//!
//! One task and one 20 ms interval per call: each tick sends the caller's next frame and plays
//! one frame. The caller's audio is a fixed 1 kHz tone whose base64 is computed once; only the
//! counters of each `media` message change.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::marker;
use super::playback::{FRAME_BYTES, Player};
use crate::audio::g711::ulaw_encode;

/// One frame of audio, both ways.
pub const FRAME: Duration = Duration::from_millis(20);

/// How long the WebSocket upgrade may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// How long the bridge may take to close after our `stop`.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The measurement window, shared by every call once it is known.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// What one call is to do.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub index: usize,
    /// `ws://127.0.0.1:PORT/twilio/media`.
    pub url: String,
    /// When to connect.
    pub start_at: Instant,
    /// How long to stream once connected.
    pub duration: Duration,
    /// Makes the call and stream ids of this run unique.
    pub run_id: u64,
}

/// What happened on one call.
#[derive(Debug, Clone, Default)]
pub struct CallOutcome {
    pub connected: bool,
    /// Why it failed to connect or ended early.
    pub error: Option<String>,
    /// The bridge closed the stream before the call's end.
    pub closed_early: bool,
    pub media_received: u64,
    pub media_in_window: u64,
    pub marks_echoed: u64,
    /// Model-to-caller latency of every marker, in microseconds.
    pub latencies_us: Vec<u64>,
}

impl CallOutcome {
    /// The socket did not connect, closed before the end, or brought no audio at all.
    pub fn failed(&self) -> bool {
        !self.connected || self.closed_early || self.media_received == 0
    }
}

/// A message from the bridge, read only as far as the rig needs.
#[derive(Deserialize)]
struct FromBridge<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    media: Option<MediaIn<'a>>,
    #[serde(default)]
    mark: Option<MarkIn>,
}

#[derive(Deserialize)]
struct MediaIn<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Deserialize)]
struct MarkIn {
    name: String,
}

/// The messages one call sends.
struct Outgoing {
    stream_sid: String,
    /// Base64 of the caller's 20 ms frame.
    payload: Arc<str>,
    sequence: u64,
}

impl Outgoing {
    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    fn start(&mut self, call_sid: &str, index: usize) -> String {
        let from = format!("+1555{:07}", index);
        serde_json::json!({
            "event": "start",
            "sequenceNumber": self.next_sequence().to_string(),
            "streamSid": self.stream_sid,
            "start": {
                "streamSid": self.stream_sid,
                "accountSid": ACCOUNT_SID,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {"From": from, "To": "+15550000000"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            }
        })
        .to_string()
    }

    /// Media message number `chunk` (from 1).
    fn media(&mut self, chunk: u64) -> String {
        let sequence = self.next_sequence();
        let mut text = String::with_capacity(160 + self.payload.len());
        let _ = write!(
            text,
            r#"{{"event":"media","sequenceNumber":"{sequence}","streamSid":"{}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{}","payload":"{}"}}}}"#,
            self.stream_sid,
            (chunk - 1) * 20,
            self.payload
        );
        text
    }

    fn mark(&mut self, name: &str) -> String {
        let sequence = self.next_sequence();
        let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
        format!(
            r#"{{"event":"mark","sequenceNumber":"{sequence}","streamSid":"{}","mark":{{"name":{name}}}}}"#,
            self.stream_sid
        )
    }

    fn stop(&mut self, call_sid: &str) -> String {
        let sequence = self.next_sequence();
        format!(
            r#"{{"event":"stop","sequenceNumber":"{sequence}","streamSid":"{}","stop":{{"accountSid":"{ACCOUNT_SID}","callSid":"{call_sid}"}}}}"#,
            self.stream_sid
        )
    }
}

/// Base64 of 20 ms of a 1 kHz tone in µ-law (8 samples a cycle at 8 kHz).
pub fn caller_payload() -> Arc<str> {
    let frame: Vec<u8> = (0..FRAME_BYTES)
        .map(|i| {
            let phase = (i % 8) as f64 * std::f64::consts::TAU / 8.0;
            ulaw_encode((phase.sin() * 4000.0) as i16)
        })
        .collect();
    Arc::from(BASE64.encode(frame))
}

/// Runs one call to its end. Reports on `connected` once: the time it connected, or `None`.
pub async fn run(
    spec: CallSpec,
    payload: Arc<str>,
    window: Arc<OnceLock<Window>>,
    connected: mpsc::UnboundedSender<Option<Instant>>,
) -> CallOutcome {
    let mut outcome = CallOutcome::default();
    tokio::time::sleep_until(spec.start_at.into()).await;
    let connect = tokio_tungstenite::connect_async_with_config(spec.url.as_str(), None, true);
    let mut ws = match tokio::time::timeout(CONNECT_LIMIT, connect).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            outcome.error = Some(format!("connecting to {}: {e}", spec.url));
            let _ = connected.send(None);
            return outcome;
        }
        Err(_) => {
            outcome.error = Some(format!("connecting to {}: no answer", spec.url));
            let _ = connected.send(None);
            return outcome;
        }
    };
    let began = Instant::now();
    outcome.connected = true;
    let _ = connected.send(Some(began));

    let id = spec.run_id.wrapping_add(spec.index as u64);
    let call_sid = format!("CA{id:032x}");
    let mut out = Outgoing {
        stream_sid: format!("MZ{id:032x}"),
        payload,
        sequence: 0,
    };
    let hello = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
    let start = out.start(&call_sid, spec.index);
    let sent = async {
        ws.feed(Message::text(hello)).await?;
        ws.send(Message::text(start)).await
    };
    if let Err(e) = sent.await {
        outcome.closed_early = true;
        outcome.error = Some(format!("sending start: {e}"));
        return outcome;
    }

    let end = began + spec.duration;
    if let Err(e) = stream(&mut ws, &mut out, &window, end, &mut outcome).await {
        outcome.closed_early = true;
        outcome.error = Some(e);
        return outcome;
    }
    // Hang up as Twilio does: `stop`, then close; wait briefly for the bridge's close.
    let stop = out.stop(&call_sid);
    let _ = ws.send(Message::text(stop)).await;
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(CLOSE_LIMIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    outcome
}

/// Streams and plays until `end`; an error says why the stream ended early.
async fn stream(
    ws: &mut Socket,
    out: &mut Outgoing,
    window: &OnceLock<Window>,
    end: Instant,
    outcome: &mut CallOutcome,
) -> Result<(), String> {
    let mut player = Player::default();
    let mut audio = Vec::with_capacity(FRAME_BYTES * 8);
    let mut tick = tokio::time::interval(FRAME);
    let mut chunk = 0u64;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => {
                        return Err("the bridge closed the stream".to_owned());
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("reading: {e}")),
                };
                let echoes = receive(&text, &mut player, &mut audio, window, outcome);
                for name in echoes {
                    let mark = out.mark(&name);
                    ws.send(Message::text(mark)).await.map_err(|e| format!("echoing a mark: {e}"))?;
                }
            }
            at = tick.tick() => {
                if at.into_std() >= end {
                    return Ok(());
                }
                chunk += 1;
                ws.feed(Message::text(out.media(chunk))).await.map_err(|e| format!("sending media: {e}"))?;
                for name in player.tick() {
                    outcome.marks_echoed += 1;
                    ws.feed(Message::text(out.mark(&name))).await.map_err(|e| format!("echoing a mark: {e}"))?;
                }
                ws.flush().await.map_err(|e| format!("sending media: {e}"))?;
            }
        }
    }
}

/// Handles one message from the bridge; returns the marks to echo now.
fn receive(
    text: &str,
    player: &mut Player,
    audio: &mut Vec<u8>,
    window: &OnceLock<Window>,
    outcome: &mut CallOutcome,
) -> Vec<String> {
    let Ok(message) = serde_json::from_str::<FromBridge<'_>>(text) else {
        return Vec::new();
    };
    match (message.event.as_ref(), message.media, message.mark) {
        ("media", Some(media), _) => {
            let now = Instant::now();
            audio.clear();
            if BASE64.decode_vec(media.payload.as_bytes(), audio).is_err() {
                return Vec::new();
            }
            outcome.media_received += 1;
            if window.get().is_some_and(|w| w.contains(now)) {
                outcome.media_in_window += 1;
            }
            if let Some(sent) = marker::find(audio) {
                outcome
                    .latencies_us
                    .push(marker::now_micros().saturating_sub(sent));
            }
            player.push_audio(audio.len());
            Vec::new()
        }
        ("mark", _, Some(mark)) => {
            let echo: Vec<String> = player.push_mark(mark.name).into_iter().collect();
            outcome.marks_echoed += echo.len() as u64;
            echo
        }
        ("clear", _, _) => {
            let echoes = player.clear();
            outcome.marks_echoed += echoes.len() as u64;
            echoes
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_messages_parse_as_twilio_messages() {
        use crate::twilio::message::Inbound;
        let mut out = Outgoing {
            stream_sid: "MZ1".into(),
            payload: caller_payload(),
            sequence: 0,
        };
        let start = Inbound::parse(&out.start("CA1", 3)).expect("start parses");
        assert!(
            matches!(start, Inbound::Start { start, .. } if start.custom_parameters["From"] == "+15550000003")
        );
        let Ok(Inbound::Media { media, .. }) = Inbound::parse(&out.media(2)) else {
            panic!("media does not parse");
        };
        assert_eq!((media.chunk, media.timestamp), (Some(2), Some(20)));
        assert_eq!(media.decode().expect("base64").len(), FRAME_BYTES);
        let mark = Inbound::parse(&out.mark("r:i:\"100\"")).expect("mark parses");
        assert!(matches!(mark, Inbound::Mark { mark, .. } if mark.name == "r:i:\"100\""));
        assert!(matches!(
            Inbound::parse(&out.stop("CA1")),
            Ok(Inbound::Stop { .. })
        ));
    }

    #[test]
    fn received_media_plays_and_markers_are_timed() {
        let mut player = Player::default();
        let mut audio = Vec::new();
        let window = OnceLock::new();
        let mut outcome = CallOutcome::default();
        let mut frame = vec![0x55u8; FRAME_BYTES];
        frame[..marker::LEN].copy_from_slice(&marker::encode(marker::now_micros()));
        let media = format!(
            r#"{{"event":"media","streamSid":"MZ1","media":{{"payload":"{}"}}}}"#,
            BASE64.encode(&frame)
        );
        let mut receive_one =
            |text: &str| receive(text, &mut player, &mut audio, &window, &mut outcome);
        assert!(receive_one(&media).is_empty());
        assert!(
            receive_one(r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"a"}}"#).is_empty()
        );
        assert_eq!(
            receive_one(r#"{"event":"clear","streamSid":"MZ1"}"#),
            vec!["a".to_owned()]
        );
        assert!(receive_one("not json").is_empty());
        assert_eq!(outcome.media_received, 1);
        assert_eq!(outcome.latencies_us.len(), 1);
        assert_eq!(outcome.marks_echoed, 1);
    }
}
