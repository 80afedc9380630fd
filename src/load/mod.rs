//! `dialtone load`: measures what a call costs the bridge.
//!
//! | concept | file |
//! |---|---|
//! | the model's talking schedule | `schedule.rs` |
//! | the model's event texts | `events.rs` |
//! | the latency marker in the audio | `marker.rs` |
//! | Twilio's player | `playback.rs` |
//! | CPU time and memory from `/proc` | `procfs.rs` |
//! | percentiles and the printed report | `report.rs` |

pub mod events;
pub mod marker;
pub mod playback;
pub mod procfs;
pub mod report;
pub mod schedule;
