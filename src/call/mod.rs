//! Running a call: the caller-leg interface and the per-call async driver.

pub mod leg;
