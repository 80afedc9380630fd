//! The caller's input audio buffer: decodes appended audio, keeps the audio clock (milliseconds
//! of audio appended this session, the clock the real service times VAD events with), runs the
//! server VAD over it and cuts out each caller turn for the echo.
//!
//! With VAD on, only a short window before the speech (for `prefix_padding_ms`) is kept while
//! the caller is silent; a turn runs from speech onset minus the prefix padding to the end of
//! the hangover. With VAD off, everything since the last commit is kept. Either way at most
//! [`MAX_TURN_MS`] of a turn is stored; the audio clock keeps counting beyond it.

use std::collections::VecDeque;

use super::convert::{decode, sample_rate};
use super::error::RequestError;
use super::vad::{ONSET_FRAMES, VAD_FRAME_MS, Vad, VadEvent};
use crate::audio::AudioFormat;

/// Longest caller turn kept for the echo.
pub(crate) const MAX_TURN_MS: u64 = 30_000;

/// Least audio `input_audio_buffer.commit` accepts, as the real service.
pub(crate) const MIN_COMMIT_MS: u64 = 100;

/// Server VAD parameters the input buffer needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VadParams {
    pub(crate) threshold: f64,
    pub(crate) prefix_padding_ms: u32,
    pub(crate) silence_duration_ms: u32,
}

/// One committed caller turn: PCM16 decoded from audio in `format` (so at its sample rate),
/// covering `start_ms..end_ms` of audio time (truncated to [`MAX_TURN_MS`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TurnAudio {
    pub(crate) pcm: Vec<i16>,
    pub(crate) format: AudioFormat,
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
}

/// What appending audio detected, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InputEvent {
    SpeechStarted { audio_start_ms: u64 },
    SpeechStopped { audio_end_ms: u64, turn: TurnAudio },
}

#[derive(Debug)]
pub(crate) struct InputBuffer {
    format: AudioFormat,
    rate: u32,
    /// Audio time at which the current sample rate took effect.
    base_ms: u64,
    /// Samples appended since `base_ms`.
    position: u64,
    /// A PCM16 byte waiting for its pair.
    carry: Option<u8>,
    frame: Vec<i16>,
    pending: VecDeque<i16>,
    /// Sample index (since `base_ms`) of `pending[0]`.
    pending_start: u64,
    vad: Option<(Vad, VadParams)>,
    scratch: Vec<i16>,
}

impl InputBuffer {
    pub(crate) fn new(format: AudioFormat, vad: Option<VadParams>) -> Self {
        Self {
            format,
            rate: sample_rate(format),
            base_ms: 0,
            position: 0,
            carry: None,
            frame: Vec::new(),
            pending: VecDeque::new(),
            pending_start: 0,
            vad: vad.map(|p| (Vad::new(p.threshold, p.silence_duration_ms), p)),
            scratch: Vec::new(),
        }
    }

    /// Milliseconds of audio appended this session.
    pub(crate) fn position_ms(&self) -> u64 {
        self.ms_at(self.position)
    }

    /// Whether the VAD is inside a caller turn.
    pub(crate) fn is_speaking(&self) -> bool {
        self.vad.as_ref().is_some_and(|(vad, _)| vad.is_speaking())
    }

    /// Changes the input format. A change of sample rate drops the buffered audio.
    pub(crate) fn set_format(&mut self, format: AudioFormat) {
        if format == self.format {
            return;
        }
        self.carry = None;
        self.format = format;
        let rate = sample_rate(format);
        if rate != self.rate {
            self.base_ms = self.position_ms();
            self.rate = rate;
            self.position = 0;
            self.pending.clear();
            self.pending_start = 0;
            self.frame.clear();
            if let Some((vad, _)) = &mut self.vad {
                vad.reset();
            }
        }
    }

    /// Turns server VAD on (with new parameters) or off. Unchanged parameters keep its state.
    pub(crate) fn set_vad(&mut self, params: Option<VadParams>) {
        if self.vad.as_ref().map(|(_, p)| *p) != params {
            self.vad = params.map(|p| (Vad::new(p.threshold, p.silence_duration_ms), p));
            if self.pending_start + self.pending.len() as u64 != self.position {
                // The stored audio hit the turn cap; trimming it would splice non-adjacent
                // audio, so start afresh.
                self.clear();
            }
        }
    }

