//! `dialtone load model`: a minimal Realtime API server whose own CPU stays small, so that a
//! load run measures the bridge and not the model.
//!
//! Each WebSocket connection on `/v1/realtime` (any query) gets `session.created` at once, a
//! `session.updated` for every `session.update`, and from the first `session.update` on, one
//! response per period on the schedule of `schedule.rs`: `response.created`,
//! `response.output_item.added`, the audio deltas, `response.output_audio.done`,
//! `response.output_item.done`, `response.done`. The audio follows the session's
//! `session.audio.output.format.type` (µ-law by default) and is a constant; the first µ-law
//! delta of each response starts with the latency marker (`marker.rs`). PCM16 is resampled by
//! the bridge, so PCM16 responses carry no marker.
//!
//! Client events are read only as far as their `"type"`; only `session.update` is parsed.

use std::net::SocketAddr;
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::events::{EventTexts, OutputFormat, ResponseDeltas};
use super::process::{Guarded, first_line};
use super::schedule::{Plan, Step, Talker};

/// The path the server answers on.
pub const PATH: &str = "/v1/realtime";

/// Most connections served at once; further ones are closed on accept.
const MAX_CONNECTIONS: usize = 10_000;

/// Default milliseconds of speech per response.
pub const DEFAULT_TALK_MS: u32 = 3000;
/// Default milliseconds from one response's start to the next.
pub const DEFAULT_PERIOD_MS: u32 = 6000;

/// Arguments of `dialtone load model`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Listen address (loopback only), e.g. 127.0.0.1:0 for a port chosen by the system.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Audio milliseconds in each `response.output_audio.delta`.
    #[arg(long, default_value_t = 20)]
    pub delta_ms: u32,
    /// How much faster than real time deltas are sent (2: a 100 ms delta every 50 ms).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Milliseconds of speech in each response.
    #[arg(long, default_value_t = DEFAULT_TALK_MS)]
    pub talk_ms: u32,
    /// Milliseconds from one response's start to the next, counted from the first
    /// `session.update`.
    #[arg(long, default_value_t = DEFAULT_PERIOD_MS)]
    pub period_ms: u32,
}

/// How long the model child may take to print its address.
const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// The load model running as a child of a rig.
#[derive(Debug)]
pub struct ModelChild {
    pub process: Guarded,
    /// `ws://127.0.0.1:PORT/v1/realtime`.
    pub url: String,
}

/// Starts `<this executable> load model` on a port chosen by the system, talking on the
/// default schedule with deltas of `delta_ms` at `speed`, and reads its address.
pub fn start_child(delta_ms: u32, speed: f64) -> Result<ModelChild> {
    let exe = std::env::current_exe().context("cannot find this executable to run the model")?;
    let mut command = Command::new(exe);
    command
        .args(["load", "model", "--listen", "127.0.0.1:0"])
        .args(["--delta-ms", &delta_ms.to_string()])
        .args(["--speed", &speed.to_string()])
        .args(["--talk-ms", &DEFAULT_TALK_MS.to_string()])
        .args(["--period-ms", &DEFAULT_PERIOD_MS.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut process = Guarded::spawn(&mut command, "the load model")?;
    let stdout = process
        .child_mut()
        .stdout
        .take()
        .context("the load model has no stdout")?;
    let Some(line) = first_line(stdout, STARTUP_LIMIT) else {
        bail!(
            "the load model did not print its address within {} s",
            STARTUP_LIMIT.as_secs()
        );
    };
    let Some(url) = line.strip_prefix("listening on ") else {
        bail!("the load model printed {line:?} instead of its address");
    };
    Ok(ModelChild {
        url: url.trim().to_owned(),
        process,
    })
}

/// Runs the server until the process is killed.
pub fn run(args: &ModelArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {} is not a loopback address; the load model serves 127.0.0.1 only",
            args.listen
        );
    }
    let plan = Plan::new(args.delta_ms, args.speed, args.talk_ms, args.period_ms)?;
    super::runtime()?.block_on(serve(args.listen, plan))
}

