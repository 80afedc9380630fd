//! Outbound audio framing: Twilio is sent whole 20 ms µ-law frames (160 bytes). Audio that does
//! not fill a frame is carried over to the next write; before a mark the partial frame is
//! padded with µ-law silence so the mark lands after every byte written before it.

use crate::audio::AudioFormat;
use crate::audio::g711::ULAW_SILENCE;

/// Bytes in one 20 ms µ-law frame.
pub const FRAME_BYTES: usize = AudioFormat::Pcmu.frame_bytes();

/// Re-chunks µ-law audio into whole frames.
#[derive(Debug, Default)]
pub struct Framer {
    carry: Vec<u8>,
}

impl Framer {
    /// Adds `audio` and returns every whole frame now available, in order.
    pub fn push(&mut self, audio: &[u8]) -> Vec<Vec<u8>> {
        self.carry.extend_from_slice(audio);
        let whole = self.carry.len() - self.carry.len() % FRAME_BYTES;
        let frames = self.carry[..whole]
            .chunks_exact(FRAME_BYTES)
            .map(<[u8]>::to_vec)
            .collect();
        self.carry.drain(..whole);
        frames
    }

    /// The carried partial frame padded with silence to a whole frame, if there is one.
    pub fn flush_padded(&mut self) -> Option<Vec<u8>> {
        if self.carry.is_empty() {
            return None;
        }
        let mut frame = std::mem::take(&mut self.carry);
        frame.resize(FRAME_BYTES, ULAW_SILENCE);
        Some(frame)
    }

    /// Drops the carried partial frame.
    pub fn clear(&mut self) {
        self.carry.clear();
    }

    /// Bytes carried until the next write.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn whole_frames_pass_through() {
        let mut framer = Framer::default();
        let audio = ramp(2 * FRAME_BYTES);
        let frames = framer.push(&audio);
        assert_eq!(frames.concat(), audio);
        assert!(frames.iter().all(|f| f.len() == FRAME_BYTES));
        assert_eq!(framer.carried(), 0);
        assert_eq!(framer.flush_padded(), None);
    }

    #[test]
    fn partial_frames_carry_over_in_order() {
        let mut framer = Framer::default();
        let audio = ramp(400);
        assert!(framer.push(&audio[..100]).is_empty());
        let frames = framer.push(&audio[100..]);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames.concat(), audio[..320]);
        assert_eq!(framer.carried(), 80);

        let last = framer.flush_padded().expect("partial frame");
        assert_eq!(last.len(), FRAME_BYTES);
        assert_eq!(last[..80], audio[320..]);
        assert!(last[80..].iter().all(|&b| b == ULAW_SILENCE));
        assert_eq!(framer.carried(), 0);
    }

    #[test]
    fn clear_drops_the_carry() {
        let mut framer = Framer::default();
        framer.push(&ramp(50));
        framer.clear();
        assert_eq!(framer.flush_padded(), None);
        assert_eq!(framer.push(&ramp(FRAME_BYTES)), vec![ramp(FRAME_BYTES)]);
    }
}
