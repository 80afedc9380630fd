//! The per-call state machine: everything that decides what happens on a call.
//!
//! A [`Call`] is pure and synchronous. The host feeds it [`Input`]s, each carrying `now`,
//! then drains [`Output`]s with [`Call::poll_output`] until it returns `None`, and sleeps until
//! [`Call::poll_timeout`] unless another input arrives first. It owns no socket, reads no clock
//! and spawns nothing, so barge-in, truncation, tool round trips and every timer are tested
//! with a virtual clock.

mod io;

pub use io::{
    CallEvent, CallerCommand, EndReason, Input, Mark, MarkId, Output, ToolOutcome, ToolRequest,
    ToolRun, ToolRunId,
};
