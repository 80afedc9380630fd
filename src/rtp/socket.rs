//! The media task: one Tokio task that owns a leg's [`MediaIo`] and talks to its owner over
//! channels, for owners that do not drive the media themselves (SIP calls drive their
//! [`MediaIo`] on their own task).
//!
//! [`start`] spawns the task and returns a [`MediaHandle`]: [`MediaCommand`]s go in,
//! [`MediaEvent`]s come out. The task is a single `select!` over the media (datagrams and the
//! session's deadline), the command channel and delivery of pending events.
//!
//! The task ends on [`MediaCommand::Stop`] or when the command sender is dropped; it then sends
//! an RTCP BYE, reports [`MediaEvent::Stats`] and closes the event channel, which tells the
//! owner the media has ended. Sending events never blocks the media: when the owner falls
//! behind, events wait in a backlog, and beyond [`MAX_BACKLOG`] the oldest audio is dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::codec::MediaCodec;
use super::io::{EVENTS_DROPPED_TOTAL, MediaIo};
use super::session::MediaError;
use super::stats::MediaStats;
use crate::bridge::{Mark, MarkId};
use crate::call::clock::now;
use crate::metrics::Metrics;

/// Capacity of the event and command channels.
const CHANNEL_CAPACITY: usize = 256;

/// Events held back while the owner is not reading (5 s of audio).
pub const MAX_BACKLOG: usize = 250;

/// Everything the media task needs: the bound sockets and the negotiated stream.
#[derive(Debug)]
pub struct MediaConfig {
    /// The RTP socket (an even port).
    pub rtp: UdpSocket,
    /// The RTCP socket (RTP port + 1); `None` with `a=rtcp-mux`, where RTCP shares `rtp`.
    pub rtcp: Option<UdpSocket>,
    /// The peer's RTP address from its SDP (`c=` and `m=`).
    pub remote: SocketAddr,
    pub codec: MediaCodec,
    /// Payload type of the audio codec.
    pub payload_type: u8,
    /// Payload type of telephone-event, if negotiated.
    pub telephone_event: Option<u8>,
    /// The peer's `a=ptime`, 0 if absent. We always send 20 ms packets.
    pub ptime_ms: u32,
    /// Seed of the stream's randomness (SSRC, initial sequence number and timestamp).
    pub seed: u64,
}

/// What the media task tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// One 20 ms frame of caller audio in the leg format (concealment or silence included),
    /// every 20 ms from the first received packet on.
    Audio(Vec<u8>),
    /// A DTMF digit pressed by the caller (RFC 4733).
    Dtmf(char),
    /// Every frame queued before this mark has been sent, or was cleared.
    Played(MarkId),
    /// The stream's counters, sent once when the media ends.
    Stats(MediaStats),
}

/// What the owner asks of the media task.
#[derive(Debug)]
pub enum MediaCommand {
    /// Leg-format audio to play, a whole number of 20 ms frames.
    Play(Vec<u8>),
    /// Report [`MediaEvent::Played`] once everything queued before it has been sent.
    Mark(Mark),
    /// Drop the queued audio at once; every pending mark is reported.
    Clear,
    /// Send digits as RFC 4733 events; `done` answers once the last packet is sent.
    SendDtmf {
        digits: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Stop (`true`) or resume sending (SDP hold).
    Hold(bool),
    /// Send to a new address (a re-INVITE changed `c=`/`m=`).
    SetRemote(SocketAddr),
    /// End the media.
    Stop,
}

/// The owner's side of a running media task.
#[derive(Debug)]
pub struct MediaHandle {
    pub events: mpsc::Receiver<MediaEvent>,
    pub commands: mpsc::Sender<MediaCommand>,
}

/// Starts the media task of one leg. Must be called within a Tokio runtime. If the
/// configuration is unusable (see [`try_start`]) the error is logged and the returned
/// handle's event channel is already closed.
pub fn start(config: MediaConfig, metrics: Arc<Metrics>) -> MediaHandle {
    match try_start(config, metrics) {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, "media session not started");
            let (_, events) = mpsc::channel(1);
            let (commands, _) = mpsc::channel(1);
            MediaHandle { events, commands }
        }
    }
}

