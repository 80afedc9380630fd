//! The text of every event the load model sends, in the GA shapes the bridge's parser
//! (`realtime::event::ServerEvent`) requires: `response_id` and `item_id` on audio deltas and
//! their `done`, `response_id` and an `item` on output items, a `response` with an `id` on
//! `response.created` and `response.done`.
//!
//! Audio deltas are the hot path, so they are cheap: the base64 of a delta's audio is computed
//! once per format, the text of a response's deltas once per response, and every delta after
//! the first is a reference-counted copy of that text. The first delta of a µ-law response
//! carries the latency marker: its text is copied once and the first 24 base64 characters are
//! overwritten with the marker's just before it is written. Deltas carry no `event_id` (the
//! bridge reads none); the other events do.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::marker;

/// The audio format the session asked for in `session.audio.output.format.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `audio/pcmu`: G.711 µ-law, 8 bytes per millisecond. Carries the latency marker.
    Pcmu,
    /// `audio/pcma`: G.711 A-law, 8 bytes per millisecond.
    Pcma,
    /// `audio/pcm`: PCM16 at 24 kHz, 48 bytes per millisecond.
    Pcm16,
}

impl OutputFormat {
    /// The format named by a GA format object's `type`.
    pub fn from_type(kind: &str) -> Option<Self> {
        match kind {
            "audio/pcmu" => Some(Self::Pcmu),
            "audio/pcma" => Some(Self::Pcma),
            "audio/pcm" => Some(Self::Pcm16),
            _ => None,
        }
    }

    /// Bytes of audio per millisecond.
    pub const fn bytes_per_ms(self) -> usize {
        match self {
            Self::Pcmu | Self::Pcma => 8,
            Self::Pcm16 => 48,
        }
    }

    /// Whether the first delta of a response carries the latency marker: only µ-law passes
    /// through the bridge untouched.
    pub const fn carries_marker(self) -> bool {
        matches!(self, Self::Pcmu)
    }

    /// The constant audio: a steady µ-law/A-law code, or a small constant PCM16 sample.
    fn fill(self, len: usize) -> Vec<u8> {
        match self {
            Self::Pcmu | Self::Pcma => vec![0x55; len],
            Self::Pcm16 => [0x00, 0x02].repeat(len / 2),
        }
    }
}

/// Bytes of the first delta re-encoded to stamp the marker: the marker and two bytes of audio,
/// 24 base64 characters that end on a base64 group boundary.
const STAMP_BYTES: usize = 18;

/// The texts of one connection's events.
#[derive(Debug)]
pub struct EventTexts {
    format: OutputFormat,
    /// Base64 of a whole delta of constant audio, and of the shorter last one.
    whole: Payload,
    last: Option<Payload>,
    next_event: u64,
}

#[derive(Debug)]
struct Payload {
    ms: u32,
    base64: String,
}

impl Payload {
    fn new(format: OutputFormat, ms: u32) -> Self {
        let bytes = format.fill(ms as usize * format.bytes_per_ms());
        Self {
            ms,
            base64: BASE64.encode(bytes),
        }
    }
}

/// The delta texts of one response.
#[derive(Debug)]
pub struct ResponseDeltas {
    /// A whole delta, shared by every delta after the first.
    whole: Utf8Bytes,
    /// The last delta, when it is shorter.
    last: Option<(u32, Utf8Bytes)>,
    /// Where the base64 audio starts in the texts.
    payload_at: usize,
    carries_marker: bool,
    fill: u8,
}

