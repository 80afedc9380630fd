//! Tool calls as dialplan actions on the pure call state machine: hangup after the goodbye has
//! played, transfer, DTMF (in-band and out of band), webhooks, deadlines, DTMF from the caller.

mod common;

use common::*;
use dialtone::bridge::{CallEvent, EndReason, Output, Timing, ToolOutcome, ToolRequest};
use dialtone::realtime::event::{ClientEvent, ClientItem};

fn tool_event(tc: &TestCall, tool: &str) -> Vec<&'static str> {
    tc.events()
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::ToolCall {
                tool: t, outcome, ..
            } if t == tool => Some(outcome),
            _ => None,
        })
        .collect()
}

/// The model says something and calls a tool in the same response.
fn say_and_call(tc: &mut TestCall, audio_ms: u64, name: &str, args: &str) {
    tc.response_created("r1");
    tc.audio("r1", "bye", audio_ms);
    tc.audio_done("r1", "bye");
    tc.function_call("r1", "call_1", name, args);
    tc.response_done("r1", "completed", &["bye"]);
}

#[test]
fn end_call_hangs_up_only_after_the_goodbye_played() {
    let mut tc = TestCall::live(test_route());
    say_and_call(&mut tc, 1500, "end_call", "{}");
    tc.advance(ms(1400));
    assert_eq!(tc.hangups(), 0, "the goodbye is still playing");
    tc.advance(ms(200));
    assert_eq!(tc.hangups(), 1);
    assert_eq!(tc.leg.heard.get("bye"), Some(&1500), "all of it was heard");
    assert_eq!(tc.call.ended(), Some(EndReason::HangupAction));
    assert!(function_outputs(&tc.all_events()).is_empty());
    assert_eq!(tool_event(&tc, "end_call"), ["ok"]);
}

#[test]
fn end_call_waits_for_the_response_to_finish() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.function_call("r1", "call_1", "end_call", "{}");
    // More audio of the same response comes after the call.
    tc.audio("r1", "bye", 600);
    tc.advance(ms(300));
    assert_eq!(tc.hangups(), 0);
    tc.audio_done("r1", "bye");
    tc.response_done("r1", "completed", &["bye"]);
    tc.advance(ms(250));
    assert_eq!(tc.hangups(), 0);
    tc.advance(ms(100));
    assert_eq!(tc.hangups(), 1);
}

#[test]
fn a_goodbye_that_never_finishes_is_cut_after_the_grace_period() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.function_call("r1", "call_1", "end_call", "{}");
    // response.done never comes.
    tc.advance(Timing::default().goodbye_grace + ms(10));
    assert_eq!(tc.hangups(), 1);
}

#[test]
fn transfer_runs_after_playback_and_success_ends_the_call() {
    let mut tc = TestCall::live(test_route());
    say_and_call(
        &mut tc,
        800,
        "transfer_call",
        r#"{"target":"+14155550123"}"#,
    );
    assert!(tc.tool_runs().is_empty(), "waits for the announcement");
    tc.advance(ms(900));
    let runs = tc.tool_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].request,
        ToolRequest::Transfer {
            target: "+14155550123".into()
        }
    );
    tc.tool_done(runs[0].id, ToolOutcome::Ok("transferred".into()));
    assert_eq!(tc.call.ended(), Some(EndReason::Transferred));
    assert_eq!(tc.hangups(), 0, "the leg ends itself after a transfer");
    assert_eq!(tool_event(&tc, "transfer_call"), ["ok"]);
}

