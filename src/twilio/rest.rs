//! Twilio REST call control: updating a live call to hang it up or to transfer it with new
//! TwiML (`POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`).

use std::fmt;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;

use super::twiml;

/// Twilio's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// How long one REST request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error response body is kept in [`RestError::Status`].
const BODY_EXCERPT_CHARS: usize = 300;

/// A failed REST call update.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// No account SID is configured and the stream did not name one.
    #[error("no Twilio account SID for call {call_sid}")]
    MissingAccount { call_sid: String },
    /// Placing a call needs the account SID configured.
    #[error("placing calls through Twilio needs TWILIO_ACCOUNT_SID")]
    NoAccountForCall,
    /// The request could not be sent or timed out.
    #[error("Twilio REST request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// Twilio answered with a non-success status.
    #[error("Twilio REST answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// A client for Twilio's call-update API.
#[derive(Clone)]
pub struct TwilioRest {
    base: String,
    account_sid: Option<String>,
    auth_token: String,
    http: reqwest::Client,
}

impl fmt::Debug for TwilioRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioRest")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl TwilioRest {
    /// A client for `api.twilio.com` authenticating with `auth_token`. The account SID comes
    /// from each stream's `start` message unless set with [`Self::with_account_sid`].
    pub fn new(auth_token: impl Into<String>) -> Result<Self, RestError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(RestError::Client)?;
        Ok(Self {
            base: DEFAULT_BASE_URL.to_owned(),
            account_sid: None,
            auth_token: auth_token.into(),
            http,
        })
    }

    /// Sends requests to `base` (`scheme://host[:port]`) instead of Twilio's API host.
    pub fn with_base_url(mut self, base: impl Into<String>) -> Self {
        self.base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// Uses `account_sid` for every call instead of the one each stream reports.
    pub fn with_account_sid(mut self, account_sid: impl Into<String>) -> Self {
        self.account_sid = Some(account_sid.into());
        self
    }

    /// The configured account SID, if any.
    pub fn account_sid(&self) -> Option<&str> {
        self.account_sid.as_deref()
    }

    /// Updates the live call `call_sid` with `form` fields. `account_sid` is the stream's; a
    /// configured account SID takes precedence.
    pub async fn update_call(
        &self,
        account_sid: &str,
        call_sid: &str,
        form: &[(&str, &str)],
    ) -> Result<(), RestError> {
        let account = self.account_sid.as_deref().unwrap_or(account_sid);
        if account.is_empty() {
            return Err(RestError::MissingAccount {
                call_sid: call_sid.to_owned(),
            });
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Calls/{}.json",
            self.base,
            encode_path_segment(account),
            encode_path_segment(call_sid)
        );
        let response = self
            .http
            .post(url)
            .basic_auth(account, Some(&self.auth_token))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_urlencode(form))
            .send()
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(RestError::Status {
            status: status.as_u16(),
            body: excerpt(&body),
        })
    }

    /// Places an outbound call from `from` to `to` that runs `twiml` once answered; returns
    /// the new call's SID. Needs a configured account SID (there is no stream to take it from).
    pub async fn create_call(
        &self,
        from: &str,
        to: &str,
        twiml: &str,
    ) -> Result<String, RestError> {
        let account = self.account_sid.as_deref().unwrap_or_default();
        if account.is_empty() {
            return Err(RestError::NoAccountForCall);
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Calls.json",
            self.base,
            encode_path_segment(account)
        );
        let response = self
            .http
            .post(url)
            .basic_auth(account, Some(&self.auth_token))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_urlencode(&[
                ("To", to),
                ("From", from),
                ("Twiml", twiml),
            ]))
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(RestError::Status {
                status: status.as_u16(),
                body: excerpt(&body),
            });
        }
        let sid = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["sid"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(sid)
    }

    /// Ends the call.
    pub async fn hangup(&self, account_sid: &str, call_sid: &str) -> Result<(), RestError> {
        self.update_call(account_sid, call_sid, &[("Status", "completed")])
            .await
    }

    /// Replaces the call's TwiML with a `<Dial>` to `target` (see [`twiml::dial`]).
    pub async fn transfer(
        &self,
        account_sid: &str,
        call_sid: &str,
        target: &str,
    ) -> Result<(), RestError> {
        let twiml = twiml::dial(target);
        self.update_call(account_sid, call_sid, &[("Twiml", &twiml)])
            .await
    }
}

