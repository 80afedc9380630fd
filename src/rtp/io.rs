//! One leg's media session with its UDP sockets, driven by the task that owns it: a SIP
//! call's own task, or the task [`start`](super::start) spawns.
//!
//! [`MediaIo::wait`] waits for a datagram on either socket or for the session's next
//! deadline and says which (cancel-safe: a `select!` may drop it); [`MediaIo::handle`] feeds
//! that to the session at `now`. Commands go in with the `&mut self` methods. After either,
//! [`MediaIo::drain`] sends the datagrams the session produced (RTP and RTCP leave from the
//! socket their kind arrives on, RFC 4961), hands over the events for the call, answers
//! finished DTMF strings, and adds the session's counters to [`Metrics`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::MediaEvent;
use super::pacer::{DtmfJobId, PacerError};
use super::packet::MAX_PACKET_LEN;
use super::session::{Channel, MediaError, MediaSession, Output, SessionConfig, Transmit};
use super::socket::MediaConfig;
use super::stats::{COUNTERS, MediaStats};
use crate::bridge::MarkId;
use crate::call::clock::sleep_until;
use crate::metrics::Metrics;

/// Receive buffer size: room for any datagram a media peer sends, so none is truncated.
const RECV_BUFFER: usize = 4 * MAX_PACKET_LEN;

/// Consecutive socket receive errors after which the media is given up.
const MAX_RECV_ERRORS: u32 = 50;

const SEND_ERRORS_TOTAL: &str = "rtp_send_errors_total";
pub(super) const EVENTS_DROPPED_TOTAL: &str = "rtp_events_dropped_total";

/// What [`MediaIo::wait`] saw.
#[derive(Debug)]
pub enum MediaWake {
    Rtp(io::Result<(usize, SocketAddr)>),
    Rtcp(io::Result<(usize, SocketAddr)>),
    /// The session's deadline passed.
    Timer,
}

/// A DTMF string's answer, given once its last packet has been sent.
pub type DtmfDone = oneshot::Sender<Result<(), String>>;

/// A media session and its sockets.
pub struct MediaIo {
    session: MediaSession,
    rtp: UdpSocket,
    /// `None` with `a=rtcp-mux`, where RTCP shares `rtp`.
    rtcp: Option<UdpSocket>,
    rtp_buf: Vec<u8>,
    rtcp_buf: Vec<u8>,
    recv_errors: u32,
    dtmf: HashMap<DtmfJobId, DtmfDone>,
    metrics: Arc<Metrics>,
    /// The counters already added to `metrics`.
    recorded: MediaStats,
}

impl std::fmt::Debug for MediaIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaIo")
            .field("remote", &self.session.remote())
            .finish_non_exhaustive()
    }
}

impl MediaIo {
    /// The session of one negotiated stream, starting at `now`, or why the configuration is
    /// unusable (payload types out of range or clashing, codec initialisation failed).
    #[allow(clippy::disallowed_methods)] // RTCP sender reports need the wall clock's start
    pub fn new(
        config: MediaConfig,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<Self, MediaError> {
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
            now,
            SystemTime::now(),
        )?;
        describe_metrics(&metrics);
        Ok(Self {
            session,
            rtp: config.rtp,
            rtcp: config.rtcp,
            rtp_buf: vec![0; RECV_BUFFER],
            rtcp_buf: vec![0; RECV_BUFFER],
            recv_errors: 0,
            dtmf: HashMap::new(),
            metrics,
            recorded: MediaStats::default(),
        })
    }

    /// Waits for a datagram or the session's next deadline. Cancel-safe.
    pub async fn wait(&mut self) -> MediaWake {
        let deadline = self.session.poll_timeout();
        let Self {
            rtp,
            rtcp,
            rtp_buf,
            rtcp_buf,
            ..
        } = self;
        tokio::select! {
            received = rtp.recv_from(rtp_buf) => MediaWake::Rtp(received),
            received = recv_optional(rtcp.as_ref(), rtcp_buf) => MediaWake::Rtcp(received),
            () = sleep_until(deadline) => MediaWake::Timer,
        }
    }

