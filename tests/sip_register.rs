//! Trunk registration over loopback UDP: against SIPp acting as a registrar (digest MD5 checked
//! by SIPp's `verifyauth`), and against a small registrar written here on top of
//! `dialtone::sip::digest` for SHA-256, refreshes, retries and `423 Interval Too Brief`.
//!
//! Every wait is bounded and waits for an event, not for a time to pass.

#![allow(clippy::disallowed_methods)] // tests start their virtual clocks from the real one

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dialtone::sip::config::{AccessList, Trunk, TrunkCredentials};
use dialtone::sip::digest::{Algorithm, Challenger, Credentials, Verdict};
use dialtone::sip::register::{self, RegistrationState, RegistrationStatus, TrunkRegistration};
use rsipstack::EndpointBuilder;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transport::TransportLayer;
use rsipstack::transport::udp::UdpConnection;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(30);
/// How often status is polled while waiting.
const POLL: Duration = Duration::from_millis(50);
/// The most requests the test registrar answers.
const MAX_REQUESTS: usize = 1000;

/// An rsipstack endpoint serving UDP on 127.0.0.1, as the user agent would run one.
struct Stack {
    inner: EndpointInnerRef,
    cancel: CancellationToken,
    serving: JoinHandle<()>,
}

impl Stack {
    async fn start() -> Stack {
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        let udp = UdpConnection::create_connection(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            None,
            Some(cancel.child_token()),
        )
        .await
        .expect("bind UDP on loopback");
        transport.add_transport(udp.into());
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transport)
            .build();
        let inner = endpoint.inner.clone();
        let serving = tokio::spawn(async move { endpoint.serve().await });
        Stack {
            inner,
            cancel,
            serving,
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(WAIT, self.serving).await;
    }
}

/// `register::run` for one trunk, on its own task.
struct Registering {
    status: Arc<RegistrationStatus>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Registering {
    fn start(stack: &Stack, trunk: Trunk) -> Registering {
        let trunks = vec![trunk];
        let status = Arc::new(RegistrationStatus::new(&trunks));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(register::run(
            stack.inner.clone(),
            trunks,
            Arc::clone(&status),
            shutdown.clone(),
        ));
        Registering {
            status,
            shutdown,
            task,
        }
    }

    fn trunk(&self) -> TrunkRegistration {
        let snapshot = self.status.snapshot();
        assert_eq!(snapshot.len(), 1, "{snapshot:?}");
        snapshot.into_iter().next().expect("one trunk")
    }

    /// Polls the trunk's status until `done` holds; panics after [`WAIT`].
    async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&TrunkRegistration) -> bool,
    ) -> TrunkRegistration {
        let polls = WAIT.as_millis() / POLL.as_millis();
        for _ in 0..polls {
            let trunk = self.trunk();
            if done(&trunk) {
                return trunk;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.trunk());
    }

    /// Cancels the registration and waits for `run` to return (unregistration included).
    async fn stop(self) -> TrunkRegistration {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run does not panic");
        let snapshot = self.status.snapshot();
        snapshot.into_iter().next().expect("one trunk")
    }
}

fn trunk(registrar: SocketAddr, password: &str, expires: u32) -> Trunk {
    Trunk {
        name: "carrier".to_string(),
        registrar: Some(format!("sip:{registrar}")),
        credentials: Some(TrunkCredentials::new("alice", "alice", password)),
        expires,
        allow: AccessList::default(),
        challenge: false,
        proxy: None,
        from: None,
    }
}

fn is_registered(t: &TrunkRegistration) -> bool {
    matches!(t.state, RegistrationState::Registered { .. })
}

// ---------------------------------------------------------------------------------------
// SIPp registrar

fn sipp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp")
}

/// A loopback UDP port free when asked (SIPp cannot be given port 0).
fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("local address").port()
}

/// SIPp running `uas_registrar.xml` for one registration.
struct Sipp {
    addr: SocketAddr,
    child: tokio::process::Child,
}

