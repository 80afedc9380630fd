//! What a call's playback costs in memory: about what the queued audio weighs, whatever the
//! size of the model's deltas, and never more than the per-call cap.
//!
//! A counting allocator measures the heap bytes live and the peak while one call takes a
//! single huge `response.output_audio.delta`. The tests run one after the other (a lock), so
//! each sees only its own allocations.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{session_config, test_route};
use dialtone::bridge::{Call, CallConfig, CallEvent, Input, Output, Timing};
use dialtone::realtime::event::ServerEvent;
use serde_json::json;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MB: usize = 1_000_000;

/// A live call on a µ-law route.
fn live_call(timing: Timing) -> Call {
    let t0 = Instant::now();
    let mut call = Call::new(
        CallConfig {
            route: Arc::new(test_route()),
            session: session_config(),
            out_of_band_dtmf: false,
            timing,
        },
        t0,
    );
    for event in [
        ServerEvent::SessionCreated { session: json!({}) },
        ServerEvent::SessionUpdated { session: json!({}) },
    ] {
        call.handle_input(Input::Realtime { now: t0, event });
        while call.poll_output().is_some() {}
    }
    call
}

/// Feeds one delta of `bytes` of audio, drops every output (as a leg that sent it would), and
/// returns the events, the heap bytes the call keeps, and the peak above the start.
fn one_delta(call: &mut Call, bytes: usize) -> (Vec<CallEvent>, usize, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let delta = base64::engine::general_purpose::STANDARD.encode(vec![0x55u8; bytes]);
    // From here on the peak counts the delta's text and what taking it costs.
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    call.handle_input(Input::Realtime {
        now: Instant::now(),
        event: ServerEvent::AudioDelta {
            response_id: "r1".into(),
            item_id: "i1".into(),
            output_index: 0,
            content_index: 0,
            delta,
        },
    });
    let mut events = Vec::new();
    while let Some(output) = call.poll_output() {
        if let Output::Event(event) = output {
            events.push(event);
        }
    }
    let kept = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    (events, kept, peak)
}

#[test]
fn a_10_mb_delta_costs_about_10_mb() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let timing = Timing {
        max_queued_audio: Duration::from_secs(2000),
        ..Timing::default()
    };
    let mut call = live_call(timing);
    let (events, kept, peak) = one_delta(&mut call, 10 * MB);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, CallEvent::AssistantAudioDropped { .. })),
        "{events:?}"
    );
    // The audio itself, less what went to the leg (dropped here), plus bookkeeping.
    assert!(
        (9 * MB..11 * MB).contains(&kept),
        "the call keeps {kept} bytes for 10 MB of audio"
    );
    // The delta's base64 text (13.3 MB) and one decoded copy of the audio: no more.
    assert!(peak < 25 * MB, "peak {peak} bytes while taking the delta");
}

#[test]
fn queued_audio_stops_at_the_cap_and_the_rest_is_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let timing = Timing::default();
    let cap_ms = timing.max_queued_audio.as_millis() as u64;
    let mut call = live_call(timing);
    // 10 MB of µ-law is 1,250 s of audio.
    let (events, kept, _) = one_delta(&mut call, 10 * MB);
    let dropped: u64 = events
        .iter()
        .filter_map(|e| match e {
            CallEvent::AssistantAudioDropped { ms } => Some(*ms),
            _ => None,
        })
        .sum();
    assert_eq!(dropped, 1_250_000 - cap_ms);
    // What stays is the cap's worth of audio (300 s of µ-law is 2.4 MB), not the delta.
    assert!(kept < 3 * MB, "the call keeps {kept} bytes");
    // A second delta finds the queue full but for the lead the leg took: the rest of it is
    // dropped.
    let lead_ms = Timing::default().playout_lead.as_millis() as u64;
    let (events, kept_more, _) = one_delta(&mut call, MB);
    assert!(
        events.iter().any(
            |e| matches!(e, CallEvent::AssistantAudioDropped { ms } if *ms == 125_000 - lead_ms)
        ),
        "{events:?}"
    );
    assert!(
        kept_more < MB / 10,
        "a dropped delta keeps {kept_more} bytes"
    );
}
