//! Reading and writing SIP messages for the user agent: who sent a request, the numbers it
//! names, the checks the parser does not make, and the headers of our answers.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use rsipstack::sip::{
    Header, HeadersExt, Method, Request, Scheme, StatusCode, Uri, headers::ToTypedHeader,
};

/// The methods announced in `Allow`.
pub(crate) fn allowed_methods() -> Vec<Method> {
    vec![
        Method::Invite,
        Method::Ack,
        Method::Cancel,
        Method::Bye,
        Method::Options,
        Method::Update,
        Method::Refer,
        Method::Notify,
        Method::Info,
    ]
}

/// A method's wire name, for metrics labels.
pub(crate) fn method_name(method: &Method) -> String {
    method.to_string().to_ascii_uppercase()
}

/// Headers of an OPTIONS answer (and of 405/501): what we can do.
pub(crate) fn capabilities() -> Vec<Header> {
    vec![
        Header::Allow(super::ua::ALLOW.into()),
        Header::Accept(super::ua::ACCEPT.into()),
    ]
}

/// A `Warning` header (RFC 3261 §20.43) explaining a 488.
pub(crate) fn warning(local: &SocketAddr, text: &str) -> Vec<Header> {
    let text = text.replace('"', "'");
    vec![Header::Warning(
        format!("399 {} \"{}\"", local.ip(), text).into(),
    )]
}

/// Whether the request's To header carries a tag (it belongs to a dialog).
pub(crate) fn has_to_tag(req: &Request) -> bool {
    req.to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some()
}

/// Where a request came from: the top Via's `received`/`rport` (set by the transport from the
/// packet's source), else its sent-by.
pub(crate) fn source_addr(req: &Request) -> Option<SocketAddr> {
    let via = req.via_header().ok()?.typed().ok()?;
    let sent_by: Option<SocketAddr> = via.sent_by().clone().try_into().ok();
    let ip = match via.received() {
        Some(Ok(ip)) => ip,
        _ => sent_by?.ip(),
    };
    let port = match via.rport() {
        Some(Some(port)) => port,
        _ => sent_by.map_or(5060, |s| s.port()),
    };
    Some(SocketAddr::new(ip, port))
}

/// The local address that routes to `peer` (when listening on a wildcard address).
pub(crate) fn local_ip_facing(listen: IpAddr, peer: IpAddr) -> IpAddr {
    if !listen.is_unspecified() {
        return listen;
    }
    let bind: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(SocketAddr::new(peer, 9))?;
            s.local_addr()
        })
        .map_or(listen, |a| a.ip())
}

/// Our Contact URI.
pub(crate) fn contact_uri(ip: IpAddr, port: u16) -> Uri {
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    Uri::try_from(format!("sip:dialtone@{host}:{port}").as_str()).unwrap_or_default()
}

/// The user part (or the whole URI when it has none) of a URI, e.g. the called number.
pub(crate) fn uri_user(uri: &Uri) -> String {
    match &uri.auth {
        Some(auth) => auth.user.clone(),
        None => uri.to_string(),
    }
}

/// The calling party: the From URI's user.
pub(crate) fn from_user(req: &Request) -> String {
    req.from_header()
        .ok()
        .and_then(|f| f.uri().ok())
        .map(|u| uri_user(&u))
        .unwrap_or_default()
}

/// The Call-ID value.
pub(crate) fn call_id(req: &Request) -> String {
    req.call_id_header()
        .map(|c| c.value().to_string())
        .unwrap_or_default()
}

/// Why a request is refused before it reaches a dialog: the status and the headers that
/// explain it.
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub headers: Vec<Header>,
}

impl Refusal {
    fn plain(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
        }
    }
}

