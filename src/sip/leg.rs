//! One SIP call as a caller leg: the dialog, its RTP media, and the task between them and the
//! call driver.
//!
//! The call rings (180) as soon as the dialog exists and is answered (200 with the SDP answer)
//! once the model session is ready ([`LegCommand::Ready`]) and the minimum ringing time has
//! passed, so a caller never hears dead air and a CANCEL during ringing gets its 487. Audio the
//! driver sends before the answer waits here and plays from the first packet. Hold (a
//! re-INVITE or UPDATE with `sendonly`/`inactive`) stops our RTP and is reported to the call.
//! Transfers use REFER and follow the NOTIFY sipfrag progress; DTMF goes out as RFC 4733
//! events.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, HeadersExt, Request, StatusCode};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::message;
use super::sdp::{self, Codec, LocalMedia, Negotiated, SdpOrigin};
use super::ua::Shared;
use crate::call::leg::{
    CallControl, CallerLeg, ChannelLeg, DtmfMode, LegCommand, LegEvent, LegInfo, LegIo, LegKind,
};
use crate::rtp::{self, MediaCodec, MediaCommand, MediaConfig, MediaEvent, MediaHandle};

/// Payload type we offer for telephone-event.
pub(crate) const TELEPHONE_EVENT_PT: u8 = 101;
/// How long the answer to a final NOTIFY gets before our BYE follows it.
const NOTIFY_ANSWER_HEAD_START: Duration = Duration::from_millis(100);
/// How long a REFER may take to succeed or fail.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Requests from [`SipControl`] to the call's task.
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

/// The leg's [`CallControl`]: asks the call's task.
struct SipControl(mpsc::Sender<Control>);

impl CallControl for SipControl {
    fn transfer(&self, target: String) -> BoxFuture<'static, Result<(), String>> {
        let sender = self.0.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            sender
                .send(Control::Transfer { target, reply })
                .await
                .map_err(|_| "the call has ended".to_owned())?;
            rx.await.map_err(|_| "the call has ended".to_owned())?
        }
        .boxed()
    }

    fn send_dtmf(&self, digits: String) -> BoxFuture<'static, Result<(), String>> {
        let sender = self.0.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            sender
                .send(Control::Dtmf { digits, reply })
                .await
                .map_err(|_| "the call has ended".to_owned())?;
            rx.await.map_err(|_| "the call has ended".to_owned())?
        }
        .boxed()
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

/// Where the call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered,
}

/// A REFER under way.
struct PendingTransfer {
    reply: oneshot::Sender<Result<(), String>>,
    deadline: Instant,
}