/// Starts the media task of one leg, or says why the configuration is unusable (payload
/// types out of range or clashing, codec initialisation failed).
pub fn try_start(config: MediaConfig, metrics: Arc<Metrics>) -> Result<MediaHandle, MediaError> {
    let media = MediaIo::new(config, Arc::clone(&metrics), now())?;
    let (event_tx, event_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (command_tx, command_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let task = MediaTask {
        media,
        backlog: VecDeque::new(),
        metrics,
    };
    tokio::spawn(
        task.run(event_tx, command_rx)
            .instrument(tracing::Span::current()),
    );
    Ok(MediaHandle {
        events: event_rx,
        commands: command_tx,
    })
}

struct MediaTask {
    media: MediaIo,
    backlog: VecDeque<MediaEvent>,
    metrics: Arc<Metrics>,
}

impl MediaTask {
    async fn run(
        mut self,
        events: mpsc::Sender<MediaEvent>,
        mut commands: mpsc::Receiver<MediaCommand>,
    ) {
        loop {
            self.flush(&events);
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(MediaCommand::Stop) => break,
                    Some(command) => self.apply(command),
                },
                wake = self.media.wait() => self.media.handle(wake, now()),
                permit = events.reserve(), if !self.backlog.is_empty() => {
                    if let (Ok(permit), Some(event)) = (permit, self.backlog.pop_front()) {
                        permit.send(event);
                    } else {
                        // The owner dropped the event receiver: nobody to tell.
                        self.backlog.clear();
                    }
                },
            }
            if self.media.failed() {
                tracing::warn!("media sockets keep failing; ending the media");
                break;
            }
        }
        self.finish(&events);
    }

    fn apply(&mut self, command: MediaCommand) {
        match command {
            MediaCommand::Play(audio) => self.media.play(&audio),
            MediaCommand::Mark(mark) => self.media.mark(mark.id),
            MediaCommand::Clear => self.media.clear(),
            MediaCommand::SendDtmf { digits, done } => self.media.send_dtmf(&digits, done),
            MediaCommand::Hold(held) => self.media.hold(held, now()),
            MediaCommand::SetRemote(remote) => self.media.set_remote(remote),
            MediaCommand::Stop => {}
        }
    }

    /// Carries out the session's outputs.
    fn flush(&mut self, events: &mpsc::Sender<MediaEvent>) {
        let mut out = Vec::new();
        self.media.drain(|event| out.push(event));
        for event in out {
            self.emit(events, event);
        }
    }

    /// Hands an event to the owner, or queues it behind the ones still waiting.
    fn emit(&mut self, events: &mpsc::Sender<MediaEvent>, event: MediaEvent) {
        if self.backlog.is_empty() {
            match events.try_send(event) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(event)) => self.backlog.push_back(event),
            }
        } else {
            self.backlog.push_back(event);
        }
        if self.backlog.len() > MAX_BACKLOG
            && let Some(oldest_audio) = self
                .backlog
                .iter()
                .position(|e| matches!(e, MediaEvent::Audio(_)))
        {
            self.backlog.remove(oldest_audio);
            self.metrics.inc(EVENTS_DROPPED_TOTAL, &[]);
        }
    }

    /// Says goodbye: RTCP BYE, failed digit strings, the final counters and the stats event.
    fn finish(mut self, events: &mpsc::Sender<MediaEvent>) {
        let mut out = Vec::new();
        let stats = self.media.finish(|event| out.push(event));
        self.backlog.extend(out);
        self.backlog.push_back(MediaEvent::Stats(stats));
        for event in self.backlog.drain(..) {
            if events.try_send(event).is_err() {
                tracing::debug!("media events left undelivered at the end");
                break;
            }
        }
    }
}
