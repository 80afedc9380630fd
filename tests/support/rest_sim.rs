//! A stand-in for Twilio's REST API: records every call update it receives.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;

/// One request to `/2010-04-01/Accounts/{AC}/Calls/{CA}.json`.
#[derive(Debug, Clone)]
pub struct CallUpdate {
    pub account: String,
    pub call: String,
    pub authorization: Option<String>,
    /// The form fields, decoded.
    pub form: Vec<(String, String)>,
    pub at: Instant,
}

impl CallUpdate {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct RestSim {
    pub base: String,
    pub updates: Arc<Mutex<Vec<CallUpdate>>>,
}

impl RestSim {
    pub async fn start() -> Self {
        let updates = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/Calls.json", post(create))
            .route("/2010-04-01/Accounts/{account}/Calls/{call}", post(update))
            .with_state(Arc::clone(&updates));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, updates }
    }

    pub fn updates(&self) -> Vec<CallUpdate> {
        self.updates.lock().unwrap().clone()
    }
}

/// `POST .../Calls.json`: a new call, recorded with call `new`.
async fn create(
    state: State<Arc<Mutex<Vec<CallUpdate>>>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    update(state, Path((account, "new".to_owned())), headers, body).await;
    r#"{"sid":"CA11111111111111111111111111111111","status":"queued"}"#
}

async fn update(
    State(updates): State<Arc<Mutex<Vec<CallUpdate>>>>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    let form = body
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect();
    updates.lock().unwrap().push(CallUpdate {
        account,
        call: call.trim_end_matches(".json").to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        form,
        at: Instant::now(),
    });
    r#"{"status":"in-progress"}"#
}

/// Decodes `application/x-www-form-urlencoded` text.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
