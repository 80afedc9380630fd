//! The leg's codec: RTP payloads ↔ audio in the leg's format, 20 ms at a time.
//!
//! For G.711 (PCMU, PCMA) the RTP payload *is* the leg format, so both directions copy bytes.
//! With the `opus` feature, Opus legs carry PCM16 at 24 kHz: payloads are decoded with a
//! 24 kHz mono decoder (packet-loss concealment for missing packets) and 20 ms frames are
//! encoded with a VOIP encoder (complexity 5, in-band FEC). Opus's RTP clock is always 48 kHz
//! (RFC 7587 §4.1), so one 20 ms frame advances the timestamp by 960.
//!
//! [`PayloadDecoder`] is what the jitter buffer needs from a codec; [`Codec`] implements it.

use crate::audio::AudioFormat;

/// Duration of one frame, in milliseconds.
pub const FRAME_MS: u32 = 20;

/// Errors of encoding or decoding audio.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("audio frame of {actual} bytes, expected {expected}")]
    FrameSize { expected: usize, actual: usize },
    #[cfg(feature = "opus")]
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// The codec negotiated for a SIP leg's audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaCodec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// Opus (RFC 7587), mono, dynamic payload type; the leg carries PCM16 at 24 kHz.
    #[cfg(feature = "opus")]
    Opus,
}

impl MediaCodec {
    /// The audio format the leg exchanges with the call (one 20 ms frame per event/command).
    pub const fn leg_format(self) -> AudioFormat {
        match self {
            Self::Pcmu => AudioFormat::Pcmu,
            Self::Pcma => AudioFormat::Pcma,
            #[cfg(feature = "opus")]
            Self::Opus => AudioFormat::Pcm16,
        }
    }

    /// The RTP clock rate in Hz.
    pub const fn clock_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8_000,
            #[cfg(feature = "opus")]
            Self::Opus => 48_000,
        }
    }

    /// RTP timestamp units in one 20 ms frame.
    pub const fn frame_timestamp_units(self) -> u32 {
        self.clock_rate() / 1000 * FRAME_MS
    }

    /// The static payload type (RFC 3551), if the codec has one.
    pub const fn static_payload_type(self) -> Option<u8> {
        match self {
            Self::Pcmu => Some(0),
            Self::Pcma => Some(8),
            #[cfg(feature = "opus")]
            Self::Opus => None,
        }
    }

    /// The encoding name as written in `a=rtpmap`.
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            #[cfg(feature = "opus")]
            Self::Opus => "opus",
        }
    }
}

/// What the jitter buffer needs from a codec: payloads and gaps turned into leg-format bytes.
pub trait PayloadDecoder {
    /// Appends the audio of one RTP payload to `out`.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Appends `bytes` bytes standing in for audio that was lost.
    fn conceal(&mut self, bytes: usize, out: &mut Vec<u8>);
    /// Appends `bytes` bytes of silence for time the sender sent nothing.
    fn silence(&mut self, bytes: usize, out: &mut Vec<u8>);
}

/// The codec state of one stream: pass-through for G.711, encoder and decoder for Opus.
#[derive(Debug)]
pub struct Codec {
    kind: MediaCodec,
    #[cfg(feature = "opus")]
    opus: Option<opus_state::OpusState>,
}

impl Codec {
    /// Creates the codec state (for Opus, the encoder and decoder).
    pub fn new(kind: MediaCodec) -> Result<Self, CodecError> {
        Ok(Self {
            kind,
            #[cfg(feature = "opus")]
            opus: match kind {
                MediaCodec::Opus => Some(opus_state::OpusState::new()?),
                MediaCodec::Pcmu | MediaCodec::Pcma => None,
            },
        })
    }

    pub const fn kind(&self) -> MediaCodec {
        self.kind
    }