/// Checks the parser does not make (RFC 3261 §8.2, RFC 4475): the CSeq method must match the
/// request method; a Content-Length must match the body received; the Request-URI scheme must
/// be one we serve (416); no extension may be required that we lack (420); a body must be SDP
/// (415), and the caller must accept SDP in answers (406).
pub(crate) fn check_request(req: &Request) -> Result<(), Refusal> {
    let bad = || Refusal::plain(StatusCode::BadRequest);
    let cseq = req.cseq_header().map_err(|_| bad())?;
    let cseq_method = cseq.method().map_err(|_| bad())?;
    if cseq_method != req.method {
        return Err(bad());
    }
    if let Some(length) = req.header_value("Content-Length") {
        match length.trim().parse::<usize>() {
            Ok(n) if n == req.body.len() => {}
            _ => return Err(bad()),
        }
    }
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return Ok(()); // never answered with an error of their own (RFC 3261 §8.2.2.3)
    }
    if matches!(req.uri.scheme, Some(Scheme::Other(_))) {
        return Err(Refusal::plain(StatusCode::UnsupportedUriScheme));
    }
    let required: Vec<String> = req
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("Require"))
        .flat_map(|h| {
            h.value()
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    if !required.is_empty() {
        return Err(Refusal {
            status: StatusCode::BadExtension,
            headers: vec![Header::Unsupported(required.join(", ").into())],
        });
    }
    if matches!(req.method, Method::Invite | Method::Update) {
        if !req.body.is_empty() {
            let sdp = req.header_value("Content-Type").is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
            });
            if !sdp {
                return Err(Refusal {
                    status: StatusCode::UnsupportedMediaType,
                    headers: vec![Header::Accept("application/sdp".into())],
                });
            }
        }
        if let Some(accept) = req.header_value("Accept") {
            let takes_sdp = accept.split(',').any(|a| {
                let t = a
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                matches!(t.as_str(), "application/sdp" | "application/*" | "*/*")
            });
            if !takes_sdp {
                return Err(Refusal::plain(StatusCode::NotAcceptable));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rsipstack::sip::{SipMessage, StatusCode};

    use super::check_request;

    fn request(extra: &str, body: &str) -> rsipstack::sip::Request {
        let text = format!(
            "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\n\
             To: <sip:100@127.0.0.1>\r\n\
             Call-ID: c1\r\n\
             CSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match SipMessage::try_from(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn status(req: &rsipstack::sip::Request) -> Option<StatusCode> {
        check_request(req).err().map(|r| r.status)
    }

    #[test]
    fn well_formed_invites_pass() {
        assert!(status(&request("Content-Type: application/sdp\r\n", "v=0\r\n")).is_none());
        assert!(status(&request("Accept: application/sdp, text/plain\r\n", "")).is_none());
    }

    #[test]
    fn each_check_answers_its_status() {
        let mut mismatch = request("", "");
        mismatch.body = b"extra".to_vec();
        assert_eq!(status(&mismatch), Some(StatusCode::BadRequest));
        let required = request("Require: 100rel, foo\r\n", "");
        let Err(refusal) = check_request(&required) else {
            panic!("refused");
        };
        assert_eq!(refusal.status, StatusCode::BadExtension);
        assert!(refusal.headers[0].to_string().contains("100rel, foo"));
        assert_eq!(
            status(&request("Content-Type: text/plain\r\n", "hello")),
            Some(StatusCode::UnsupportedMediaType)
        );
        assert_eq!(
            status(&request("Accept: text/html\r\n", "")),
            Some(StatusCode::NotAcceptable)
        );
    }

    #[test]
    fn a_cseq_method_mismatch_is_a_bad_request() {
        let text = "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\
                    Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-2\r\n\
                    From: <sip:a@127.0.0.1>;tag=1\r\n\
                    To: <sip:100@127.0.0.1>\r\n\
                    Call-ID: c2\r\n\
                    CSeq: 1 INVITE\r\n\
                    Max-Forwards: 70\r\n\
                    Content-Length: 0\r\n\r\n";
        let Ok(SipMessage::Request(req)) = SipMessage::try_from(text.as_bytes()) else {
            panic!("parses");
        };
        assert_eq!(status(&req), Some(StatusCode::BadRequest));
    }
}
