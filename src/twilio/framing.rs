//! Outbound messages of one Media Stream, sans-IO: what the bridge writes to Twilio.
//!
//! Twilio plays a `media` payload of any size, so the audio of one playback segment (the
//! frames between two marks, up to 100 ms) goes out as one `media` message right before the
//! segment's `mark`, not as one message per 20 ms frame. A segment that does not end on a
//! whole frame is padded with µ-law silence, so the mark lands after every byte before it;
//! `clear` drops the segment being built.
//!
//! Messages are written by hand around a prefix made once per stream (the stream SID is
//! escaped by serde there), so each costs one allocation and one base64 pass.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::audio::AudioFormat;
use crate::audio::g711::ULAW_SILENCE;

/// Bytes in one 20 ms µ-law frame.
pub const FRAME_BYTES: usize = AudioFormat::Pcmu.frame_bytes();

/// A segment's audio and mark as Twilio messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMessages {
    /// The `media` message, if the segment had audio.
    pub media: Option<String>,
    /// 20 ms frames in `media`.
    pub frames: usize,
    /// The `mark` message.
    pub mark: String,
}

/// Builds the outbound messages of one stream.
#[derive(Debug)]
pub struct Outbox {
    /// `{"event":"media","streamSid":"…","media":{"payload":"`
    media_prefix: String,
    /// `{"event":"mark","streamSid":"…","mark":{"name":`
    mark_prefix: String,
    clear: String,
    /// Audio of the segment being built.
    segment: Vec<u8>,
}

impl Outbox {
    pub fn new(stream_sid: &str) -> Self {
        let sid = serde_json::Value::from(stream_sid).to_string();
        Self {
            media_prefix: format!(r#"{{"event":"media","streamSid":{sid},"media":{{"payload":""#),
            mark_prefix: format!(r#"{{"event":"mark","streamSid":{sid},"mark":{{"name":"#),
            clear: format!(r#"{{"event":"clear","streamSid":{sid}}}"#),
            segment: Vec::with_capacity(5 * FRAME_BYTES),
        }
    }

    /// Adds µ-law audio to the segment being built.
    pub fn play(&mut self, audio: &[u8]) {
        self.segment.extend_from_slice(audio);
    }

    /// Closes the segment with the mark named `label`.
    pub fn mark(&mut self, label: &str) -> SegmentMessages {
        let frames = self.segment.len().div_ceil(FRAME_BYTES);
        let media = (!self.segment.is_empty()).then(|| {
            self.segment.resize(frames * FRAME_BYTES, ULAW_SILENCE);
            let message = self.media(&self.segment);
            self.segment.clear();
            message
        });
        let mut mark = String::with_capacity(self.mark_prefix.len() + label.len() + 8);
        mark.push_str(&self.mark_prefix);
        mark.push_str(&serde_json::Value::from(label).to_string());
        mark.push_str("}}");
        SegmentMessages {
            media,
            frames,
            mark,
        }
    }

    /// Drops the segment being built; the `clear` message.
    pub fn clear(&mut self) -> String {
        self.segment.clear();
        self.clear.clone()
    }

    /// Bytes of the segment being built.
    pub fn pending(&self) -> usize {
        self.segment.len()
    }

    fn media(&self, audio: &[u8]) -> String {
        let mut json =
            String::with_capacity(self.media_prefix.len() + audio.len().div_ceil(3) * 4 + 3);
        json.push_str(&self.media_prefix);
        BASE64.encode_string(audio, &mut json);
        json.push_str("\"}}");
        json
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("valid json")
    }

    fn ramp(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_segment_is_one_media_message_then_its_mark() {
        let mut out = Outbox::new("MZ1");
        let audio = ramp(5 * FRAME_BYTES);
        out.play(&audio[..300]);
        out.play(&audio[300..]);
        let m = out.mark("1:item:100");
        assert_eq!(m.frames, 5);
        let media = parse(m.media.as_deref().expect("media"));
        assert_eq!(media["event"], "media");
        assert_eq!(media["streamSid"], "MZ1");
        let payload = BASE64
            .decode(media["media"]["payload"].as_str().expect("payload"))
            .expect("base64");
        assert_eq!(payload, audio);
        assert_eq!(
            parse(&m.mark),
            json!({"event":"mark","streamSid":"MZ1","mark":{"name":"1:item:100"}})
        );
        assert_eq!(out.pending(), 0);
    }

    #[test]
    fn a_partial_frame_is_padded_before_the_mark() {
        let mut out = Outbox::new("MZ1");
        out.play(&ramp(400));
        let m = out.mark("2:a:60");
        assert_eq!(m.frames, 3);
        let media = parse(m.media.as_deref().expect("media"));
        let payload = BASE64
            .decode(media["media"]["payload"].as_str().expect("payload"))
            .expect("base64");
        assert_eq!(payload[..400], ramp(400)[..]);
        assert!(payload[400..].iter().all(|&b| b == ULAW_SILENCE));
    }

    #[test]
    fn a_mark_without_audio_is_only_a_mark_and_clear_drops_the_segment() {
        let mut out = Outbox::new("MZ\"odd");
        out.play(&ramp(100));
        assert_eq!(
            parse(&out.clear()),
            json!({"event":"clear","streamSid":"MZ\"odd"})
        );
        let m = out.mark("3:a:0");
        assert_eq!((m.media, m.frames), (None, 0));
        assert_eq!(parse(&m.mark)["streamSid"], "MZ\"odd");
    }
}
