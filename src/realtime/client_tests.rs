//! Tests of the Realtime socket: live connections to a local axum server, and the handshake
//! over an in-process duplex.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri as AxumUri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::*;
use crate::realtime::event::SessionConfig;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn settings(provider: Provider) -> RealtimeSettings {
    RealtimeSettings {
        provider,
        url_override: None,
    }
}

const TEST_KEY: &str = "test-key";

/// What the test server saw of the client's closing handshake.
type Closes = mpsc::UnboundedSender<Option<u16>>;

async fn realtime_route(
    State(closes): State<Closes>,
    headers: HeaderMap,
    uri: AxumUri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TEST_KEY}"));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"bad key\"}").into_response();
    }
    if uri.query() != Some("model=gpt-realtime") {
        return (StatusCode::BAD_REQUEST, "bad query").into_response();
    }
    upgrade.on_upgrade(move |socket| serve_socket(socket, closes))
}

/// Sends `session.created`; answers `session.update` with junk frames then
/// `session.updated` echoing the session; answers `response.cancel` by closing with 4000.
async fn serve_socket(mut socket: WebSocket, closes: Closes) {
    let created = r#"{"type":"session.created","session":{"id":"sess_1"}}"#;
    if socket.send(ws::Message::text(created)).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        match message {
            ws::Message::Text(text) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                match value["type"].as_str() {
                    Some("session.update") => {
                        let junk = [
                            ws::Message::text("{not json"),
                            ws::Message::text(r#"{"type":"response.done"}"#),
                            ws::Message::binary(vec![1u8, 2, 3]),
                            ws::Message::text(r#"{"type":"rate_limits.updated"}"#),
                        ];
                        for frame in junk {
                            let _ = socket.send(frame).await;
                        }
                        let updated = serde_json::json!({
                            "type": "session.updated",
                            "session": value["session"],
                        });
                        let _ = socket.send(ws::Message::text(updated.to_string())).await;
                    }
                    Some("response.cancel") => {
                        let frame = ws::CloseFrame {
                            code: 4000,
                            reason: "bye".into(),
                        };
                        let _ = socket.send(ws::Message::Close(Some(frame))).await;
                    }
                    _ => {}
                }
            }
            ws::Message::Close(frame) => {
                let _ = closes.send(frame.map(|f| f.code));
            }
            _ => {}
        }
    }
}

