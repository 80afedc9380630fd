//! Session set-up and the call's timers on the pure state machine: Realtime connect timeout,
//! maximum duration, caller silence, greeting, audio before the session is ready, hold.

mod common;

use std::time::Duration;

use common::*;
use dialtone::bridge::{CallEvent, EndReason, Input, Timing};
use dialtone::realtime::event::{ClientEvent, ServerEvent};

#[test]
fn no_session_in_time_hangs_up() {
    let mut tc = TestCall::new(test_route());
    tc.advance(Timing::default().realtime_connect - ms(1));
    assert_eq!(tc.hangups(), 0);
    tc.advance(ms(2));
    assert_eq!(tc.hangups(), 1);
    assert_eq!(tc.call.ended(), Some(EndReason::RealtimeUnavailable));
    assert_eq!(tc.call.poll_timeout(), None);
}

#[test]
fn a_session_in_time_stops_the_connect_timer() {
    let mut tc = TestCall::new(test_route());
    tc.advance(ms(500));
    tc.realtime(ServerEvent::SessionCreated {
        session: serde_json::json!({}),
    });
    tc.advance(Timing::default().realtime_connect * 2);
    assert_eq!(tc.hangups(), 0);
}

#[test]
fn max_duration_ends_the_call() {
    let mut route = test_route();
    route.limits.max_duration = Duration::from_secs(600);
    let mut tc = TestCall::live(route);
    tc.advance(Duration::from_secs(599));
    assert_eq!(tc.hangups(), 0);
    tc.advance(Duration::from_secs(2));
    assert_eq!(tc.hangups(), 1);
    assert_eq!(tc.call.ended(), Some(EndReason::MaxDuration));
}

#[test]
fn caller_silence_counts_only_while_nobody_speaks() {
    let mut route = test_route();
    route.limits.caller_silence = Some(Duration::from_secs(10));
    let mut tc = TestCall::live(route);
    tc.advance(Duration::from_secs(8));
    // The assistant talks for 5 s: silence is not counted meanwhile.
    tc.spoken_response("r1", "a", 5000);
    tc.advance(Duration::from_secs(5));
    tc.advance(Duration::from_secs(9));
    assert_eq!(tc.hangups(), 0, "9 s since the assistant stopped");
    // The caller speaks for a while; the clock restarts after.
    tc.speech_started();
    tc.advance(Duration::from_secs(20));
    tc.speech_stopped();
    tc.advance(Duration::from_secs(9));
    assert_eq!(tc.hangups(), 0);
    tc.advance(Duration::from_secs(2));
    assert_eq!(tc.hangups(), 1);
    assert_eq!(tc.call.ended(), Some(EndReason::CallerSilence));
}

#[test]
fn session_update_then_greeting() {
    let mut route = test_route();
    route.greeting = Some("Hello from the test.".into());
    let mut tc = TestCall::new(route);
    tc.realtime(ServerEvent::SessionCreated {
        session: serde_json::json!({}),
    });
    let events = tc.take_events();
    assert!(matches!(events[0], ClientEvent::SessionUpdate { .. }));
    let ClientEvent::ResponseCreate {
        response: Some(response),
    } = &events[1]
    else {
        panic!("expected a response.create, got {events:?}");
    };
    assert!(
        response
            .instructions
            .as_deref()
            .unwrap()
            .contains("Hello from the test.")
    );
    tc.realtime(ServerEvent::SessionUpdated {
        session: serde_json::json!({}),
    });
    assert!(tc.events().contains(&CallEvent::SessionReady));
}

#[test]
fn caller_audio_before_the_session_is_kept_and_sent_after_the_update() {
    let mut tc = TestCall::new(test_route());
    for i in 0..3u8 {
        tc.input(Input::CallerAudio {
            now: tc.now,
            audio: vec![i; 160],
        });
    }
    assert!(tc.all_events().is_empty());
    tc.realtime(ServerEvent::SessionCreated {
        session: serde_json::json!({}),
    });
    let events = tc.take_events();
    assert!(matches!(events[0], ClientEvent::SessionUpdate { .. }));
    let appends = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::InputAudioBufferAppend { .. }))
        .count();
    assert_eq!(appends, 3);
}

