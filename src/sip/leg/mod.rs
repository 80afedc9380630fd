//! One SIP call as a caller leg, read and written by the call's own task: the dialog, its
//! RTP media, and the leg machine (`machine.rs`) that decides between them.
//!
//! `SipCall::into_leg` turns a new dialog into a [`CallerLeg`]. Its [`SipLeg`] waits, in
//! [`SipLeg::next_event`], for whatever a SIP call hears (dialog events from the user agent,
//! RTP and RTCP datagrams, the media session's and the machine's deadlines, requests of the
//! call's tool actions, the answers of our own requests), feeds it to the media session or the
//! machine, and carries out what they decide: SIP messages, datagrams, events for the call.
//! Requests that wait for an answer (BYE, REFER, our answers to in-dialog requests) run as
//! futures owned by the leg, so nothing blocks the call's loop and nothing runs on another
//! task.

mod machine;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, HeadersExt, Request, StatusCode};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::message;
use super::sdp::{self, Codec, LocalMedia, Negotiated, SdpOrigin};
use super::ua::Shared;
use crate::call::clock::{now, sleep_until};
use crate::call::leg::{
    CallControl, CallerLeg, DtmfMode, LegCommand, LegEvent, LegInfo, LegIo, LegKind,
};
use crate::rtp::{MediaCodec, MediaConfig, MediaEvent, MediaIo, MediaWake};
use machine::{Action, LegMachine, LegSetup, MediaCmd};

/// Payload type we offer for telephone-event.
pub(crate) const TELEPHONE_EVENT_PT: u8 = 101;
/// How long a call that has ended waits for its last requests (BYE) to be answered.
const LAST_REQUESTS_GRACE: Duration = Duration::from_secs(10);

/// The media of a new call: negotiated from the INVITE's offer, or offered by us in the 200
/// (an INVITE without SDP) and negotiated from the ACK.
#[derive(Debug)]
pub(crate) enum Media {
    Answered(Negotiated, String),
    Offered(String),
}

/// What the user agent tells a call about its dialog.
#[derive(Debug)]
pub(crate) enum Notice {
    Dialog(DialogState),
}

/// Requests from [`SipControl`] (the call's tool actions) to the leg.
enum Control {
    Transfer {
        target: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Dtmf {
        digits: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The leg's [`CallControl`]: asks the leg, on the same task.
struct SipControl(mpsc::Sender<Control>);

impl SipControl {
    /// Sends the request `make` builds around a reply channel, and waits for the reply.
    fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Control + Send + 'static,
    ) -> BoxFuture<'static, Result<(), String>> {
        let sender = self.0.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            sender
                .send(make(reply))
                .await
                .map_err(|_| "the call has ended".to_owned())?;
            rx.await.map_err(|_| "the call has ended".to_owned())?
        }
        .boxed()
    }
}

impl CallControl for SipControl {
    fn transfer(&self, target: String) -> BoxFuture<'static, Result<(), String>> {
        self.ask(|reply| Control::Transfer { target, reply })
    }

    fn send_dtmf(&self, digits: String) -> BoxFuture<'static, Result<(), String>> {
        self.ask(|reply| Control::Dtmf { digits, reply })
    }
}

/// Everything a new SIP call starts with.
pub(crate) struct SipCall {
    pub dialog: InviteDialog,
    /// The dialog's INVITE (ours for an outbound call).
    pub request: Request,
    /// The calling and called parties (numbers or URIs).
    pub from: String,
    pub to: String,
    /// A route chosen when an outbound call was placed.
    pub route: Option<String>,
    /// An outbound call arrives answered; an inbound one rings first.
    pub answered: bool,
    pub media: Media,
    pub origin: SdpOrigin,
    pub local: LocalMedia,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub notices: mpsc::Receiver<Notice>,
    pub shared: Arc<Shared>,
}

