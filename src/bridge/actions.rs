//! Tool calls as dialplan actions, caller DTMF, and the leg actions that end or move a call.
//!
//! A function call from the model runs the action of the route's tool of that name:
//! - `hangup` waits for the response to finish and its audio to play (the goodbye), then
//!   hangs up;
//! - `transfer` waits the same way, then asks the host to transfer through the leg; success
//!   ends the call, failure goes back to the model;
//! - `dtmf` plays in-band tones behind the audio already queued (or, on legs with RFC 4733,
//!   waits for playback and asks the host to send events);
//! - `webhook` is handed to the host at once.
//!
//! Every outcome that does not end the call goes back to the model as a
//! `function_call_output` before the next `response.create`, which is sent once the response
//! that made the calls is done and none of its tools is still running. Every run has a
//! deadline.

use std::time::Instant;

use serde_json::{Value, json};

use super::playback::Source;
use super::timer::CallTimer;
use super::{
    Call, CallEvent, CallerCommand, EndReason, Output, Session, ToolOutcome, ToolRequest, ToolRun,
    ToolRunId,
};
use crate::audio::tone;
use crate::dialplan::{Action, Tool, ValueSource};
use crate::realtime::event::{ClientEvent, ClientItem};

/// A tool run under way.
#[derive(Debug)]
pub(super) struct PendingRun {
    pub tool: String,
    pub action: &'static str,
    /// The model's function call this run answers; `None` for runs bound to a DTMF digit.
    pub call_id: Option<String>,
    pub deadline: Instant,
    /// For in-band DTMF: the tone source whose playing completes the run.
    pub tone: Option<u64>,
    /// A transfer: success ends the call.
    pub transfer: bool,
}

/// A hangup or leg-side tool run waiting for the goodbye to finish playing.
#[derive(Debug)]
pub(super) enum LegAction {
    Hangup,
    Run {
        run: ToolRun,
        action: &'static str,
        call_id: Option<String>,
    },
}

