//! The SIP leg machine on a virtual clock: every rule of its module documentation.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn inbound() -> LegSetup {
    LegSetup {
        ring: ms(3000),
        answered: false,
        negotiated: true,
        held: false,
    }
}

/// A machine and its virtual clock.
struct Leg {
    m: LegMachine,
    t0: Instant,
    now: Instant,
}

impl Leg {
    fn new(setup: LegSetup) -> Self {
        let t0 = Instant::now();
        Self {
            m: LegMachine::new(t0, setup),
            t0,
            now: t0,
        }
    }

    /// Moves the clock to `at` ms after the start, firing the timeouts due on the way.
    fn at(&mut self, at: u64) {
        let end = self.t0 + ms(at);
        while let Some(due) = self.m.poll_timeout().filter(|&t| t <= end) {
            self.now = due.max(self.now);
            self.m.handle_timeout(self.now);
        }
        self.now = end;
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.m.poll_action()).collect()
    }
}

fn play(n: u8) -> Action {
    Action::Media(MediaCmd::Play(Bytes::from(vec![n; 160])))
}

#[test]
fn rings_at_once_and_answers_when_ready_and_the_ringing_time_is_up() {
    let mut leg = Leg::new(inbound());
    leg.m.dialog_calling();
    assert_eq!(leg.actions(), [Action::Ring]);
    // Ready early: the answer waits for the ringing time.
    leg.at(500);
    leg.m.ready(leg.now);
    assert_eq!(leg.actions(), []);
    assert_eq!(leg.m.poll_timeout(), Some(leg.t0 + ms(3000)));
    leg.at(2999);
    assert_eq!(leg.actions(), []);
    leg.at(3000);
    assert_eq!(leg.actions(), [Action::Answer, Action::StartMedia]);
}

#[test]
fn a_session_ready_after_the_ringing_time_answers_at_once() {
    let mut leg = Leg::new(inbound());
    leg.at(5000);
    assert_eq!(leg.actions(), [], "not ready: keeps ringing");
    assert_eq!(leg.m.poll_timeout(), None);
    leg.m.ready(leg.now);
    assert_eq!(leg.actions(), [Action::Answer, Action::StartMedia]);
}

#[test]
fn audio_before_the_answer_waits_and_plays_from_the_first_packet() {
    let mut leg = Leg::new(LegSetup {
        ring: ms(1000),
        ..inbound()
    });
    leg.m.ready(leg.now);
    leg.m.play(Bytes::from(vec![1; 160]));
    leg.m.mark(MarkId(1));
    leg.m.play(Bytes::from(vec![2; 160]));
    assert_eq!(leg.actions(), []);
    leg.at(1000);
    assert_eq!(
        leg.actions(),
        [
            Action::Answer,
            Action::StartMedia,
            play(1),
            Action::Media(MediaCmd::Mark(MarkId(1))),
            play(2),
        ]
    );
    // Once the media runs, commands go straight to it.
    leg.m.mark(MarkId(2));
    assert_eq!(leg.actions(), [Action::Media(MediaCmd::Mark(MarkId(2)))]);
}

#[test]
fn a_clear_before_the_answer_reports_every_waiting_mark() {
    let mut leg = Leg::new(inbound());
    leg.m.play(Bytes::from(vec![1; 160]));
    leg.m.mark(MarkId(4));
    leg.m.play(Bytes::from(vec![2; 160]));
    leg.m.mark(MarkId(5));
    leg.m.clear();
    assert_eq!(
        leg.actions(),
        [
            Action::Event(LegEvent::Played(MarkId(4))),
            Action::Event(LegEvent::Played(MarkId(5))),
        ]
    );
    leg.m.ready(leg.now);
    leg.at(3000);
    assert_eq!(leg.actions(), [Action::Answer, Action::StartMedia]);
    // After the answer, a clear goes to the media.
    leg.m.clear();
    assert_eq!(leg.actions(), [Action::Media(MediaCmd::Clear)]);
}

