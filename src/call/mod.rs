//! Running a call: the caller-leg interface, the per-call async driver, the clock of the
//! tasks that drive the machines, and the registry of calls in progress.

pub(crate) mod clock;
pub mod driver;
pub mod leg;
pub mod registry;
