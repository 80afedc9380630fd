//! Building, sending and authenticating REGISTER requests: the per-trunk [`Client`], which
//! keeps the Call-ID, From tag, CSeq and Contact of one binding, answers digest challenges and
//! `423 Interval Too Brief`.

use rsipstack::sip::headers::{Authorization, CallId, Expires, ProxyAuthorization};
use rsipstack::sip::param::Tag;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::typed::Contact;
use rsipstack::sip::{
    HasHeaders, Header, Method, Param, Response, SipMessage, StatusCodeKind, Uri,
};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::{make_call_id, make_tag};
use rsipstack::transport::{SipAddr, SipConnection};
use tracing::{debug, info};

use super::Settings;
use super::error::{RegisterError, failure, stack_error};
use super::response::{granted_lifetime, min_expires, select_challenge};
use crate::sip::config::Trunk;
use crate::sip::digest;

/// How many times in a row a `423 Interval Too Brief` is answered with a longer lifetime.
const MAX_INTERVAL_RETRIES: usize = 3;

/// A registration client for one trunk: one address-of-record, Call-ID and From tag, and an
/// increasing CSeq, over the endpoint's transaction layer.
pub(super) struct Client {
    endpoint: EndpointInnerRef,
    /// The Request-URI: the registrar as configured.
    registrar: Uri,
    /// The address-of-record (To and From): `sip:username@registrar-host[:port]`.
    aor: Uri,
    call_id: CallId,
    from_tag: Tag,
    cseq: u32,
    /// Our Contact; its address is filled in from the transport before the first request
    /// unless it was configured.
    contact: Contact,
    contact_known: bool,
    contact_fixed: bool,
    auth_username: String,
    password: String,
}

/// How many challenges one request may answer: the first, then `stale=true` ones.
const MAX_CHALLENGES: usize = 3;

impl Client {
    pub(super) fn new(
        endpoint: EndpointInnerRef,
        trunk: &Trunk,
        settings: &Settings,
    ) -> Result<Client, RegisterError> {
        let registrar = trunk
            .registrar
            .as_deref()
            .ok_or(RegisterError::InvalidRegistrar)?;
        let registrar = Uri::try_from(registrar)
            .ok()
            .filter(|uri| {
                matches!(
                    uri.scheme,
                    Some(rsipstack::sip::Scheme::Sip | rsipstack::sip::Scheme::Sips)
                )
            })
            .ok_or(RegisterError::InvalidRegistrar)?;
        let credentials = trunk
            .credentials
            .as_ref()
            .ok_or(RegisterError::NoCredentials)?;
        let aor = Uri {
            scheme: registrar.scheme.clone(),
            auth: Some(rsipstack::sip::Auth {
                user: credentials.username.clone(),
                password: None,
            }),
            host_with_port: registrar.host_with_port.clone(),
            params: vec![],
            headers: vec![],
        };
        // The Contact keeps the registrar's scheme and transport, so that requests come back
        // over them.
        let transport_params = registrar
            .params
            .iter()
            .filter(|p| matches!(p, Param::Transport(_)))
            .cloned()
            .collect();
        let contact = Contact {
            display_name: None,
            uri: Uri {
                scheme: registrar.scheme.clone(),
                auth: Some(rsipstack::sip::Auth {
                    user: credentials.username.clone(),
                    password: None,
                }),
                host_with_port: settings
                    .contact
                    .map(Into::into)
                    .unwrap_or_else(|| registrar.host_with_port.clone()),
                params: transport_params,
                headers: vec![],
            },
            params: vec![],
        };
        let call_id = make_call_id(
            endpoint.option.callid_suffix.as_deref(),
            endpoint.option.callid_format,
        );
        Ok(Client {
            endpoint,
            registrar,
            aor,
            call_id,
            from_tag: make_tag(),
            cseq: 0,
            contact,
            contact_known: settings.contact.is_some(),
            contact_fixed: settings.contact.is_some(),
            auth_username: credentials.auth_username.clone(),
            password: credentials.password().to_string(),
        })
    }

    /// Registers, asking for `expires` seconds: the lifetime granted. `expires` is raised to
    /// the registrar's `Min-Expires` when it answers `423`.
    pub(super) async fn register(&mut self, expires: &mut u32) -> Result<u32, RegisterError> {
        let mut last_min = None;
        for _ in 0..=MAX_INTERVAL_RETRIES {
            let response = self.authenticated(*expires).await?;
            let code = u16::from(response.status_code.clone());
            if response.status_code.kind() == StatusCodeKind::Successful {
                let granted = granted_lifetime(&response, &self.contact, *expires);
                return if granted == 0 {
                    Err(RegisterError::NoLifetime)
                } else {
                    Ok(granted)
                };
            }
            if code != 423 {
                return Err(failure(code));
            }
            match min_expires(&response) {
                Some(min) if min > *expires => {
                    info!(
                        from_s = *expires,
                        to_s = min,
                        "registrar asks for a longer registration lifetime"
                    );
                    *expires = min;
                    last_min = Some(min);
                }
                other => return Err(RegisterError::IntervalTooBrief { min_expires: other }),
            }
        }
        Err(RegisterError::IntervalTooBrief {
            min_expires: last_min,
        })
    }

