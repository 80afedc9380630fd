//! Server-side voice activity detection on 20 ms frames of PCM16, timed in audio milliseconds.
//!
//! A frame is speech when its RMS level exceeds `-60 + 40 × threshold` dBFS (so the default
//! threshold 0.5 means −40 dBFS). Speech starts after [`ONSET_FRAMES`] consecutive speech
//! frames and stops after `silence_duration_ms` of consecutive non-speech frames (the
//! hangover). The detector only reports where those events fall; the input buffer decides
//! what audio they cover.

/// Consecutive speech frames (20 ms each) before speech is reported as started.
pub(crate) const ONSET_FRAMES: u32 = 3;

/// Duration of one analysis frame.
pub(crate) const VAD_FRAME_MS: u64 = 20;

/// A change of speech state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VadEvent {
    /// Speech began at `onset_ms` (the start of its first speech frame).
    Started { onset_ms: u64 },
    /// Speech ended; `end_ms` is the end of the frame that completed the hangover.
    Stopped { end_ms: u64 },
}

/// Detector state for one input stream.
#[derive(Debug, Clone)]
pub(crate) struct Vad {
    threshold_dbfs: f64,
    silence_frames: u32,
    speaking: bool,
    run: u32,
    run_start_ms: u64,
}

impl Vad {
    /// A detector for `threshold` (0–1) and a hangover of `silence_duration_ms`.
    pub(crate) fn new(threshold: f64, silence_duration_ms: u32) -> Self {
        let frames = u64::from(silence_duration_ms).div_ceil(VAD_FRAME_MS).max(1);
        Self {
            threshold_dbfs: threshold_dbfs(threshold),
            silence_frames: u32::try_from(frames).unwrap_or(u32::MAX),
            speaking: false,
            run: 0,
            run_start_ms: 0,
        }
    }

    /// Whether the caller is currently speaking.
    pub(crate) fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Forgets any speech in progress.
    pub(crate) fn reset(&mut self) {
        self.speaking = false;
        self.run = 0;
    }

    /// Feeds one frame that ends at `end_ms` of audio time.
    pub(crate) fn push_frame(&mut self, frame: &[i16], end_ms: u64) -> Option<VadEvent> {
        let start_ms = end_ms.saturating_sub(VAD_FRAME_MS);
        let speech = level_dbfs(frame) > self.threshold_dbfs;
        if self.speaking {
            if speech {
                self.run = 0;
                return None;
            }
            self.run += 1;
            if self.run >= self.silence_frames {
                self.reset();
                return Some(VadEvent::Stopped { end_ms });
            }
            return None;
        }
        if !speech {
            self.run = 0;
            return None;
        }
        if self.run == 0 {
            self.run_start_ms = start_ms;
        }
        self.run += 1;
        if self.run >= ONSET_FRAMES {
            self.speaking = true;
            self.run = 0;
            return Some(VadEvent::Started {
                onset_ms: self.run_start_ms,
            });
        }
        None
    }
}

/// The frame level above which audio counts as speech, for a `threshold` in 0–1.
pub(crate) fn threshold_dbfs(threshold: f64) -> f64 {
    -60.0 + 40.0 * threshold.clamp(0.0, 1.0)
}

/// RMS level of `frame` in dBFS (full scale = 32768); −∞ for digital silence.
pub(crate) fn level_dbfs(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return f64::NEG_INFINITY;
    }
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / frame.len() as f64).sqrt();
    if rms == 0.0 {
        f64::NEG_INFINITY
    } else {
        20.0 * (rms / 32768.0).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(amplitude: i16) -> Vec<i16> {
        (0..160)
            .map(|i| if i % 2 == 0 { amplitude } else { -amplitude })
            .collect()
    }

    #[test]
    fn levels() {
        assert_eq!(level_dbfs(&[0; 160]), f64::NEG_INFINITY);
        assert!((level_dbfs(&frame(32767)) - 0.0).abs() < 0.01);
        assert!((level_dbfs(&frame(328)) + 40.0).abs() < 0.1);
        assert_eq!(threshold_dbfs(0.5), -40.0);
    }

    #[test]
    fn onset_and_hangover() {
        let mut vad = Vad::new(0.5, 100);
        let mut t = 0;
        let mut feed = |vad: &mut Vad, amp: i16| {
            t += 20;
            vad.push_frame(&frame(amp), t)
        };
        assert_eq!(feed(&mut vad, 0), None);
        assert_eq!(feed(&mut vad, 5000), None);
        assert_eq!(feed(&mut vad, 0), None); // a click is not speech
        assert_eq!(feed(&mut vad, 5000), None);
        assert_eq!(feed(&mut vad, 5000), None);
        assert_eq!(
            feed(&mut vad, 5000),
            Some(VadEvent::Started { onset_ms: 60 })
        );
        for _ in 0..4 {
            assert_eq!(feed(&mut vad, 100), None);
        }
        assert_eq!(feed(&mut vad, 5000), None); // speech resets the hangover
        for _ in 0..4 {
            assert_eq!(feed(&mut vad, 0), None);
        }
        assert_eq!(feed(&mut vad, 0), Some(VadEvent::Stopped { end_ms: 320 }));
        assert!(!vad.is_speaking());
    }
}