    /// Encodes exactly one 20 ms leg-format frame into an RTP payload.
    pub fn encode(&mut self, frame: &[u8]) -> Result<Vec<u8>, CodecError> {
        let expected = self.kind.leg_format().frame_bytes();
        if frame.len() != expected {
            return Err(CodecError::FrameSize {
                expected,
                actual: frame.len(),
            });
        }
        #[cfg(feature = "opus")]
        if let Some(opus) = self.opus.as_mut() {
            return opus.encode(frame);
        }
        Ok(frame.to_vec())
    }

    /// The payload of one 20 ms frame of silence, sent when nothing else is queued.
    pub fn silence_payload(&mut self) -> Result<Vec<u8>, CodecError> {
        #[cfg(feature = "opus")]
        if self.opus.is_some() {
            return opus_state::OpusState::silence_payload();
        }
        Ok(self.kind.leg_format().silence_frame())
    }

    fn silence_byte(&self) -> u8 {
        match self.kind {
            MediaCodec::Pcmu => crate::audio::g711::ULAW_SILENCE,
            MediaCodec::Pcma => crate::audio::g711::ALAW_SILENCE,
            #[cfg(feature = "opus")]
            MediaCodec::Opus => 0,
        }
    }
}

impl PayloadDecoder for Codec {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if payload.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "opus")]
        if let Some(opus) = self.opus.as_mut() {
            return opus.decode(payload, out);
        }
        out.extend_from_slice(payload);
        Ok(())
    }

    fn conceal(&mut self, bytes: usize, out: &mut Vec<u8>) {
        #[cfg(feature = "opus")]
        if let Some(opus) = self.opus.as_mut() {
            opus.conceal(bytes, out);
            return;
        }
        self.silence(bytes, out);
    }

    fn silence(&mut self, bytes: usize, out: &mut Vec<u8>) {
        let byte = self.silence_byte();
        out.resize(out.len() + bytes, byte);
    }
}

#[cfg(feature = "opus")]
mod opus_state {
    //! libopus encoder and decoder at 24 kHz mono.

    use super::CodecError;

    const RATE: u32 = 24_000;
    /// Samples in one 20 ms frame at 24 kHz.
    const FRAME_SAMPLES: usize = 480;
    /// Samples in the longest Opus packet (120 ms) at 24 kHz.
    const MAX_SAMPLES: usize = 2_880;
    /// Packet-loss concealment works in multiples of 2.5 ms.
    const PLC_QUANTUM: usize = 60;
    /// Largest Opus packet (RFC 6716 §3.2.1).
    const MAX_PACKET: usize = 1_275;
    /// Expected loss in percent; in-band FEC is only produced when this is above zero.
    const EXPECTED_LOSS_PERCENT: i32 = 5;

    pub(super) struct OpusState {
        encoder: opus::Encoder,
        decoder: opus::Decoder,
        pcm: Vec<i16>,
    }

