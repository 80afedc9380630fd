//! The call's named timers: a small table of deadlines, the earliest of which is the call's
//! next timeout.

use std::time::Instant;

/// A call timer, named after what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallTimer {
    /// The Realtime session must be created by then.
    RealtimeConnect,
    /// The route's maximum call duration.
    MaxDuration,
    /// The caller has been silent for the route's limit.
    CallerSilence,
    /// A planned hangup or transfer stops waiting for playback to finish.
    LegActionGrace,
    /// Collected DTMF digits are handed to the model.
    DtmfFlush,
}

impl CallTimer {
    const ALL: [Self; 5] = [
        Self::RealtimeConnect,
        Self::MaxDuration,
        Self::CallerSilence,
        Self::LegActionGrace,
        Self::DtmfFlush,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines of the [`CallTimer`]s.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    deadlines: [Option<Instant>; 5],
}

impl Timers {
    pub(crate) fn set(&mut self, timer: CallTimer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: CallTimer) {
        self.deadlines[timer.index()] = None;
    }

    pub(crate) fn is_set(&self, timer: CallTimer) -> bool {
        self.deadlines[timer.index()].is_some()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Stops and returns, in declaration order, every timer due at `now`.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<CallTimer> {
        CallTimer::ALL
            .into_iter()
            .filter(|t| {
                let due = self.deadlines[t.index()].is_some_and(|at| at <= now);
                if due {
                    self.deadlines[t.index()] = None;
                }
                due
            })
            .collect()
    }
}
