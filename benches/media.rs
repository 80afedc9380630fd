//! Per-frame media cost: what one 20 ms frame costs on its way between a call leg and the
//! model, side by side in one group so the figures can be compared directly.
//!
//! - `pcmu_to_pcm16`: µ-law decode and 8 → 24 kHz resampling (`Transcoder::to_model`).
//! - `pcm16_to_pcmu`: 24 → 8 kHz resampling and µ-law encode (`Transcoder::to_leg`).
//! - `pcmu_passthrough`: the same frame when both sides speak µ-law (a copy).
//! - `append_event_pcmu`: base64 and JSON of an `input_audio_buffer.append` for 160 µ-law bytes.
//! - `append_event_pcm16`: the same for 960 bytes of PCM16 at 24 kHz.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, criterion_group, criterion_main};
use dialtone::audio::AudioFormat;
use dialtone::audio::tone::tone;
use dialtone::audio::transcode::Transcoder;
use dialtone::realtime::event::ClientEvent;

/// One 20 ms frame of a 1 kHz tone in `format`, taken from the middle of a longer tone so
/// that it is at full level.
fn frame(format: AudioFormat) -> Vec<u8> {
    let audio = tone(&[1_000.0], 100, 0.5, format);
    let len = format.frame_bytes();
    audio[2 * len..3 * len].to_vec()
}

fn append_event(audio: &[u8]) -> String {
    ClientEvent::InputAudioBufferAppend {
        audio: STANDARD.encode(audio),
    }
    .to_json()
}

fn frame_costs(c: &mut Criterion) {
    let ulaw = frame(AudioFormat::Pcmu);
    let pcm16 = frame(AudioFormat::Pcm16);
    let mut group = c.benchmark_group("media_20ms_frame");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    let mut transcoder = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcm16);
    let mut out = Vec::new();
    group.bench_function("pcmu_to_pcm16", |b| {
        b.iter(|| {
            transcoder.to_model(black_box(&ulaw), &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("pcm16_to_pcmu", |b| {
        b.iter(|| {
            transcoder.to_leg(black_box(&pcm16), &mut out);
            black_box(out.len())
        })
    });

    let mut passthrough = Transcoder::new(AudioFormat::Pcmu, AudioFormat::Pcmu);
    group.bench_function("pcmu_passthrough", |b| {
        b.iter(|| {
            passthrough.to_model(black_box(&ulaw), &mut out);
            black_box(out.len())
        })
    });

    group.bench_function("append_event_pcmu", |b| {
        b.iter(|| append_event(black_box(&ulaw)))
    });
    group.bench_function("append_event_pcm16", |b| {
        b.iter(|| append_event(black_box(&pcm16)))
    });
    group.finish();
}

criterion_group!(benches, frame_costs);
criterion_main!(benches);
