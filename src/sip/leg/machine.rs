//! What a SIP call does between its dialog and the call, sans-IO: answer timing, audio that
//! waits for the answer, hold, transfer progress and its deadline, and the order of the
//! last messages.
//!
//! [`LegMachine`] is fed what happened on the dialog and what the call asks of its leg, each
//! with `now`, and drained for [`Action`]s: SIP messages to send, commands for the media
//! session, events for the call, and the answers to transfer requests. It reads no clock and
//! sends nothing, so every rule below is tested on a virtual clock:
//!
//! - An inbound call rings (180) as soon as its dialog exists and is answered (200 with the
//!   SDP answer) once the model session is ready *and* the minimum ringing time has passed, so
//!   a caller never hears dead air and a CANCEL during ringing gets its 487. An outbound call
//!   starts answered.
//! - Audio and marks the call sends before the media starts wait here and are played from the
//!   first packet; a clear before then reports every waiting mark at once (nothing played).
//! - Hold (a re-INVITE or UPDATE with `sendonly`/`inactive`) is passed to the media session and
//!   to the call; a hold that arrives while ringing is applied when the media starts.
//! - A transfer sends REFER and follows the NOTIFY sipfrag progress: a final 2xx succeeds and,
//!   after our answer to that NOTIFY has had a head start (strict peers reject a BYE that
//!   overtakes it), ends the call with BYE; a final failure, a refused REFER or the deadline
//!   fails the transfer and the call goes on.
//! - The call ends from our side with BYE once answered, or 480 while ringing; from the far
//!   side, the dialog's end is reported to the call as [`LegEvent::Gone`], once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bridge::MarkId;
use crate::call::leg::LegEvent;

/// How long a REFER may take to succeed or fail.
pub(crate) const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the answer to a final NOTIFY gets before our BYE follows it.
pub(crate) const NOTIFY_ANSWER_HEAD_START: Duration = Duration::from_millis(100);

/// A command for the media session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaCmd {
    Play(Bytes),
    Mark(MarkId),
    Clear,
    Hold(bool),
}

/// What the leg's adapter must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Send 180 Ringing.
    Ring,
    /// Send 200 OK with our SDP. The adapter reports a failure with
    /// [`LegMachine::answer_failed`].
    Answer,
    /// Start the RTP media session (the negotiated stream is known).
    StartMedia,
    Media(MediaCmd),
    /// Tell the call.
    Event(LegEvent),
    /// Send BYE.
    Bye,
    /// Reject the ringing call with 480.
    Reject,
    /// Send REFER to this target.
    Refer(String),
    /// Answer the call's transfer request.
    TransferDone(Result<(), String>),
}

/// Where the call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered,
    Ended,
}

/// The settings of one leg.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LegSetup {
    /// Minimum ringing before an inbound call is answered.
    pub ring: Duration,
    /// An outbound call starts answered.
    pub answered: bool,
    /// The media stream is already negotiated (the INVITE had an offer, or we placed the call);
    /// otherwise it is negotiated from the ACK.
    pub negotiated: bool,
    /// The offer already put the call on hold.
    pub held: bool,
}

/// The SIP side of one call.
#[derive(Debug)]
pub(crate) struct LegMachine {
    phase: Phase,
    ring_until: Instant,
    /// The model session is ready: the call may be answered.
    ready: bool,
    negotiated: bool,
    media_started: bool,
    held: bool,
    /// Audio and marks waiting for the media to start.
    early: Vec<MediaCmd>,
    /// Deadline of the transfer under way.
    transfer: Option<Instant>,
    /// When to send the BYE that ends a transferred call.
    bye_at: Option<Instant>,
    gone_reported: bool,
    out: VecDeque<Action>,
}

impl LegMachine {
    pub(crate) fn new(now: Instant, setup: LegSetup) -> Self {
        let mut machine = Self {
            phase: if setup.answered {
                Phase::Answered
            } else {
                Phase::Ringing
            },
            ring_until: now + setup.ring,
            ready: false,
            negotiated: setup.negotiated,
            media_started: false,
            held: setup.held,
            early: Vec::new(),
            transfer: None,
            bye_at: None,
            gone_reported: false,
            out: VecDeque::new(),
        };
        if setup.answered && setup.negotiated {
            machine.start_media();
        }
        machine
    }

