//! `dialtone load`: measures what a call costs the bridge.
//!
//! Three subcommands, each a separate process so that the bridge under test is measured alone:
//!
//! - `load model` is a minimal Realtime API server that talks on a fixed schedule (see
//!   [`model`]). The rigs start it as a child; it can also be run by hand.
//! - `load twilio` starts the model and a `dialtone serve` (any build, old ones included: only
//!   `serve --http --no-sip --dialplans --drain-secs` and `DIALTONE_REALTIME_URL` are used),
//!   places simulated Twilio Media Streams calls on it, and reports the server's CPU and memory
//!   per call and the model-to-caller latency (see [`twilio`]).
//! - `load sip` does the same with SIPp callers on the SIP side (see [`sip`]).
//!
//! Everything runs on loopback, every child process is killed when the rig ends however it
//! ends, and every run has a hard deadline.
//!
//! | concept | file |
//! |---|---|
//! | the subcommands and their arguments | `mod.rs`, `model.rs`, `twilio.rs`, `sip.rs` |
//! | the model's talking schedule | `schedule.rs` |
//! | the model's event texts | `events.rs` |
//! | the latency marker in the audio | `marker.rs` |
//! | one simulated Twilio call, and Twilio's player | `caller.rs`, `playback.rs` |
//! | the bridge under test as a process | `bridge.rs` |
//! | child processes, ports, CPU pinning | `process.rs` |
//! | CPU time and memory from `/proc` | `procfs.rs` |
//! | the temporary dialplan directory | `dialplan_dir.rs` |
//! | percentiles and the printed report | `report.rs` |

#![allow(clippy::disallowed_methods)] // a load rig measures real time: it reads the clock

pub mod bridge;
pub mod caller;
pub mod dialplan_dir;
pub mod events;
pub mod marker;
pub mod model;
pub mod playback;
pub mod process;
pub mod procfs;
pub mod report;
pub mod schedule;
pub mod sip;
pub mod twilio;

use anyhow::Result;
use clap::Subcommand;

/// The `dialtone load` subcommands.
#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// A minimal Realtime API server that talks on a fixed schedule, for load tests. Prints
    /// `listening on ws://ADDR/v1/realtime` as its first line.
    Model(model::ModelArgs),
    /// Simulated Twilio calls against `dialtone serve`: CPU, memory and latency per call.
    Twilio(twilio::TwilioArgs),
    /// SIPp calls against `dialtone serve`: CPU and memory per call.
    Sip(sip::SipArgs),
}

/// Runs one `dialtone load` subcommand to its end.
pub fn run(command: LoadCommand) -> Result<()> {
    match command {
        LoadCommand::Model(args) => model::run(&args),
        LoadCommand::Twilio(args) => twilio::run(&args),
        LoadCommand::Sip(args) => sip::run(&args),
    }
}

/// A current-thread tokio runtime: the load tools are meant to cost little CPU themselves.
fn runtime() -> Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
