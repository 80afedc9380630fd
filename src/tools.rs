//! Carrying out dialplan actions that live outside the call: webhook POSTs.
//!
//! [`WebhookRunner`] turns a [`ToolRequest::Webhook`](crate::bridge::ToolRequest::Webhook)
//! into a [`ToolOutcome`]. Every failure (connection error, timeout, non-2xx status) becomes
//! a [`ToolOutcome::Failed`] whose text goes back to the model, so the text never contains the
//! webhook URL (it may carry credentials) and nothing here returns an error or panics.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use crate::bridge::ToolOutcome;

/// Largest response body handed back to the model, in bytes (cut at a char boundary).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// Largest excerpt of an error response body quoted in a failure, in bytes.
const ERROR_EXCERPT_BYTES: usize = 256;

/// Outcome text of a 2xx response with an empty body.
const EMPTY_OK: &str = "{\"ok\":true}";

/// Errors building a [`WebhookRunner`].
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTP client could not be created (TLS backend initialisation).
    #[error("cannot create the webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Runs webhook actions: a JSON POST whose response body is the action's result.
///
/// Redirects are not followed (a 3xx is reported as a failure), so a POST is never silently
/// replayed as a GET elsewhere. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct WebhookRunner {
    http: reqwest::Client,
}

impl WebhookRunner {
    /// A runner with its own HTTP client.
    pub fn new() -> Result<Self, WebhookError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("dialtone/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Self { http })
    }

    /// A runner over an existing HTTP client (its redirect policy is kept as is).
    pub fn with_client(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// POSTs `body` (JSON) to `url` with `headers`, giving up after `timeout` (connecting,
    /// sending and reading the response included).
    ///
    /// - 2xx: [`ToolOutcome::Ok`] with the response body, cut to [`MAX_RESPONSE_BYTES`] at a
    ///   char boundary, or `{"ok":true}` when it is empty;
    /// - any other status: `Failed("webhook returned <status>: <body excerpt>")`;
    /// - timeout: `Failed("webhook timed out after <ms> ms")`;
    /// - connection and other transport errors: `Failed` with the error's description.
    ///
    /// A `Content-Type` in `headers` replaces the default `application/json`.
    pub async fn run(
        &self,
        url: &str,
        body: String,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> ToolOutcome {
        let mut request = self.http.post(url).timeout(timeout).body(body);
        let custom_content_type = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(CONTENT_TYPE.as_str()));
        if !custom_content_type {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }

        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let limit = if status.is_success() {
                MAX_RESPONSE_BYTES
            } else {
                ERROR_EXCERPT_BYTES
            };
            let body = read_limited(response, limit).await?;
            Ok::<_, reqwest::Error>((status, body))
        };

        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(timed_out(timeout)),
            Ok(Err(e)) if e.is_timeout() => Err(timed_out(timeout)),
            Ok(Err(e)) => Err(transport_failure(&e)),
            Ok(Ok((status, body))) if status.is_success() => Ok(if body.is_empty() {
                EMPTY_OK.to_owned()
            } else {
                body
            }),
            Ok(Ok((status, body))) => {
                let excerpt = body.trim();
                Err(if excerpt.is_empty() {
                    format!("webhook returned {status}")
                } else {
                    format!("webhook returned {status}: {excerpt}")
                })
            }
        };

        match outcome {
            Ok(text) => {
                tracing::debug!(bytes = text.len(), "webhook succeeded");
                ToolOutcome::Ok(text)
            }
            Err(reason) => {
                tracing::info!(%reason, "webhook failed");
                ToolOutcome::Failed(reason)
            }
        }
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("webhook timed out after {} ms", timeout.as_millis())
}

/// Describes a transport error without the request URL.
fn transport_failure(error: &reqwest::Error) -> String {
    let mut source = error.source();
    let mut root: Option<String> = None;
    while let Some(cause) = source {
        root = Some(cause.to_string());
        source = cause.source();
    }
    let what = if error.is_connect() {
        "webhook connection failed"
    } else if error.is_builder() {
        "webhook request is invalid"
    } else {
        "webhook request failed"
    };
    match root {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_owned(),
    }
}

/// Reads at most `limit` bytes of the body as text, cut at a char boundary. Invalid UTF-8 is
/// replaced, never rejected. Stops reading once past the limit.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> reqwest::Result<String> {
    // A few bytes past the limit keep a char straddling it whole, so the cut below lands on
    // its boundary instead of on a replacement character.
    let wanted = limit + 4;
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < wanted {
        match response.chunk().await? {
            Some(chunk) => {
                let take = chunk.len().min(wanted - bytes.len());
                bytes.extend_from_slice(&chunk[..take]);
            }
            None => break,
        }
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    truncate_at_char_boundary(&mut text, limit);
    Ok(text)
}