async fn serve(listen: SocketAddr, plan: Plan) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    // The first line of stdout is the address: the rigs read it.
    println!("listening on ws://{addr}{PATH}");
    use std::io::Write as _;
    std::io::stdout().flush()?;

    let open = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait for connections to close.
                eprintln!("load model: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, plan, id).await {
                eprintln!("load model: connection {id}: {e}");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Accepts the upgrade on [`PATH`] only.
#[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
fn check_path(request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() == PATH {
        return Ok(response);
    }
    let mut refusal = ErrorResponse::new(Some(format!("only {PATH} is served")));
    *refusal.status_mut() = StatusCode::NOT_FOUND;
    Err(refusal)
}

/// One session, from the upgrade to the close.
async fn connection(stream: TcpStream, plan: Plan, id: u64) -> Result<(), tungstenite::Error> {
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, check_path).await?;
    let session = format!("sess_{id}");
    let mut texts = EventTexts::new(OutputFormat::Pcmu, plan.delta_ms, plan.talk_ms);
    let mut talker: Option<Talker> = None;
    let mut speaking: Option<Speaking> = None;
    ws.send(Message::text(texts.session_created(&session)))
        .await?;

    let mut wake = pin!(tokio::time::sleep_until(Instant::now()));
    loop {
        if let Some(t) = &talker {
            wake.as_mut().reset(Instant::from_std(t.next_due()));
        }
        tokio::select! {
            frame = ws.next() => match frame {
                None | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(Message::Text(text))) => {
                    if event_type(&text) == Some("session.update") {
                        if let Some(format) = requested_format(&text) {
                            if format != texts.format() {
                                texts = EventTexts::new(format, plan.delta_ms, plan.talk_ms);
                            }
                        }
                        ws.send(Message::text(texts.session_updated(&session))).await?;
                        if talker.is_none() {
                            talker = Some(Talker::new(plan, std::time::Instant::now()));
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
            },
            () = &mut wake, if talker.is_some() => {
                let Some(t) = talker.as_mut() else { continue };
                while t.next_due() <= std::time::Instant::now() {
                    let step = t.step();
                    speak(&mut ws, &mut texts, &mut speaking, id, step).await?;
                }
            }
        }
    }
}

/// The response being spoken.
struct Speaking {
    response: String,
    item: String,
    deltas: ResponseDeltas,
}

/// Sends the events of one step of the schedule.
async fn speak(
    ws: &mut WebSocketStream<TcpStream>,
    texts: &mut EventTexts,
    speaking: &mut Option<Speaking>,
    id: u64,
    step: Step,
) -> Result<(), tungstenite::Error> {
    match step {
        Step::Begin { index } => {
            let response = format!("resp_{id}_{index}");
            let item = format!("item_{id}_{index}");
            ws.feed(Message::text(texts.response_created(&response)))
                .await?;
            ws.send(Message::text(texts.item_added(&response, &item)))
                .await?;
            *speaking = Some(Speaking {
                deltas: texts.deltas(&response, &item),
                response,
                item,
            });
        }
        Step::Delta { n, ms, .. } => {
            if let Some(s) = speaking {
                ws.send(Message::Text(s.deltas.delta(ms, n == 0))).await?;
            }
        }
        Step::End { .. } => {
            if let Some(s) = speaking.take() {
                ws.feed(Message::text(texts.audio_done(&s.response, &s.item)))
                    .await?;
                ws.feed(Message::text(texts.item_done(&s.response, &s.item)))
                    .await?;
                ws.send(Message::text(texts.response_done(&s.response, &s.item)))
                    .await?;
            }
        }
    }
    Ok(())
}

/// The `"type"` of a client event. The bridge writes it first, so it is usually read without
/// parsing the rest (an `input_audio_buffer.append` is mostly base64).
pub fn event_type(text: &str) -> Option<&str> {
    const HEAD: &str = r#"{"type":""#;
    if let Some(rest) = text.strip_prefix(HEAD) {
        let end = rest.find('"')?;
        let kind = &rest[..end];
        if !kind.contains('\\') {
            return Some(kind);
        }
    }
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    serde_json::from_str::<Head<'_>>(text).ok().map(|h| h.kind)
}

/// The output format a `session.update` asks for, if it names one this server knows.
pub fn requested_format(text: &str) -> Option<OutputFormat> {
    #[derive(Deserialize)]
    struct Update {
        session: Session,
    }
    #[derive(Deserialize)]
    struct Session {
        audio: Audio,
    }
    #[derive(Deserialize)]
    struct Audio {
        output: Output,
    }
    #[derive(Deserialize)]
    struct Output {
        format: Format,
    }
    #[derive(Deserialize)]
    struct Format {
        #[serde(rename = "type")]
        kind: String,
    }
    let update: Update = serde_json::from_str(text).ok()?;
    OutputFormat::from_type(&update.session.audio.output.format.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_read_cheaply_or_parsed() {
        assert_eq!(
            event_type(r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#),
            Some("input_audio_buffer.append")
        );
        assert_eq!(
            event_type(r#"{ "audio":"AAAA", "type":"session.update"}"#),
            Some("session.update")
        );
        assert_eq!(event_type("not json"), None);
        assert_eq!(event_type(r#"{"type":"#), None);
    }

    #[test]
    fn the_output_format_comes_from_session_update() {
        let update = |kind: &str| {
            format!(
                r#"{{"type":"session.update","session":{{"type":"realtime","audio":{{"input":{{"format":{{"type":"audio/pcmu"}}}},"output":{{"format":{{"type":"{kind}","rate":24000}},"voice":"marin"}}}}}}}}"#
            )
        };
        assert_eq!(
            requested_format(&update("audio/pcm")),
            Some(OutputFormat::Pcm16)
        );
        assert_eq!(
            requested_format(&update("audio/pcmu")),
            Some(OutputFormat::Pcmu)
        );
        assert_eq!(
            requested_format(r#"{"type":"session.update","session":{"type":"realtime"}}"#),
            None
        );
    }
}
