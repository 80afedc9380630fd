//! The async adapter: one task per SIP leg that owns the UDP sockets and a [`MediaSession`].
//!
//! [`start`] spawns the task and returns a [`MediaHandle`]: [`MediaCommand`]s go in,
//! [`MediaEvent`]s come out. The task is a single `select!` over the RTP socket, the RTCP
//! socket, the command channel, delivery of pending events, and a sleep until the session's
//! next deadline; after each wake-up it drains the session's outputs (datagrams to send, events
//! for the owner, finished digit strings) and adds the session's counters to [`Metrics`].
//! Media is symmetric (RFC 4961): every datagram leaves from the socket its kind arrives on.
//!
//! The task ends on [`MediaCommand::Stop`] or when the command sender is dropped; it then sends
//! an RTCP BYE, reports [`MediaEvent::Stats`] and closes the event channel, which tells the
//! owner the media has ended. Sending events never blocks the media: when the owner falls
//! behind, events wait in a backlog, and beyond [`MAX_BACKLOG`] the oldest audio is dropped.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::codec::MediaCodec;
use super::pacer::{DtmfJobId, PacerError};
use super::packet::MAX_PACKET_LEN;
use super::session::{Channel, MediaError, MediaSession, Output, SessionConfig, Transmit};
use super::stats::{COUNTERS, MediaStats};
use crate::bridge::{Mark, MarkId};
use crate::metrics::Metrics;

/// Capacity of the event and command channels.
const CHANNEL_CAPACITY: usize = 256;

/// Events held back while the owner is not reading (5 s of audio).
pub const MAX_BACKLOG: usize = 250;

/// Receive buffer size: room for any datagram a media peer sends, so none is truncated.
const RECV_BUFFER: usize = 4 * MAX_PACKET_LEN;

/// Consecutive socket receive errors after which the media is given up.
const MAX_RECV_ERRORS: u32 = 50;

