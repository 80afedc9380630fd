//! The model's side of the conversation: session set-up, responses, assistant audio on its way
//! to the caller, and barge-in.
//!
//! Barge-in, when the model reports `input_audio_buffer.speech_started` while assistant audio
//! is playing or being generated:
//! 1. the leg is told to clear (Twilio `clear`, RTP queue flushed) if it holds audio;
//! 2. the response is cancelled if it is still being generated and turn detection will not
//!    cancel it by itself (`interrupt_response`), so no `response.cancel` ever meets an idle
//!    server because of us;
//! 3. each assistant item not yet played to its end is truncated to what the caller heard,
//!    from the playback ledger, never beyond the audio generated for it; items that finished
//!    playing are left alone;
//! 4. queued audio and any late audio of the interrupted response or items is dropped.

use std::time::Instant;

use base64::Engine as _;

use bytes::Bytes;

use super::playback::{Send, Source};
use super::{Call, CallEvent, CallerCommand, Output, Session, ToolOutcome};
use crate::realtime::event::{ClientEvent, ResponseConfig, ServerEvent};

impl Call {
    pub(super) fn on_realtime(&mut self, now: Instant, event: ServerEvent) {
        match event {
            ServerEvent::SessionCreated { .. } => self.on_session_created(),
            ServerEvent::SessionUpdated { .. } => {
                self.emit(Output::Event(CallEvent::SessionReady));
            }
            ServerEvent::SpeechStarted { .. } => {
                self.caller_speaking = true;
                self.barge_in(now);
            }
            ServerEvent::SpeechStopped { .. } => self.caller_speaking = false,
            ServerEvent::ResponseCreated { response } => {
                self.responses.requested = false;
                self.responses.active = Some(response.id);
            }
            ServerEvent::AudioDelta {
                response_id,
                item_id,
                delta,
                ..
            } => self.on_audio_delta(&response_id, item_id, &delta),
            ServerEvent::AudioDone { item_id, .. } => {
                self.playback.finish(&Source::Item(item_id));
            }
            ServerEvent::FunctionCallArgumentsDone {
                call_id,
                name,
                arguments,
                ..
            } => self.on_function_call(now, call_id, name, &arguments),
            ServerEvent::ResponseDone { response } => {
                if self.responses.active.as_deref() == Some(response.id.as_str()) {
                    self.responses.active = None;
                }
                self.responses.requested = false;
                for item in &response.output {
                    self.playback.finish(&Source::Item(item.id.clone()));
                }
                self.responses.interrupted.remove(&response.id);
            }
            ServerEvent::Error { error } => {
                match error.code.as_deref() {
                    // Our response.create met one the server created by itself: it answers
                    // what we wanted answered.
                    Some("conversation_already_has_active_response") => {
                        self.responses.requested = false;
                    }
                    Some("session_expired") => {
                        self.emit(Output::Event(CallEvent::RealtimeError {
                            code: error.code.clone(),
                            message: error.message.clone(),
                        }));
                        self.hang_up(super::EndReason::RealtimeUnavailable);
                        return;
                    }
                    // Cancelling what had just finished: harmless.
                    Some("response_cancel_not_active") => {}
                    // Any other error may be the server refusing our response.create (client
                    // events carry no ids to tell). Forget the request rather than wait for a
                    // response that will never come; a duplicate is refused harmlessly.
                    _ => {
                        if self.responses.active.is_none() {
                            self.responses.requested = false;
                        }
                    }
                }
                self.emit(Output::Event(CallEvent::RealtimeError {
                    code: error.code,
                    message: error.message,
                }));
            }
            ServerEvent::InputCommitted { .. }
            | ServerEvent::ItemTruncated { .. }
            | ServerEvent::InputTranscription { .. }
            | ServerEvent::OutputItemAdded { .. }
            | ServerEvent::OutputItemDone { .. }
            | ServerEvent::AudioTranscriptDone { .. }
            | ServerEvent::Unknown => {}
        }
    }

    fn on_session_created(&mut self) {
        let Some(session) = self.session_config.take() else {
            return; // a second session.created: the session is already configured
        };
        self.timers.stop(super::CallTimer::RealtimeConnect);
        self.send(ClientEvent::SessionUpdate {
            session: Box::new(session),
        });
        self.session = Session::Live;
        while let Some(frame) = self.early_audio.pop_front() {
            self.append_audio(&frame);
        }
        self.flush_dtmf();
        if let Some(greeting) = self.route.greeting.clone() {
            self.send(ClientEvent::ResponseCreate {
                response: Some(ResponseConfig {
                    instructions: Some(format!(
                        "Greet the caller by saying exactly this, and nothing else: {greeting}"
                    )),
                }),
            });
            self.responses.requested = true;
        }
    }

