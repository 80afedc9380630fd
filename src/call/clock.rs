//! The clock of the tasks that drive the sans-IO machines: the only place a call's time is
//! read, and the one way to wait for a machine's next deadline.
//!
//! Tokio's clock, so tests under a paused runtime stay deterministic.

use std::time::Instant;

/// The current time, as the machines see it. A call's task reads it once per wake-up.
#[allow(clippy::disallowed_methods)] // the driving tasks are where time comes from
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Waits until `deadline`, or forever when there is none (a machine with nothing due).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