#[test]
fn hold_reaches_the_media_and_the_call_and_a_hold_while_ringing_waits_for_the_media() {
    let mut leg = Leg::new(LegSetup {
        ring: ms(0),
        held: true,
        ..inbound()
    });
    leg.m.hold(true);
    assert_eq!(leg.actions(), [], "already held by the offer");
    leg.m.ready(leg.now);
    assert_eq!(
        leg.actions(),
        [
            Action::Answer,
            Action::StartMedia,
            Action::Media(MediaCmd::Hold(true))
        ]
    );
    leg.m.hold(false);
    assert_eq!(
        leg.actions(),
        [
            Action::Media(MediaCmd::Hold(false)),
            Action::Event(LegEvent::Hold(false))
        ]
    );
}

#[test]
fn an_invite_without_offer_starts_media_when_the_ack_brings_the_answer() {
    let mut leg = Leg::new(LegSetup {
        ring: ms(0),
        negotiated: false,
        ..inbound()
    });
    leg.m.ready(leg.now);
    assert_eq!(leg.actions(), [Action::Answer]);
    leg.m.confirmed(true);
    assert_eq!(leg.actions(), [Action::StartMedia]);
}

#[test]
fn an_ack_without_a_usable_answer_ends_the_call() {
    let mut leg = Leg::new(LegSetup {
        ring: ms(0),
        negotiated: false,
        ..inbound()
    });
    leg.m.ready(leg.now);
    leg.actions();
    leg.m.confirmed(false);
    assert_eq!(leg.actions(), [Action::Bye, Action::Event(LegEvent::Gone)]);
    assert!(leg.m.is_ended());
}

#[test]
fn an_outbound_call_starts_answered_with_its_media() {
    let mut leg = Leg::new(LegSetup {
        ring: ms(3000),
        answered: true,
        negotiated: true,
        held: false,
    });
    assert_eq!(leg.actions(), [Action::StartMedia]);
    leg.m.ready(leg.now);
    assert_eq!(leg.actions(), [], "no second answer");
}

#[test]
fn a_transfer_succeeds_on_a_final_2xx_and_the_bye_follows_the_notify_answer() {
    let mut leg = Leg::new(LegSetup {
        answered: true,
        ..inbound()
    });
    leg.actions();
    leg.at(1000);
    leg.m.transfer(leg.now, "sip:desk@pbx".into());
    assert_eq!(leg.actions(), [Action::Refer("sip:desk@pbx".into())]);
    leg.m.refer_answered(Ok(()));
    leg.m.notify(leg.now, 100);
    assert_eq!(leg.actions(), [], "progress only");
    leg.at(1500);
    leg.m.notify(leg.now, 200);
    assert_eq!(leg.actions(), [Action::TransferDone(Ok(()))]);
    // Our 200 to the NOTIFY gets its head start before the BYE.
    leg.at(1599);
    assert_eq!(leg.actions(), []);
    leg.at(1600);
    assert_eq!(leg.actions(), [Action::Bye, Action::Event(LegEvent::Gone)]);
}

#[test]
fn a_failed_or_refused_transfer_is_reported_and_the_call_goes_on() {
    let mut leg = Leg::new(LegSetup {
        answered: true,
        ..inbound()
    });
    leg.actions();
    leg.m.transfer(leg.now, "100".into());
    leg.actions();
    leg.m.notify(leg.now, 486);
    assert_eq!(
        leg.actions(),
        [Action::TransferDone(Err(
            "the transfer target answered 486".into()
        ))]
    );
    // A later NOTIFY for it changes nothing.
    leg.m.notify(leg.now, 200);
    assert_eq!(leg.actions(), []);

    leg.m.transfer(leg.now, "100".into());
    leg.actions();
    leg.m
        .refer_answered(Err("the transfer was refused (403)".into()));
    assert_eq!(
        leg.actions(),
        [Action::TransferDone(Err(
            "the transfer was refused (403)".into()
        ))]
    );
    assert!(!leg.m.is_ended());
}

