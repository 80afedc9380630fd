//! `dialtone load`: measures what a call costs the bridge.
//!
//! - `load model` is a minimal Realtime API server that talks on a fixed schedule (see
//!   [`model`]), to run as its own process.
//!
//! | concept | file |
//! |---|---|
//! | the subcommands and their arguments | `mod.rs`, `model.rs` |
//! | the model's talking schedule | `schedule.rs` |
//! | the model's event texts | `events.rs` |
//! | the latency marker in the audio | `marker.rs` |
//! | Twilio's player | `playback.rs` |
//! | child processes, ports, CPU pinning | `process.rs` |
//! | CPU time and memory from `/proc` | `procfs.rs` |
//! | percentiles and the printed report | `report.rs` |

pub mod events;
pub mod marker;
pub mod model;
pub mod playback;
pub mod process;
pub mod procfs;
pub mod report;
pub mod schedule;

use anyhow::Result;
use clap::Subcommand;

/// The `dialtone load` subcommands.
#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// A minimal Realtime API server that talks on a fixed schedule, for load tests. Prints
    /// `listening on ws://ADDR/v1/realtime` as its first line.
    Model(model::ModelArgs),
}

/// Runs one `dialtone load` subcommand to its end.
pub fn run(command: LoadCommand) -> Result<()> {
    match command {
        LoadCommand::Model(args) => model::run(&args),
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
