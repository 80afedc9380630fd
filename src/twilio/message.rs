//! Twilio Media Streams WebSocket messages (JSON text frames).
//!
//! Inbound: `connected`, `start`, `media`, `mark`, `dtmf`, `stop`; any other event name parses
//! to [`Inbound::Unknown`]. Twilio encodes `sequenceNumber`, `chunk` and `timestamp` as JSON
//! strings in its examples; they are accepted as strings or numbers, and a value that is neither
//! a usable number nor a numeric string reads as absent. Outbound: `media`, `mark`, `clear`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// A message that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The text frame is not a Media Streams message.
    #[error("malformed Media Streams message: {0}")]
    Json(#[source] serde_json::Error),
    /// A `media` payload is not valid base64.
    #[error("media payload is not valid base64: {0}")]
    Payload(#[from] base64::DecodeError),
    /// An outbound message could not be serialised.
    #[error("could not encode Media Streams message: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A message from Twilio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Inbound {
    /// First frame of every stream.
    Connected {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// Stream metadata; sent once, right after `connected`.
    Start {
        #[serde(
            rename = "sequenceNumber",
            default,
            deserialize_with = "lenient_u64",
            skip_serializing_if = "Option::is_none"
        )]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default, skip_serializing_if = "Option::is_none")]
        stream_sid: Option<String>,
        start: StartInfo,
    },
    /// Caller audio.
    Media {
        #[serde(
            rename = "sequenceNumber",
            default,
            deserialize_with = "lenient_u64",
            skip_serializing_if = "Option::is_none"
        )]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default, skip_serializing_if = "Option::is_none")]
        stream_sid: Option<String>,
        media: InboundMedia,
    },
    /// Echo of a mark we sent: everything queued before it was played or cleared.
    Mark {
        #[serde(
            rename = "sequenceNumber",
            default,
            deserialize_with = "lenient_u64",
            skip_serializing_if = "Option::is_none"
        )]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default, skip_serializing_if = "Option::is_none")]
        stream_sid: Option<String>,
        mark: MarkName,
    },
    /// A DTMF digit pressed by the caller.
    Dtmf {
        #[serde(
            rename = "sequenceNumber",
            default,
            deserialize_with = "lenient_u64",
            skip_serializing_if = "Option::is_none"
        )]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default, skip_serializing_if = "Option::is_none")]
        stream_sid: Option<String>,
        dtmf: DtmfInfo,
    },
    /// The stream stopped or the call ended; Twilio closes the socket next.
    Stop {
        #[serde(
            rename = "sequenceNumber",
            default,
            deserialize_with = "lenient_u64",
            skip_serializing_if = "Option::is_none"
        )]
        sequence_number: Option<u64>,
        #[serde(rename = "streamSid", default, skip_serializing_if = "Option::is_none")]
        stream_sid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop: Option<StopInfo>,
    },
    /// An event this module does not know.
    #[serde(other)]
    Unknown,
}

impl Inbound {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        serde_json::from_str(text).map_err(MessageError::Json)
    }

    /// The event name, for logs.
    pub const fn event_name(&self) -> &'static str {
        match self {
            Self::Connected { .. } => "connected",
            Self::Start { .. } => "start",
            Self::Media { .. } => "media",
            Self::Mark { .. } => "mark",
            Self::Dtmf { .. } => "dtmf",
            Self::Stop { .. } => "stop",
            Self::Unknown => "unknown",
        }
    }
}

/// The payload of a `media` message, borrowed from its text: the caller's audio path reads
/// 50 of these a second per call, so it copies nothing (see [`MediaRef::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRef<'a> {
    /// `inbound` or `outbound`, when given.
    pub track: Option<&'a str>,
    /// Base64 µ-law.
    pub payload: &'a str,
}

