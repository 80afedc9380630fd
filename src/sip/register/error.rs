//! Why a registration attempt fails: [`RegisterError`], and how final responses and SIP
//! stack errors map to it.

use tracing::debug;

/// Why a registration attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The trunk's `registrar` is not a `sip:` or `sips:` URI the stack can parse.
    #[error("the registrar is not a valid SIP URI")]
    InvalidRegistrar,
    /// The trunk has a registrar but no credentials.
    #[error("the trunk has no credentials to register with")]
    NoCredentials,
    /// The registrar challenged again after the credentials were sent: they were refused.
    #[error("the registrar refused the credentials ({code})")]
    Unauthorized {
        /// `401` or `407`.
        code: u16,
    },
    /// The registrar answered with a final failure response.
    #[error("the registrar answered {code}")]
    Rejected {
        /// The status code.
        code: u16,
    },
    /// `423 Interval Too Brief` without a usable `Min-Expires`, or repeatedly.
    #[error("the registrar wants a longer lifetime{}", at_least(*.min_expires))]
    IntervalTooBrief {
        /// The `Min-Expires` value of the last `423`, if it had one.
        min_expires: Option<u32>,
    },
    /// The registrar's challenge has no algorithm or `qop` we support.
    #[error("the registrar's digest challenge is not supported ({code})")]
    UnsupportedChallenge {
        /// `401` or `407`.
        code: u16,
    },
    /// The registrar accepted the request but granted no lifetime.
    #[error("the registrar granted a zero lifetime")]
    NoLifetime,
    /// No final response arrived (transaction timeout, `408`).
    #[error("no answer from the registrar")]
    Timeout,
    /// The registrar's host name could not be resolved.
    #[error("the registrar's address could not be resolved")]
    Resolve,
    /// The request could not be sent.
    #[error("the request could not be sent")]
    Transport,
    /// Any other failure inside the SIP stack.
    #[error("SIP stack failure")]
    Stack,
}

impl RegisterError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            RegisterError::InvalidRegistrar | RegisterError::NoCredentials
        )
    }

    fn from_stack(error: &rsipstack::Error) -> RegisterError {
        match error {
            rsipstack::Error::DnsResolutionError(_) => RegisterError::Resolve,
            rsipstack::Error::TransportLayerError(..) | rsipstack::Error::IoError(_) => {
                RegisterError::Transport
            }
            _ => RegisterError::Stack,
        }
    }
}

/// ` (at least N s)` for a known `Min-Expires`.
fn at_least(min_expires: Option<u32>) -> String {
    min_expires
        .map(|m| format!(" (at least {m} s)"))
        .unwrap_or_default()
}

/// The error for a final failure response.
pub(super) fn failure(code: u16) -> RegisterError {
    match code {
        401 | 407 => RegisterError::Unauthorized { code },
        408 => RegisterError::Timeout,
        _ => RegisterError::Rejected { code },
    }
}

/// Maps a SIP stack error, logging its details at debug level only (they may hold addresses).
pub(super) fn stack_error(error: &rsipstack::Error) -> RegisterError {
    debug!(%error, "REGISTER failed in the SIP stack");
    RegisterError::from_stack(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_failures() {
        assert_eq!(failure(401), RegisterError::Unauthorized { code: 401 });
        assert_eq!(failure(408), RegisterError::Timeout);
        assert_eq!(failure(503), RegisterError::Rejected { code: 503 });
    }

    #[test]
    fn errors_say_whether_to_retry() {
        assert_eq!(
            RegisterError::IntervalTooBrief {
                min_expires: Some(120)
            }
            .to_string(),
            "the registrar wants a longer lifetime (at least 120 s)"
        );
        assert!(!RegisterError::InvalidRegistrar.is_retryable());
        assert!(!RegisterError::NoCredentials.is_retryable());
        assert!(RegisterError::Unauthorized { code: 401 }.is_retryable());
        assert!(RegisterError::Timeout.is_retryable());
    }
}
