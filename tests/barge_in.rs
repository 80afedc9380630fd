//! Barge-in on the pure call state machine, with a virtual clock and a leg that plays in
//! (virtual) real time: `clear` at once, `response.cancel` only when the server will not cancel
//! by itself, and `conversation.item.truncate` at exactly what the caller heard, never beyond
//! what was generated, never for an item that finished playing.

mod common;

use common::*;
use dialtone::bridge::{CallEvent, CallerCommand, Output};
use dialtone::realtime::event::{ClientEvent, TurnDetection};

/// Asserts one truncate of `item` within one frame of what the leg heard.
fn assert_truncated_to_heard(tc: &TestCall, item: &str, heard: u64) {
    let truncates = tc.truncates();
    assert_eq!(truncates.len(), 1, "one truncate: {truncates:?}");
    let (id, end) = &truncates[0];
    assert_eq!(id, item);
    assert!(
        end.abs_diff(heard) <= 20,
        "truncated at {end} ms, caller heard {heard} ms"
    );
}

fn cancels(tc: &TestCall) -> usize {
    tc.all_events()
        .iter()
        .filter(|e| matches!(e, ClientEvent::ResponseCancel { .. }))
        .count()
}

fn no_interrupt_route() -> dialtone::dialplan::Route {
    let mut route = test_route();
    route.turn_detection = Some(TurnDetection::ServerVad {
        threshold: None,
        prefix_padding_ms: None,
        silence_duration_ms: None,
        create_response: Some(true),
        interrupt_response: Some(false),
    });
    route
}

#[test]
fn mid_item_clears_and_truncates_to_what_was_heard() {
    let mut tc = TestCall::live(test_route());
    // The model streams 3 s of audio at once, much faster than real time.
    tc.response_created("r1");
    tc.audio("r1", "a", 3000);
    tc.audio_done("r1", "a");
    tc.response_done("r1", "completed", &["a"]);
    tc.advance(ms(1234));
    let heard = tc.leg.heard_now(tc.now, "a");
    assert!((1200..=1240).contains(&heard), "heard {heard}");
    tc.take();

    tc.speech_started();
    let out = tc.take();
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Caller(CallerCommand::Clear)))
            .count(),
        1
    );
    // Clear comes before the truncate: playback stops first.
    let clear_at = out
        .iter()
        .position(|o| matches!(o, Output::Caller(CallerCommand::Clear)));
    let truncate_at = out.iter().position(|o| {
        matches!(
            o,
            Output::Realtime(ClientEvent::ConversationItemTruncate { .. })
        )
    });
    assert!(clear_at < truncate_at);
    assert_truncated_to_heard(&tc, "a", heard);
    assert_eq!(cancels(&tc), 0, "the response was already done");
    assert!(tc.events().contains(&CallEvent::BargeIn));

    // Nothing more plays after the clear.
    let frames = tc.leg.frames_received;
    tc.advance(ms(2000));
    assert_eq!(tc.leg.frames_received, frames);
}

#[test]
fn while_generating_cancels_only_when_the_server_will_not() {
    // interrupt_response = true: the server cancels; a cancel from us would be an error.
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.audio("r1", "a", 500);
    tc.advance(ms(300));
    let heard = tc.leg.heard_now(tc.now, "a");
    tc.speech_started();
    assert_eq!(cancels(&tc), 0);
    assert_truncated_to_heard(&tc, "a", heard);

    // interrupt_response = false: we cancel the response ourselves, once.
    let mut tc = TestCall::live(no_interrupt_route());
    tc.response_created("r1");
    tc.audio("r1", "a", 500);
    tc.advance(ms(300));
    let heard = tc.leg.heard_now(tc.now, "a");
    tc.speech_started();
    assert_eq!(cancels(&tc), 1);
    assert_truncated_to_heard(&tc, "a", heard);
    let cancel = tc
        .all_events()
        .into_iter()
        .find(|e| matches!(e, ClientEvent::ResponseCancel { .. }));
    assert_eq!(
        cancel,
        Some(ClientEvent::ResponseCancel {
            response_id: Some("r1".into())
        })
    );
}

#[test]
fn no_cancel_once_the_response_is_done() {
    let mut tc = TestCall::live(no_interrupt_route());
    tc.spoken_response("r1", "a", 2000);
    tc.advance(ms(500));
    tc.speech_started();
    assert_eq!(cancels(&tc), 0, "nothing to cancel: response.done came");
    assert_eq!(tc.truncates().len(), 1);
}

#[test]
fn late_audio_of_the_interrupted_response_is_dropped() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.audio("r1", "a", 400);
    tc.advance(ms(200));
    tc.speech_started();
    let frames = tc.leg.frames_received;
    // The server had more in flight before it saw the cancel.
    tc.audio("r1", "a", 400);
    tc.audio("r1", "b", 400);
    tc.audio_done("r1", "a");
    tc.response_done("r1", "cancelled", &["a"]);
    tc.advance(ms(1000));
    assert_eq!(tc.leg.frames_received, frames, "nothing of r1 played");
    assert!(
        tc.events()
            .iter()
            .any(|e| matches!(e, CallEvent::FramesDropped { .. }))
    );

    // The next response plays normally.
    tc.speech_stopped();
    tc.spoken_response("r2", "c", 300);
    tc.advance(ms(400));
    assert_eq!(tc.leg.heard.get("c"), Some(&300));
}