impl ResponseDeltas {
    /// The text of a delta of `ms` milliseconds; the first of a response (`first`) carries the
    /// marker, stamped with the wall clock now.
    pub fn delta(&self, ms: u32, first: bool) -> Utf8Bytes {
        let text = match &self.last {
            Some((last_ms, last)) if *last_ms == ms => last,
            _ => &self.whole,
        };
        if !(first && self.carries_marker) {
            return text.clone();
        }
        let mut stamped = text.as_str().to_owned();
        let mut head = [self.fill; STAMP_BYTES];
        head[..marker::LEN].copy_from_slice(&marker::encode(marker::now_micros()));
        // A delta shorter than the stamp is re-encoded whole.
        let audio = (ms as usize * 8).min(STAMP_BYTES);
        let encoded = BASE64.encode(&head[..audio]);
        stamped.replace_range(self.payload_at..self.payload_at + encoded.len(), &encoded);
        Utf8Bytes::from(stamped)
    }
}

impl EventTexts {
    /// Texts for deltas of `delta_ms` in `format`, responses of `talk_ms`.
    pub fn new(format: OutputFormat, delta_ms: u32, talk_ms: u32) -> Self {
        let rest = talk_ms % delta_ms;
        Self {
            format,
            whole: Payload::new(format, delta_ms),
            last: (rest != 0).then(|| Payload::new(format, rest)),
            next_event: 0,
        }
    }

    /// The format the deltas are in.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    fn event_id(&mut self) -> u64 {
        self.next_event += 1;
        self.next_event
    }

    pub fn session_created(&mut self, session: &str) -> String {
        let e = self.event_id();
        format!(
            r#"{{"type":"session.created","event_id":"evt_{e}","session":{{"id":"{session}","object":"realtime.session","type":"realtime"}}}}"#
        )
    }

    pub fn session_updated(&mut self, session: &str) -> String {
        let e = self.event_id();
        format!(
            r#"{{"type":"session.updated","event_id":"evt_{e}","session":{{"id":"{session}","object":"realtime.session","type":"realtime"}}}}"#
        )
    }

    pub fn response_created(&mut self, response: &str) -> String {
        let e = self.event_id();
        format!(
            r#"{{"type":"response.created","event_id":"evt_{e}","response":{{"id":"{response}","object":"realtime.response","status":"in_progress","output":[]}}}}"#
        )
    }

    pub fn item_added(&mut self, response: &str, item: &str) -> String {
        let e = self.event_id();
        format!(
            r#"{{"type":"response.output_item.added","event_id":"evt_{e}","response_id":"{response}","output_index":0,"item":{{"id":"{item}","object":"realtime.item","type":"message","status":"in_progress","role":"assistant","content":[]}}}}"#
        )
    }

    /// The delta texts of one response.
    pub fn deltas(&self, response: &str, item: &str) -> ResponseDeltas {
        let head = format!(
            r#"{{"type":"response.output_audio.delta","response_id":"{response}","item_id":"{item}","output_index":0,"content_index":0,"delta":""#
        );
        let text = |p: &Payload| Utf8Bytes::from(format!("{head}{}\"}}", p.base64));
        ResponseDeltas {
            whole: text(&self.whole),
            last: self.last.as_ref().map(|p| (p.ms, text(p))),
            payload_at: head.len(),
            carries_marker: self.format.carries_marker(),
            fill: self.format.fill(1).first().copied().unwrap_or(0x55),
        }
    }

    pub fn audio_done(&mut self, response: &str, item: &str) -> String {
        let e = self.event_id();
        format!(
            r#"{{"type":"response.output_audio.done","event_id":"evt_{e}","response_id":"{response}","item_id":"{item}","output_index":0,"content_index":0}}"#
        )
    }

    pub fn item_done(&mut self, response: &str, item: &str) -> String {
        let e = self.event_id();
        format!(
            r#"{{"type":"response.output_item.done","event_id":"evt_{e}","response_id":"{response}","output_index":0,"item":{}}}"#,
            done_item(item)
        )
    }

    pub fn response_done(&mut self, response: &str, item: &str) -> String {
        let e = self.event_id();
        format!(
            r#"{{"type":"response.done","event_id":"evt_{e}","response":{{"id":"{response}","object":"realtime.response","status":"completed","output":[{}]}}}}"#,
            done_item(item)
        )
    }
}