impl Sipp {
    fn start() -> Sipp {
        let port = free_port();
        let media = free_port();
        let child = tokio::process::Command::new("sipp")
            .args([
                "-sf",
                "uas_registrar.xml",
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
            ])
            .args(["-p", &port.to_string(), "-mp", &media.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "30s"])
            .current_dir(sipp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sipp is installed (Debian package sip-tester)");
        Sipp {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        }
    }

    /// SIPp's exit code and output, once it has exited.
    async fn finish(self) -> (Option<i32>, String) {
        let output = tokio::time::timeout(
            WAIT + Duration::from_secs(15),
            self.child.wait_with_output(),
        )
        .await
        .expect("SIPp exits by itself")
        .expect("SIPp output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text)
    }
}

#[tokio::test]
async fn registers_at_sipp_with_md5_digest_then_unregisters() {
    let sipp = Sipp::start();
    let stack = Stack::start().await;
    let registering = Registering::start(&stack, trunk(sipp.addr, "secret", 3600));

    let registered = registering.wait_for("registration", is_registered).await;
    match registered.state {
        RegistrationState::Registered { granted_s, .. } => {
            assert_eq!(granted_s, 60, "the lifetime from the 200's Contact");
        }
        other => panic!("not registered: {other:?}"),
    }
    assert_eq!((registered.successes, registered.failures), (1, 0));
    assert_eq!(registered.username.as_deref(), Some("alice"));
    assert!(registering.status.is_registered("carrier"));
    let mut metrics = String::new();
    registering.status.render_metrics(&mut metrics);
    assert!(
        metrics.contains("dialtone_sip_registered{trunk=\"carrier\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dialtone_sip_registrations_total{trunk=\"carrier\",outcome=\"ok\"} 1\n"),
        "{metrics}"
    );

    let last = registering.stop().await;
    assert_eq!(last.state, RegistrationState::Unregistered);
    let (code, output) = sipp.finish().await;
    stack.stop().await;
    assert_eq!(
        code,
        Some(0),
        "SIPp checked the digest and saw the unregistration:\n{output}"
    );
}

#[tokio::test]
async fn a_wrong_password_at_sipp_fails_and_schedules_a_retry() {
    let sipp = Sipp::start();
    let stack = Stack::start().await;
    let registering = Registering::start(&stack, trunk(sipp.addr, "not-the-password", 3600));

    let failed = registering
        .wait_for("the failure", |t| t.failures >= 1)
        .await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some("the registrar answered 403")
    );
    assert_eq!((failed.successes, failed.failures), (0, 1));
    match &failed.state {
        RegistrationState::Failed { reason, retry_in_s } => {
            assert_eq!(reason, "the registrar answered 403");
            assert!(retry_in_s.is_some(), "a retry is scheduled");
        }
        // Already retrying: SIPp has stopped, so the retry waits for its transaction timeout.
        RegistrationState::Registering => {}
        other => panic!("neither failed nor retrying: {other:?}"),
    }
    assert!(!registering.status.is_registered("carrier"));
    let mut metrics = String::new();
    registering.status.render_metrics(&mut metrics);
    assert!(
        metrics.contains("dialtone_sip_registered{trunk=\"carrier\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("dialtone_sip_registrations_total{trunk=\"carrier\",outcome=\"failed\"} 1\n"),
        "{metrics}"
    );

    registering.stop().await;
    let (code, output) = sipp.finish().await;
    stack.stop().await;
    assert!(
        code == Some(255) && output.contains("the digest check failed"),
        "SIPp refused the digest (exit status {code:?}):\n{output}"
    );
}

// ---------------------------------------------------------------------------------------
// A registrar on top of `dialtone::sip::digest`

/// What the registrar does.
#[derive(Clone)]
struct Policy {
    password: &'static str,
    /// The algorithms challenged with, in order (one `WWW-Authenticate` each).
    algorithms: Vec<Algorithm>,
    /// The lifetime granted (capped by the one asked for), in an `Expires` header.
    grant_s: u32,
    /// Lifetimes below this (except 0) are answered `423` with `Min-Expires`.
    min_expires: Option<u32>,
}

/// One REGISTER as the registrar saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// The `Expires` header asked for.
    expires: Option<u32>,
    /// The algorithm of the `Authorization`, if there was one.
    algorithm: Option<Algorithm>,
    /// For an authenticated refresh: whether the binding it refreshes was still alive.
    binding_alive: bool,
    /// The status code answered.
    answered: u16,
}

struct Registrar {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Registrar {
    async fn start(policy: Policy) -> Registrar {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("local address");
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve_registrar(socket, policy, tx));
        Registrar { addr, seen, task }
    }