impl SipCall {
    /// The call's leg, for the call's task.
    pub(crate) fn into_leg(self) -> CallerLeg {
        let (negotiated, sdp_body) = match self.media {
            Media::Answered(n, answer) => (Some(n), answer),
            Media::Offered(offer) => (None, offer),
        };
        let codec = negotiated.as_ref().map_or(
            self.shared
                .config
                .codecs
                .first()
                .copied()
                .unwrap_or(Codec::Pcmu),
            |n| n.codec,
        );
        let info = LegInfo {
            kind: LegKind::Sip,
            call_id: message::call_id(&self.request),
            from: self.from,
            to: self.to,
            route: self.route,
            format: codec.leg_format(),
            // RFC 4733 when the far end takes telephone-event (we always offer it); in-band
            // tones otherwise.
            dtmf: if negotiated
                .as_ref()
                .is_some_and(|n| n.telephone_event.is_none())
            {
                DtmfMode::InBand
            } else {
                DtmfMode::OutOfBand
            },
        };
        let (control_tx, controls) = mpsc::channel(8);
        let machine = LegMachine::new(
            now(),
            LegSetup {
                ring: self.shared.config.ring,
                answered: self.answered,
                negotiated: negotiated.is_some(),
                held: negotiated.as_ref().is_some_and(|n| n.held),
            },
        );
        let mut leg = SipLeg {
            id: self.dialog.id(),
            dialog: self.dialog,
            request: self.request,
            machine,
            negotiated,
            sdp_body,
            origin: self.origin,
            local: self.local,
            sockets: Some((self.rtp, self.rtcp)),
            media: None,
            notices: self.notices,
            controls,
            control: Arc::new(SipControl(control_tx)),
            transfer_reply: None,
            requests: FuturesUnordered::new(),
            events: VecDeque::new(),
            shared: self.shared,
            closed: false,
        };
        leg.carry_out(now());
        CallerLeg {
            info,
            io: LegIo::Sip(Box::new(leg)),
        }
    }
}

/// A request of ours that waits for its answer; what the leg must know of the answer.
type Pending = BoxFuture<'static, Option<Result<(), String>>>;

/// What woke the leg. It lives on the stack between a wake-up and its handling only, so the
/// size of a dialog event in it costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Notice(Option<Notice>),
    Control(Control),
    Media(MediaWake),
    /// One of our requests was answered (`Some` for a REFER's answer).
    Answered(Option<Result<(), String>>),
    Timer,
}

/// One SIP call, as the call's task sees it.
pub struct SipLeg {
    id: DialogId,
    dialog: InviteDialog,
    request: Request,
    machine: LegMachine,
    negotiated: Option<Negotiated>,
    /// Our SDP: the answer to the INVITE's offer, or our offer.
    sdp_body: String,
    origin: SdpOrigin,
    local: LocalMedia,
    /// The RTP and RTCP sockets, until the media starts.
    sockets: Option<(UdpSocket, UdpSocket)>,
    media: Option<MediaIo>,
    notices: mpsc::Receiver<Notice>,
    controls: mpsc::Receiver<Control>,
    control: Arc<SipControl>,
    /// The call's transfer request under way.
    transfer_reply: Option<oneshot::Sender<Result<(), String>>>,
    /// Our requests waiting for answers (BYE, REFER, answers to in-dialog requests).
    requests: FuturesUnordered<Pending>,
    /// Events for the call, in order.
    events: VecDeque<LegEvent>,
    shared: Arc<Shared>,
    closed: bool,
}