    /// Appends encoded audio and runs the VAD over every completed 20 ms frame.
    pub(crate) fn append(&mut self, mut bytes: &[u8]) -> Vec<InputEvent> {
        let mut samples = std::mem::take(&mut self.scratch);
        samples.clear();
        if self.format == AudioFormat::Pcm16 {
            if let (Some(low), Some((&high, rest))) = (self.carry, bytes.split_first()) {
                samples.push(i16::from_le_bytes([low, high]));
                self.carry = None;
                bytes = rest;
            }
            if bytes.len() % 2 == 1 {
                self.carry = bytes.last().copied();
                bytes = &bytes[..bytes.len() - 1];
            }
        }
        decode(self.format, bytes, &mut samples);

        let frame_len = (self.rate as usize) * VAD_FRAME_MS as usize / 1000;
        let cap = self.samples_in(MAX_TURN_MS) as usize;
        let mut events = Vec::new();
        let mut rest = &samples[..];
        while !rest.is_empty() {
            let take = (frame_len - self.frame.len()).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            self.frame.extend_from_slice(chunk);
            let room = cap.saturating_sub(self.pending.len()).min(chunk.len());
            self.pending.extend(&chunk[..room]);
            self.position += take as u64;
            if self.frame.len() == frame_len {
                self.end_frame(&mut events);
                self.frame.clear();
            }
        }
        self.scratch = samples;
        events
    }

    /// Commits everything buffered since the last commit (`input_audio_buffer.commit`).
    pub(crate) fn commit(&mut self) -> Result<TurnAudio, RequestError> {
        let buffered = self.position - self.pending_start;
        let buffered_ms = buffered as f64 * 1000.0 / f64::from(self.rate);
        if buffered < self.samples_in(MIN_COMMIT_MS) {
            return Err(RequestError::CommitEmpty {
                min_ms: MIN_COMMIT_MS,
                buffered_ms,
            });
        }
        if let Some((vad, _)) = &mut self.vad {
            vad.reset();
        }
        Ok(self.take_turn(self.position_ms()))
    }