    /// Feeds what [`wait`](Self::wait) saw to the session.
    pub fn handle(&mut self, wake: MediaWake, now: Instant) {
        match wake {
            MediaWake::Rtp(Ok((len, from))) => {
                self.recv_errors = 0;
                self.session.handle_rtp(now, from, &self.rtp_buf[..len]);
            }
            MediaWake::Rtcp(Ok((len, from))) => {
                self.recv_errors = 0;
                self.session.handle_rtcp(now, from, &self.rtcp_buf[..len]);
            }
            MediaWake::Rtp(Err(error)) | MediaWake::Rtcp(Err(error)) => {
                tracing::debug!(%error, "media socket receive failed");
                self.recv_errors += 1;
            }
            MediaWake::Timer => self.session.handle_timeout(now),
        }
    }

    /// Whether the sockets keep failing, so the media should be given up.
    pub fn failed(&self) -> bool {
        self.recv_errors >= MAX_RECV_ERRORS
    }

    /// Queues leg-format audio (whole 20 ms frames).
    pub fn play(&mut self, audio: &[u8]) {
        self.session.play(audio);
    }

    /// Reports `mark` once everything queued before it has been sent.
    pub fn mark(&mut self, mark: MarkId) {
        self.session.mark(mark);
    }

    /// Drops the queued audio; pending marks are reported.
    pub fn clear(&mut self) {
        self.session.clear();
    }

    /// Stops (`true`) or resumes sending.
    pub fn hold(&mut self, held: bool, now: Instant) {
        self.session.hold(held, now);
    }

    /// Sends to a new address (a re-INVITE changed `c=`/`m=`).
    pub fn set_remote(&mut self, remote: SocketAddr) {
        if remote != self.session.remote() {
            tracing::debug!(%remote, "media destination changed");
            self.session.set_remote(remote);
        }
    }

    /// Sends `digits` as RFC 4733 events; `done` answers once the last packet is sent.
    pub fn send_dtmf(&mut self, digits: &str, done: DtmfDone) {
        match self.session.send_dtmf(digits) {
            Ok(job) => {
                self.dtmf.insert(job, done);
            }
            Err(PacerError::NoDigits) => {
                let _ = done.send(Ok(()));
            }
            Err(error) => {
                let _ = done.send(Err(error.to_string()));
            }
        }
    }

    /// Carries out the session's outputs: datagrams are sent, events go to `emit`.
    pub fn drain(&mut self, mut emit: impl FnMut(MediaEvent)) {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    if let Err(error) = self.send(&transmit) {
                        self.metrics.inc(SEND_ERRORS_TOTAL, &[]);
                        tracing::trace!(%error, "media datagram not sent");
                    }
                }
                Output::Audio(audio) => emit(MediaEvent::Audio(audio)),
                Output::Dtmf(digit) => emit(MediaEvent::Dtmf(digit)),
                Output::Played(id) => emit(MediaEvent::Played(id)),
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

    /// Ends the media: RTCP BYE, unfinished DTMF strings fail; returns the final counters.
    pub fn finish(mut self, emit: impl FnMut(MediaEvent)) -> MediaStats {
        self.session.close();
        self.drain(emit);
        for (_, done) in self.dtmf.drain() {
            let _ = done.send(Err("the media session ended".to_owned()));
        }
        self.session.stats()
    }

    fn send(&self, transmit: &Transmit) -> io::Result<usize> {
        let socket = match transmit.channel {
            Channel::Rtp => &self.rtp,
            Channel::Rtcp => self.rtcp.as_ref().unwrap_or(&self.rtp),
        };
        socket.try_send_to(&transmit.payload, transmit.destination)
    }
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