#[test]
fn after_the_last_audio_was_acknowledged_nothing_is_truncated() {
    let mut tc = TestCall::live(test_route());
    tc.spoken_response("r1", "a", 1000);
    tc.advance(ms(1500));
    assert_eq!(tc.leg.heard.get("a"), Some(&1000));
    tc.take();
    tc.speech_started();
    let out = tc.take();
    assert!(tc.truncates().is_empty(), "the item finished playing");
    assert!(!out.contains(&Output::Caller(CallerCommand::Clear)));
    assert_eq!(cancels(&tc), 0);
    assert!(!tc.events().contains(&CallEvent::BargeIn));
}

#[test]
fn between_items_only_the_unfinished_item_is_truncated() {
    let mut tc = TestCall::live(test_route());
    // One response, two items: `a` plays to its end, `b` is playing when the caller speaks.
    tc.response_created("r1");
    tc.audio("r1", "a", 500);
    tc.audio_done("r1", "a");
    tc.audio("r1", "b", 1000);
    tc.audio_done("r1", "b");
    tc.response_done("r1", "completed", &["a", "b"]);
    tc.advance(ms(800));
    assert_eq!(tc.leg.heard.get("a"), Some(&500));
    let heard_b = tc.leg.heard_now(tc.now, "b");
    tc.speech_started();
    assert_truncated_to_heard(&tc, "b", heard_b);
}

#[test]
fn an_item_queued_behind_the_playing_one_is_truncated_to_zero() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.audio("r1", "a", 2000);
    tc.audio_done("r1", "a");
    tc.audio("r1", "b", 1000);
    tc.audio_done("r1", "b");
    tc.response_done("r1", "completed", &["a", "b"]);
    tc.advance(ms(700));
    let heard_a = tc.leg.heard_now(tc.now, "a");
    tc.speech_started();
    let truncates = tc.truncates();
    assert_eq!(truncates.len(), 2);
    assert_eq!(truncates[0].0, "a");
    assert!(truncates[0].1.abs_diff(heard_a) <= 20);
    assert_eq!(truncates[1], ("b".to_string(), 0));
}

#[test]
fn slow_model_with_a_dry_player_truncates_to_what_played() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    // 100 ms of audio every 300 ms: the player runs dry between deltas.
    for _ in 0..5 {
        tc.audio("r1", "a", 100);
        tc.advance(ms(300));
    }
    // 500 ms generated and all of it played, over 1.5 s of wall time.
    assert_eq!(tc.leg.heard.get("a"), Some(&500));
    tc.audio("r1", "a", 100);
    tc.advance(ms(40));
    let heard = tc.leg.heard_now(tc.now, "a");
    assert_eq!(heard, 540);
    tc.speech_started();
    assert_truncated_to_heard(&tc, "a", heard);
}

#[test]
fn truncate_never_exceeds_generated_audio() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    // 1005 ms: the last frame is padded with silence to 1020 ms.
    tc.audio("r1", "a", 1005);
    tc.audio_done("r1", "a");
    tc.advance(ms(1015));
    tc.speech_started();
    for (_, end) in tc.truncates() {
        assert!(end <= 1005, "truncated at {end} ms, only 1005 ms generated");
    }
}

#[test]
fn every_later_turn_keeps_the_played_position_right() {
    let mut tc = TestCall::live(test_route());
    for (turn, at) in [(1, 333), (2, 1017), (3, 89), (4, 2500)] {
        let (r, item) = (format!("r{turn}"), format!("item{turn}"));
        tc.spoken_response(&r, &item, 3000);
        tc.advance(ms(at));
        let heard = tc.leg.heard_now(tc.now, &item);
        tc.speech_started();
        let (id, end) = tc.truncates().last().cloned().expect("a truncate per turn");
        assert_eq!(id, item);
        assert!(end.abs_diff(heard) <= 20, "turn {turn}: {end} vs {heard}");
        tc.speech_stopped();
        tc.advance(ms(700));
    }
    assert_eq!(tc.truncates().len(), 4);
    assert_eq!(tc.leg.clears, 4);
}

#[test]
fn speech_with_nothing_playing_does_nothing() {
    let mut tc = TestCall::live(test_route());
    tc.speech_started();
    assert!(tc.take().is_empty());
}

#[test]
fn barge_in_before_any_audio_of_the_response_only_cancels() {
    let mut tc = TestCall::live(no_interrupt_route());
    tc.response_created("r1");
    tc.speech_started();
    assert_eq!(cancels(&tc), 1);
    assert!(tc.truncates().is_empty());
    assert_eq!(tc.leg.clears, 0);
}
