//! Twilio's player, as the simulated caller plays what the bridge sends: `media` payloads queue
//! up and play one 20 ms frame per tick; a `mark` is echoed once every frame queued before it
//! has played (at once when nothing is queued or playing); `clear` drops the queue and echoes
//! every pending mark at once. Pure: the caller drives it with its 20 ms tick.

use std::collections::VecDeque;

/// Bytes in one 20 ms µ-law frame.
pub const FRAME_BYTES: usize = 160;

#[derive(Debug, PartialEq, Eq)]
enum Queued {
    /// Consecutive frames of audio.
    Frames(u64),
    Mark(String),
}

/// The playback queue of one call.
#[derive(Debug, Default)]
pub struct Player {
    queue: VecDeque<Queued>,
    /// Whether a frame started at the last tick (it plays until the next one).
    playing: bool,
    /// Frames played in all.
    played: u64,
}

impl Player {
    /// Queues `bytes` of audio (a partial frame plays as a whole one).
    pub fn push_audio(&mut self, bytes: usize) {
        let frames = bytes.div_ceil(FRAME_BYTES) as u64;
        if frames == 0 {
            return;
        }
        match self.queue.back_mut() {
            Some(Queued::Frames(n)) => *n += frames,
            _ => self.queue.push_back(Queued::Frames(frames)),
        }
    }

    /// Queues a mark; returns it when it is to be echoed at once (nothing left to play).
    pub fn push_mark(&mut self, name: String) -> Option<String> {
        if self.queue.is_empty() && !self.playing {
            return Some(name);
        }
        self.queue.push_back(Queued::Mark(name));
        None
    }

    /// One 20 ms tick: the frame playing ends and the next one starts; returns the marks
    /// reached on the way, in order.
    pub fn tick(&mut self) -> Vec<String> {
        let mut echoed = Vec::new();
        if std::mem::take(&mut self.playing) {
            self.played += 1;
        }
        while let Some(front) = self.queue.front_mut() {
            match front {
                Queued::Frames(n) => {
                    *n -= 1;
                    if *n == 0 {
                        self.queue.pop_front();
                    }
                    self.playing = true;
                    break;
                }
                Queued::Mark(_) => {
                    if let Some(Queued::Mark(name)) = self.queue.pop_front() {
                        echoed.push(name);
                    }
                }
            }
        }
        echoed
    }

    /// Drops everything queued and the frame playing; returns every pending mark, in order.
    pub fn clear(&mut self) -> Vec<String> {
        self.playing = false;
        self.queue
            .drain(..)
            .filter_map(|q| match q {
                Queued::Mark(name) => Some(name),
                Queued::Frames(_) => None,
            })
            .collect()
    }

    /// Frames played to their end.
    pub fn played(&self) -> u64 {
        self.played
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_mark_is_echoed_when_the_audio_before_it_has_played() {
        let mut p = Player::default();
        p.push_audio(2 * FRAME_BYTES);
        assert_eq!(p.push_mark("a".into()), None);
        p.push_audio(FRAME_BYTES);
        assert_eq!(p.push_mark("b".into()), None);
        assert!(p.tick().is_empty()); // frame 1 starts
        assert!(p.tick().is_empty()); // frame 2 starts
        assert_eq!(p.tick(), names(&["a"])); // frame 2 ended; frame 3 starts
        assert_eq!(p.tick(), names(&["b"])); // frame 3 ended
        assert!(p.tick().is_empty());
        assert_eq!(p.played(), 3);
    }

    #[test]
    fn a_mark_with_nothing_to_play_is_echoed_at_once() {
        let mut p = Player::default();
        assert_eq!(p.push_mark("now".into()), Some("now".into()));
        // While the last frame is still playing, the mark waits for its end.
        p.push_audio(FRAME_BYTES);
        p.tick();
        assert_eq!(p.push_mark("after".into()), None);
        assert_eq!(p.tick(), names(&["after"]));
        assert_eq!(p.push_mark("idle".into()), Some("idle".into()));
    }

    #[test]
    fn clear_echoes_every_pending_mark_at_once() {
        let mut p = Player::default();
        p.push_audio(5 * FRAME_BYTES);
        p.push_mark("x".into());
        p.push_audio(FRAME_BYTES);
        p.push_mark("y".into());
        p.tick();
        assert_eq!(p.clear(), names(&["x", "y"]));
        assert!(p.tick().is_empty());
        assert_eq!(p.push_mark("z".into()), Some("z".into()));
        // The frame cut by the clear was not played to its end.
        assert_eq!(p.played(), 0);
    }

    #[test]
    fn partial_frames_play_as_whole_ones() {
        let mut p = Player::default();
        p.push_audio(100);
        p.push_audio(0);
        p.push_mark("m".into());
        p.tick();
        assert_eq!(p.tick(), names(&["m"]));
    }
}