const SEND_ERRORS_TOTAL: &str = "rtp_send_errors_total";
const EVENTS_DROPPED_TOTAL: &str = "rtp_events_dropped_total";

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
#[allow(clippy::disallowed_methods)] // the adapter gives the session its wall-clock start
pub fn try_start(config: MediaConfig, metrics: Arc<Metrics>) -> Result<MediaHandle, MediaError> {
    let session = MediaSession::new(
        SessionConfig {
            codec: config.codec,
            payload_type: config.payload_type,
            telephone_event: config.telephone_event,
            ptime_ms: config.ptime_ms,
            remote: config.remote,
            rtcp_mux: config.rtcp.is_none(),
            seed: config.seed,
        },
        now(),
        SystemTime::now(),
    )?;
    describe_metrics(&metrics);
    let (event_tx, event_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (command_tx, command_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let task = MediaTask {
        session,
        backlog: VecDeque::new(),
        dtmf: HashMap::new(),
        metrics,
        recorded: MediaStats::default(),
    };
    let sockets = Sockets {
        rtp: config.rtp,
        rtcp: config.rtcp,
    };
    tokio::spawn(
        task.run(sockets, event_tx, command_rx)
            .instrument(tracing::Span::current()),
    );
    Ok(MediaHandle {
        events: event_rx,
        commands: command_tx,
    })
}

/// The clock of the media task: Tokio's, so tests can pause it.
#[allow(clippy::disallowed_methods)] // the media task drives its session: it reads the clock
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The sockets of one leg; RTCP shares `rtp` when `rtcp` is `None`.
struct Sockets {
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
}

impl Sockets {
    fn send(&self, transmit: &Transmit) -> io::Result<usize> {
        let socket = match transmit.channel {
            Channel::Rtp => &self.rtp,
            Channel::Rtcp => self.rtcp.as_ref().unwrap_or(&self.rtp),
        };
        socket.try_send_to(&transmit.payload, transmit.destination)
    }
}

struct MediaTask {
    session: MediaSession,
    backlog: VecDeque<MediaEvent>,
    dtmf: HashMap<DtmfJobId, oneshot::Sender<Result<(), String>>>,
    metrics: Arc<Metrics>,
    /// The counters already added to `metrics`.
    recorded: MediaStats,
}

impl MediaTask {
    async fn run(
        mut self,
        sockets: Sockets,
        events: mpsc::Sender<MediaEvent>,
        mut commands: mpsc::Receiver<MediaCommand>,
    ) {
        let mut rtp_buf = vec![0u8; RECV_BUFFER];
        let mut rtcp_buf = vec![0u8; RECV_BUFFER];
        let mut recv_errors = 0u32;
        loop {
            self.flush(&sockets, &events);
            let deadline = self.session.poll_timeout();
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(MediaCommand::Stop) => break,
                    Some(command) => self.apply(command),
                },
                received = sockets.rtp.recv_from(&mut rtp_buf) => match received {
                    Ok((len, from)) => {
                        recv_errors = 0;
                        self.session.handle_rtp(now(), from, &rtp_buf[..len]);
                    }
                    Err(error) => recv_errors = recv_failed(recv_errors, &error),
                },
                received = recv_optional(sockets.rtcp.as_ref(), &mut rtcp_buf) => match received {
                    Ok((len, from)) => {
                        recv_errors = 0;
                        self.session.handle_rtcp(now(), from, &rtcp_buf[..len]);
                    }
                    Err(error) => recv_errors = recv_failed(recv_errors, &error),
                },
                permit = events.reserve(), if !self.backlog.is_empty() => {
                    if let (Ok(permit), Some(event)) = (permit, self.backlog.pop_front()) {
                        permit.send(event);
                    } else {
                        // The owner dropped the event receiver: nobody to tell.
                        self.backlog.clear();
                    }
                },
                () = sleep_until(deadline) => self.session.handle_timeout(now()),
            }
            if recv_errors >= MAX_RECV_ERRORS {
                tracing::warn!("media sockets keep failing; ending the media");
                break;
            }
        }
        self.finish(&sockets, &events);
    }

    fn apply(&mut self, command: MediaCommand) {
        match command {
            MediaCommand::Play(audio) => self.session.play(&audio),
            MediaCommand::Mark(mark) => self.session.mark(mark.id),
            MediaCommand::Clear => self.session.clear(),
            MediaCommand::SendDtmf { digits, done } => match self.session.send_dtmf(&digits) {
                Ok(job) => {
                    self.dtmf.insert(job, done);
                }
                Err(PacerError::NoDigits) => {
                    let _ = done.send(Ok(()));
                }
                Err(error) => {
                    let _ = done.send(Err(error.to_string()));
                }
            },
            MediaCommand::Hold(held) => self.session.hold(held, now()),
            MediaCommand::SetRemote(remote) => {
                tracing::debug!(%remote, "media destination changed");
                self.session.set_remote(remote);
            }
            MediaCommand::Stop => {}
        }
    }

    /// Carries out the session's outputs and records its counters.
    fn flush(&mut self, sockets: &Sockets, events: &mpsc::Sender<MediaEvent>) {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    if let Err(error) = sockets.send(&transmit) {
                        self.metrics.inc(SEND_ERRORS_TOTAL, &[]);
                        tracing::trace!(%error, "media datagram not sent");
                    }
                }
                Output::Audio(audio) => self.emit(events, MediaEvent::Audio(audio)),
                Output::Dtmf(digit) => self.emit(events, MediaEvent::Dtmf(digit)),
                Output::Played(id) => self.emit(events, MediaEvent::Played(id)),
                Output::DtmfFinished { job, result } => {
                    if let Some(done) = self.dtmf.remove(&job) {
                        let _ = done.send(result);
                    }
                }
            }
        }
        let stats = self.session.stats();
        let previous = self.recorded.counters();
        for ((name, value), (_, before)) in stats.counters().into_iter().zip(previous) {
            if value > before {
                self.metrics.add(name, &[], value - before);
            }
        }
        self.recorded = stats;
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
    fn finish(mut self, sockets: &Sockets, events: &mpsc::Sender<MediaEvent>) {
        self.session.close();
        self.flush(sockets, events);
        for (_, done) in self.dtmf.drain() {
            let _ = done.send(Err("the media session ended".to_owned()));
        }
        self.backlog
            .push_back(MediaEvent::Stats(self.session.stats()));
        for event in self.backlog.drain(..) {
            if events.try_send(event).is_err() {
                tracing::debug!("media events left undelivered at the end");
                break;
            }
        }
    }
}

/// Counts one receive error; returns the new count of consecutive errors.
fn recv_failed(errors: u32, error: &io::Error) -> u32 {
    tracing::debug!(%error, "media socket receive failed");
    errors + 1
}

async fn recv_optional(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn describe_metrics(metrics: &Metrics) {
    for (name, help) in COUNTERS {
        metrics.describe_counter(name, help);
    }
    metrics.describe_counter(
        SEND_ERRORS_TOTAL,
        "RTP and RTCP datagrams that could not be sent.",
    );
    metrics.describe_counter(
        EVENTS_DROPPED_TOTAL,
        "Caller audio frames dropped because the call did not keep up.",
    );
}