impl SipLeg {
    /// The next event for the call: `None` once the SIP side has ended and said so.
    /// Cancel-safe: what arrives is handled before the next wait.
    pub async fn next_event(&mut self) -> Option<LegEvent> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if self.machine.is_ended() {
                return None;
            }
            let deadline = self.machine.poll_timeout();
            let wake = tokio::select! {
                notice = self.notices.recv() => Wake::Notice(notice),
                Some(control) = self.controls.recv() => Wake::Control(control),
                wake = wait_media(&mut self.media) => Wake::Media(wake),
                Some(answer) = self.requests.next(), if !self.requests.is_empty() => {
                    Wake::Answered(answer)
                }
                () = sleep_until(deadline) => Wake::Timer,
            };
            let now = now();
            self.handle(wake, now);
            self.carry_out(now);
        }
    }

    /// Carries out a command of the call.
    pub fn send(&mut self, command: LegCommand) {
        let now = now();
        match command {
            LegCommand::Ready => self.machine.ready(now),
            LegCommand::Play(audio) => self.machine.play(audio),
            LegCommand::Mark(mark) => self.machine.mark(mark.id),
            LegCommand::Clear => self.machine.clear(),
            LegCommand::Hangup => self.machine.hangup(),
        }
        self.carry_out(now);
    }

    /// Queues audio in the leg's format.
    pub fn play(&mut self, audio: &[u8]) {
        if let Some(media) = &mut self.media {
            // What the session outputs is carried out at the next wake-up.
            if !self.machine.is_ended() {
                media.play(audio);
            }
            return;
        }
        self.machine.play(Bytes::copy_from_slice(audio));
        self.carry_out(now());
    }

    /// The leg's call control (REFER, RFC 4733 DTMF).
    pub fn control(&self) -> Arc<dyn CallControl> {
        self.control.clone()
    }

    /// Ends the leg once the call is over: our last requests get their answers (bounded in
    /// time), the media stops with its statistics recorded, and the dialog is forgotten.
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.machine.is_ended() {
            self.machine.hangup();
            self.carry_out(now());
        }
        // A BYE may still be scheduled (after a transfer's final NOTIFY): keep answering
        // requests until it has gone.
        let finishing = async {
            while !self.machine.is_ended() {
                let Some(at) = self.machine.poll_timeout() else {
                    break;
                };
                tokio::select! {
                    Some(_) = self.requests.next(), if !self.requests.is_empty() => {}
                    () = sleep_until(Some(at)) => {
                        let now = now();
                        self.machine.handle_timeout(now);
                        self.carry_out(now);
                    }
                }
            }
        };
        let _ = tokio::time::timeout(LAST_REQUESTS_GRACE, finishing).await;
        let requests = std::mem::take(&mut self.requests);
        let _ = tokio::time::timeout(LAST_REQUESTS_GRACE, requests.collect::<Vec<_>>()).await;
        if let Some(media) = self.media.take() {
            let stats = media.finish(|_| {});
            record_jitter(&self.shared, &stats);
        }
        self.shared.forget(&self.id);
    }

    fn handle(&mut self, wake: Wake, now: Instant) {
        match wake {
            Wake::Notice(Some(Notice::Dialog(state))) => self.dialog_state(state, now),
            Wake::Notice(None) => self.machine.terminated(),
            Wake::Control(Control::Transfer { target, reply }) => {
                if self.transfer_reply.is_some() {
                    let _ = reply.send(Err("the call cannot be transferred now".into()));
                    return;
                }
                self.transfer_reply = Some(reply);
                self.machine.transfer(now, target);
            }
            Wake::Control(Control::Dtmf { digits, reply }) => {
                match (&mut self.media, self.machine.can_send_dtmf()) {
                    (Some(media), true) => media.send_dtmf(&digits, reply),
                    _ => {
                        let _ = reply.send(Err("the call is not answered".into()));
                    }
                }
            }
            Wake::Media(wake) => {
                if let Some(media) = &mut self.media {
                    media.handle(wake, now);
                    if media.failed() {
                        warn!("media sockets keep failing; ending the call");
                        self.machine.media_failed();
                    }
                }
            }
            Wake::Answered(Some(result)) => self.machine.refer_answered(result),
            Wake::Answered(None) => {}
            Wake::Timer => self.machine.handle_timeout(now),
        }
    }

    fn dialog_state(&mut self, state: DialogState, now: Instant) {
        match state {
            DialogState::Calling(_) => self.machine.dialog_calling(),
            DialogState::Confirmed(_, _) => {
                if self.negotiated.is_none() {
                    // The INVITE had no offer: the ACK carries the answer.
                    self.negotiated = self.dialog.last_remote_ack().and_then(|ack| {
                        let body = String::from_utf8_lossy(&ack.body).into_owned();
                        sdp::parse_answer(&body, &self.shared.config.codecs, TELEPHONE_EVENT_PT)
                            .ok()
                    });
                    if self.negotiated.is_none() {
                        warn!("the ACK carried no usable SDP answer; ending the call");
                    }
                    self.machine.confirmed(self.negotiated.is_some());
                }
            }
            DialogState::Terminated(_, reason) => {
                debug!(?reason, "dialog ended");
                if matches!(reason, TerminatedReason::UacCancel) {
                    self.shared.metrics.inc("sip_calls_cancelled_total", &[]);
                }
                self.machine.terminated();
            }
            DialogState::Updated(_, req, handle) => {
                // re-INVITE or UPDATE: answer with our current SDP; track hold.
                let offer = String::from_utf8_lossy(&req.body).into_owned();
                if offer.trim().is_empty() {
                    let body = self.sdp_body.clone().into_bytes();
                    self.request(async move {
                        let _ = handle
                            .respond(StatusCode::OK, Some(sdp_headers()), Some(body))
                            .await;
                        None
                    });
                    return;
                }
                match sdp::answer(
                    &offer,
                    &self.shared.config.codecs,
                    &self.local,
                    &mut self.origin,
                ) {
                    Ok((n, answer)) => {
                        if let Some(media) = &mut self.media
                            && !n.held
                            && self
                                .negotiated
                                .as_ref()
                                .is_some_and(|old| old.remote != n.remote)
                        {
                            media.set_remote(n.remote);
                        }
                        if n.held != self.hold_state() {
                            info!(held = n.held, "hold state changed");
                        }
                        self.machine.hold(n.held);
                        self.negotiated = Some(n);
                        self.request(async move {
                            let _ = handle
                                .respond(
                                    StatusCode::OK,
                                    Some(sdp_headers()),
                                    Some(answer.into_bytes()),
                                )
                                .await;
                            None
                        });
                    }
                    Err(e) => {
                        let warning = message::warning(&self.shared.local, &e.to_string());
                        self.request(async move {
                            let _ = handle
                                .respond(StatusCode::NotAcceptableHere, Some(warning), None)
                                .await;
                            None
                        });
                    }
                }
            }
            DialogState::Notify(_, req, handle) => {
                self.request(async move {
                    let _ = handle.reply(StatusCode::OK).await;
                    None
                });
                if let Some(code) = sipfrag_status(&req) {
                    debug!(code, "transfer progress");
                    self.machine.notify(now, code);
                }
            }
            DialogState::Refer(_, _, handle) => {
                // We do not let the far end transfer us elsewhere.
                self.request(async move {
                    let _ = handle.reply(StatusCode::Forbidden).await;
                    None
                });
            }
            DialogState::Info(_, _, handle)
            | DialogState::Options(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                self.request(async move {
                    let _ = handle.reply(StatusCode::OK).await;
                    None
                });
            }
            DialogState::Trying(_) | DialogState::Early(..) | DialogState::WaitAck(..) => {}
        }
    }

    fn hold_state(&self) -> bool {
        self.negotiated.as_ref().is_some_and(|n| n.held)
    }

    fn request(
        &mut self,
        request: impl Future<Output = Option<Result<(), String>>> + Send + 'static,
    ) {
        self.requests.push(Box::pin(request));
    }

    /// Carries out what the machine decided, then what the media session produced.
    fn carry_out(&mut self, now: Instant) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Ring => {
                    if let Err(e) = self.dialog.ringing(None, None) {
                        debug!(error = %e, "180 not sent");
                    }
                }
                Action::Answer => {
                    let body = self.sdp_body.clone().into_bytes();
                    match self.dialog.accept(Some(sdp_headers()), Some(body)) {
                        Ok(()) => info!("call answered"),
                        Err(e) => {
                            warn!(error = %e, "could not answer");
                            self.machine.answer_failed();
                        }
                    }
                }
                Action::StartMedia => self.start_media(now),
                Action::Media(cmd) => {
                    if let Some(media) = &mut self.media {
                        match cmd {
                            MediaCmd::Play(audio) => media.play(&audio),
                            MediaCmd::Mark(mark) => media.mark(mark),
                            MediaCmd::Clear => media.clear(),
                            MediaCmd::Hold(held) => media.hold(held, now),
                        }
                    }
                }
                Action::Event(event) => self.events.push_back(event),
                Action::Bye => {
                    let dialog = self.dialog.clone();
                    self.request(async move {
                        if let Err(e) = dialog.bye().await {
                            debug!(error = %e, "BYE failed");
                        }
                        None
                    });
                }
                Action::Reject => {
                    if let Err(e) = self
                        .dialog
                        .reject(Some(StatusCode::TemporarilyUnavailable), None)
                    {
                        debug!(error = %e, "rejecting the call failed");
                    }
                }
                Action::Refer(target) => {
                    let refer_to = refer_target(&target, &self.request);
                    info!("transferring the call");
                    let dialog = self.dialog.clone();
                    self.request(async move {
                        let answer = dialog.refer(refer_to.as_str(), None, None).await;
                        Some(match answer {
                            Ok(Some(resp))
                                if resp.status_code.kind()
                                    == rsipstack::sip::StatusCodeKind::Successful =>
                            {
                                Ok(())
                            }
                            Ok(Some(resp)) => Err(format!(
                                "the transfer was refused ({})",
                                u16::from(resp.status_code)
                            )),
                            Ok(None) => Err("the transfer got no answer".to_owned()),
                            Err(e) => Err(format!("the transfer failed: {e}")),
                        })
                    });
                }
                Action::TransferDone(result) => {
                    if let Some(reply) = self.transfer_reply.take() {
                        let _ = reply.send(result);
                    }
                }
            }
        }
        if let Some(media) = &mut self.media {
            let events = &mut self.events;
            media.drain(|event| match event {
                MediaEvent::Audio(frame) => events.push_back(LegEvent::Audio(frame.into())),
                MediaEvent::Dtmf(digit) => events.push_back(LegEvent::Dtmf(digit)),
                MediaEvent::Played(mark) => events.push_back(LegEvent::Played(mark)),
                MediaEvent::Stats(_) => {}
            });
        }
    }

    /// Starts RTP on the negotiated stream.
    fn start_media(&mut self, now: Instant) {
        let (Some(n), Some((rtp, rtcp))) = (&self.negotiated, self.sockets.take()) else {
            return;
        };
        let codec = match n.codec {
            Codec::Pcmu => MediaCodec::Pcmu,
            Codec::Pcma => MediaCodec::Pcma,
            #[cfg(feature = "opus")]
            Codec::Opus => MediaCodec::Opus,
            #[cfg(not(feature = "opus"))]
            Codec::Opus => {
                warn!("Opus was negotiated but this build has no Opus; ending the call");
                self.machine.media_failed();
                return;
            }
        };
        let config = MediaConfig {
            rtp,
            rtcp: Some(rtcp),
            remote: n.remote,
            codec,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
            ptime_ms: n.ptime_ms,
            seed: rand::random(),
        };
        match MediaIo::new(config, Arc::clone(&self.shared.metrics), now) {
            Ok(media) => self.media = Some(media),
            Err(error) => {
                warn!(%error, "media session not started; ending the call");
                self.machine.media_failed();
            }
        }
    }
}

