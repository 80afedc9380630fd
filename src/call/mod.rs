//! Running a call: the caller-leg interface, the per-call async driver and the registry of
//! calls in progress.

pub mod driver;
pub mod leg;
pub mod registry;