#[test]
fn early_audio_is_bounded_and_the_excess_counted() {
    let timing = Timing {
        preconnect_audio: ms(100),
        ..Timing::default()
    };
    let mut tc = TestCall::with(test_route(), false, timing);
    for _ in 0..8 {
        tc.input(Input::CallerAudio {
            now: tc.now,
            audio: vec![0xFF; 160],
        });
    }
    let dropped: u64 = tc
        .events()
        .iter()
        .filter_map(|e| match e {
            CallEvent::FramesDropped { count } => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(dropped, 3, "5 frames of 20 ms kept");
}

#[test]
fn audio_on_hold_is_not_sent() {
    let mut tc = TestCall::live(test_route());
    tc.input(Input::CallerHold {
        now: tc.now,
        held: true,
    });
    tc.input(Input::CallerAudio {
        now: tc.now,
        audio: vec![0xFF; 160],
    });
    assert!(tc.all_events().is_empty());
    tc.input(Input::CallerHold {
        now: tc.now,
        held: false,
    });
    tc.input(Input::CallerAudio {
        now: tc.now,
        audio: vec![0xFF; 160],
    });
    assert_eq!(tc.all_events().len(), 1);
}

#[test]
fn a_closed_realtime_connection_hangs_up() {
    let mut tc = TestCall::live(test_route());
    tc.input(Input::RealtimeClosed {
        now: tc.now,
        reason: "going away".into(),
    });
    assert_eq!(tc.hangups(), 1);
    assert_eq!(tc.call.ended(), Some(EndReason::RealtimeUnavailable));
}

#[test]
fn the_caller_hanging_up_ends_without_a_hangup_command() {
    let mut tc = TestCall::live(test_route());
    tc.input(Input::CallerGone { now: tc.now });
    assert_eq!(tc.hangups(), 0);
    assert_eq!(tc.call.ended(), Some(EndReason::CallerHangup));
    // Nothing happens after the end.
    tc.spoken_response("r1", "a", 500);
    tc.advance(ms(600));
    assert_eq!(tc.leg.frames_received, 0);
}

#[test]
fn realtime_errors_are_reported_and_benign_ones_do_not_block_responses() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.function_call("r1", "call_1", "no_such_tool", "{}");
    tc.response_done("r1", "completed", &[]);
    assert!(tc.all_events().iter().any(is_response_create));
    // The server had already started a response by itself.
    tc.error("conversation_already_has_active_response");
    assert!(tc.events().iter().any(|e| matches!(
        e,
        CallEvent::RealtimeError { code: Some(c), .. } if c == "conversation_already_has_active_response"
    )));
    // A later wanted response is not blocked by the refused one.
    tc.input(Input::CallerDtmf {
        now: tc.now,
        digit: '#',
    });
    let creates = tc
        .all_events()
        .iter()
        .filter(|e| is_response_create(e))
        .count();
    assert_eq!(creates, 2);
}

#[test]
fn a_refused_response_request_does_not_block_later_ones() {
    let mut tc = TestCall::live(test_route());
    tc.input(Input::CallerDtmf {
        now: tc.now,
        digit: '#',
    });
    tc.input(Input::CallerDtmf {
        now: tc.now,
        digit: '1',
    });
    tc.error("invalid_value");
    tc.input(Input::CallerDtmf {
        now: tc.now,
        digit: '#',
    });
    let creates = tc
        .all_events()
        .iter()
        .filter(|e| is_response_create(e))
        .count();
    assert_eq!(
        creates, 2,
        "the second request is not held back by the refused first"
    );
}

#[test]
fn a_session_expiry_ends_the_call() {
    let mut tc = TestCall::live(test_route());
    tc.error("session_expired");
    assert_eq!(tc.call.ended(), Some(EndReason::RealtimeUnavailable));
}
