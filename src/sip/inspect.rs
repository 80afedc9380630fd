//! Counts every SIP message on the wire, both ways, by method and status code: the stack sends
//! most responses (in-dialog answers, retransmissions) itself, so counting at the edge is the
//! only complete count.

use std::sync::Arc;

use rsipstack::sip::SipMessage;
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;

use super::message;
use crate::metrics::Metrics;

/// A [`MessageInspector`] that counts and passes every message unchanged.
pub(crate) struct CountingInspector(pub Arc<Metrics>);

impl CountingInspector {
    fn count(&self, msg: &SipMessage, direction: &'static str) {
        match msg {
            SipMessage::Request(req) => self.0.inc(
                "sip_messages_total",
                &[
                    ("direction", direction),
                    ("kind", "request"),
                    ("method", &message::method_name(&req.method)),
                    ("code", ""),
                ],
            ),
            SipMessage::Response(resp) => {
                let method = rsipstack::sip::HeadersExt::cseq_header(resp)
                    .ok()
                    .and_then(|c| c.method().ok())
                    .map_or_else(String::new, |m| message::method_name(&m));
                self.0.inc(
                    "sip_messages_total",
                    &[
                        ("direction", direction),
                        ("kind", "response"),
                        ("method", &method),
                        ("code", &u16::from(resp.status_code.clone()).to_string()),
                    ],
                );
            }
        }
    }
}

impl MessageInspector for CountingInspector {
    fn before_send(&self, msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        self.count(&msg, "out");
        msg
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        self.count(&msg, "in");
        msg
    }
}
