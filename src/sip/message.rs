//! Reading and writing SIP messages for the user agent: who sent a request, the numbers it
//! names, the checks the parser does not make, and the headers of our answers.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use rsipstack::sip::{
    Header, HeadersExt, Method, Request, StatusCode, Uri, headers::ToTypedHeader,
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
        Header::Supported("replaces, norefersub".into()),
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

/// Checks the parser does not make (RFC 4475 §3.1.2): the CSeq method must match the request
/// method, and a Content-Length must match the body received. Returns the status to answer
/// with otherwise.
pub(crate) fn check_request(req: &Request) -> Result<(), StatusCode> {
    let cseq = req.cseq_header().map_err(|_| StatusCode::BadRequest)?;
    let cseq_method = cseq.method().map_err(|_| StatusCode::BadRequest)?;
    if cseq_method != req.method {
        return Err(StatusCode::BadRequest);
    }
    if let Some(length) = req.header_value("Content-Length") {
        match length.trim().parse::<usize>() {
            Ok(n) if n == req.body.len() => {}
            _ => return Err(StatusCode::BadRequest),
        }
    }
    Ok(())
}