#[test]
fn a_transfer_that_never_completes_times_out() {
    let mut leg = Leg::new(LegSetup {
        answered: true,
        ..inbound()
    });
    leg.actions();
    leg.at(200);
    leg.m.transfer(leg.now, "100".into());
    leg.actions();
    let deadline = TRANSFER_TIMEOUT.as_millis() as u64 + 200;
    leg.at(deadline - 1);
    assert_eq!(leg.actions(), []);
    leg.at(deadline);
    assert_eq!(
        leg.actions(),
        [Action::TransferDone(Err("the transfer timed out".into()))]
    );
}

#[test]
fn only_one_transfer_at_a_time_and_only_once_answered() {
    let mut leg = Leg::new(inbound());
    leg.m.transfer(leg.now, "100".into());
    assert_eq!(
        leg.actions(),
        [Action::TransferDone(Err(
            "the call cannot be transferred now".into()
        ))]
    );
    leg.m.ready(leg.now);
    leg.at(3000);
    leg.actions();
    leg.m.transfer(leg.now, "100".into());
    leg.m.transfer(leg.now, "200".into());
    assert_eq!(
        leg.actions(),
        [
            Action::Refer("100".into()),
            Action::TransferDone(Err("the call cannot be transferred now".into())),
        ]
    );
}

#[test]
fn hanging_up_rejects_a_ringing_call_and_byes_an_answered_one() {
    let mut ringing = Leg::new(inbound());
    ringing.m.hangup();
    assert_eq!(ringing.actions(), [Action::Reject]);
    assert!(ringing.m.is_ended());

    let mut answered = Leg::new(LegSetup {
        answered: true,
        ..inbound()
    });
    answered.actions();
    answered.m.hangup();
    assert_eq!(answered.actions(), [Action::Bye]);
    // Nothing after the end.
    answered.m.play(Bytes::from(vec![1; 160]));
    answered.m.hangup();
    answered.m.terminated();
    assert_eq!(answered.actions(), []);
}

#[test]
fn the_far_end_hanging_up_is_reported_once_and_fails_a_pending_transfer() {
    let mut leg = Leg::new(LegSetup {
        answered: true,
        ..inbound()
    });
    leg.actions();
    leg.m.transfer(leg.now, "100".into());
    leg.actions();
    leg.m.terminated();
    leg.m.terminated();
    assert_eq!(
        leg.actions(),
        [
            Action::TransferDone(Err("the call has ended".into())),
            Action::Event(LegEvent::Gone),
        ]
    );
    assert_eq!(leg.m.poll_timeout(), None);
}

#[test]
fn failing_media_or_answer_ends_the_call() {
    let mut leg = Leg::new(LegSetup {
        answered: true,
        ..inbound()
    });
    leg.actions();
    leg.m.media_failed();
    assert_eq!(leg.actions(), [Action::Bye, Action::Event(LegEvent::Gone)]);

    let mut leg = Leg::new(LegSetup {
        ring: ms(0),
        ..inbound()
    });
    leg.m.ready(leg.now);
    leg.actions();
    leg.m.answer_failed();
    assert_eq!(leg.actions(), [Action::Event(LegEvent::Gone)]);
}

#[test]
fn the_call_hanging_up_after_a_transfer_keeps_the_bye_behind_the_notify_answer() {
    let mut leg = Leg::new(LegSetup {
        answered: true,
        ..inbound()
    });
    leg.actions();
    leg.m.transfer(leg.now, "100".into());
    leg.actions();
    leg.m.notify(leg.now, 200);
    assert_eq!(leg.actions(), [Action::TransferDone(Ok(()))]);
    // The call ends (the transfer succeeded) and hangs up at once: the BYE waits its turn.
    leg.m.hangup();
    assert_eq!(leg.actions(), []);
    assert!(!leg.m.is_ended());
    leg.at(100);
    assert_eq!(leg.actions(), [Action::Bye, Action::Event(LegEvent::Gone)]);
}