async fn server() -> (String, mpsc::UnboundedReceiver<Option<u16>>) {
    let (closes_tx, closes_rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/v1/realtime", get(realtime_route))
        .with_state(closes_tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("ws://{addr}/v1/realtime"), closes_rx)
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn session_update() -> ClientEvent {
    ClientEvent::SessionUpdate {
        session: Box::new(SessionConfig {
            kind: "realtime".into(),
            model: None,
            output_modalities: Some(vec!["audio".into()]),
            instructions: Some("Be brief.".into()),
            audio: None,
            tools: None,
            tool_choice: None,
        }),
    }
}

#[tokio::test]
async fn events_flow_both_ways_and_junk_is_skipped() {
    install_crypto();
    let (url, _closes) = server().await;
    let s = RealtimeSettings::from_env_map(env(&[
        ("OPENAI_API_KEY", TEST_KEY),
        ("DIALTONE_REALTIME_URL", &url),
    ]));
    let mut conn = RealtimeSocket::connect(&s, "gpt-realtime").await.unwrap();
    let before = malformed_frames();

    match conn.recv().await {
        RealtimeIncoming::Event(ServerEvent::SessionCreated { session }) => {
            assert_eq!(session["id"], "sess_1");
        }
        other => panic!("expected session.created, got {other:?}"),
    }

    conn.feed(&session_update()).await;
    conn.flush().await;
    match conn.recv().await {
        RealtimeIncoming::Event(ServerEvent::SessionUpdated { session }) => {
            assert_eq!(session["instructions"], "Be brief.");
        }
        other => panic!("expected session.updated, got {other:?}"),
    }
    // Invalid JSON, a known event missing its fields, and a binary frame.
    assert!(malformed_frames() >= before + 3);

    conn.feed(&ClientEvent::ResponseCancel { response_id: None })
        .await;
    conn.flush().await;
    assert_eq!(
        conn.recv().await,
        RealtimeIncoming::Closed {
            reason: "code 4000: bye".into()
        }
    );
    // Once closed, the socket keeps saying so.
    assert!(matches!(conn.recv().await, RealtimeIncoming::Closed { .. }));
}

#[tokio::test]
async fn close_closes_normally() {
    install_crypto();
    let (url, mut closes) = server().await;
    let s = RealtimeSettings {
        provider: Provider::Custom {
            url,
            api_key: Some(TEST_KEY.into()),
        },
        url_override: None,
    };
    let mut conn = RealtimeSocket::connect(&s, "gpt-realtime").await.unwrap();
    assert!(matches!(
        conn.recv().await,
        RealtimeIncoming::Event(ServerEvent::SessionCreated { .. })
    ));
    conn.close().await;
    assert_eq!(closes.recv().await, Some(Some(1000)));
}

#[tokio::test]
async fn rejected_handshake_reports_the_status() {
    install_crypto();
    let (url, _closes) = server().await;
    let s = RealtimeSettings::from_env_map(env(&[("DIALTONE_REALTIME_URL", &url)]));
    match RealtimeSocket::connect(&s, "gpt-realtime").await {
        Err(RealtimeError::Rejected { status, body }) => {
            assert_eq!(status, 401);
            assert!(body.contains("bad key"), "{body}");
        }
        Err(other) => panic!("expected a rejection, got {other}"),
        Ok(_) => panic!("expected a rejection, got a connection"),
    }
}

#[tokio::test]
async fn refused_connection_is_a_handshake_error() {
    install_crypto();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let s = settings(Provider::Custom {
        url: format!("ws://{addr}/v1/realtime"),
        api_key: None,
    });
    assert!(matches!(
        RealtimeSocket::connect(&s, "m").await,
        Err(RealtimeError::Handshake(_))
    ));
}

/// Handshake callback of the duplex test server: checks the path and the model.
// The error type is fixed by tungstenite's callback signature.
#[allow(clippy::result_large_err)]
fn check_stream_request(
    request: &tungstenite::handshake::server::Request,
    response: tungstenite::handshake::server::Response,
) -> Result<tungstenite::handshake::server::Response, tungstenite::handshake::server::ErrorResponse>
{
    assert_eq!(request.uri().path(), "/v1/realtime");
    assert_eq!(request.uri().query(), Some("model=gpt-realtime"));
    Ok(response)
}

#[tokio::test]
async fn connect_stream_speaks_over_a_duplex() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let mut ws = tokio_tungstenite::accept_hdr_async(server_io, check_stream_request)
            .await
            .unwrap();
        ws.send(Message::text(r#"{"type":"session.created","session":{}}"#))
            .await
            .unwrap();
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("expected a text frame");
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "response.create");
        ws.send(Message::text(
            r#"{"type":"response.created","response":{"id":"resp_1"}}"#,
        ))
        .await
        .unwrap();
        // Wait for the client's close and answer it.
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    });

    let mut conn = RealtimeSocket::connect_stream(client_io, "gpt-realtime")
        .await
        .unwrap();
    assert!(matches!(
        conn.recv().await,
        RealtimeIncoming::Event(ServerEvent::SessionCreated { .. })
    ));
    conn.feed(&ClientEvent::ResponseCreate { response: None })
        .await;
    conn.flush().await;
    match conn.recv().await {
        RealtimeIncoming::Event(ServerEvent::ResponseCreated { response }) => {
            assert_eq!(response.id, "resp_1");
        }
        other => panic!("expected response.created, got {other:?}"),
    }
    conn.close().await;
    assert_eq!(server.await.unwrap(), Some(1000));
}

#[test]
fn close_reasons() {
    let frame = CloseFrame {
        code: CloseCode::from(4000),
        reason: "beta shape".into(),
    };
    assert_eq!(close_reason(Some(&frame)), "code 4000: beta shape");
    assert_eq!(close_reason(None), "closed without a close code");
}
