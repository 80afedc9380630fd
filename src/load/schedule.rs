//! When the load model speaks: a fixed schedule counted from the session's first
//! `session.update`. In each period the model gives one response of `talk` milliseconds of
//! audio, sent as deltas of `delta` milliseconds each, paced at `speed` times real time, then
//! stays silent until the next period. All times come from the origin, so a late wake-up does
//! not shift the rest of the schedule.
//!
//! This file is pure: the connection asks [`Talker::next_due`] when to wake up and calls
//! [`Talker::step`] for each step that is due.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// The schedule's settings, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Audio milliseconds in each delta (the last delta of a response may be shorter).
    pub delta_ms: u32,
    /// How much faster than real time deltas are sent.
    pub speed: f64,
    /// Audio milliseconds in each response.
    pub talk_ms: u32,
    /// Wall-clock milliseconds from one response's start to the next.
    pub period_ms: u32,
}

impl Plan {
    /// Checks that the response fits in its period and that a delta can carry a marker.
    pub fn new(delta_ms: u32, speed: f64, talk_ms: u32, period_ms: u32) -> Result<Self> {
        if delta_ms < 2 {
            bail!("--delta-ms must be at least 2 (the first delta carries a 16-byte marker)");
        }
        if !(speed.is_finite() && speed > 0.0) || speed > 1000.0 {
            bail!("--speed must be above 0 and at most 1000, not {speed}");
        }
        if talk_ms < delta_ms {
            bail!("--talk-ms ({talk_ms}) must be at least --delta-ms ({delta_ms})");
        }
        if f64::from(talk_ms) / speed > f64::from(period_ms) {
            bail!(
                "a response of --talk-ms {talk_ms} at --speed {speed} does not fit in \
                 --period-ms {period_ms}; lower --talk-ms or raise --period-ms"
            );
        }
        Ok(Self {
            delta_ms,
            speed,
            talk_ms,
            period_ms,
        })
    }

    /// Deltas per response.
    pub fn deltas(&self) -> u32 {
        self.talk_ms.div_ceil(self.delta_ms)
    }

    /// Audio milliseconds in delta `n` of a response.
    pub fn delta_len_ms(&self, n: u32) -> u32 {
        self.talk_ms
            .saturating_sub(n * self.delta_ms)
            .min(self.delta_ms)
    }

    /// Wall-clock offset of delta `n` from its response's start.
    fn delta_offset(&self, n: u32) -> Duration {
        Duration::from_secs_f64(f64::from(n) * f64::from(self.delta_ms) / self.speed / 1000.0)
    }

    fn response_start(&self, origin: Instant, index: u64) -> Instant {
        origin + Duration::from_millis(index.saturating_mul(u64::from(self.period_ms)))
    }
}

/// What the model does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `response.created` and `response.output_item.added` of response `index`.
    Begin { index: u64 },
    /// Delta `n` of response `index`, `ms` of audio; the first one carries the marker.
    Delta { index: u64, n: u32, ms: u32 },
    /// `response.output_audio.done`, `response.output_item.done`, `response.done`.
    End { index: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Speaking { sent: u32 },
    Ending,
}

/// The schedule of one session.
#[derive(Debug, Clone)]
pub struct Talker {
    plan: Plan,
    origin: Instant,
    index: u64,
    phase: Phase,
}

impl Talker {
    /// A schedule whose first response starts at `origin`.
    pub fn new(plan: Plan, origin: Instant) -> Self {
        Self {
            plan,
            origin,
            index: 0,
            phase: Phase::Waiting,
        }
    }

    /// When the next step is due.
    pub fn next_due(&self) -> Instant {
        let start = self.plan.response_start(self.origin, self.index);
        match self.phase {
            Phase::Waiting => start,
            Phase::Speaking { sent } => start + self.plan.delta_offset(sent),
            // The end follows the last delta at once, as a model generating faster than real
            // time would send it.
            Phase::Ending => start + self.plan.delta_offset(self.plan.deltas() - 1),
        }
    }

    /// The next step, whether or not it is due yet.
    pub fn step(&mut self) -> Step {
        let index = self.index;
        match self.phase {
            Phase::Waiting => {
                self.phase = Phase::Speaking { sent: 0 };
                Step::Begin { index }
            }
            Phase::Speaking { sent } => {
                let ms = self.plan.delta_len_ms(sent);
                self.phase = if sent + 1 == self.plan.deltas() {
                    Phase::Ending
                } else {
                    Phase::Speaking { sent: sent + 1 }
                };
                Step::Delta { index, n: sent, ms }
            }
            Phase::Ending => {
                self.index += 1;
                self.phase = Phase::Waiting;
                Step::End { index }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Every step of the first `count`, with its due time relative to the origin.
    fn steps(plan: Plan, count: usize) -> Vec<(Duration, Step)> {
        let origin = Instant::now();
        let mut talker = Talker::new(plan, origin);
        (0..count)
            .map(|_| {
                let at = talker.next_due() - origin;
                (at, talker.step())
            })
            .collect()
    }

    #[test]
    fn one_response_per_period_paced_at_real_time() {
        let plan = Plan::new(20, 1.0, 60, 200).unwrap();
        let got = steps(plan, 10);
        let expected = vec![
            (ms(0), Step::Begin { index: 0 }),
            (
                ms(0),
                Step::Delta {
                    index: 0,
                    n: 0,
                    ms: 20,
                },
            ),
            (
                ms(20),
                Step::Delta {
                    index: 0,
                    n: 1,
                    ms: 20,
                },
            ),
            (
                ms(40),
                Step::Delta {
                    index: 0,
                    n: 2,
                    ms: 20,
                },
            ),
            (ms(40), Step::End { index: 0 }),
            (ms(200), Step::Begin { index: 1 }),
            (
                ms(200),
                Step::Delta {
                    index: 1,
                    n: 0,
                    ms: 20,
                },
            ),
            (
                ms(220),
                Step::Delta {
                    index: 1,
                    n: 1,
                    ms: 20,
                },
            ),
            (
                ms(240),
                Step::Delta {
                    index: 1,
                    n: 2,
                    ms: 20,
                },
            ),
            (ms(240), Step::End { index: 1 }),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn speed_two_sends_100_ms_every_50_ms() {
        let plan = Plan::new(100, 2.0, 250, 6000).unwrap();
        let deltas: Vec<(Duration, u32)> = steps(plan, 5)
            .into_iter()
            .filter_map(|(at, s)| match s {
                Step::Delta { ms, .. } => Some((at, ms)),
                _ => None,
            })
            .collect();
        // 250 ms of audio: two whole deltas and a 50 ms one.
        assert_eq!(deltas, vec![(ms(0), 100), (ms(50), 100), (ms(100), 50)]);
    }

    #[test]
    fn plans_that_cannot_work_are_refused() {
        assert!(Plan::new(1, 1.0, 3000, 6000).is_err());
        assert!(Plan::new(20, 0.0, 3000, 6000).is_err());
        assert!(Plan::new(20, f64::NAN, 3000, 6000).is_err());
        assert!(Plan::new(20, 1.0, 10, 6000).is_err());
        assert!(Plan::new(20, 1.0, 7000, 6000).is_err());
        // Twice as fast, twice as much audio fits.
        assert!(Plan::new(20, 2.0, 7000, 6000).is_ok());
    }
}