/// An `application/x-www-form-urlencoded` body: `*-._` and ASCII alphanumerics stay, space
/// becomes `+`, every other byte of the UTF-8 text is percent-encoded.
pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, name, true);
        out.push('=');
        encode_into(&mut out, value, true);
    }
    out
}

/// Percent-encodes a URL path segment (RFC 3986 unreserved characters stay).
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    encode_into(&mut out, segment, false);
    out
}

fn encode_into(out: &mut String, text: &str, form: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_')
            || (form && b == b'*')
            || (!form && b == b'~');
        if keep {
            out.push(char::from(b));
        } else if form && b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
}

fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Form, Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    #[derive(Debug, Clone)]
    struct Recorded {
        account: String,
        call: String,
        authorization: Option<String>,
        form: Vec<(String, String)>,
    }

    type Log = Arc<Mutex<Vec<Recorded>>>;

    async fn fake_api(status: StatusCode) -> (String, Log) {
        async fn update(
            State((log, status)): State<(Log, StatusCode)>,
            Path((account, call)): Path<(String, String)>,
            headers: HeaderMap,
            Form(form): Form<Vec<(String, String)>>,
        ) -> (StatusCode, &'static str) {
            let authorization = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            log.lock().expect("log lock").push(Recorded {
                account,
                call,
                authorization,
                form,
            });
            (status, r#"{"code":20404,"message":"not found"}"#)
        }

        let log = Log::default();
        let app = axum::Router::new()
            .route("/2010-04-01/Accounts/{account}/Calls/{call}", post(update))
            .with_state((log.clone(), status));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), log)
    }

    #[tokio::test]
    async fn transfer_posts_dial_twiml_with_basic_auth() {
        let (base, log) = fake_api(StatusCode::OK).await;
        let rest = TwilioRest::new("secret")
            .expect("client")
            .with_base_url(base);
        rest.transfer("AC123", "CA456", "sip:sales@pbx.example.com?x=1&y=2")
            .await
            .expect("transfer accepted");

        let log = log.lock().expect("log lock");
        let [req] = log.as_slice() else {
            panic!("expected one request, got {log:?}");
        };
        assert_eq!(req.account, "AC123");
        assert_eq!(req.call, "CA456.json");
        // base64("AC123:secret")
        assert_eq!(req.authorization.as_deref(), Some("Basic QUMxMjM6c2VjcmV0"));
        assert_eq!(
            req.form,
            vec![(
                "Twiml".to_owned(),
                "<Response><Dial><Sip>sip:sales@pbx.example.com?x=1&amp;y=2</Sip></Dial></Response>"
                    .to_owned()
            )]
        );
    }

    #[tokio::test]
    async fn hangup_uses_configured_account_and_reports_status() {
        let (base, log) = fake_api(StatusCode::NOT_FOUND).await;
        let rest = TwilioRest::new("secret")
            .expect("client")
            .with_base_url(format!("{base}/"))
            .with_account_sid("ACconfigured");
        let err = rest.hangup("ACstream", "CA1").await.expect_err("404");
        match err {
            RestError::Status { status, body } => {
                assert_eq!(status, 404);
                assert!(body.contains("20404"));
            }
            other => panic!("unexpected error {other}"),
        }
        let log = log.lock().expect("log lock");
        assert_eq!(log[0].account, "ACconfigured");
        assert_eq!(
            log[0].form,
            vec![("Status".to_owned(), "completed".to_owned())]
        );
    }

    #[tokio::test]
    async fn missing_account_is_an_error() {
        let rest = TwilioRest::new("secret").expect("client");
        assert!(matches!(
            rest.hangup("", "CA1").await,
            Err(RestError::MissingAccount { .. })
        ));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_urlencode(&[("Twiml", "<a b=\"c\">+&é~*</a>"), ("k y", "")]),
            "Twiml=%3Ca+b%3D%22c%22%3E%2B%26%C3%A9%7E*%3C%2Fa%3E&k+y="
        );
        assert_eq!(encode_path_segment("CA1/../x y~"), "CA1%2F..%2Fx%20y~");
    }

    #[test]
    fn excerpt_is_bounded() {
        let long = "é".repeat(BODY_EXCERPT_CHARS + 10);
        assert_eq!(excerpt(&long).chars().count(), BODY_EXCERPT_CHARS + 1);
        assert_eq!(excerpt(" short "), "short");
    }

    #[test]
    fn debug_hides_token() {
        let rest = TwilioRest::new("secret").expect("client");
        assert!(!format!("{rest:?}").contains("secret"));
    }
}