#[test]
fn a_failed_transfer_goes_back_to_the_model_before_the_next_response() {
    let mut tc = TestCall::live(test_route());
    say_and_call(&mut tc, 200, "transfer_call", r#"{"target":"sales"}"#);
    tc.advance(ms(300));
    let run = tc.tool_runs()[0].id;
    tc.take();
    tc.tool_done(run, ToolOutcome::Failed("busy".into()));
    let events = tc.take_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        function_outputs(&events),
        [("call_1".to_string(), r#"{"error":"busy"}"#.to_string())]
    );
    assert!(is_response_create(&events[1]));
    assert_eq!(tc.call.ended(), None);
}

#[test]
fn transfer_without_its_argument_fails_at_once() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.function_call("r1", "call_1", "transfer_call", "{}");
    let outputs = function_outputs(&tc.all_events());
    assert_eq!(outputs.len(), 1);
    assert!(outputs[0].1.contains("target"));
    // response.create only after response.done.
    assert!(!tc.all_events().iter().any(is_response_create));
    tc.response_done("r1", "completed", &[]);
    assert!(tc.all_events().iter().any(is_response_create));
}

#[test]
fn webhook_round_trip_outputs_before_response_create() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.function_call("r1", "call_1", "lookup", r#"{"q":"opening hours"}"#);
    let runs = tc.tool_runs();
    assert_eq!(runs.len(), 1, "webhooks start at once");
    let ToolRequest::Webhook { url, body, .. } = &runs[0].request else {
        panic!("not a webhook: {:?}", runs[0]);
    };
    assert_eq!(url, "http://127.0.0.1:9/hook");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        serde_json::json!({"q":"opening hours"})
    );
    tc.response_done("r1", "completed", &[]);
    assert!(
        !tc.all_events().iter().any(is_response_create),
        "tool still running"
    );
    tc.take();
    tc.tool_done(runs[0].id, ToolOutcome::Ok(r#"{"hours":"9-5"}"#.into()));
    let events = tc.take_events();
    assert_eq!(
        function_outputs(&events),
        [("call_1".to_string(), r#"{"hours":"9-5"}"#.to_string())]
    );
    assert!(is_response_create(&events[1]));
    assert_eq!(tool_event(&tc, "lookup"), ["ok"]);
}

#[test]
fn a_webhook_past_its_deadline_fails_and_its_late_answer_is_ignored() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.function_call("r1", "call_1", "lookup", r#"{"q":"x"}"#);
    tc.response_done("r1", "completed", &[]);
    let run = tc.tool_runs()[0].id;
    tc.advance(ms(5000));
    assert!(function_outputs(&tc.all_events()).is_empty());
    tc.advance(Timing::default().webhook_grace + ms(10));
    let outputs = function_outputs(&tc.all_events());
    assert_eq!(outputs.len(), 1);
    assert!(outputs[0].1.contains("timed out"));
    assert_eq!(tool_event(&tc, "lookup"), ["timeout"]);
    tc.tool_done(run, ToolOutcome::Ok("late".into()));
    assert_eq!(function_outputs(&tc.all_events()).len(), 1);
}

#[test]
fn in_band_dtmf_plays_after_the_speech_and_reports_when_played() {
    let mut tc = TestCall::live(test_route());
    say_and_call(&mut tc, 400, "press", r#"{"digits":"12"}"#);
    assert!(tc.tool_runs().is_empty(), "in-band: no host work");
    tc.advance(ms(500));
    assert!(
        function_outputs(&tc.all_events()).is_empty(),
        "tones still playing"
    );
    tc.advance(ms(500));
    // 400 ms of speech, then 2 × (100 ms tone + 60 ms gap).
    assert_eq!(tc.leg.heard.get("bye"), Some(&400));
    let tones: u64 = tc
        .leg
        .heard
        .iter()
        .filter(|(k, _)| k.starts_with("tone"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(tones, 320);
    let outputs = function_outputs(&tc.all_events());
    assert_eq!(outputs.len(), 1);
    assert!(tc.all_events().iter().any(is_response_create));
}

#[test]
fn out_of_band_dtmf_is_handed_to_the_leg_after_playback() {
    let mut tc = TestCall::with(test_route(), true, Timing::default());
    tc.realtime(dialtone::realtime::event::ServerEvent::SessionCreated {
        session: serde_json::json!({}),
    });
    say_and_call(&mut tc, 300, "press", r#"{"digits":"9#"}"#);
    assert!(tc.tool_runs().is_empty());
    tc.advance(ms(400));
    let runs = tc.tool_runs();
    assert_eq!(
        runs[0].request,
        ToolRequest::SendDtmf {
            digits: "9#".into()
        }
    );
    tc.tool_done(runs[0].id, ToolOutcome::Ok("sent".into()));
    assert_eq!(function_outputs(&tc.all_events()).len(), 1);
}

#[test]
fn bad_dtmf_digits_and_unknown_tools_are_reported_to_the_model() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.function_call("r1", "call_1", "press", r#"{"digits":"12x"}"#);
    tc.function_call("r1", "call_2", "no_such_tool", "{}");
    tc.function_call("r1", "call_3", "lookup", "not json");
    tc.response_done("r1", "completed", &[]);
    let outputs = function_outputs(&tc.all_events());
    let ids: Vec<&str> = outputs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["call_1", "call_2", "call_3"]);
    assert!(outputs.iter().all(|(_, o)| o.contains("error")));
    let creates = tc
        .all_events()
        .iter()
        .filter(|e| is_response_create(e))
        .count();
    assert_eq!(creates, 1, "one response for all three outputs");
}

#[test]
fn a_bound_digit_runs_its_action_without_the_model() {
    let mut tc = TestCall::live(test_route());
    tc.input(dialtone::bridge::Input::CallerDtmf {
        now: tc.now,
        digit: '0',
    });
    let runs = tc.tool_runs();
    assert_eq!(
        runs[0].request,
        ToolRequest::Transfer {
            target: "+15550000".into()
        }
    );
    tc.tool_done(runs[0].id, ToolOutcome::Failed("no answer".into()));
    // Reported as a note, since the model made no function call.
    let notes: Vec<_> = tc
        .all_events()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::ConversationItemCreate {
                item: ClientItem::Message { content, .. },
            } => Some(format!("{content:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("no answer"));
    assert!(function_outputs(&tc.all_events()).is_empty());
}

#[test]
fn unbound_digits_reach_the_model_as_one_message() {
    let mut tc = TestCall::live(test_route());
    for d in ['4', '2'] {
        tc.input(dialtone::bridge::Input::CallerDtmf {
            now: tc.now,
            digit: d,
        });
        tc.advance(ms(300));
    }
    assert!(tc.all_events().is_empty(), "still collecting");
    tc.advance(Timing::default().dtmf_flush);
    let events = tc.all_events();
    assert_eq!(events.len(), 2);
    assert!(format!("{:?}", events[0]).contains("42"));
    assert!(is_response_create(&events[1]));
    // `#` ends the entry at once.
    tc.take();
    for d in ['7', '#'] {
        tc.input(dialtone::bridge::Input::CallerDtmf {
            now: tc.now,
            digit: d,
        });
    }
    let events = tc.take_events();
    assert!(format!("{:?}", events[0]).contains("7#"));
}

#[test]
fn every_tool_output_precedes_the_next_response_create() {
    let mut tc = TestCall::live(test_route());
    tc.response_created("r1");
    tc.function_call("r1", "call_1", "lookup", r#"{"q":"a"}"#);
    tc.function_call("r1", "call_2", "lookup", r#"{"q":"b"}"#);
    tc.response_done("r1", "completed", &[]);
    let runs = tc.tool_runs();
    tc.tool_done(runs[1].id, ToolOutcome::Ok("b".into()));
    assert!(
        !tc.all_events().iter().any(is_response_create),
        "call_1 still running"
    );
    tc.tool_done(runs[0].id, ToolOutcome::Ok("a".into()));
    let events = tc.all_events();
    let create = events.iter().position(is_response_create).unwrap();
    assert_eq!(function_outputs(&events[..create]).len(), 2);
    assert!(
        tc.log
            .iter()
            .all(|(_, o)| !matches!(o, Output::Caller(dialtone::bridge::CallerCommand::Hangup)))
    );
}
