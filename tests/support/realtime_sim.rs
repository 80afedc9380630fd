//! A scriptable Realtime API server for tests: each connection is handed to the test, which
//! sends server events and reads client events. Every client event received is also kept, so
//! tests can check them against the API's schema.

#![allow(clippy::disallowed_methods)]
// tests start their virtual clocks from the real one

// The handshake callback's error type is tungstenite's own, large by design.
#![allow(clippy::result_large_err)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// One client connection, driven by the test.
pub struct RtConn {
    tx: mpsc::UnboundedSender<Message>,
    rx: mpsc::UnboundedReceiver<Value>,
    next_id: u64,
    /// The request path and query the client connected with.
    pub path: String,
}

impl RtConn {
    /// Sends a server event (an `event_id` is added).
    pub fn send(&mut self, mut event: Value) {
        self.next_id += 1;
        event["event_id"] = Value::String(format!("event_{}", self.next_id));
        let _ = self.tx.send(Message::text(event.to_string()));
    }

    /// The next client event of type `kind`, skipping others; `None` after `limit`.
    pub async fn expect(&mut self, kind: &str, limit: Duration) -> Option<Value> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let ev = tokio::time::timeout_at(end, self.rx.recv()).await.ok()??;
            if ev["type"] == kind {
                return Some(ev);
            }
        }
    }

    /// Every client event that arrives within `limit`.
    pub async fn collect(&mut self, limit: Duration) -> Vec<Value> {
        let end = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout_at(end, self.rx.recv()).await {
            out.push(ev);
        }
        out
    }

    pub fn close(&mut self) {
        let _ = self.tx.send(Message::Close(None));
    }
}

/// The test Realtime server.
pub struct RealtimeSim {
    pub addr: std::net::SocketAddr,
    conns: mpsc::UnboundedReceiver<RtConn>,
    /// Every client event received on any connection, as raw JSON text.
    pub received: Arc<Mutex<Vec<String>>>,
}

impl RealtimeSim {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (conn_tx, conns) = mpsc::unbounded_channel();
        let received = Arc::new(Mutex::new(Vec::new()));
        let all = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let path = Arc::new(Mutex::new(String::new()));
                let seen = Arc::clone(&path);
                let callback =
                    move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          resp| {
                        *seen.lock().unwrap() = req.uri().to_string();
                        Ok(resp)
                    };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    continue;
                };
                let (mut sink, mut source) = ws.split();
                let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
                let (in_tx, in_rx) = mpsc::unbounded_channel::<Value>();
                tokio::spawn(async move {
                    while let Some(m) = out_rx.recv().await {
                        let close = matches!(m, Message::Close(_));
                        if sink.send(m).await.is_err() || close {
                            break;
                        }
                    }
                });
                let all = Arc::clone(&all);
                tokio::spawn(async move {
                    while let Some(Ok(msg)) = source.next().await {
                        if let Message::Text(text) = msg {
                            all.lock().unwrap().push(text.to_string());
                            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                                let _ = in_tx.send(v);
                            }
                        }
                    }
                });
                let path = path.lock().unwrap().clone();
                let _ = conn_tx.send(RtConn {
                    tx: out_tx,
                    rx: in_rx,
                    next_id: 0,
                    path,
                });
            }
        });
        Self {
            addr,
            conns,
            received,
        }
    }

    /// The next connection, within `limit`.
    pub async fn accept(&mut self, limit: Duration) -> Option<RtConn> {
        tokio::time::timeout(limit, self.conns.recv()).await.ok()?
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }
}