    fn on_audio_delta(&mut self, response_id: &str, item_id: String, delta: &str) {
        if self.responses.interrupted.contains(response_id) || self.cut_items.contains(&item_id) {
            let frames = delta.len() * 3 / 4 / self.format.frame_bytes().max(1);
            self.emit(Output::Event(CallEvent::FramesDropped {
                count: frames.max(1) as u64,
            }));
            return;
        }
        let audio = match base64::engine::general_purpose::STANDARD.decode(delta) {
            Ok(audio) => Bytes::from(audio),
            Err(_) => {
                self.emit(Output::Event(CallEvent::FramesDropped { count: 1 }));
                return;
            }
        };
        if !self.live_items.contains(&item_id) {
            self.live_items.push(item_id.clone());
        }
        if let Some(dropped) = self.playback.push(&Source::Item(item_id), audio)
            && dropped > 0
        {
            self.emit(Output::Event(CallEvent::AssistantAudioDropped {
                ms: self.format.ms_of(dropped),
            }));
        }
    }

    /// Hands the leg what playback has room for.
    pub(super) fn pump_playback(&mut self, now: Instant) {
        let mut sends = Vec::new();
        self.playback.pump(now, &mut sends);
        for s in sends {
            let cmd = match s {
                Send::Audio(bytes) => CallerCommand::Play(bytes),
                Send::Mark(mark) => CallerCommand::Mark(mark),
            };
            self.emit(Output::Caller(cmd));
        }
    }

    /// After a mark came back: forget items played to their end, finish in-band DTMF runs
    /// whose tones have played.
    pub(super) fn after_playback_progress(&mut self, _now: Instant) {
        let playback = &self.playback;
        self.live_items
            .retain(|id| !playback.finished_playing(&Source::Item(id.clone())));
        let played: Vec<_> = self
            .runs
            .iter()
            .filter_map(|(id, run)| {
                run.tone
                    .filter(|t| playback.finished_playing(&Source::Tone(*t)))
                    .map(|_| *id)
            })
            .collect();
        for id in played {
            self.complete_run(id, ToolOutcome::Ok("the digits were sent".into()));
        }
    }

    /// The caller started speaking.
    fn barge_in(&mut self, now: Instant) {
        let pending = self.playback.pending_sources();
        let generating = self.responses.active.clone();
        let unfinished: Vec<String> = self
            .live_items
            .iter()
            .filter(|id| !self.cut_items.contains(*id))
            .filter(|id| !self.playback.finished_playing(&Source::Item((*id).clone())))
            .cloned()
            .collect();
        if pending.is_empty() && generating.is_none() && unfinished.is_empty() {
            return;
        }
        self.emit(Output::Event(CallEvent::BargeIn));
        let position = self.playback.position(now);

        // 1. Stop playback at once.
        if self.playback.leg_has_audio() {
            self.emit(Output::Caller(CallerCommand::Clear));
        }
        let dropped = self.playback.clear(now);
        if dropped > 0 {
            self.emit(Output::Event(CallEvent::FramesDropped {
                count: dropped as u64,
            }));
        }

        // 2. Stop generation, unless turn detection does it by itself.
        if let Some(response_id) = generating {
            let server_cancels = self
                .route
                .turn_detection
                .as_ref()
                .is_some_and(|td| td.interrupts_response());
            if !server_cancels {
                self.send(ClientEvent::ResponseCancel {
                    response_id: Some(response_id.clone()),
                });
            }
            self.responses.interrupted.insert(response_id);
        }

        // 3. Tell the model what the caller heard of each unfinished item.
        for item_id in unfinished {
            let source = Source::Item(item_id.clone());
            let generated = self.playback.received_ms(&source);
            let heard = match &position {
                Some(p) if p.source == source => p.ms,
                _ => 0,
            }
            .min(generated);
            self.playback.discard(&source);
            self.cut_items.insert(item_id.clone());
            if generated == 0 {
                continue; // no audio yet: nothing was heard and nothing to cut
            }
            self.send(ClientEvent::ConversationItemTruncate {
                item_id: item_id.clone(),
                content_index: 0,
                audio_end_ms: heard,
            });
            self.emit(Output::Event(CallEvent::Truncated {
                item_id,
                audio_end_ms: heard,
            }));
        }
        self.live_items.clear();

        // 4. In-band DTMF that was cut off did not reach the far end.
        let cut_tones: Vec<_> = self
            .runs
            .iter()
            .filter(|(_, r)| r.tone.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in cut_tones {
            self.complete_run(
                id,
                ToolOutcome::Failed("the caller spoke over the digits; they were not sent".into()),
            );
        }
    }

    /// Asks the model to respond when something is waiting for it and nothing stands in the
    /// way: no response in progress or requested, no tool of the model still running, no
    /// hangup or transfer under way.
    pub(super) fn maybe_request_response(&mut self) {
        if !self.responses.wanted
            || self.session != Session::Live
            || self.responses.active.is_some()
            || self.responses.requested
            || self.leg_action.is_some()
            || self.runs.values().any(|r| r.call_id.is_some())
        {
            return;
        }
        self.responses.wanted = false;
        self.responses.requested = true;
        self.send(ClientEvent::ResponseCreate { response: None });
    }
}