    /// The next action, if any.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Ended {
            return None;
        }
        let answer = (self.phase == Phase::Ringing && self.ready).then_some(self.ring_until);
        [answer, self.transfer, self.bye_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the call is over on the SIP side.
    pub(crate) fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    // ---- the dialog ----

    /// The dialog exists (the INVITE was taken): ring.
    pub(crate) fn dialog_calling(&mut self) {
        if self.phase == Phase::Ringing {
            self.out.push_back(Action::Ring);
        }
    }

    /// The ACK arrived. `negotiated` says whether the media stream is known now (an INVITE
    /// without an offer gets its answer in the ACK); without it the call cannot go on.
    pub(crate) fn confirmed(&mut self, negotiated: bool) {
        if self.phase == Phase::Ended || self.negotiated {
            return;
        }
        if negotiated {
            self.negotiated = true;
            if self.phase == Phase::Answered {
                self.start_media();
            }
        } else {
            self.end_from_here(true);
        }
    }

    /// The dialog ended (BYE or CANCEL from the far end, or a failure).
    pub(crate) fn terminated(&mut self) {
        self.phase = Phase::Ended;
        self.transfer_done(Err("the call has ended".to_owned()));
        self.report_gone();
    }

    /// A re-INVITE or UPDATE set the hold state.
    pub(crate) fn hold(&mut self, held: bool) {
        if held == self.held || self.phase == Phase::Ended {
            return;
        }
        self.held = held;
        if self.media_started {
            self.out.push_back(Action::Media(MediaCmd::Hold(held)));
        }
        self.out.push_back(Action::Event(LegEvent::Hold(held)));
    }

    /// A NOTIFY of the transfer carried this sipfrag status code.
    pub(crate) fn notify(&mut self, now: Instant, code: u16) {
        if code < 200 || self.transfer.is_none() {
            return;
        }
        if (200..300).contains(&code) {
            self.transfer_done(Ok(()));
            self.bye_at = Some(now + NOTIFY_ANSWER_HEAD_START);
        } else {
            self.transfer_done(Err(format!("the transfer target answered {code}")));
        }
    }

    /// The far end answered our REFER: `Err` when it refused it or never answered.
    pub(crate) fn refer_answered(&mut self, result: Result<(), String>) {
        if let Err(e) = result {
            self.transfer_done(Err(e));
        }
    }

    /// The 200 could not be sent: the call cannot go on.
    pub(crate) fn answer_failed(&mut self) {
        self.phase = Phase::Ended;
        self.report_gone();
    }

    /// The media session failed: end the call.
    pub(crate) fn media_failed(&mut self) {
        self.end_from_here(true);
    }

    // ---- the call ----

    /// The model session is ready: answer once the ringing time is up.
    pub(crate) fn ready(&mut self, now: Instant) {
        self.ready = true;
        self.handle_timeout(now);
    }

    /// Audio (whole frames in the leg's format) to play.
    pub(crate) fn play(&mut self, audio: Bytes) {
        self.media(MediaCmd::Play(audio));
    }

    /// A mark after the audio sent so far.
    pub(crate) fn mark(&mut self, mark: MarkId) {
        self.media(MediaCmd::Mark(mark));
    }

    /// Drop the audio not played yet.
    pub(crate) fn clear(&mut self) {
        if self.media_started {
            self.out.push_back(Action::Media(MediaCmd::Clear));
            return;
        }
        // Nothing has played yet: every waiting mark is reached at once.
        for cmd in std::mem::take(&mut self.early) {
            if let MediaCmd::Mark(mark) = cmd {
                self.out.push_back(Action::Event(LegEvent::Played(mark)));
            }
        }
    }

    /// The call hangs up. After a successful transfer the BYE is already scheduled: it keeps
    /// its time, so it does not overtake our answer to the final NOTIFY.
    pub(crate) fn hangup(&mut self) {
        if self.bye_at.is_some() {
            return;
        }
        self.end_from_here(false);
    }

    /// The call asks for a transfer to `target`.
    pub(crate) fn transfer(&mut self, now: Instant, target: String) {
        if self.transfer.is_some() || self.bye_at.is_some() || self.phase != Phase::Answered {
            self.out.push_back(Action::TransferDone(Err(
                "the call cannot be transferred now".to_owned(),
            )));
            return;
        }
        self.transfer = Some(now + TRANSFER_TIMEOUT);
        self.out.push_back(Action::Refer(target));
    }

    /// Whether DTMF can be sent now (the media is running).
    pub(crate) fn can_send_dtmf(&self) -> bool {
        self.media_started && self.phase == Phase::Answered
    }

    /// Time passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Ringing && self.ready && now >= self.ring_until {
            self.phase = Phase::Answered;
            self.out.push_back(Action::Answer);
            if self.negotiated {
                self.start_media();
            }
        }
        if self.transfer.is_some_and(|at| now >= at) {
            self.transfer_done(Err("the transfer timed out".to_owned()));
        }
        if self.bye_at.is_some_and(|at| now >= at) {
            self.bye_at = None;
            self.end_from_here(true);
        }
    }

    fn media(&mut self, cmd: MediaCmd) {
        if self.phase == Phase::Ended {
            return;
        }
        if self.media_started {
            self.out.push_back(Action::Media(cmd));
        } else {
            self.early.push(cmd);
        }
    }

    fn start_media(&mut self) {
        if self.media_started {
            return;
        }
        self.media_started = true;
        self.out.push_back(Action::StartMedia);
        if self.held {
            self.out.push_back(Action::Media(MediaCmd::Hold(true)));
        }
        for cmd in std::mem::take(&mut self.early) {
            self.out.push_back(Action::Media(cmd));
        }
    }

    /// Ends the dialog from our side: BYE once answered, 480 while ringing. `tell_call` says
    /// whether the call must hear of it (it did not ask for it).
    fn end_from_here(&mut self, tell_call: bool) {
        match self.phase {
            Phase::Ended => return,
            Phase::Answered => self.out.push_back(Action::Bye),
            Phase::Ringing => self.out.push_back(Action::Reject),
        }
        self.phase = Phase::Ended;
        self.transfer_done(Err("the call has ended".to_owned()));
        if tell_call {
            self.report_gone();
        } else {
            // The call ended itself: it needs no Gone.
            self.gone_reported = true;
        }
    }

    fn transfer_done(&mut self, result: Result<(), String>) {
        if self.transfer.take().is_some() {
            self.out.push_back(Action::TransferDone(result));
        }
    }

    fn report_gone(&mut self) {
        if !self.gone_reported {
            self.gone_reported = true;
            self.out.push_back(Action::Event(LegEvent::Gone));
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