    /// The next REGISTER that `matches`, skipping the others; panics after [`WAIT`].
    async fn next(&mut self, what: &str, matches: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + WAIT;
        // Bounded by the deadline and by the number of requests the registrar answers.
        for _ in 0..MAX_REQUESTS {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(seen)) if matches(&seen) => return seen,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("registrar stopped before {what}"),
                Err(_) => break,
            }
        }
        panic!("timed out waiting for {what}");
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn serve_registrar(socket: UdpSocket, policy: Policy, seen: mpsc::UnboundedSender<Seen>) {
    let challenger = Challenger::with_random_secret("dialtone.test");
    // When the current binding lapses, if there is one.
    let mut bound_until: Option<tokio::time::Instant> = None;
    let mut buf = vec![0u8; 65535];
    // Far more requests than any test sends; the task is aborted when the test ends.
    for _ in 0..MAX_REQUESTS {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(text) = std::str::from_utf8(&buf[..len]) else {
            continue;
        };
        if !text.starts_with("REGISTER ") {
            continue;
        }
        let expires = header(text, "Expires").and_then(|v| v.trim().parse::<u32>().ok());
        let authorization = header(text, "Authorization");
        let algorithm = authorization
            .as_deref()
            .and_then(|v| Credentials::parse(v).ok())
            .map(|c| c.algorithm);
        let verdict = authorization.as_deref().map(|value| {
            challenger.verify(
                "REGISTER",
                value,
                |user| (user == "alice").then(|| policy.password.to_string()),
                unix_now(),
            )
        });
        let now = tokio::time::Instant::now();
        let binding_alive = bound_until.is_some_and(|until| until > now);
        let mut extra = String::new();
        let answered = match verdict {
            Some(Verdict::Ok { .. }) => match (expires, policy.min_expires) {
                (Some(asked), Some(min)) if asked != 0 && asked < min => {
                    extra.push_str(&format!("Min-Expires: {min}\r\n"));
                    423
                }
                (Some(0), _) => {
                    bound_until = None;
                    extra.push_str("Expires: 0\r\n");
                    200
                }
                (asked, _) => {
                    let granted = asked.unwrap_or(3600).min(policy.grant_s);
                    bound_until = Some(now + Duration::from_secs(u64::from(granted)));
                    // The Contact as sent, without a lifetime: the Expires header gives it.
                    if let Some(contact) = header(text, "Contact") {
                        extra.push_str(&format!("Contact: {contact}\r\n"));
                    }
                    extra.push_str(&format!("Expires: {granted}\r\n"));
                    200
                }
            },
            Some(Verdict::Stale) | Some(Verdict::Invalid) | None => {
                let offered = challenger.challenge_headers(false, unix_now());
                for algorithm in &policy.algorithms {
                    let name = format!("algorithm={algorithm},");
                    if let Some(value) = offered.iter().find(|v| v.contains(&name)) {
                        extra.push_str(&format!("WWW-Authenticate: {value}\r\n"));
                    }
                }
                401
            }
        };
        let _ = seen.send(Seen {
            expires,
            algorithm,
            binding_alive,
            answered,
        });
        let response = respond(text, answered, &extra);
        let _ = socket.send_to(response.as_bytes(), from).await;
    }
}

/// The first value of header `name` in a request.
fn header(text: &str, name: &str) -> Option<String> {
    text.split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
}

/// A response to `request` with the dialog headers copied, a To tag and `extra` headers.
fn respond(request: &str, code: u16, extra: &str) -> String {
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        423 => "Interval Too Brief",
        _ => "Error",
    };
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in request
        .split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
    {
        let name = line.split(':').next().unwrap_or_default().trim();
        for copied in ["Via", "From", "Call-ID", "CSeq"] {
            if name.eq_ignore_ascii_case(copied) {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        if name.eq_ignore_ascii_case("To") {
            out.push_str(line);
            out.push_str(";tag=registrar\r\n");
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[tokio::test]
async fn sha256_is_answered_when_offered_first() {
    let mut registrar = Registrar::start(Policy {
        password: "secret",
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        grant_s: 300,
        min_expires: None,
    })
    .await;
    let stack = Stack::start().await;
    let registering = Registering::start(&stack, trunk(registrar.addr, "secret", 3600));

    let accepted = registrar
        .next("the authenticated REGISTER", |s| s.answered == 200)
        .await;
    assert_eq!(accepted.algorithm, Some(Algorithm::Sha256));
    assert_eq!(
        accepted.expires,
        Some(3600),
        "the trunk's lifetime is asked for"
    );
    let registered = registering.wait_for("registration", is_registered).await;
    match registered.state {
        RegistrationState::Registered { granted_s, .. } => {
            assert_eq!(granted_s, 300, "the lifetime from the Expires header")
        }
        other => panic!("not registered: {other:?}"),
    }

    let last = registering.stop().await;
    assert_eq!(last.state, RegistrationState::Unregistered);
    let unregistered = registrar
        .next("the unregistration", |s| s.answered == 200)
        .await;
    assert_eq!(unregistered.expires, Some(0));
    assert_eq!(unregistered.algorithm, Some(Algorithm::Sha256));
    stack.stop().await;
}

#[tokio::test]
async fn md5_only_registrar_is_answered_with_md5() {
    let mut registrar = Registrar::start(Policy {
        password: "secret",
        algorithms: vec![Algorithm::Md5],
        grant_s: 300,
        min_expires: None,
    })
    .await;
    let stack = Stack::start().await;
    let registering = Registering::start(&stack, trunk(registrar.addr, "secret", 3600));

    let accepted = registrar
        .next("the authenticated REGISTER", |s| s.answered == 200)
        .await;
    assert_eq!(accepted.algorithm, Some(Algorithm::Md5));
    registering.wait_for("registration", is_registered).await;
    registering.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn the_binding_is_refreshed_before_it_lapses() {
    let mut registrar = Registrar::start(Policy {
        password: "secret",
        algorithms: vec![Algorithm::Sha256],
        grant_s: 8,
        min_expires: None,
    })
    .await;
    let stack = Stack::start().await;
    let registering = Registering::start(&stack, trunk(registrar.addr, "secret", 3600));

    let first = registrar
        .next("the registration", |s| s.answered == 200)
        .await;
    assert!(!first.binding_alive, "a new binding");
    let refresh = registrar.next("the refresh", |s| s.answered == 200).await;
    assert!(
        refresh.binding_alive,
        "the refresh came before the binding lapsed"
    );
    assert_eq!(
        refresh.expires,
        Some(3600),
        "each refresh asks for the trunk's lifetime"
    );
    let refreshed = registering
        .wait_for("two successes", |t| t.successes >= 2)
        .await;
    assert_eq!(refreshed.failures, 0);
    assert!(is_registered(&refreshed), "{refreshed:?}");

    registering.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn refused_credentials_are_retried_with_backoff() {
    let mut registrar = Registrar::start(Policy {
        password: "secret",
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        grant_s: 300,
        min_expires: None,
    })
    .await;
    let stack = Stack::start().await;
    let registering = Registering::start(&stack, trunk(registrar.addr, "wrong", 3600));

    let failed = registering
        .wait_for("the first failure", |t| t.failures >= 1)
        .await;
    match &failed.state {
        RegistrationState::Failed { reason, retry_in_s } => {
            assert_eq!(reason, "the registrar refused the credentials (401)");
            assert!(retry_in_s.is_some(), "a retry is scheduled");
        }
        other => panic!("not failed: {other:?}"),
    }
    // Each attempt is a challenge and an answer that is challenged again.
    for attempt in ["first", "second"] {
        registrar
            .next(&format!("the {attempt} unauthenticated REGISTER"), |s| {
                s.answered == 401 && s.algorithm.is_none()
            })
            .await;
        let answer = registrar
            .next(&format!("the {attempt} answer"), |s| s.algorithm.is_some())
            .await;
        assert_eq!(answer.answered, 401);
    }
    let retried = registering
        .wait_for("the retry's failure", |t| t.failures >= 2)
        .await;
    assert_eq!(retried.successes, 0);

    let last = registering.stop().await;
    assert_eq!(last.state, RegistrationState::Unregistered);
    stack.stop().await;
}

#[tokio::test]
async fn interval_too_brief_is_retried_with_min_expires() {
    let mut registrar = Registrar::start(Policy {
        password: "secret",
        algorithms: vec![Algorithm::Sha256],
        grant_s: 3600,
        min_expires: Some(120),
    })
    .await;
    let stack = Stack::start().await;
    let registering = Registering::start(&stack, trunk(registrar.addr, "secret", 60));

    let brief = registrar.next("the 423", |s| s.answered == 423).await;
    assert_eq!(brief.expires, Some(60));
    let accepted = registrar.next("the 200", |s| s.answered == 200).await;
    assert_eq!(accepted.expires, Some(120));
    let registered = registering.wait_for("registration", is_registered).await;
    match registered.state {
        RegistrationState::Registered { granted_s, .. } => assert_eq!(granted_s, 120),
        other => panic!("not registered: {other:?}"),
    }
    assert_eq!((registered.successes, registered.failures), (1, 0));

    registering.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn shutdown_before_the_first_attempt_sends_nothing() {
    let mut registrar = Registrar::start(Policy {
        password: "secret",
        algorithms: vec![Algorithm::Md5],
        grant_s: 300,
        min_expires: None,
    })
    .await;
    let stack = Stack::start().await;
    let trunks = vec![trunk(registrar.addr, "secret", 3600)];
    let status = Arc::new(RegistrationStatus::new(&trunks));
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    tokio::time::timeout(
        WAIT,
        register::run(stack.inner.clone(), trunks, Arc::clone(&status), shutdown),
    )
    .await
    .expect("run returns at once");
    let [last] = <[TrunkRegistration; 1]>::try_from(status.snapshot()).expect("one trunk");
    assert_eq!(last.state, RegistrationState::Unregistered);
    assert!(
        registrar.seen.try_recv().is_err(),
        "no REGISTER was sent, not even an unregistration"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_unusable_registrar_is_reported_and_not_retried() {
    let stack = Stack::start().await;
    let mut bad = trunk(SocketAddr::from(([127, 0, 0, 1], 9)), "secret", 3600);
    bad.registrar = Some("mailto:registrar@example.com".to_string());
    let mut no_credentials = trunk(SocketAddr::from(([127, 0, 0, 1], 9)), "secret", 3600);
    no_credentials.name = "pbx".to_string();
    no_credentials.credentials = None;
    let mut silent = no_credentials.clone();
    silent.name = "silent".to_string();
    silent.registrar = None;
    let trunks = vec![bad, no_credentials, silent];
    let status = Arc::new(RegistrationStatus::new(&trunks));
    tokio::time::timeout(
        WAIT,
        register::run(
            stack.inner.clone(),
            trunks,
            Arc::clone(&status),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("run returns: nothing to keep registered");
    let states: Vec<(String, RegistrationState)> = status
        .snapshot()
        .into_iter()
        .map(|t| (t.trunk, t.state))
        .collect();
    assert_eq!(
        states,
        [
            (
                "carrier".to_string(),
                RegistrationState::Failed {
                    reason: "the registrar is not a valid SIP URI".to_string(),
                    retry_in_s: None
                }
            ),
            (
                "pbx".to_string(),
                RegistrationState::Failed {
                    reason: "the trunk has no credentials to register with".to_string(),
                    retry_in_s: None
                }
            ),
        ]
    );
    stack.stop().await;
}