impl<'a> MediaRef<'a> {
    /// Reads `text` as a `media` message without copying it. `None` when it is another
    /// message, or one this path cannot borrow from (an escaped string): parse those with
    /// [`Inbound::parse`], which also reports what is wrong.
    pub fn parse(text: &'a str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Message<'a> {
            #[serde(borrow)]
            event: &'a str,
            #[serde(borrow)]
            media: Option<Media<'a>>,
        }
        #[derive(Deserialize)]
        struct Media<'a> {
            #[serde(borrow, default)]
            track: Option<&'a str>,
            #[serde(borrow)]
            payload: &'a str,
        }
        let message: Message<'a> = serde_json::from_str(text).ok()?;
        let media = message.media.filter(|_| message.event == "media")?;
        Some(Self {
            track: media.track,
            payload: media.payload,
        })
    }

    /// Whether this is the caller's audio (bidirectional streams only deliver `inbound`).
    pub fn is_inbound(&self) -> bool {
        self.track.is_none_or(|t| t == "inbound")
    }
}

/// The `start` object: who the call is and how its audio is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartInfo {
    #[serde(rename = "streamSid")]
    pub stream_sid: String,
    #[serde(rename = "accountSid", default)]
    pub account_sid: String,
    #[serde(rename = "callSid")]
    pub call_sid: String,
    #[serde(default)]
    pub tracks: Vec<String>,
    /// The `<Parameter>`s of the `<Stream>` TwiML. Non-string values are kept as their JSON text.
    #[serde(
        rename = "customParameters",
        default,
        deserialize_with = "lenient_parameters"
    )]
    pub custom_parameters: BTreeMap<String, String>,
    #[serde(
        rename = "mediaFormat",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub media_format: Option<MediaFormat>,
}

/// The audio encoding of the stream (always µ-law, 8 kHz, mono on Twilio).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaFormat {
    #[serde(default)]
    pub encoding: String,
    #[serde(
        rename = "sampleRate",
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub sample_rate: Option<u64>,
    #[serde(
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub channels: Option<u64>,
}

/// The `media` object of an inbound media message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMedia {
    /// `inbound` or `outbound`; bidirectional streams only deliver `inbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// Media message counter, from 1.
    #[serde(
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub chunk: Option<u64>,
    /// Milliseconds since the stream started.
    #[serde(
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<u64>,
    /// Base64 µ-law audio.
    pub payload: String,
}

impl InboundMedia {
    /// Whether the audio comes from the caller (a missing track is taken as the caller's).
    pub fn is_inbound(&self) -> bool {
        self.track.as_deref().is_none_or(|t| t == "inbound")
    }

    /// Decodes the base64 payload into µ-law bytes.
    pub fn decode(&self) -> Result<Vec<u8>, MessageError> {
        Ok(BASE64.decode(self.payload.as_bytes())?)
    }
}

/// The `mark` object, inbound and outbound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkName {
    pub name: String,
}

/// The `dtmf` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtmfInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    pub digit: String,
}

impl DtmfInfo {
    /// The digit as a DTMF character (`0-9`, `*`, `#`, `A-D`); `None` if it is anything else.
    pub fn digit_char(&self) -> Option<char> {
        let mut chars = self.digit.chars();
        let c = chars.next()?.to_ascii_uppercase();
        let valid = c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D');
        (valid && chars.next().is_none()).then_some(c)
    }
}

/// The `stop` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopInfo {
    #[serde(
        rename = "accountSid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub account_sid: Option<String>,
    #[serde(rename = "callSid", default, skip_serializing_if = "Option::is_none")]
    pub call_sid: Option<String>,
}

/// A message to Twilio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Outbound {
    /// Audio to queue for playback (base64 µ-law, 8 kHz, mono).
    Media {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        media: OutboundMedia,
    },
    /// A mark Twilio echoes once the audio queued before it has played.
    Mark {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        mark: MarkName,
    },
    /// Discards queued audio; Twilio echoes every pending mark.
    Clear {
        #[serde(rename = "streamSid")]
        stream_sid: String,
    },
}

/// The `media` object of an outbound media message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMedia {
    pub payload: String,
}

impl Outbound {
    /// A `media` message carrying `audio` (raw µ-law bytes).
    pub fn media(stream_sid: &str, audio: &[u8]) -> Self {
        Self::Media {
            stream_sid: stream_sid.to_owned(),
            media: OutboundMedia {
                payload: BASE64.encode(audio),
            },
        }
    }

    /// A `mark` message named `name`.
    pub fn mark(stream_sid: &str, name: &str) -> Self {
        Self::Mark {
            stream_sid: stream_sid.to_owned(),
            mark: MarkName {
                name: name.to_owned(),
            },
        }
    }

