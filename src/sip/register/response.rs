//! Reading a registrar's responses: which digest challenge to answer, the lifetime granted to
//! our binding, and the `Min-Expires` of a `423`.

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::typed::Contact;
use rsipstack::sip::{HasHeaders, Header, Response, Uri};

use crate::sip::digest::Challenge;

/// The first supported challenge of a `401` (`WWW-Authenticate`) or `407`
/// (`Proxy-Authenticate`), in the registrar's order; the other header when that one is
/// missing.
pub(crate) fn select_challenge(response: &Response, proxy: bool) -> Option<Challenge> {
    let values = |want_proxy: bool| -> Vec<&str> {
        response
            .headers()
            .iter()
            .filter_map(|h| match h {
                Header::WwwAuthenticate(v) if !want_proxy => Some(v.value()),
                Header::ProxyAuthenticate(v) if want_proxy => Some(v.value()),
                _ => None,
            })
            .collect()
    };
    Challenge::select(values(proxy)).or_else(|| Challenge::select(values(!proxy)))
}

/// The lifetime the registrar granted our binding (RFC 3261 §10.2.4): the lowest `expires`
/// among the response's Contacts that are ours; for our Contact without one, the `Expires`
/// header, then what we asked for. When no Contact is recognisably ours (a registrar that
/// rewrites them), a lone Contact's `expires`, then the `Expires` header, then what we asked
/// for.
pub(super) fn granted_lifetime(response: &Response, ours: &Contact, requested: u32) -> u32 {
    let header_or_requested = || expires_header(response).unwrap_or(requested);
    let contacts = response.typed_contact_headers().unwrap_or_default();
    let mine: Vec<&Contact> = contacts
        .iter()
        .filter(|c| same_binding(&c.uri, &ours.uri))
        .collect();
    if !mine.is_empty() {
        return mine
            .iter()
            .filter_map(|c| c.expires())
            .min()
            .unwrap_or_else(header_or_requested);
    }
    match contacts.as_slice() {
        [only] => only.expires().unwrap_or_else(header_or_requested),
        _ => header_or_requested(),
    }
}

/// Whether two Contact URIs are the same binding: user, host (case-insensitive) and port
/// (5060, or 5061 for `sips`, when absent) match; parameters are ignored, registrars add some.
fn same_binding(a: &Uri, b: &Uri) -> bool {
    let user = |u: &Uri| u.auth.as_ref().map(|a| a.user.clone());
    let port = |u: &Uri| {
        let default = match u.scheme {
            Some(rsipstack::sip::Scheme::Sips) => 5061,
            _ => 5060,
        };
        u.host_with_port
            .port
            .as_ref()
            .map_or(default, |p| p.value())
    };
    user(a) == user(b)
        && a.host_with_port
            .host
            .to_string()
            .eq_ignore_ascii_case(&b.host_with_port.host.to_string())
        && port(a) == port(b)
}

/// The `Min-Expires` of a `423`.
pub(super) fn min_expires(response: &Response) -> Option<u32> {
    response
        .min_expires_header()
        .and_then(|h| h.value().trim().parse().ok())
}

/// The `Expires` header of a response.
fn expires_header(response: &Response) -> Option<u32> {
    response
        .expires_header()
        .and_then(|h| h.value().trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest;

    #[test]
    fn header_values() {
        let response: Response = "SIP/2.0 423 Interval Too Brief\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-t\r\n\
             From: <sip:alice@r.example>;tag=a\r\n\
             To: <sip:alice@r.example>;tag=b\r\n\
             Call-ID: c\r\n\
             CSeq: 2 REGISTER\r\n\
             Min-Expires: 1800\r\n\
             Expires: 90\r\n\
             Content-Length: 0\r\n\r\n"
            .try_into()
            .expect("parses");
        assert_eq!(min_expires(&response), Some(1800));
        assert_eq!(expires_header(&response), Some(90));
    }

    fn response(status: &str, extra: &str) -> Response {
        format!(
            "SIP/2.0 {status}\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-t;received=198.51.100.7;rport=40000\r\n\
             From: <sip:alice@r.example>;tag=a\r\n\
             To: <sip:alice@r.example>;tag=b\r\n\
             Call-ID: c\r\n\
             CSeq: 2 REGISTER\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        )
        .as_str()
        .try_into()
        .expect("parses")
    }

    fn ours() -> Contact {
        Contact::parse("<sip:alice@192.0.2.10:5060>").expect("parses")
    }

    #[test]
    fn granted_lifetime_prefers_our_binding() {
        let both = response(
            "200 OK",
            "Contact: <sip:alice@203.0.113.7:5080>;expires=60, \
             <sip:alice@192.0.2.10>;expires=1800\r\nExpires: 3600\r\n",
        );
        assert_eq!(granted_lifetime(&both, &ours(), 300), 1800);
        let ours_bare = response(
            "200 OK",
            "Contact: <sip:alice@192.0.2.10:5060;ob>\r\nExpires: 1200\r\n",
        );
        assert_eq!(granted_lifetime(&ours_bare, &ours(), 300), 1200);
        let rewritten = response(
            "200 OK",
            "Contact: <sip:alice@10.0.0.9:5062>;expires=600\r\n",
        );
        assert_eq!(granted_lifetime(&rewritten, &ours(), 300), 600);
        let others = response(
            "200 OK",
            "Contact: <sip:alice@10.0.0.9>;expires=600, <sip:alice@10.0.0.8>;expires=60\r\n",
        );
        assert_eq!(granted_lifetime(&others, &ours(), 300), 300);
        assert_eq!(granted_lifetime(&response("200 OK", ""), &ours(), 300), 300);
    }

    #[test]
    fn bindings_match_on_user_host_and_port() {
        let uri = |s: &str| Uri::try_from(s).expect("uri");
        assert!(same_binding(
            &uri("sip:a@Host.example"),
            &uri("sip:a@host.example:5060")
        ));
        assert!(same_binding(&uri("sips:a@h"), &uri("sips:a@h:5061")));
        assert!(!same_binding(&uri("sip:a@h"), &uri("sip:b@h")));
        assert!(!same_binding(&uri("sip:a@h:5062"), &uri("sip:a@h")));
    }

    #[test]
    fn challenges_are_taken_in_the_registrars_order() {
        let both = response(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", algorithm=MD5, qop=\"auth\"\r\n",
        );
        let chosen = select_challenge(&both, false).expect("supported");
        assert_eq!(chosen.algorithm, digest::Algorithm::Sha256);
        assert_eq!(chosen.nonce, "n1");

        let aka_first = response(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=AKAv1-MD5\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", algorithm=MD5\r\n",
        );
        let chosen = select_challenge(&aka_first, false).expect("supported");
        assert_eq!(
            (chosen.algorithm, chosen.nonce.as_str()),
            (digest::Algorithm::Md5, "n2")
        );

        let proxy = response(
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Digest realm=\"p\", nonce=\"n3\", stale=TRUE\r\n",
        );
        let chosen = select_challenge(&proxy, true).expect("supported");
        assert!(chosen.stale);
        assert_eq!(chosen.realm, "p");

        let unsupported = response(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"\r\n",
        );
        assert!(select_challenge(&unsupported, false).is_none());
    }
}
