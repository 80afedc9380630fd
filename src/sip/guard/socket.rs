//! The socket wrapper: a UDP socket implementing rsipstack's `PlatformUdpSocket` that
//! inspects every datagram before the stack reads it, sends the guard's answers, and counts
//! each decision in [`GuardCounters`]; [`guarded_udp`] binds it and hands it to the stack.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rsipstack::platform::net::UdpSocket as PlatformUdpSocket;
use rsipstack::transport::udp::UdpConnection;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::build_answer;
use super::inspect::inspect;
use super::verdict::{Status, Verdict};

/// Why the guarded UDP transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot hand the UDP socket to the SIP stack: {0}")]
    Attach(#[source] rsipstack::Error),
}

/// Binds `addr` and returns rsipstack's UDP transport reading through the guard.
pub async fn guarded_udp(
    addr: SocketAddr,
    cancel: CancellationToken,
    counters: Arc<GuardCounters>,
) -> Result<UdpConnection, GuardError> {
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|source| GuardError::Bind { addr, source })?;
    let guarded: Arc<dyn PlatformUdpSocket> = Arc::new(GuardedSocket { socket, counters });
    UdpConnection::from_socket(guarded, None, Some(cancel))
        .await
        .map_err(GuardError::Attach)
}

/// What the guard did with the datagrams it received, for metrics.
#[derive(Debug, Default)]
pub struct GuardCounters {
    passed: AtomicU64,
    answered_400: AtomicU64,
    answered_501: AtomicU64,
    answered_505: AtomicU64,
    dropped: AtomicU64,
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardSnapshot {
    /// Datagrams handed on to the SIP stack.
    pub passed: u64,
    /// Requests answered `400 Bad Request` here.
    pub answered_400: u64,
    /// Requests answered `501 Not Implemented` here.
    pub answered_501: u64,
    /// Requests answered `505 Version Not Supported` here.
    pub answered_505: u64,
    /// Datagrams neither handed on nor answered.
    pub dropped: u64,
}

impl GuardCounters {
    /// The current values, for a metrics scrape.
    pub fn snapshot(&self) -> GuardSnapshot {
        GuardSnapshot {
            passed: self.passed.load(Ordering::Relaxed),
            answered_400: self.answered_400.load(Ordering::Relaxed),
            answered_501: self.answered_501.load(Ordering::Relaxed),
            answered_505: self.answered_505.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn answered(&self, status: Status) {
        let counter = match status {
            Status::BadRequest => &self.answered_400,
            Status::NotImplemented => &self.answered_501,
            Status::VersionNotSupported => &self.answered_505,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A UDP socket that answers or drops what the SIP stack must not see, and hands it the rest.
struct GuardedSocket {
    socket: tokio::net::UdpSocket,
    counters: Arc<GuardCounters>,
}

impl GuardedSocket {
    /// The next datagram for the SIP stack, framed in place in `buf`.
    async fn receive(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (len, source) = self.socket.recv_from(buf).await?;
            let len = len.min(buf.len());
            match inspect(&buf[..len]) {
                Verdict::Pass(framing) => {
                    self.counters.passed.fetch_add(1, Ordering::Relaxed);
                    return Ok((framing.apply(buf, len), source));
                }
                Verdict::Answer(rejection) => {
                    let Some((answer, destination)) = build_answer(&buf[..len], rejection, source)
                    else {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    debug!(
                        %source,
                        %destination,
                        status = rejection.status.code(),
                        problem = %rejection.problem,
                        "SIP request answered by the guard"
                    );
                    match self.socket.send_to(&answer, destination).await {
                        Ok(_) => self.counters.answered(rejection.status),
                        Err(e) => {
                            debug!(error = %e, %destination, "guard answer not sent");
                            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Verdict::Drop { problem, kind } => {
                    debug!(%source, %problem, ?kind, "SIP datagram dropped by the guard");
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// The trait is declared with `async_trait`; these are the signatures it expands to.
impl PlatformUdpSocket for GuardedSocket {
    fn recv_from<'life0, 'life1, 'async_trait>(
        &'life0 self,
        buf: &'life1 mut [u8],
    ) -> BoxFuture<'async_trait, rsipstack::Result<(usize, SocketAddr)>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { Ok(self.receive(buf).await?) })
    }

    fn send_to<'life0, 'life1, 'async_trait>(
        &'life0 self,
        buf: &'life1 [u8],
        addr: SocketAddr,
    ) -> BoxFuture<'async_trait, rsipstack::Result<usize>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { Ok(self.socket.send_to(buf, addr).await?) })
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rsipstack::sip::SipMessage;
    use rsipstack::transport::TransportEvent;

    use super::*;
    use crate::sip::guard::tests::torture;

    async fn recv_with_deadline(socket: &tokio::net::UdpSocket) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_transport_answers_what_the_stack_would_drop_and_hands_on_the_rest() {
        let cancel = CancellationToken::new();
        let counters = Arc::new(GuardCounters::default());
        let udp = guarded_udp(
            "127.0.0.1:0".parse().unwrap(),
            cancel.clone(),
            counters.clone(),
        )
        .await
        .expect("binds");
        let server = udp.get_addr().get_socketaddr().expect("bound address");
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let serving = tokio::spawn({
            let udp = udp.clone();
            async move { udp.serve_loop(events_tx).await }
        });
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = client.local_addr().unwrap().port();
        let message = |method: &str, cseq_method: &str, extra: &str| {
            format!(
                "{method} sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:c@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\n\
                 Call-ID: {method}@127.0.0.1\r\nCSeq: 7 {cseq_method}\r\nContent-Length: 0\r\n\r\n{extra}"
            )
        };

        // An unknown method: 501 with Allow, from the guard.
        client
            .send_to(message("FOO", "FOO", "").as_bytes(), server)
            .await
            .unwrap();
        let answer = recv_with_deadline(&client).await.expect("a 501");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("SIP/2.0 501 Not Implemented\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: INVITE,"), "{text}");
        assert!(text.contains("\r\nCall-ID: FOO@127.0.0.1\r\n"), "{text}");

        // A CSeq mismatch: 400 naming it.
        client
            .send_to(message("OPTIONS", "INVITE", "").as_bytes(), server)
            .await
            .unwrap();
        let answer = recv_with_deadline(&client).await.expect("a 400");
        assert!(answer.starts_with(b"SIP/2.0 400 CSeq Method Mismatch\r\n"));

        // An invalid response: nothing comes back, nothing reaches the stack.
        client
            .send_to(&torture("bigcode.dat"), server)
            .await
            .unwrap();

        // A good request with trailing junk: the stack gets the request alone.
        let good = message("OPTIONS", "OPTIONS", "INVITE sip:junk SIP/2.0\r\n\r\n");
        client.send_to(good.as_bytes(), server).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("the stack receives the OPTIONS")
            .expect("an event");
        let TransportEvent::Incoming(SipMessage::Request(request), _, from) = event else {
            panic!("not an incoming request");
        };
        assert_eq!(request.method, rsipstack::sip::Method::Options);
        assert_eq!(from.get_socketaddr().unwrap().port(), port);
        assert!(
            events.try_recv().is_err(),
            "the junk is not a second message"
        );

        // Sends go out through the guarded socket unchanged.
        udp.send_raw(b"hello", &from).await.unwrap();
        assert_eq!(
            recv_with_deadline(&client).await.as_deref(),
            Some(b"hello".as_slice())
        );

        assert_eq!(
            counters.snapshot(),
            GuardSnapshot {
                passed: 1,
                answered_400: 1,
                answered_501: 1,
                answered_505: 0,
                dropped: 1,
            }
        );
        cancel.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(2), serving).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "the serve loop ends when cancelled"
        );
    }

    #[tokio::test]
    async fn binding_a_taken_address_is_a_typed_error() {
        let taken = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let result = guarded_udp(addr, CancellationToken::new(), Arc::default()).await;
        assert!(matches!(result, Err(GuardError::Bind { addr: a, .. }) if a == addr));
    }
}
