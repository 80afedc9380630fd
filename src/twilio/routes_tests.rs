//! Tests of the Twilio routes over real sockets on 127.0.0.1.

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use super::*;
use crate::call::leg::{CallerLeg, LegCommand};
use crate::twilio::rest::form_urlencode;

const TOKEN: &str = "test-auth-token";
const PUBLIC: &str = "https://bridge.example.com";

struct Server {
    addr: std::net::SocketAddr,
    legs: mpsc::UnboundedReceiver<CallerLeg>,
    counters: Arc<TwilioCounters>,
}

async fn serve(public_url: Option<&str>) -> Server {
    let (leg_tx, legs) = mpsc::unbounded_channel();
    let counters = Arc::new(TwilioCounters::default());
    let state = TwilioState {
        public_url: public_url.map(str::to_owned),
        auth_token: Some(TOKEN.to_owned()),
        rest: None,
        on_call: Arc::new(move |leg| {
            let _ = leg_tx.send(leg);
            Box::pin(async {})
        }),
        counters: counters.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Server {
        addr,
        legs,
        counters,
    }
}

fn call_fields() -> Vec<(String, String)> {
    [
        ("AccountSid", "AC1"),
        ("CallSid", "CA1"),
        ("From", "+15550001111"),
        ("To", "+15550002222"),
        ("CallerName", "A & B <x>"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn post_voice(server: &Server, signature: Option<&str>) -> reqwest::Response {
    let fields = call_fields();
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut request = reqwest::Client::new()
        .post(format!("http://{}{VOICE_PATH}", server.addr))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_urlencode(&pairs));
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn unsigned_webhook_is_rejected() {
    let server = serve(Some(PUBLIC)).await;
    let response = post_voice(&server, None).await;
    assert_eq!(response.status(), 403);
    let wrong = signature::compute(
        "other-token",
        &format!("{PUBLIC}{VOICE_PATH}"),
        &call_fields(),
    );
    assert_eq!(post_voice(&server, Some(&wrong)).await.status(), 403);
    assert_eq!(server.counters.snapshot().signature_rejected, 2);
}

#[tokio::test]
async fn signed_webhook_answers_with_the_stream() {
    let server = serve(Some(PUBLIC)).await;
    let signature = signature::compute(TOKEN, &format!("{PUBLIC}{VOICE_PATH}"), &call_fields());
    let response = post_voice(&server, Some(&signature)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get(CONTENT_TYPE).expect("content type"),
        "text/xml"
    );
    let body = response.text().await.expect("body");
    assert!(body.starts_with("<?xml"), "{body}");
    assert!(
        body.contains(r#"<Stream url="wss://bridge.example.com/twilio/media">"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<Parameter name="From" value="+15550001111"/>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<Parameter name="To" value="+15550002222"/>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<Parameter name="CallSid" value="CA1"/>"#),
        "{body}"
    );
    assert!(!body.contains("CallerName"), "{body}");
    assert_eq!(server.counters.snapshot().signature_rejected, 0);
}

#[tokio::test]
async fn without_public_url_the_host_header_is_used() {
    let server = serve(None).await;
    let url = format!("http://{}{VOICE_PATH}", server.addr);
    let signature = signature::compute(TOKEN, &url, &call_fields());
    let response = post_voice(&server, Some(&signature)).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("body");
    let stream = format!(r#"<Stream url="wss://{}/twilio/media">"#, server.addr);
    assert!(body.contains(&stream), "{body}");
}

#[tokio::test]
async fn media_socket_upgrade_requires_a_signature() {
    let server = serve(Some(PUBLIC)).await;
    let url = format!("ws://{}{MEDIA_PATH}", server.addr);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(server.counters.snapshot().signature_rejected, 1);
}

#[tokio::test]
async fn signed_media_socket_starts_a_call() {
    let mut server = serve(Some(PUBLIC)).await;
    let mut request = format!("ws://{}{MEDIA_PATH}", server.addr)
        .into_client_request()
        .expect("request");
    let signature = signature::compute(TOKEN, "wss://bridge.example.com/twilio/media", &[]);
    request.headers_mut().insert(
        "X-Twilio-Signature",
        signature.parse().expect("header value"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade accepted");

    let start = json!({"event":"start","streamSid":"MZ1",
        "start":{"streamSid":"MZ1","accountSid":"AC1","callSid":"CA9","customParameters":{"To":"+15550002222"}}});
    socket
        .send(WsMessage::text(start.to_string()))
        .await
        .expect("start sent");
    let leg = server.legs.recv().await.expect("call started");
    assert_eq!(leg.info.call_id, "CA9");
    assert_eq!(leg.info.to, "+15550002222");

    let mut leg = leg;
    leg.io.play(&[0xFF; 160]);
    leg.io
        .send(LegCommand::Mark(crate::bridge::Mark {
            id: crate::bridge::MarkId(1),
            label: "1:item:20".into(),
        }))
        .await;
    leg.io.flush().await;
    let reply = socket.next().await.expect("frame").expect("valid frame");
    let reply: serde_json::Value =
        serde_json::from_str(reply.to_text().expect("text")).expect("json");
    assert_eq!(reply["event"], "media");
    assert_eq!(reply["streamSid"], "MZ1");
}