fn done_item(item: &str) -> String {
    format!(
        r#"{{"id":"{item}","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{{"type":"output_audio","transcript":""}}]}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::event::ServerEvent;

    fn audio_of(text: &str) -> Vec<u8> {
        let Ok(ServerEvent::AudioDelta {
            response_id,
            item_id,
            delta,
            ..
        }) = ServerEvent::parse(text)
        else {
            panic!("not an audio delta: {text}");
        };
        assert_eq!(
            (response_id.as_str(), item_id.as_str()),
            ("resp_1", "item_1")
        );
        BASE64.decode(delta).expect("base64")
    }

    #[test]
    fn every_event_parses_as_the_bridge_reads_it() {
        let mut texts = EventTexts::new(OutputFormat::Pcmu, 20, 3000);
        let parsed = |t: &str| ServerEvent::parse(t).expect("parses");
        assert!(matches!(
            parsed(&texts.session_created("sess_1")),
            ServerEvent::SessionCreated { .. }
        ));
        assert!(matches!(
            parsed(&texts.session_updated("sess_1")),
            ServerEvent::SessionUpdated { .. }
        ));
        assert!(matches!(
            parsed(&texts.response_created("resp_1")),
            ServerEvent::ResponseCreated { response } if response.id == "resp_1"
        ));
        assert!(matches!(
            parsed(&texts.item_added("resp_1", "item_1")),
            ServerEvent::OutputItemAdded { item, .. } if item.id == "item_1"
        ));
        assert!(matches!(
            parsed(&texts.audio_done("resp_1", "item_1")),
            ServerEvent::AudioDone { item_id, .. } if item_id == "item_1"
        ));
        assert!(matches!(
            parsed(&texts.item_done("resp_1", "item_1")),
            ServerEvent::OutputItemDone { item, .. } if item.id == "item_1"
        ));
        assert!(matches!(
            parsed(&texts.response_done("resp_1", "item_1")),
            ServerEvent::ResponseDone { response } if response.output[0].id == "item_1"
        ));
    }

    #[test]
    fn the_first_pcmu_delta_carries_the_marker_the_others_do_not() {
        let texts = EventTexts::new(OutputFormat::Pcmu, 20, 3000);
        let deltas = texts.deltas("resp_1", "item_1");
        let before = marker::now_micros();
        let first = audio_of(&deltas.delta(20, true));
        assert_eq!(first.len(), 160);
        let stamped = marker::decode(&first).expect("marker");
        assert!(stamped >= before);
        assert!(first[marker::LEN..].iter().all(|&b| b == 0x55));
        let next = audio_of(&deltas.delta(20, false));
        assert_eq!(next, vec![0x55; 160]);
    }

    #[test]
    fn short_deltas_and_pcm16() {
        // 50 ms in deltas of 20: the last one is 10 ms.
        let texts = EventTexts::new(OutputFormat::Pcmu, 20, 50);
        let deltas = texts.deltas("resp_1", "item_1");
        assert_eq!(audio_of(&deltas.delta(10, false)).len(), 80);
        // A 2 ms delta is all marker.
        let tiny = EventTexts::new(OutputFormat::Pcmu, 2, 10).deltas("resp_1", "item_1");
        let audio = audio_of(&tiny.delta(2, true));
        assert_eq!(audio.len(), 16);
        assert!(marker::decode(&audio).is_some());

        let pcm = EventTexts::new(OutputFormat::Pcm16, 20, 3000).deltas("resp_1", "item_1");
        let audio = audio_of(&pcm.delta(20, true));
        assert_eq!(audio.len(), 960);
        assert!(marker::find(&audio).is_none());
    }

    #[test]
    fn formats_by_type() {
        assert_eq!(
            OutputFormat::from_type("audio/pcm"),
            Some(OutputFormat::Pcm16)
        );
        assert_eq!(
            OutputFormat::from_type("audio/pcmu"),
            Some(OutputFormat::Pcmu)
        );
        assert_eq!(OutputFormat::from_type("g711_ulaw"), None);
    }
}