/// Cuts `text` to at most `max` bytes without splitting a char.
fn truncate_at_char_boundary(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    async fn echo(headers: HeaderMap, body: String) -> String {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        serde_json::json!({
            "body": body,
            "content_type": header("content-type"),
            "token": header("x-token"),
        })
        .to_string()
    }

    async fn server() -> String {
        let app = Router::new()
            .route("/echo", post(echo))
            .route("/empty", post(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/fail",
                post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom: database down") }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/big", post(|| async { "é".repeat(MAX_RESPONSE_BYTES) }))
            .route(
                "/redirect",
                post(|| async { (StatusCode::FOUND, [("location", "/echo")], "") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    fn runner() -> WebhookRunner {
        WebhookRunner::new().unwrap()
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn success_returns_the_response_body_and_sends_headers() {
        let base = server().await;
        let headers = vec![("X-Token".to_owned(), "secret".to_owned())];
        let outcome = runner()
            .run(
                &format!("{base}/echo"),
                r#"{"order":42}"#.into(),
                &headers,
                WAIT,
            )
            .await;
        let ToolOutcome::Ok(text) = outcome else {
            panic!("expected success, got {outcome:?}");
        };
        let echoed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(echoed["body"], r#"{"order":42}"#);
        assert_eq!(echoed["content_type"], "application/json");
        assert_eq!(echoed["token"], "secret");
    }

    #[tokio::test]
    async fn custom_content_type_replaces_the_default() {
        let base = server().await;
        let headers = vec![("content-type".to_owned(), "text/plain".to_owned())];
        let ToolOutcome::Ok(text) = runner()
            .run(&format!("{base}/echo"), "hi".into(), &headers, WAIT)
            .await
        else {
            panic!("expected success");
        };
        let echoed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(echoed["content_type"], "text/plain");
    }

    #[tokio::test]
    async fn empty_success_body_becomes_ok_true() {
        let base = server().await;
        let outcome = runner()
            .run(&format!("{base}/empty"), "{}".into(), &[], WAIT)
            .await;
        assert_eq!(outcome, ToolOutcome::Ok(EMPTY_OK.to_owned()));
    }

    #[tokio::test]
    async fn server_error_reports_status_and_excerpt() {
        let base = server().await;
        let outcome = runner()
            .run(&format!("{base}/fail"), "{}".into(), &[], WAIT)
            .await;
        assert_eq!(
            outcome,
            ToolOutcome::Failed(
                "webhook returned 500 Internal Server Error: boom: database down".into()
            )
        );
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let base = server().await;
        let outcome = runner()
            .run(&format!("{base}/redirect"), "{}".into(), &[], WAIT)
            .await;
        assert_eq!(
            outcome,
            ToolOutcome::Failed("webhook returned 302 Found".into())
        );
    }

    #[tokio::test]
    async fn slow_webhook_times_out() {
        let base = server().await;
        let outcome = runner()
            .run(
                &format!("{base}/slow"),
                "{}".into(),
                &[],
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(
            outcome,
            ToolOutcome::Failed("webhook timed out after 200 ms".into())
        );
    }

    #[tokio::test]
    async fn large_body_is_cut_at_a_char_boundary() {
        let base = server().await;
        let ToolOutcome::Ok(text) = runner()
            .run(&format!("{base}/big"), "{}".into(), &[], WAIT)
            .await
        else {
            panic!("expected success");
        };
        assert_eq!(text.len(), MAX_RESPONSE_BYTES);
        assert!(text.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn connection_refused_fails_without_the_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/hook?key=hidden");
        let outcome = runner().run(&url, "{}".into(), &[], WAIT).await;
        let ToolOutcome::Failed(reason) = outcome else {
            panic!("expected failure, got {outcome:?}");
        };
        assert!(reason.starts_with("webhook connection failed"), "{reason}");
        assert!(!reason.contains("hidden"), "{reason}");
    }

    #[tokio::test]
    async fn invalid_header_fails_instead_of_panicking() {
        let base = server().await;
        let headers = vec![("bad header".to_owned(), "x".to_owned())];
        let outcome = runner()
            .run(&format!("{base}/echo"), "{}".into(), &headers, WAIT)
            .await;
        assert!(matches!(outcome, ToolOutcome::Failed(_)), "{outcome:?}");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut text = "aé".to_owned();
        truncate_at_char_boundary(&mut text, 2);
        assert_eq!(text, "a");
        let mut text = "abc".to_owned();
        truncate_at_char_boundary(&mut text, 5);
        assert_eq!(text, "abc");
    }
}
