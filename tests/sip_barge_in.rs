//! Barge-in on a SIP leg, with a virtual clock: the call state machine drives the real RTP
//! pacer (the SIP leg's playout clock). Marks come back when the pacer sends the last packet
//! before them, and a clear flushes the pacer's queue, so the truncation matches the audio
//! packets actually sent, within one packet, at every point of a response and on later turns.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ms, session_config, test_route};
use dialtone::audio::AudioFormat;
use dialtone::bridge::{Call, CallConfig, CallerCommand, Input, Output, Timing};
use dialtone::realtime::event::{ClientEvent, ServerEvent};
use dialtone::rtp::pacer::{Content, Pacer, PacerConfig};
use rand::SeedableRng;

/// A call whose leg is the RTP pacer, on a virtual clock.
struct PacedCall {
    call: Call,
    pacer: Pacer,
    now: Instant,
    /// Audio packets sent since the current response began.
    audio_sent: u64,
    truncates: Vec<(String, u64)>,
}

impl PacedCall {
    fn new() -> Self {
        let t0 = Instant::now();
        let call = Call::new(
            CallConfig {
                route: Arc::new(test_route()),
                session: session_config(),
                out_of_band_dtmf: true,
                timing: Timing::default(),
            },
            t0,
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pacer = Pacer::new(
            PacerConfig {
                payload_type: 0,
                telephone_event: Some(101),
                clock_rate: 8000,
                silence: vec![0xFF; 160],
            },
            &mut rng,
            t0,
        );
        let mut pc = Self {
            call,
            pacer,
            now: t0,
            audio_sent: 0,
            truncates: Vec::new(),
        };
        pc.input(Input::Realtime {
            now: t0,
            event: ServerEvent::SessionCreated {
                session: serde_json::json!({}),
            },
        });
        pc
    }

    fn input(&mut self, input: Input) {
        self.call.handle_input(input);
        let mut played = Vec::new();
        while let Some(out) = self.call.poll_output() {
            match out {
                Output::Caller(CallerCommand::Play(audio)) => {
                    for frame in audio.chunks(AudioFormat::Pcmu.frame_bytes()) {
                        self.pacer.play(frame.to_vec());
                    }
                }
                Output::Caller(CallerCommand::Mark(mark)) => {
                    played.extend(self.pacer.mark(mark.id))
                }
                Output::Caller(CallerCommand::Clear) => played.extend(self.pacer.clear()),
                Output::Realtime(ClientEvent::ConversationItemTruncate {
                    item_id,
                    audio_end_ms,
                    ..
                }) => self.truncates.push((item_id, audio_end_ms)),
                _ => {}
            }
        }
        for mark in played {
            let now = self.now;
            self.input(Input::Played { now, mark });
        }
    }

    fn realtime(&mut self, event: ServerEvent) {
        let now = self.now;
        self.input(Input::Realtime { now, event });
    }

    /// Runs the pacer (and the call's timers) for `d` of virtual time.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.pacer.poll_timeout(), self.call.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(at) = next.filter(|t| *t <= end) else {
                break;
            };
            self.now = self.now.max(at);
            while let Some(sent) = self.pacer.next_send(self.now) {
                if sent.content == Content::Audio {
                    self.audio_sent += 1;
                }
                for mark in sent.played {
                    let now = self.now;
                    self.input(Input::Played { now, mark });
                }
            }
            if self.call.poll_timeout().is_some_and(|t| t <= self.now) {
                let now = self.now;
                self.input(Input::Timeout { now });
            }
        }
        self.now = end;
    }

    fn respond(&mut self, id: &str, item: &str, audio_ms: u64) {
        use base64::Engine as _;
        self.audio_sent = 0;
        self.realtime(ServerEvent::ResponseCreated {
            response: common::info(id, "in_progress", &[]),
        });
        self.realtime(ServerEvent::AudioDelta {
            response_id: id.into(),
            item_id: item.into(),
            output_index: 0,
            content_index: 0,
            delta: base64::engine::general_purpose::STANDARD
                .encode(vec![0x55; (audio_ms * 8) as usize]),
        });
        self.realtime(ServerEvent::AudioDone {
            response_id: id.into(),
            item_id: item.into(),
            output_index: 0,
            content_index: 0,
        });
        self.realtime(ServerEvent::ResponseDone {
            response: common::info(id, "completed", &[item]),
        });
    }
}

#[test]
fn truncation_matches_the_packets_sent_within_one_packet() {
    let mut pc = PacedCall::new();
    for (turn, at) in [(1u32, 37u64), (2, 1234), (3, 2980), (4, 500)] {
        let (id, item) = (format!("r{turn}"), format!("item{turn}"));
        pc.respond(&id, &item, 3000);
        pc.advance(ms(at));
        let sent_ms = pc.audio_sent * 20;
        pc.realtime(ServerEvent::SpeechStarted {
            audio_start_ms: 0,
            item_id: "user".into(),
        });
        let (truncated, end) = pc.truncates.last().cloned().expect("a truncate");
        assert_eq!(truncated, item);
        assert!(
            end.abs_diff(sent_ms) <= 20,
            "turn {turn}: truncated at {end} ms, the pacer had sent {sent_ms} ms"
        );
        // The clear flushed the pacer: only silence follows.
        let before = pc.audio_sent;
        pc.advance(ms(200));
        assert!(
            pc.audio_sent <= before + 1,
            "audio kept playing after the clear"
        );
        pc.realtime(ServerEvent::SpeechStopped {
            audio_end_ms: 0,
            item_id: "user".into(),
        });
    }
    assert_eq!(pc.truncates.len(), 4);
}