async fn wait_media(media: &mut Option<MediaIo>) -> MediaWake {
    match media {
        Some(media) => media.wait().await,
        None => std::future::pending().await,
    }
}

/// Adds a call's interarrival jitter (RFC 3550) to a sum and count, so `/metrics` gives the
/// mean over calls.
fn record_jitter(shared: &Shared, stats: &crate::rtp::MediaStats) {
    if stats.packets_in > 0 {
        shared
            .metrics
            .add("rtp_jitter_ms_sum", &[], stats.jitter_ms.round() as u64);
        shared.metrics.inc("rtp_jitter_ms_count", &[]);
    }
}

fn sdp_headers() -> Vec<Header> {
    vec![Header::ContentType("application/sdp".into())]
}

/// The status code of a NOTIFY's `message/sipfrag` body (`SIP/2.0 200 OK`).
fn sipfrag_status(req: &Request) -> Option<u16> {
    let body = std::str::from_utf8(&req.body).ok()?;
    let line = body.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("SIP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The Refer-To URI for a transfer target: SIP URIs as given, anything else (a number) as a
/// user at the caller's host.
fn refer_target(target: &str, request: &Request) -> String {
    let t = target.trim();
    if t.starts_with("sip:") || t.starts_with("sips:") || t.starts_with("tel:") {
        return t.to_owned();
    }
    let host = request
        .from_header()
        .ok()
        .and_then(|f| f.uri().ok())
        .map(|u| u.host_with_port.to_string())
        .unwrap_or_else(|| request.uri.host_with_port.to_string());
    format!("sip:{t}@{host}")
}

#[cfg(test)]
mod tests {
    use rsipstack::sip::{Request, SipMessage};

    use super::{refer_target, sipfrag_status};

    fn request(body: &str) -> Request {
        let text = format!(
            "NOTIFY sip:dialtone@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
             From: <sip:+14155550100@trunk.example.com>;tag=1\r\n\
             To: <sip:100@127.0.0.1>;tag=2\r\n\
             Call-ID: c1\r\n\
             CSeq: 2 NOTIFY\r\n\
             Event: refer\r\n\
             Content-Type: message/sipfrag;version=2.0\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match SipMessage::try_from(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn sipfrag_bodies_give_the_transfer_progress() {
        assert_eq!(
            sipfrag_status(&request("SIP/2.0 100 Trying\r\n")),
            Some(100)
        );
        assert_eq!(sipfrag_status(&request("SIP/2.0 200 OK\r\n")), Some(200));
        assert_eq!(
            sipfrag_status(&request("SIP/2.0 486 Busy Here\r\n")),
            Some(486)
        );
        assert_eq!(sipfrag_status(&request("")), None);
        assert_eq!(sipfrag_status(&request("hello\r\n")), None);
        assert_eq!(sipfrag_status(&request("SIP/2.0 abc\r\n")), None);
    }

    #[test]
    fn transfer_targets_become_refer_to_uris() {
        let req = request("");
        assert_eq!(
            refer_target("sip:sales@pbx.example.com", &req),
            "sip:sales@pbx.example.com"
        );
        assert_eq!(refer_target(" tel:+15550001 ", &req), "tel:+15550001");
        // A number is dialled at the caller's host.
        assert_eq!(
            refer_target("+15550001111", &req),
            "sip:+15550001111@trunk.example.com"
        );
    }
}