impl SipCall {
    /// Runs the call until its dialog ends.
    #[allow(clippy::disallowed_methods)] // the SIP leg task keeps its own ringing and transfer clocks
    pub(crate) async fn run(self) {
        let Self {
            dialog,
            request,
            from,
            to,
            route,
            answered,
            media,
            mut origin,
            local,
            rtp,
            rtcp,
            mut notices,
            shared,
        } = self;
        let id = dialog.id();
        let (negotiated, sdp_body) = match media {
            Media::Answered(n, answer) => (Some(n), answer),
            Media::Offered(offer) => (None, offer),
        };
        let codec = negotiated.as_ref().map_or(
            shared.config.codecs.first().copied().unwrap_or(Codec::Pcmu),
            |n| n.codec,
        );
        let (event_tx, events) = mpsc::channel(256);
        let (commands, mut command_rx) = mpsc::channel(256);
        let (control_tx, mut control_rx) = mpsc::channel(8);
        let info = LegInfo {
            kind: LegKind::Sip,
            call_id: message::call_id(&request),
            from,
            to,
            route,
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
        (shared.on_call)(CallerLeg {
            info,
            io: LegIo::Channel(ChannelLeg {
                events,
                commands,
                control: Arc::new(SipControl(control_tx)),
            }),
        });

        let ring_until = Instant::now() + shared.config.ring;
        let mut phase = Phase::Ringing;
        if answered {
            phase = Phase::Answered;
        }
        let mut ready = false;
        let mut negotiated = negotiated;
        let mut sockets = Some((rtp, rtcp));
        let mut media: Option<MediaHandle> = None;
        let mut early: Vec<MediaCommand> = Vec::new();
        let mut held = negotiated.as_ref().is_some_and(|n| n.held);
        let mut transfer: Option<PendingTransfer> = None;
        if answered {
            if let Some(n) = &negotiated {
                media = start_media(n, &mut sockets, &shared, &mut early);
            }
        }
        let mut refer_result: Option<oneshot::Receiver<Result<(), String>>> = None;
        let gone = loop {
            let answer_at = (phase == Phase::Ringing && ready).then_some(ring_until);
            let transfer_deadline = transfer.as_ref().map(|t| t.deadline);
            tokio::select! {
                notice = notices.recv() => {
                    let Some(Notice::Dialog(state)) = notice else { break true };
                    match state {
                        DialogState::Calling(_) => {
                            if let Err(e) = dialog.ringing(None, None) {
                                debug!(error = %e, "180 not sent");
                            }
                        }
                        DialogState::Confirmed(_, _) => {
                            if negotiated.is_none() {
                                // The INVITE had no offer: the ACK carries the answer.
                                negotiated = dialog.last_remote_ack().and_then(|ack| {
                                    let body = String::from_utf8_lossy(&ack.body).into_owned();
                                    sdp::parse_answer(&body, &shared.config.codecs, TELEPHONE_EVENT_PT).ok()
                                });
                                match &negotiated {
                                    Some(n) => {
                                        media = start_media(n, &mut sockets, &shared, &mut early);
                                    }
                                    None => {
                                        warn!("the ACK carried no usable SDP answer; ending the call");
                                        let _ = dialog.bye().await;
                                        break true;
                                    }
                                }
                            }
                        }
                        DialogState::Terminated(_, reason) => {
                            debug!(?reason, "dialog ended");
                            if matches!(reason, TerminatedReason::UacCancel) {
                                shared.metrics.inc("sip_calls_cancelled_total", &[]);
                            }
                            break true;
                        }
                        DialogState::Updated(_, req, handle) => {
                            // re-INVITE or UPDATE: answer with our current SDP; track hold.
                            let offer = String::from_utf8_lossy(&req.body).into_owned();
                            if offer.trim().is_empty() {
                                let _ = handle.respond(StatusCode::OK, Some(sdp_headers()), Some(sdp_body.clone().into_bytes())).await;
                                continue;
                            }
                            match sdp::answer(&offer, &shared.config.codecs, &local, &mut origin) {
                                Ok((n, answer)) => {
                                    if n.held != held {
                                        held = n.held;
                                        info!(held, "hold state changed");
                                        if let Some(m) = &media {
                                            let _ = m.commands.send(MediaCommand::Hold(held)).await;
                                        }
                                        let _ = event_tx.send(LegEvent::Hold(held)).await;
                                    }
                                    if let Some(m) = &media {
                                        if !n.held && negotiated.as_ref().is_some_and(|old| old.remote != n.remote) {
                                            let _ = m.commands.send(MediaCommand::SetRemote(n.remote)).await;
                                        }
                                    }
                                    negotiated = Some(n);
                                    let _ = handle.respond(StatusCode::OK, Some(sdp_headers()), Some(answer.into_bytes())).await;
                                }
                                Err(e) => {
                                    let _ = handle.respond(StatusCode::NotAcceptableHere, Some(message::warning(&shared.local, &e.to_string())), None).await;
                                }
                            }
                        }
                        DialogState::Notify(_, req, handle) => {
                            let _ = handle.reply(StatusCode::OK).await;
                            if let Some(code) = sipfrag_status(&req) {
                                debug!(code, "transfer progress");
                                if code >= 200 {
                                    if let Some(t) = transfer.take() {
                                        let result = if (200..300).contains(&code) {
                                            Ok(())
                                        } else {
                                            Err(format!("the transfer target answered {code}"))
                                        };
                                        let succeeded = result.is_ok();
                                        let _ = t.reply.send(result);
                                        if succeeded {
                                            // Our 200 for this NOTIFY leaves through its
                                            // transaction's own task: let it go first, since
                                            // strict peers reject a BYE that overtakes it.
                                            tokio::time::sleep(NOTIFY_ANSWER_HEAD_START).await;
                                            let _ = dialog.bye().await;
                                            break true;
                                        }
                                    }
                                }
                            }
                        }
                        DialogState::Refer(_, _, handle) => {
                            // We do not let the far end transfer us elsewhere.
                            let _ = handle.reply(StatusCode::Forbidden).await;
                        }
                        DialogState::Info(_, _, handle)
                        | DialogState::Options(_, _, handle)
                        | DialogState::Message(_, _, handle)
                        | DialogState::Publish(_, _, handle) => {
                            let _ = handle.reply(StatusCode::OK).await;
                        }
                        DialogState::Trying(_) | DialogState::Early(..) | DialogState::WaitAck(..) => {}
                    }
                }
                command = command_rx.recv() => {
                    let Some(command) = command else {
                        // The driver is gone: end the call.
                        end_dialog(&dialog, phase).await;
                        break false;
                    };
                    match command {
                        LegCommand::Ready => ready = true,
                        LegCommand::Play(audio) => forward(&media, &mut early, MediaCommand::Play(audio.to_vec())).await,
                        LegCommand::Mark(mark) => forward(&media, &mut early, MediaCommand::Mark(mark)).await,
                        LegCommand::Clear => {
                            if media.is_some() {
                                forward(&media, &mut early, MediaCommand::Clear).await;
                            } else {
                                // Nothing has played yet: every waiting mark is reached at once.
                                for cmd in early.drain(..) {
                                    if let MediaCommand::Mark(m) = cmd {
                                        let _ = event_tx.send(LegEvent::Played(m.id)).await;
                                    }
                                }
                            }
                        }
                        LegCommand::Hangup => {
                            end_dialog(&dialog, phase).await;
                            break false;
                        }
                    }
                }
                () = sleep_until(answer_at) => {
                    let headers = sdp_headers();
                    match dialog.accept(Some(headers), Some(sdp_body.clone().into_bytes())) {
                        Ok(()) => {
                            phase = Phase::Answered;
                            info!("call answered");
                            if let Some(n) = &negotiated {
                                media = start_media(n, &mut sockets, &shared, &mut early);
                                if held {
                                    if let Some(m) = &media {
                                        let _ = m.commands.send(MediaCommand::Hold(true)).await;
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "could not answer");
                            break true;
                        }
                    }
                }
                event = recv_media(&mut media) => match event {
                    Some(MediaEvent::Audio(frame)) => { let _ = event_tx.send(LegEvent::Audio(frame)).await; }
                    Some(MediaEvent::Dtmf(digit)) => { let _ = event_tx.send(LegEvent::Dtmf(digit)).await; }
                    Some(MediaEvent::Played(mark)) => { let _ = event_tx.send(LegEvent::Played(mark)).await; }
                    Some(MediaEvent::Stats(stats)) => record_jitter(&shared, &stats),
                    None => {
                        warn!("media ended; ending the call");
                        media = None;
                        end_dialog(&dialog, phase).await;
                        break true;
                    }
                },
                control = control_rx.recv() => match control {
                    Some(Control::Transfer { target, reply }) => {
                        if transfer.is_some() || phase != Phase::Answered {
                            let _ = reply.send(Err("the call cannot be transferred now".into()));
                            continue;
                        }
                        let refer_to = refer_target(&target, &request);
                        info!("transferring the call");
                        let (done, rx) = oneshot::channel();
                        let d = dialog.clone();
                        tokio::spawn(async move {
                            let result = match d.refer(refer_to.as_str(), None, None).await {
                                Ok(Some(resp)) if resp.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => Ok(()),
                                Ok(Some(resp)) => Err(format!("the transfer was refused ({})", u16::from(resp.status_code))),
                                Ok(None) => Err("the transfer got no answer".to_owned()),
                                Err(e) => Err(format!("the transfer failed: {e}")),
                            };
                            let _ = done.send(result);
                        });
                        refer_result = Some(rx);
                        transfer = Some(PendingTransfer { reply, deadline: Instant::now() + TRANSFER_TIMEOUT });
                    }
                    Some(Control::Dtmf { digits, reply }) => match &media {
                        Some(m) => { let _ = m.commands.send(MediaCommand::SendDtmf { digits, done: reply }).await; }
                        None => { let _ = reply.send(Err("the call is not answered".into())); }
                    },
                    None => {}
                },
                accepted = recv_refer(&mut refer_result) => {
                    refer_result = None;
                    if let Err(e) = accepted {
                        if let Some(t) = transfer.take() {
                            let _ = t.reply.send(Err(e));
                        }
                    }
                }
                () = sleep_until(transfer_deadline) => {
                    if let Some(t) = transfer.take() {
                        let _ = t.reply.send(Err("the transfer timed out".into()));
                    }
                }
            }
        };
        if let Some(mut m) = media {
            let _ = m.commands.send(MediaCommand::Stop).await;
            // The engine reports its statistics as it stops.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(event) = m.events.recv().await {
                    if let MediaEvent::Stats(stats) = event {
                        record_jitter(&shared, &stats);
                        break;
                    }
                }
            })
            .await;
        }
        if gone {
            let _ = event_tx.send(LegEvent::Gone).await;
        }
        shared.forget(&id);
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

/// Ends the dialog from our side: BYE once answered, 480 while ringing.
async fn end_dialog(dialog: &InviteDialog, phase: Phase) {
    let result = match phase {
        Phase::Answered => dialog.bye().await,
        Phase::Ringing => dialog.reject(Some(StatusCode::TemporarilyUnavailable), None),
    };
    if let Err(e) = result {
        debug!(error = %e, "ending the dialog failed");
    }
}

/// Starts RTP once the call is answered, and plays what waited.
fn start_media(
    n: &Negotiated,
    sockets: &mut Option<(UdpSocket, UdpSocket)>,
    shared: &Shared,
    early: &mut Vec<MediaCommand>,
) -> Option<MediaHandle> {
    let (rtp, rtcp) = sockets.take()?;
    let codec = match n.codec {
        Codec::Pcmu => MediaCodec::Pcmu,
        Codec::Pcma => MediaCodec::Pcma,
        #[cfg(feature = "opus")]
        Codec::Opus => MediaCodec::Opus,
        #[cfg(not(feature = "opus"))]
        Codec::Opus => return None,
    };
    let handle = rtp::start(
        MediaConfig {
            rtp,
            rtcp: Some(rtcp),
            remote: n.remote,
            codec,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
            ptime_ms: n.ptime_ms,
            seed: rand::random(),
        },
        Arc::clone(&shared.metrics),
    );
    for cmd in early.drain(..) {
        if handle.commands.try_send(cmd).is_err() {
            break;
        }
    }
    Some(handle)
}

async fn forward(media: &Option<MediaHandle>, early: &mut Vec<MediaCommand>, cmd: MediaCommand) {
    match media {
        Some(m) => {
            let _ = m.commands.send(cmd).await;
        }
        None => early.push(cmd),
    }
}

async fn recv_media(media: &mut Option<MediaHandle>) -> Option<MediaEvent> {
    match media {
        Some(m) => m.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_refer(
    pending: &mut Option<oneshot::Receiver<Result<(), String>>>,
) -> Result<(), String> {
    match pending {
        Some(rx) => rx.await.unwrap_or(Err("the transfer was abandoned".into())),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
