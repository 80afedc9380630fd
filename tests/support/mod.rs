//! Real peers for end-to-end tests: the bridge served on 127.0.0.1:0, a simulated Twilio
//! Media Streams client, a scriptable Realtime server and a stand-in for Twilio's REST API.

#![allow(dead_code)]

pub mod realtime_sim;
pub mod rest_sim;
pub mod twilio_sim;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dialtone::bridge::Timing;
use dialtone::engine::{EngineConfig, EngineScript};
use dialtone::metrics::Metrics;
use dialtone::realtime::client::{Provider, RealtimeSettings};
use dialtone::server::{Server, ServerConfig, TwilioSettings};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Public origin the test bridge signs Twilio requests for.
pub const PUBLIC_URL: &str = "https://bridge.test";
pub const AUTH_TOKEN: &str = "test-auth-token";

pub fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How the test bridge reaches a model.
pub enum Model {
    /// The embedded engine, optionally scripted (TOML).
    Embedded(Option<&'static str>),
    /// A Realtime server at this URL.
    Url(String),
}

/// A running bridge.
pub struct Bridge {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Bridge {
    pub async fn start(model: Model, rest_base: Option<&str>) -> Self {
        Self::start_in("dialplans", model, rest_base).await
    }

    /// A bridge on the dialplans in `dir` (relative to the crate root).
    pub async fn start_in(dir: &str, model: Model, rest_base: Option<&str>) -> Self {
        Self::start_full(dir, model, rest_base, None).await
    }

    /// A bridge with every Twilio setting given.
    pub async fn start_full(
        dir: &str,
        model: Model,
        rest_base: Option<&str>,
        account_sid: Option<&str>,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (realtime, script) = match model {
            Model::Embedded(script) => (
                RealtimeSettings {
                    provider: Provider::Embedded,
                    url_override: None,
                },
                script.map(|s| EngineScript::parse(s, "test script").expect("script")),
            ),
            Model::Url(url) => (
                RealtimeSettings {
                    provider: Provider::Custom { url, api_key: None },
                    url_override: None,
                },
                None,
            ),
        };
        let config = ServerConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            dialplans: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir),
            public_url: Some(PUBLIC_URL.into()),
            realtime,
            twilio: TwilioSettings {
                auth_token: rest_base.map(|_| AUTH_TOKEN.to_owned()),
                account_sid: account_sid.map(str::to_owned),
                api_base: rest_base.map(str::to_owned),
            },
            engine: EngineConfig {
                script,
                ..EngineConfig::default()
            },
            timing: Timing::default(),
            drain: Duration::from_secs(1),
            sip: None,
            api_token: None,
        };
        let server = Server::bind(config).await.expect("bridge starts");
        let addr = server.local_addr().expect("addr");
        let metrics = server.metrics();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = server.run(async move { token.cancelled().await }).await;
        });
        Self {
            addr,
            metrics,
            stop,
        }
    }

    /// The signature Twilio would send on the Media Streams upgrade.
    pub fn media_signature() -> String {
        dialtone::twilio::signature::compute(
            AUTH_TOKEN,
            &format!("{}/twilio/media", PUBLIC_URL.replacen("https", "wss", 1)),
            &[],
        )
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Whether `haystack` contains `needle` byte for byte.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