    /// Drops everything buffered since the last commit (`input_audio_buffer.clear`).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.pending_start = self.position;
        if let Some((vad, _)) = &mut self.vad {
            vad.reset();
        }
    }

    fn end_frame(&mut self, events: &mut Vec<InputEvent>) {
        let end_ms = self.position_ms();
        let Some((vad, params)) = &mut self.vad else {
            return;
        };
        let params = *params;
        match vad.push_frame(&self.frame, end_ms) {
            Some(VadEvent::Started { onset_ms }) => {
                let floor = self.ms_at(self.pending_start);
                let audio_start_ms = onset_ms
                    .saturating_sub(u64::from(params.prefix_padding_ms))
                    .max(floor);
                let start = self
                    .samples_in(audio_start_ms.saturating_sub(self.base_ms))
                    .max(self.pending_start);
                self.drop_front(start - self.pending_start);
                events.push(InputEvent::SpeechStarted { audio_start_ms });
            }
            Some(VadEvent::Stopped { end_ms }) => {
                let turn = self.take_turn(end_ms);
                events.push(InputEvent::SpeechStopped {
                    audio_end_ms: end_ms,
                    turn,
                });
            }
            None if !vad.is_speaking() => {
                // Silence: keep just enough for the prefix padding of the next onset.
                let window_ms = u64::from(params.prefix_padding_ms)
                    + VAD_FRAME_MS * u64::from(ONSET_FRAMES + 1);
                let keep = self.samples_in(window_ms);
                let buffered = self.position - self.pending_start;
                self.drop_front(buffered.saturating_sub(keep));
            }
            None => {}
        }
    }

    fn take_turn(&mut self, end_ms: u64) -> TurnAudio {
        let start_ms = self.ms_at(self.pending_start);
        let pcm = self.pending.drain(..).collect();
        self.pending_start = self.position;
        TurnAudio {
            pcm,
            format: self.format,
            start_ms,
            end_ms,
        }
    }

    /// Drops `n` samples from the front of the pending audio.
    fn drop_front(&mut self, n: u64) {
        let stored = (n as usize).min(self.pending.len());
        self.pending.drain(..stored);
        self.pending_start += n;
    }

    fn ms_at(&self, sample: u64) -> u64 {
        self.base_ms + sample * 1000 / u64::from(self.rate)
    }

    fn samples_in(&self, ms: u64) -> u64 {
        ms * u64::from(self.rate) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::tone::tone;

    const VAD: VadParams = VadParams {
        threshold: 0.5,
        prefix_padding_ms: 300,
        silence_duration_ms: 500,
    };

    fn silence(format: AudioFormat, ms: usize) -> Vec<u8> {
        format.silence_frame().repeat(ms / 20)
    }

    #[test]
    fn a_tone_burst_is_one_turn_with_prefix_and_hangover() {
        let f = AudioFormat::Pcmu;
        let mut input = InputBuffer::new(f, Some(VAD));
        let mut events = input.append(&silence(f, 1000));
        events.extend(input.append(&tone(&[440.0], 800, 0.3, f)));
        events.extend(input.append(&silence(f, 1000)));
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            InputEvent::SpeechStarted {
                audio_start_ms: 700
            }
        );
        let InputEvent::SpeechStopped { audio_end_ms, turn } = &events[1] else {
            panic!("expected speech_stopped, got {:?}", events[1]);
        };
        assert_eq!(*audio_end_ms, 2300);
        assert_eq!((turn.start_ms, turn.end_ms), (700, 2300));
        assert_eq!(turn.format, AudioFormat::Pcmu);
        assert_eq!(turn.pcm.len(), 1600 * 8);
        assert_eq!(input.position_ms(), 2800);
    }

    #[test]
    fn prefix_padding_is_floored_at_the_start() {
        let f = AudioFormat::Pcm16;
        let mut input = InputBuffer::new(f, Some(VAD));
        let events = input.append(&tone(&[440.0], 200, 0.3, f));
        assert_eq!(
            events,
            vec![InputEvent::SpeechStarted { audio_start_ms: 0 }]
        );
    }

    #[test]
    fn odd_pcm16_appends_are_reassembled() {
        let f = AudioFormat::Pcm16;
        let audio = tone(&[440.0], 200, 0.3, f);
        let mut input = InputBuffer::new(f, None);
        for chunk in audio.chunks(333) {
            input.append(chunk);
        }
        assert_eq!(input.position_ms(), 200);
        let turn = input.commit().unwrap();
        let mut expected = Vec::new();
        decode(f, &audio, &mut expected);
        assert_eq!(turn.pcm, expected);
    }

    #[test]
    fn commit_needs_100ms() {
        let f = AudioFormat::Pcma;
        let mut input = InputBuffer::new(f, None);
        input.append(&silence(f, 60));
        let err = input.commit().unwrap_err();
        assert_eq!(err.code(), "input_audio_buffer_commit_empty");
        input.append(&silence(f, 40));
        assert_eq!(input.commit().unwrap().pcm.len(), 800);
        assert!(input.commit().is_err());
        input.append(&silence(f, 200));
        input.clear();
        assert!(input.commit().is_err());
    }

    #[test]
    fn long_turns_are_capped_but_the_clock_runs_on() {
        let f = AudioFormat::Pcmu;
        let mut input = InputBuffer::new(f, None);
        let second = silence(f, 1000);
        for _ in 0..31 {
            input.append(&second);
        }
        let turn = input.commit().unwrap();
        assert_eq!(turn.pcm.len() as u64, MAX_TURN_MS * 8);
        assert_eq!((turn.start_ms, turn.end_ms), (0, 31_000));
        input.set_vad(Some(VAD));
        assert_eq!(input.position_ms(), 31_000);
    }

    #[test]
    fn a_rate_change_keeps_the_clock() {
        let mut input = InputBuffer::new(AudioFormat::Pcmu, None);
        input.append(&silence(AudioFormat::Pcmu, 500));
        input.set_format(AudioFormat::Pcm16);
        input.append(&silence(AudioFormat::Pcm16, 500));
        assert_eq!(input.position_ms(), 1000);
        let turn = input.commit().unwrap();
        assert_eq!((turn.start_ms, turn.end_ms), (500, 1000));
        assert_eq!(turn.format, AudioFormat::Pcm16);
    }
}