    /// A `clear` message.
    pub fn clear(stream_sid: &str) -> Self {
        Self::Clear {
            stream_sid: stream_sid.to_owned(),
        }
    }

    /// The JSON text frame.
    pub fn to_json(&self) -> Result<String, MessageError> {
        serde_json::to_string(self).map_err(MessageError::Encode)
    }
}

/// Reads a counter sent as a JSON number or a numeric string.
fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct LenientU64;

    impl<'de> Visitor<'de> for LenientU64 {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer or a string holding one")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(u64::try_from(v).ok())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // Whole, non-negative values below 2^64 convert exactly; anything else is unusable.
            let whole =
                v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 18_446_744_073_709_551_616.0;
            Ok(whole.then_some(v as u64))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.trim().parse().ok())
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
    }

    deserializer.deserialize_any(LenientU64)
}

/// Reads `customParameters` as strings, keeping non-string values as their JSON text.
fn lenient_parameters<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STREAM: &str = "MZ00000000000000000000000000000001";

    fn round_trip(text: &str) -> Inbound {
        let parsed = Inbound::parse(text).expect("example parses");
        let again = serde_json::to_string(&parsed).expect("serialises");
        assert_eq!(Inbound::parse(&again).expect("re-parses"), parsed);
        parsed
    }

    #[test]
    fn connected() {
        let msg = round_trip(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#);
        assert_eq!(
            msg,
            Inbound::Connected {
                protocol: Some("Call".into()),
                version: Some("1.0.0".into())
            }
        );
    }

    #[test]
    fn start() {
        let text = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ00000000000000000000000000000001",
            "start":{"streamSid":"MZ00000000000000000000000000000001","accountSid":"AC1","callSid":"CA1",
            "tracks":["inbound"],"customParameters":{"tenant":"acme","token":"t0k"},
            "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        let Inbound::Start {
            sequence_number,
            stream_sid,
            start,
        } = round_trip(text)
        else {
            panic!("not a start");
        };
        assert_eq!(sequence_number, Some(1));
        assert_eq!(stream_sid.as_deref(), Some(STREAM));
        assert_eq!(start.account_sid, "AC1");
        assert_eq!(start.call_sid, "CA1");
        assert_eq!(start.tracks, vec!["inbound".to_owned()]);
        assert_eq!(start.custom_parameters["tenant"], "acme");
        let format = start.media_format.expect("media format");
        assert_eq!(format.encoding, "audio/x-mulaw");
        assert_eq!(format.sample_rate, Some(8000));
        assert_eq!(format.channels, Some(1));
    }

    #[test]
    fn media_with_string_or_number_counters() {
        let text = r#"{"event":"media","sequenceNumber":"4","streamSid":"MZ1",
            "media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAEC/w=="}}"#;
        let Inbound::Media {
            sequence_number,
            media,
            ..
        } = round_trip(text)
        else {
            panic!("not media");
        };
        assert_eq!(sequence_number, Some(4));
        assert_eq!(media.chunk, Some(2));
        assert_eq!(media.timestamp, Some(5));
        assert!(media.is_inbound());
        assert_eq!(media.decode().expect("base64"), vec![0, 1, 2, 255]);

        let numeric = json!({"event":"media","sequenceNumber":4,"media":{"chunk":2,"timestamp":5,"payload":""}});
        let Ok(Inbound::Media { media, .. }) = Inbound::parse(&numeric.to_string()) else {
            panic!("numeric counters rejected");
        };
        assert_eq!((media.chunk, media.timestamp), (Some(2), Some(5)));

        let junk = json!({"event":"media","sequenceNumber":"x","media":{"chunk":-1,"timestamp":1.5,"payload":""}});
        let Ok(Inbound::Media {
            sequence_number,
            media,
            ..
        }) = Inbound::parse(&junk.to_string())
        else {
            panic!("junk counters rejected");
        };
        assert_eq!(
            (sequence_number, media.chunk, media.timestamp),
            (None, None, None)
        );
    }

    #[test]
    fn bad_base64_is_an_error() {
        let media = InboundMedia {
            track: None,
            chunk: None,
            timestamp: None,
            payload: "not base64!".into(),
        };
        assert!(matches!(media.decode(), Err(MessageError::Payload(_))));
    }

    #[test]
    fn dtmf_mark_stop() {
        let dtmf = round_trip(
            r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#,
        );
        let Inbound::Dtmf { dtmf, .. } = dtmf else {
            panic!("not dtmf");
        };
        assert_eq!(dtmf.digit_char(), Some('1'));

        let mark = round_trip(
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"my label"}}"#,
        );
        assert!(matches!(mark, Inbound::Mark { mark, .. } if mark.name == "my label"));

        let stop = round_trip(
            r#"{"event":"stop","sequenceNumber":"5","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#,
        );
        assert!(
            matches!(stop, Inbound::Stop { stop: Some(s), .. } if s.call_sid.as_deref() == Some("CA1"))
        );
    }

    #[test]
    fn dtmf_digit_validation() {
        let digit = |d: &str| {
            DtmfInfo {
                track: None,
                digit: d.into(),
            }
            .digit_char()
        };
        assert_eq!(digit("#"), Some('#'));
        assert_eq!(digit("b"), Some('B'));
        assert_eq!(digit(""), None);
        assert_eq!(digit("12"), None);
        assert_eq!(digit("x"), None);
    }

    #[test]
    fn unknown_and_malformed() {
        assert_eq!(
            Inbound::parse(r#"{"event":"something-new","x":1}"#).expect("parses"),
            Inbound::Unknown
        );
        assert!(matches!(Inbound::parse("{"), Err(MessageError::Json(_))));
        assert!(matches!(
            Inbound::parse(r#"{"event":"media"}"#),
            Err(MessageError::Json(_))
        ));
    }

    #[test]
    fn custom_parameters_non_strings() {
        let text = r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":{"n":7,"s":"x"}}}"#;
        let Ok(Inbound::Start { start, .. }) = Inbound::parse(text) else {
            panic!("start rejected");
        };
        assert_eq!(start.custom_parameters["n"], "7");
        assert_eq!(start.custom_parameters["s"], "x");
        assert_eq!(start.account_sid, "");
    }

    #[test]
    fn outbound_matches_documented_shapes() {
        let media = Outbound::media("MZ1", &[0xFF, 0x7F]);
        let value: serde_json::Value =
            serde_json::from_str(&media.to_json().expect("encodes")).expect("json");
        assert_eq!(
            value,
            json!({"event":"media","streamSid":"MZ1","media":{"payload":"/38="}})
        );

        let mark = Outbound::mark("MZ1", "resp_123:item_abc:4800");
        let value: serde_json::Value =
            serde_json::from_str(&mark.to_json().expect("encodes")).expect("json");
        assert_eq!(
            value,
            json!({"event":"mark","streamSid":"MZ1","mark":{"name":"resp_123:item_abc:4800"}})
        );

        let clear = Outbound::clear("MZ1");
        let text = clear.to_json().expect("encodes");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).expect("json"),
            json!({"event":"clear","streamSid":"MZ1"})
        );
        for msg in [media, mark, clear] {
            let text = msg.to_json().expect("encodes");
            assert_eq!(
                serde_json::from_str::<Outbound>(&text).expect("decodes"),
                msg
            );
        }
    }

    #[test]
    fn media_is_read_without_copying_and_other_messages_are_not_media() {
        let text = r#"{"event":"media","sequenceNumber":"4","streamSid":"MZ1",
            "media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAEC/w=="}}"#;
        let media = MediaRef::parse(text).expect("media");
        assert_eq!(media.payload, "AAEC/w==");
        assert!(media.is_inbound());
        let outbound = r#"{"event":"media","media":{"track":"outbound","payload":"AA=="}}"#;
        assert!(!MediaRef::parse(outbound).expect("media").is_inbound());
        // Not media, or not borrowable: the general parse takes them.
        assert_eq!(
            MediaRef::parse(r#"{"event":"mark","mark":{"name":"1"}}"#),
            None
        );
        assert_eq!(MediaRef::parse(r#"{"event":"media","media":{}}"#), None);
        assert_eq!(
            MediaRef::parse(r#"{"event":"media","media":{"payload":"AA\/w=="}}"#),
            None
        );
        assert_eq!(MediaRef::parse("{not json"), None);
    }
}