    impl std::fmt::Debug for OpusState {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("OpusState").finish_non_exhaustive()
        }
    }

    impl OpusState {
        pub(super) fn new() -> Result<Self, CodecError> {
            Ok(Self {
                encoder: encoder()?,
                decoder: opus::Decoder::new(RATE, opus::Channels::Mono)?,
                pcm: vec![0; MAX_SAMPLES],
            })
        }

        /// One silent frame, from an encoder of its own so the stream encoder's state is
        /// untouched.
        pub(super) fn silence_payload() -> Result<Vec<u8>, CodecError> {
            Ok(encoder()?.encode_vec(&[0i16; FRAME_SAMPLES], MAX_PACKET)?)
        }

        pub(super) fn encode(&mut self, frame: &[u8]) -> Result<Vec<u8>, CodecError> {
            let samples: Vec<i16> = frame
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            Ok(self.encoder.encode_vec(&samples, MAX_PACKET)?)
        }

        pub(super) fn decode(
            &mut self,
            payload: &[u8],
            out: &mut Vec<u8>,
        ) -> Result<(), CodecError> {
            let n = self.decoder.decode(payload, &mut self.pcm, false)?;
            push_samples(&self.pcm[..n.min(MAX_SAMPLES)], out);
            Ok(())
        }

        pub(super) fn conceal(&mut self, bytes: usize, out: &mut Vec<u8>) {
            let mut samples = bytes / 2;
            while samples > 0 {
                let want = samples.min(FRAME_SAMPLES);
                let size = want.div_ceil(PLC_QUANTUM) * PLC_QUANTUM;
                match self.decoder.decode(&[], &mut self.pcm[..size], false) {
                    Ok(n) if n >= want => push_samples(&self.pcm[..want], out),
                    _ => out.resize(out.len() + want * 2, 0),
                }
                samples -= want;
            }
        }
    }

    fn encoder() -> Result<opus::Encoder, CodecError> {
        let mut encoder = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip)?;
        encoder.set_complexity(5)?;
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(EXPECTED_LOSS_PERCENT)?;
        Ok(encoder)
    }

    fn push_samples(samples: &[i16], out: &mut Vec<u8>) {
        out.reserve(samples.len() * 2);
        for s in samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_is_pass_through() {
        for kind in [MediaCodec::Pcmu, MediaCodec::Pcma] {
            let mut codec = Codec::new(kind).unwrap();
            let frame: Vec<u8> = (0..160).map(|i| i as u8).collect();
            let payload = codec.encode(&frame).unwrap();
            assert_eq!(payload, frame);
            let mut out = Vec::new();
            codec.decode(&payload, &mut out).unwrap();
            assert_eq!(out, frame);
            assert_eq!(
                codec.silence_payload().unwrap(),
                kind.leg_format().silence_frame()
            );
        }
    }

    #[test]
    fn g711_conceals_with_the_codec_silence() {
        let mut out = Vec::new();
        Codec::new(MediaCodec::Pcmu).unwrap().conceal(3, &mut out);
        Codec::new(MediaCodec::Pcma).unwrap().silence(2, &mut out);
        assert_eq!(out, [0xFF, 0xFF, 0xFF, 0xD5, 0xD5]);
    }

    #[test]
    fn frames_of_the_wrong_size_are_errors() {
        let mut codec = Codec::new(MediaCodec::Pcmu).unwrap();
        assert!(matches!(
            codec.encode(&[0; 100]),
            Err(CodecError::FrameSize {
                expected: 160,
                actual: 100
            })
        ));
    }

    #[test]
    fn clock_and_frame_units() {
        assert_eq!(MediaCodec::Pcmu.clock_rate(), 8000);
        assert_eq!(MediaCodec::Pcma.frame_timestamp_units(), 160);
        assert_eq!(MediaCodec::Pcmu.static_payload_type(), Some(0));
        assert_eq!(MediaCodec::Pcma.static_payload_type(), Some(8));
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_round_trips_20_ms_frames_at_24_khz() {
        let mut codec = Codec::new(MediaCodec::Opus).unwrap();
        assert_eq!(MediaCodec::Opus.frame_timestamp_units(), 960);
        let frame: Vec<u8> = (0..480)
            .flat_map(|i| {
                let s = ((i as f32 * 0.1).sin() * 8000.0) as i16;
                s.to_le_bytes()
            })
            .collect();
        let payload = codec.encode(&frame).unwrap();
        assert!(!payload.is_empty() && payload.len() < 400);
        let mut out = Vec::new();
        codec.decode(&payload, &mut out).unwrap();
        assert_eq!(out.len(), 960);
        codec.conceal(960, &mut out);
        assert_eq!(out.len(), 1920);
        assert!(!codec.silence_payload().unwrap().is_empty());
        // Garbage from the network is an error or some audio, never a panic.
        let _ = codec.decode(&[0xFF; 3], &mut out);
        let _ = codec.decode(&[0x00; 1], &mut out);
    }
}
