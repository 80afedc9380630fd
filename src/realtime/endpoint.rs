//! Where a Realtime connection goes and how it authenticates: [`RealtimeSettings`] (the
//! [`Provider`] with its credentials, and an optional URL override), read from the
//! environment, and [`request_for`], which turns them into the WebSocket handshake request.
//!
//! API keys are never logged: [`RealtimeSettings::describe`] and the `Debug` output of
//! [`Provider`] redact them (and URL credentials and queries), and auth header values are
//! marked sensitive.

use std::fmt;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{self, HeaderValue, Uri};

use super::error::RealtimeError;

/// OpenAI's Realtime endpoint (GA).
const OPENAI_URL: &str = "wss://api.openai.com/v1/realtime";

/// URL of the handshake over [`connect_stream`] (nothing resolves it; it names the path).
///
/// [`connect_stream`]: crate::realtime::client::RealtimeSocket::connect_stream
const STREAM_URL: &str = "ws://localhost/v1/realtime";

/// Which Realtime service to use, with its credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI's API, `Authorization: Bearer <api_key>`.
    OpenAi { api_key: String },
    /// An Azure OpenAI resource, `api-key: <api_key>`. `endpoint` is the resource URL
    /// (`https://<resource>.openai.azure.com`). The deployment defaults to the route's model.
    /// With an `api_version` the preview (deployment) URL is used, else the GA one.
    Azure {
        endpoint: String,
        api_key: String,
        deployment: Option<String>,
        api_version: Option<String>,
    },
    /// Any server speaking the protocol at `url`, with a bearer key if given.
    Custom {
        url: String,
        api_key: Option<String>,
    },
    /// The in-process engine, reached with [`connect_stream`].
    ///
    /// [`connect_stream`]: crate::realtime::client::RealtimeSocket::connect_stream
    Embedded,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HIDDEN: &str = "<redacted>";
        match self {
            Self::OpenAi { .. } => f.debug_struct("OpenAi").field("api_key", &HIDDEN).finish(),
            Self::Azure {
                endpoint,
                deployment,
                api_version,
                ..
            } => f
                .debug_struct("Azure")
                .field("endpoint", &redact_url(endpoint))
                .field("api_key", &HIDDEN)
                .field("deployment", deployment)
                .field("api_version", api_version)
                .finish(),
            Self::Custom { url, api_key } => f
                .debug_struct("Custom")
                .field("url", &redact_url(url))
                .field("api_key", &api_key.as_ref().map(|_| HIDDEN))
                .finish(),
            Self::Embedded => f.write_str("Embedded"),
        }
    }
}

/// Where the Realtime connection goes.
#[derive(Clone, PartialEq, Eq)]
pub struct RealtimeSettings {
    pub provider: Provider,
    /// Replaces the provider's WebSocket URL, keeping its auth header. `model=<model>` is
    /// added to its query unless it already has a `model` parameter.
    pub url_override: Option<String>,
}

impl fmt::Debug for RealtimeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeSettings")
            .field("provider", &self.provider)
            .field(
                "url_override",
                &self.url_override.as_deref().map(redact_url),
            )
            .finish()
    }
}

impl RealtimeSettings {
    /// Reads the settings from environment variables, through `get` (e.g.
    /// `|k| std::env::var(k).ok()`). Empty values count as unset.
    ///
    /// Provider precedence:
    /// 1. Azure, when both `AZURE_OPENAI_ENDPOINT` and `AZURE_OPENAI_API_KEY` are set
    ///    (with `AZURE_OPENAI_DEPLOYMENT` and `AZURE_OPENAI_API_VERSION` if set);
    /// 2. else OpenAI, when `OPENAI_API_KEY` is set;
    /// 3. else [`Provider::Custom`] without a key, when `DIALTONE_REALTIME_URL` is set;
    /// 4. else [`Provider::Embedded`].
    ///
    /// With Azure or OpenAI, `DIALTONE_REALTIME_URL` becomes `url_override`; with Custom it
    /// is the provider's URL and `url_override` stays `None`.
    pub fn from_env_map(get: impl Fn(&str) -> Option<String>) -> RealtimeSettings {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut url_override = var("DIALTONE_REALTIME_URL");
        let azure_endpoint = var("AZURE_OPENAI_ENDPOINT");
        let azure_key = var("AZURE_OPENAI_API_KEY");

        let provider = match (azure_endpoint, azure_key) {
            (Some(endpoint), Some(api_key)) => Provider::Azure {
                endpoint,
                api_key,
                deployment: var("AZURE_OPENAI_DEPLOYMENT"),
                api_version: var("AZURE_OPENAI_API_VERSION"),
            },
            (endpoint, key) => {
                if endpoint.is_some() != key.is_some() {
                    tracing::warn!(
                        "only one of AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY is set; \
                         Azure OpenAI needs both and is not used"
                    );
                }
                if let Some(api_key) = var("OPENAI_API_KEY") {
                    Provider::OpenAi { api_key }
                } else if let Some(url) = url_override.take() {
                    Provider::Custom { url, api_key: None }
                } else {
                    Provider::Embedded
                }
            }
        };
        RealtimeSettings {
            provider,
            url_override,
        }
    }