    /// Removes our binding (`Expires: 0`).
    pub(super) async fn unregister(&mut self) -> Result<(), RegisterError> {
        let response = self.authenticated(0).await?;
        if response.status_code.kind() == StatusCodeKind::Successful {
            Ok(())
        } else {
            Err(failure(u16::from(response.status_code.clone())))
        }
    }

    /// One REGISTER, answering digest challenges: the final response that is not a challenge
    /// to answer.
    async fn authenticated(&mut self, expires: u32) -> Result<Response, RegisterError> {
        let mut answered = 0;
        let mut response = self.send(expires, None).await?;
        loop {
            let code = u16::from(response.status_code.clone());
            let proxy = match code {
                401 => false,
                407 => true,
                _ => return Ok(response),
            };
            let Some(challenge) = select_challenge(&response, proxy) else {
                debug!(code, "no supported digest challenge");
                return Err(RegisterError::UnsupportedChallenge { code });
            };
            // Challenged again after answering: refused, unless only the nonce had expired.
            if answered == MAX_CHALLENGES || (answered > 0 && !challenge.stale) {
                return Err(RegisterError::Unauthorized { code });
            }
            answered += 1;
            let value = digest::authorization(
                &challenge,
                &self.auth_username,
                &self.password,
                "REGISTER",
                &self.registrar.to_string(),
                &digest::random_cnonce(),
                1,
            );
            debug!(
                code,
                algorithm = %challenge.algorithm,
                stale = challenge.stale,
                "answering digest challenge"
            );
            let header = if proxy {
                Header::ProxyAuthorization(ProxyAuthorization::new(value))
            } else {
                Header::Authorization(Authorization::new(value))
            };
            response = self.send(expires, Some(header)).await?;
        }
    }

    /// Sends one REGISTER transaction: its final response.
    async fn send(
        &mut self,
        expires: u32,
        authorization: Option<Header>,
    ) -> Result<Response, RegisterError> {
        self.cseq = self.cseq % 0x7fff_ffff + 1;
        let target = SipAddr::try_from(&self.registrar).map_err(|e| stack_error(&e))?;
        let (connection, _) = self
            .endpoint
            .transport_layer
            .lookup(&target, None)
            .await
            .map_err(|e| stack_error(&e))?;
        let via = self
            .endpoint
            .get_via(Some(connection.get_addr().clone()), None)
            .map_err(|e| stack_error(&e))?;
        if !self.contact_known {
            self.contact.uri.host_with_port = via.uri.host_with_port.clone();
            self.contact_known = true;
        }
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: self.aor.clone(),
            params: vec![],
        }
        .with_tag(self.from_tag.clone());
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: self.aor.clone(),
            params: vec![],
        };
        let mut request = self.endpoint.make_request(
            Method::Register,
            self.registrar.clone(),
            via,
            from,
            to,
            self.cseq,
            Some(self.call_id.clone()),
        );
        let headers = request.headers_mut();
        headers.unique_push(self.contact.clone().into());
        headers.unique_push(Expires::from(expires).into());
        if let Some(authorization) = authorization {
            headers.unique_push(authorization);
        }
        let key = TransactionKey::from_request(&request, TransactionRole::Client)
            .map_err(|e| stack_error(&e))?;
        let mut tx = Transaction::new_client(key, request, self.endpoint.clone(), None);
        tx.send().await.map_err(|e| stack_error(&e))?;
        // Ends with the transaction: at the final response or at Timer F (a local 408).
        while let Some(message) = tx.receive().await {
            if let SipMessage::Response(response) = message
                && response.status_code.kind() != StatusCodeKind::Provisional
            {
                self.learn_address(&response);
                return Ok(response);
            }
        }
        Err(RegisterError::Timeout)
    }

    /// Takes the address the registrar saw us at (`received`/`rport`) into our Contact.
    fn learn_address(&mut self, response: &Response) {
        if self.contact_fixed {
            return;
        }
        let seen = response
            .via_header()
            .ok()
            .and_then(|via| SipConnection::parse_target_from_via(via).ok())
            .map(|(_, host_with_port)| host_with_port);
        if let Some(seen) = seen
            && seen != self.contact.uri.host_with_port
        {
            debug!("Contact address updated from the registrar's Via");
            self.contact.uri.host_with_port = seen;
        }
    }
}
