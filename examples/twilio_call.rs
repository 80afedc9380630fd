//! Places a call into the bridge the way Twilio Media Streams does, without a phone.
//!
//! ```text
//! cargo run --release --example twilio_call -- URL IN.ulaw OUT.ulaw [--listen SECS] [--from N] [--to N] [--signature SIG]
//! ```
//!
//! It connects to `URL` (e.g. `ws://127.0.0.1:8080/twilio/media`), sends `connected` and
//! `start`, streams `IN.ulaw` (headerless µ-law, 8 kHz) as 20 ms `media` messages at real time,
//! then keeps the line open with silence for `--listen` seconds (default 10). Audio from the
//! bridge is played out at real time like Twilio's player: marks are echoed once the audio
//! before them has played, and all at once on `clear`. Everything played is written to
//! `OUT.ulaw`; convert it with `sox -t raw -e u-law -r 8000 -c 1 OUT.ulaw out.wav`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FRAME: Duration = Duration::from_millis(20);
const STREAM_SID: &str = "MZ00000000000000000000000000000000";
const CALL_SID: &str = "CA00000000000000000000000000000000";

enum Queued {
    Audio(Vec<u8>),
    Mark(String),
}

#[derive(Default)]
struct Player {
    queue: VecDeque<Queued>,
    played: Vec<u8>,
    closed: bool,
}

struct Args {
    url: String,
    input: String,
    output: String,
    listen: u64,
    from: String,
    to: String,
    signature: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut positional = Vec::new();
    let mut args = Args {
        url: String::new(),
        input: String::new(),
        output: String::new(),
        listen: 10,
        from: "+15550000001".into(),
        to: "+15550000002".into(),
        signature: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => args.listen = value()?.parse().context("--listen SECS")?,
            "--from" => args.from = value()?,
            "--to" => args.to = value()?,
            "--signature" => args.signature = Some(value()?),
            _ => positional.push(a),
        }
    }
    let [url, input, output] = <[String; 3]>::try_from(positional)
        .map_err(|_| anyhow::anyhow!("usage: twilio_call URL IN.ulaw OUT.ulaw [--listen SECS]"))?;
    (args.url, args.input, args.output) = (url, input, output);
    Ok(args)
}

fn text(v: Value) -> Message {
    Message::text(v.to_string())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let speech = std::fs::read(&args.input).with_context(|| args.input.clone())?;
    let mut request = args.url.as_str().into_client_request()?;
    if let Some(sig) = &args.signature {
        request
            .headers_mut()
            .insert("X-Twilio-Signature", sig.parse()?);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });

    let player = Arc::new(Mutex::new(Player::default()));
    let reader = {
        let player = Arc::clone(&player);
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(body) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&body) else {
                    continue;
                };
                let mut p = player.lock().expect("player lock");
                match v["event"].as_str() {
                    Some("media") => {
                        let payload = v["media"]["payload"].as_str().unwrap_or_default();
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(payload)
                            .unwrap_or_default();
                        p.queue
                            .extend(bytes.chunks(160).map(|c| Queued::Audio(c.to_vec())));
                    }
                    Some("mark") => {
                        let name = v["mark"]["name"].as_str().unwrap_or_default().to_owned();
                        p.queue.push_back(Queued::Mark(name));
                    }
                    Some("clear") => {
                        eprintln!("clear (barge-in)");
                        for q in p.queue.drain(..) {
                            if let Queued::Mark(name) = q {
                                let _ = tx.send(mark(&name));
                            }
                        }
                    }
                    _ => {}
                }
            }
            player.lock().expect("player lock").closed = true;
            eprintln!("the bridge closed the stream");
        })
    };
    let playout = {
        let player = Arc::clone(&player);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FRAME);
            loop {
                tick.tick().await;
                let mut p = player.lock().expect("player lock");
                while let Some(q) = p.queue.pop_front() {
                    match q {
                        Queued::Mark(name) => {
                            let _ = tx.send(mark(&name));
                        }
                        Queued::Audio(frame) => {
                            p.played.extend_from_slice(&frame);
                            break;
                        }
                    }
                }
            }
        })
    };

    tx.send(text(
        json!({"event":"connected","protocol":"Call","version":"1.0.0"}),
    ))?;
    tx.send(text(json!({
        "event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
        "start": {
            "streamSid": STREAM_SID, "accountSid": "AC00000000000000000000000000000000",
            "callSid": CALL_SID, "tracks": ["inbound"],
            "customParameters": {"From": args.from, "To": args.to, "CallSid": CALL_SID},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    })))?;
    let silence = vec![0xFFu8; (args.listen * 8000) as usize];
    let mut tick = tokio::time::interval(FRAME);
    for (i, chunk) in speech.chunks(160).chain(silence.chunks(160)).enumerate() {
        tick.tick().await;
        if player.lock().expect("player lock").closed {
            break;
        }
        tx.send(text(json!({
            "event": "media", "streamSid": STREAM_SID,
            "media": {
                "track": "inbound", "chunk": (i + 1).to_string(), "timestamp": (i * 20).to_string(),
                "payload": base64::engine::general_purpose::STANDARD.encode(chunk)
            }
        })))?;
    }
    let _ = tx.send(text(json!({"event":"stop","streamSid":STREAM_SID,
        "stop":{"accountSid":"AC00000000000000000000000000000000","callSid":CALL_SID}})));
    let _ = tx.send(Message::Close(None));
    tokio::time::sleep(Duration::from_millis(200)).await;
    reader.abort();
    playout.abort();
    let played = std::mem::take(&mut player.lock().expect("player lock").played);
    if played.is_empty() {
        bail!("nothing was played back");
    }
    std::fs::write(&args.output, &played).with_context(|| args.output.clone())?;
    eprintln!(
        "played {:.1} s of audio from the bridge into {}",
        played.len() as f64 / 8000.0,
        args.output
    );
    Ok(())
}

fn mark(name: &str) -> Message {
    text(json!({"event":"mark","sequenceNumber":"2","streamSid":STREAM_SID,"mark":{"name":name}}))
}
