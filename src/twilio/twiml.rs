//! TwiML documents the bridge answers with or sends: `<Connect><Stream>` to start a
//! bidirectional Media Stream, `<Dial>` for transfers and `<Hangup/>`.

use std::fmt::Write as _;

const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Answers a call with a bidirectional Media Stream to `stream_url` (a `wss://` URL without a
/// query string; Twilio drops queries), passing `params` as `<Parameter>`s. Nothing follows
/// `</Connect>`, so closing the stream ends the call.
pub fn connect_stream(stream_url: &str, params: &[(&str, &str)]) -> String {
    let mut xml = format!(
        r#"{XML_DECLARATION}<Response><Connect><Stream url="{}">"#,
        escape(stream_url)
    );
    for (name, value) in params {
        // Writing into a String cannot fail.
        let _ = write!(
            xml,
            r#"<Parameter name="{}" value="{}"/>"#,
            escape(name),
            escape(value)
        );
    }
    xml.push_str("</Stream></Connect></Response>");
    xml
}

/// Transfers a call to `target`: a SIP URI (`sip:` or `sips:`) dials `<Sip>`, `client:name`
/// dials the Twilio Client `name`, anything else dials it as a phone `<Number>`.
pub fn dial(target: &str) -> String {
    let target = target.trim();
    let noun = match DialTarget::classify(target) {
        DialTarget::Sip(uri) => format!("<Sip>{}</Sip>", escape(uri)),
        DialTarget::Client(name) => format!("<Client>{}</Client>", escape(name)),
        DialTarget::Number(number) => format!("<Number>{}</Number>", escape(number)),
    };
    format!("<Response><Dial>{noun}</Dial></Response>")
}

/// Ends the call.
pub fn hangup() -> String {
    "<Response><Hangup/></Response>".to_owned()
}

/// What a transfer target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialTarget<'a> {
    Sip(&'a str),
    Client(&'a str),
    Number(&'a str),
}

impl<'a> DialTarget<'a> {
    fn classify(target: &'a str) -> Self {
        let has_prefix = |prefix: &str| {
            target
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        };
        if has_prefix("sip:") || has_prefix("sips:") {
            Self::Sip(target)
        } else if has_prefix("client:") {
            Self::Client(&target["client:".len()..])
        } else {
            Self::Number(target)
        }
    }
}

/// Escapes text for XML content and double- or single-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_stream_document() {
        let xml = connect_stream(
            "wss://bridge.example.com/twilio/media",
            &[("From", "+15550001111"), ("To", "+15550002222")],
        );
        assert_eq!(
            xml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect>"#,
                r#"<Stream url="wss://bridge.example.com/twilio/media">"#,
                r#"<Parameter name="From" value="+15550001111"/>"#,
                r#"<Parameter name="To" value="+15550002222"/>"#,
                "</Stream></Connect></Response>"
            )
        );
    }

    #[test]
    fn escapes_attributes() {
        let xml = connect_stream(
            "wss://h/m",
            &[("From", r#"sip:"Bob" <bob@x>&'y'"#), ("a<b", "")],
        );
        assert!(xml.contains(r#"value="sip:&quot;Bob&quot; &lt;bob@x&gt;&amp;&apos;y&apos;""#));
        assert!(xml.contains(r#"name="a&lt;b" value="""#));
        assert!(!xml.contains("<bob"));
    }

    #[test]
    fn dial_targets() {
        assert_eq!(
            dial("+15550003333"),
            "<Response><Dial><Number>+15550003333</Number></Dial></Response>"
        );
        assert_eq!(
            dial(" sip:sales@pbx.example.com;transport=tls "),
            "<Response><Dial><Sip>sip:sales@pbx.example.com;transport=tls</Sip></Dial></Response>"
        );
        assert_eq!(
            dial("SIPS:a@b"),
            "<Response><Dial><Sip>SIPS:a@b</Sip></Dial></Response>"
        );
        assert_eq!(
            dial("client:alice"),
            "<Response><Dial><Client>alice</Client></Dial></Response>"
        );
        assert_eq!(
            dial("sip:a@b?x=1&y=2"),
            "<Response><Dial><Sip>sip:a@b?x=1&amp;y=2</Sip></Dial></Response>"
        );
        assert_eq!(
            dial("+1<Hangup/>"),
            "<Response><Dial><Number>+1&lt;Hangup/&gt;</Number></Dial></Response>"
        );
    }

    #[test]
    fn hangup_document() {
        assert_eq!(hangup(), "<Response><Hangup/></Response>");
    }
}