    /// One line for the startup log. Never includes a key, nor URL credentials or queries.
    pub fn describe(&self) -> String {
        let mut line = match &self.provider {
            Provider::OpenAi { .. } => format!("OpenAI ({OPENAI_URL})"),
            Provider::Azure {
                endpoint,
                deployment,
                api_version,
                ..
            } => {
                let deployment = deployment.as_deref().unwrap_or("<route model>");
                let api = match api_version {
                    Some(v) => format!("preview API {v}"),
                    None => "GA API".to_owned(),
                };
                format!(
                    "Azure OpenAI ({}, deployment {deployment}, {api})",
                    redact_url(endpoint)
                )
            }
            Provider::Custom { url, api_key } => format!(
                "custom endpoint ({}, {})",
                redact_url(url),
                if api_key.is_some() {
                    "bearer key"
                } else {
                    "no key"
                }
            ),
            Provider::Embedded => "embedded engine".to_owned(),
        };
        if let Some(url) = &self.url_override {
            line.push_str(&format!(", URL overridden to {}", redact_url(url)));
        }
        line
    }
}

/// The WebSocket handshake request for `model`: URL and auth header per provider.
///
/// - OpenAI: `wss://api.openai.com/v1/realtime?model=<model>`, `Authorization: Bearer`;
/// - Azure GA: `<endpoint as wss>/openai/v1/realtime?model=<deployment or model>`, `api-key`;
/// - Azure with an API version: `<endpoint as wss>/openai/realtime?api-version=<v>&deployment=
///   <deployment or model>`, `api-key`;
/// - Custom: its URL, `Authorization: Bearer` if it has a key;
/// - `url_override` replaces the URL of any of these (see [`RealtimeSettings`]).
///
/// Fails with [`RealtimeError::NoEndpoint`] for the embedded engine without an override.
pub fn request_for(
    settings: &RealtimeSettings,
    model: &str,
) -> Result<http::Request<()>, RealtimeError> {
    let url = match (&settings.url_override, &settings.provider) {
        (Some(url), _) | (None, Provider::Custom { url, .. }) => with_model(url, model),
        (None, Provider::OpenAi { .. }) => format!("{OPENAI_URL}?model={}", encode(model)),
        (
            None,
            Provider::Azure {
                endpoint,
                deployment,
                api_version,
                ..
            },
        ) => {
            let base = azure_base(endpoint)?;
            let deployment = encode(deployment.as_deref().unwrap_or(model));
            match api_version {
                Some(version) => format!(
                    "{base}/openai/realtime?api-version={}&deployment={deployment}",
                    encode(version)
                ),
                None => format!("{base}/openai/v1/realtime?model={deployment}"),
            }
        }
        (None, Provider::Embedded) => return Err(RealtimeError::NoEndpoint),
    };

    let mut request = websocket_request(&url)?;
    let auth = match &settings.provider {
        Provider::OpenAi { api_key }
        | Provider::Custom {
            api_key: Some(api_key),
            ..
        } => Some((http::header::AUTHORIZATION, format!("Bearer {api_key}"))),
        Provider::Azure { api_key, .. } => Some((
            http::header::HeaderName::from_static("api-key"),
            api_key.clone(),
        )),
        Provider::Custom { api_key: None, .. } | Provider::Embedded => None,
    };
    if let Some((name, value)) = auth {
        let mut value = HeaderValue::from_str(&value).map_err(|_| RealtimeError::InvalidKey)?;
        value.set_sensitive(true);
        request.headers_mut().insert(name, value);
    }
    Ok(request)
}

/// The handshake request over [`connect_stream`]: [`STREAM_URL`] with `model` added, no
/// auth header.
///
/// [`connect_stream`]: crate::realtime::client::RealtimeSocket::connect_stream
pub(super) fn stream_request(model: &str) -> Result<http::Request<()>, RealtimeError> {
    websocket_request(&with_model(STREAM_URL, model))
}

/// A handshake request for a `ws`/`wss` URL with a host.
fn websocket_request(url: &str) -> Result<http::Request<()>, RealtimeError> {
    let invalid = |reason: &str| RealtimeError::InvalidUrl {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
    match uri.scheme_str() {
        Some("ws" | "wss") => {}
        _ => return Err(invalid("the scheme must be ws or wss")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    uri.into_client_request()
        .map_err(|e| invalid(&e.to_string()))
}

/// The `ws`/`wss` origin of an Azure endpoint (`https://x` -> `wss://x`, no trailing `/`).
fn azure_base(endpoint: &str) -> Result<String, RealtimeError> {
    let endpoint = endpoint.trim().trim_end_matches('/');
    let (scheme, rest) = match endpoint.split_once("://") {
        Some(("https" | "wss", rest)) => ("wss", rest),
        Some(("http" | "ws", rest)) => ("ws", rest),
        Some(_) => {
            return Err(RealtimeError::InvalidUrl {
                url: redact_url(endpoint),
                reason: "the Azure endpoint must be an https URL".to_owned(),
            });
        }
        None => ("wss", endpoint),
    };
    Ok(format!("{scheme}://{rest}"))
}

/// `url` with `model=<model>` added to its query unless it has a `model` parameter.
fn with_model(url: &str, model: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let query = base.split_once('?').map(|(_, q)| q);
    let has_model = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("model"))
    });
    let mut out = base.to_owned();
    if !has_model {
        match query {
            None => out.push('?'),
            Some(q) if q.is_empty() || q.ends_with('&') => {}
            Some(_) => out.push('&'),
        }
        out.push_str("model=");
        out.push_str(&encode(model));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A URL for logs: scheme, host, port and path only (no credentials, query or fragment).
fn redact_url(url: &str) -> String {
    let Ok(uri) = url.trim().parse::<Uri>() else {
        return "<unparsable URL>".to_owned();
    };
    let Some(host) = uri.host() else {
        return "<URL without host>".to_owned();
    };
    let mut out = String::new();
    if let Some(scheme) = uri.scheme_str() {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(host);
    if let Some(port) = uri.port_u16() {
        out.push_str(&format!(":{port}"));
    }
    if uri.path() != "/" || url.trim().ends_with('/') {
        out.push_str(uri.path());
    }
    out
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