impl Call {
    pub(super) fn on_function_call(
        &mut self,
        now: Instant,
        call_id: String,
        name: String,
        arguments: &str,
    ) {
        let Some(tool) = self.route.tool(&name).cloned() else {
            self.emit(Output::Event(CallEvent::ToolCall {
                tool: name.clone(),
                action: "none",
                outcome: "unknown_tool",
            }));
            self.function_output(
                &call_id,
                &ToolOutcome::Failed(format!("there is no tool named {name}")),
            );
            return;
        };
        let args: Value = match serde_json::from_str(if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        }) {
            Ok(args) => args,
            Err(e) => {
                self.emit(Output::Event(CallEvent::ToolCall {
                    tool: tool.name.clone(),
                    action: tool.action.kind(),
                    outcome: "error",
                }));
                self.function_output(
                    &call_id,
                    &ToolOutcome::Failed(format!("the arguments are not valid JSON: {e}")),
                );
                return;
            }
        };
        self.start_action(now, &tool, Some(call_id), &args);
    }

    fn start_action(&mut self, now: Instant, tool: &Tool, call_id: Option<String>, args: &Value) {
        let action = tool.action.kind();
        let refuse = |call: &mut Self, reason: String| {
            call.emit(Output::Event(CallEvent::ToolCall {
                tool: tool.name.clone(),
                action,
                outcome: "error",
            }));
            call.report(call_id.as_deref(), &tool.name, &ToolOutcome::Failed(reason));
        };
        match &tool.action {
            Action::Hangup => {
                self.emit(Output::Event(CallEvent::ToolCall {
                    tool: tool.name.clone(),
                    action,
                    outcome: "ok",
                }));
                // A hangup replaces any other leg action waiting.
                self.leg_action = Some(LegAction::Hangup);
                self.timers
                    .set(CallTimer::LegActionGrace, now + self.timing.goodbye_grace);
            }
            Action::Transfer { target } => {
                let target = match resolve(target, args) {
                    Ok(t) => t,
                    Err(e) => return refuse(self, e),
                };
                let request = ToolRequest::Transfer { target };
                if let Err(e) = self.plan_leg_run(now, &tool.name, action, call_id.clone(), request)
                {
                    refuse(self, e);
                }
            }
            Action::Dtmf { digits } => {
                let digits = match resolve(digits, args) {
                    Ok(d) if tone::is_dtmf_string(&d) => d,
                    Ok(d) => return refuse(self, format!("{d:?} is not a DTMF digit string")),
                    Err(e) => return refuse(self, e),
                };
                if self.out_of_band_dtmf {
                    let request = ToolRequest::SendDtmf { digits };
                    if let Err(e) =
                        self.plan_leg_run(now, &tool.name, action, call_id.clone(), request)
                    {
                        refuse(self, e);
                    }
                } else {
                    let id = self.next_run_id();
                    let source = Source::Tone(id.0);
                    self.playback
                        .push(&source, tone::dtmf(&digits, self.format).into());
                    self.playback.finish(&source);
                    self.runs.insert(
                        id,
                        PendingRun {
                            tool: tool.name.clone(),
                            action,
                            call_id,
                            deadline: now + self.timing.leg_action_deadline,
                            tone: Some(id.0),
                            transfer: false,
                        },
                    );
                }
            }
            Action::Webhook {
                url,
                timeout,
                headers,
            } => {
                let run = self.new_run(
                    &tool.name,
                    ToolRequest::Webhook {
                        url: url.clone(),
                        body: args.to_string(),
                        headers: headers.clone(),
                        timeout: *timeout,
                    },
                );
                self.runs.insert(
                    run.id,
                    PendingRun {
                        tool: tool.name.clone(),
                        action,
                        call_id,
                        deadline: now + *timeout + self.timing.webhook_grace,
                        tone: None,
                        transfer: false,
                    },
                );
                self.emit(Output::RunTool(run));
            }
        }
    }

    /// Plans a leg-side run (transfer, out-of-band DTMF) for once the goodbye has played. Only
    /// one leg action waits at a time.
    fn plan_leg_run(
        &mut self,
        now: Instant,
        tool: &str,
        action: &'static str,
        call_id: Option<String>,
        request: ToolRequest,
    ) -> Result<(), String> {
        if self.leg_action.is_some() {
            return Err("another transfer or hangup is under way".into());
        }
        let run = self.new_run(tool, request);
        self.leg_action = Some(LegAction::Run {
            run,
            action,
            call_id,
        });
        self.timers
            .set(CallTimer::LegActionGrace, now + self.timing.goodbye_grace);
        Ok(())
    }

    fn next_run_id(&mut self) -> ToolRunId {
        let id = ToolRunId(self.next_run);
        self.next_run += 1;
        id
    }

    fn new_run(&mut self, tool: &str, request: ToolRequest) -> ToolRun {
        ToolRun {
            id: self.next_run_id(),
            tool: tool.to_owned(),
            request,
        }
    }

    pub(super) fn on_tool_done(&mut self, _now: Instant, run: ToolRunId, outcome: ToolOutcome) {
        self.complete_run(run, outcome);
    }

    /// Finishes a run: counts it, then ends the call (a transfer that succeeded) or reports
    /// the outcome to the model. Runs already finished (or timed out) are ignored.
    pub(super) fn complete_run(&mut self, id: ToolRunId, outcome: ToolOutcome) {
        let label = match outcome {
            ToolOutcome::Ok(_) => "ok",
            ToolOutcome::Failed(_) => "error",
        };
        self.complete_run_as(id, outcome, label);
    }

    fn complete_run_as(&mut self, id: ToolRunId, outcome: ToolOutcome, label: &'static str) {
        let Some(run) = self.runs.remove(&id) else {
            return;
        };
        if let Some(tone) = run.tone {
            self.playback.discard(&Source::Tone(tone));
        }
        self.emit(Output::Event(CallEvent::ToolCall {
            tool: run.tool.clone(),
            action: run.action,
            outcome: label,
        }));
        if run.transfer && matches!(outcome, ToolOutcome::Ok(_)) {
            // The leg has handed the call on; it ends the leg itself.
            self.end(EndReason::Transferred);
            return;
        }
        self.report(run.call_id.as_deref(), &run.tool, &outcome);
    }

    /// Tells the model how an action went: as the function call's output, or for actions bound
    /// to a DTMF digit, as a note in the conversation.
    fn report(&mut self, call_id: Option<&str>, tool: &str, outcome: &ToolOutcome) {
        match call_id {
            Some(call_id) => self.function_output(call_id, outcome),
            None => {
                let text = match outcome {
                    ToolOutcome::Ok(result) => {
                        format!("(The caller's keypress ran {tool}. Result: {result})")
                    }
                    ToolOutcome::Failed(reason) => {
                        format!("(The caller's keypress ran {tool}, which failed: {reason})")
                    }
                };
                self.send(ClientEvent::ConversationItemCreate {
                    item: ClientItem::user_text(text),
                });
                self.responses.wanted = true;
            }
        }
    }

    fn function_output(&mut self, call_id: &str, outcome: &ToolOutcome) {
        let output = match outcome {
            ToolOutcome::Ok(text) => text.clone(),
            ToolOutcome::Failed(reason) => json!({ "error": reason }).to_string(),
        };
        self.send(ClientEvent::ConversationItemCreate {
            item: ClientItem::FunctionCallOutput {
                call_id: call_id.to_owned(),
                output,
            },
        });
        self.responses.wanted = true;
    }

    /// Runs the waiting leg action once the model has finished its response and everything
    /// queued has played.
    pub(super) fn try_leg_action(&mut self, now: Instant) {
        if self.leg_action.is_some()
            && self.responses.active.is_none()
            && !self.playback.is_playing()
        {
            self.run_leg_action(now);
        }
    }

    /// The goodbye took too long: cut it and run the leg action now.
    pub(super) fn force_leg_action(&mut self, now: Instant) {
        if self.leg_action.is_none() {
            return;
        }
        if self.playback.leg_has_audio() {
            self.emit(Output::Caller(CallerCommand::Clear));
        }
        self.playback.clear(now);
        self.run_leg_action(now);
    }

    fn run_leg_action(&mut self, now: Instant) {
        let Some(action) = self.leg_action.take() else {
            return;
        };
        self.timers.stop(CallTimer::LegActionGrace);
        match action {
            LegAction::Hangup => self.hang_up(EndReason::HangupAction),
            LegAction::Run {
                run,
                action,
                call_id,
            } => {
                self.runs.insert(
                    run.id,
                    PendingRun {
                        tool: run.tool.clone(),
                        action,
                        call_id,
                        deadline: now + self.timing.leg_action_deadline,
                        tone: None,
                        transfer: matches!(run.request, ToolRequest::Transfer { .. }),
                    },
                );
                self.emit(Output::RunTool(run));
            }
        }
    }

    /// Fails every run past its deadline.
    pub(super) fn expire_runs(&mut self, now: Instant) {
        let due: Vec<ToolRunId> = self
            .runs
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.complete_run_as(
                id,
                ToolOutcome::Failed("the action timed out".into()),
                "timeout",
            );
        }
    }

    pub(super) fn on_dtmf(&mut self, now: Instant, digit: char) {
        self.emit(Output::Event(CallEvent::Dtmf { digit }));
        if let Some(tool) = self
            .route
            .dtmf
            .binding(digit)
            .and_then(|name| self.route.tool(name))
            .cloned()
        {
            self.start_action(now, &tool, None, &json!({}));
            return;
        }
        if !self.route.dtmf.to_model {
            return;
        }
        self.dtmf_digits.push(digit);
        if digit == '#' {
            self.flush_dtmf();
        } else {
            self.timers
                .set(CallTimer::DtmfFlush, now + self.timing.dtmf_flush);
        }
    }

    /// Hands the digits collected so far to the model as a user message.
    pub(super) fn flush_dtmf(&mut self) {
        self.timers.stop(CallTimer::DtmfFlush);
        if self.dtmf_digits.is_empty() || self.session != Session::Live {
            return;
        }
        let digits = std::mem::take(&mut self.dtmf_digits);
        self.send(ClientEvent::ConversationItemCreate {
            item: ClientItem::user_text(format!(
                "The caller pressed these keys on the phone keypad: {digits}"
            )),
        });
        self.responses.wanted = true;
    }
}

/// The value of an action parameter: fixed, or the named argument of the call.
fn resolve(source: &ValueSource, args: &Value) -> Result<String, String> {
    match source {
        ValueSource::Fixed(v) => Ok(v.clone()),
        ValueSource::Argument(name) => match args.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(format!("argument {name} must be a non-empty string")),
            None => Err(format!("argument {name} is missing")),
        },
    }
}
