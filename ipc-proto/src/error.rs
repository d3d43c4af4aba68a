//! The protocol error type of this crate.

use std::borrow::Cow;

use crate::ErrorCode;

/// A protocol failure: one [`ErrorCode`] plus a human-readable explanation.
///
/// `Display` prints `ERR_IPC_…: explanation`. Messages never echo event names
/// that an allow-list refused (`docs/protocol.md` §4.1), and never contain payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    code: ErrorCode,
    message: Cow<'static, str>,
}

impl ProtocolError {
    /// Builds an error from a code and an explanation.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }

    /// The `ERR_IPC_*` code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The explanation (without the code).
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid_json(message: impl Into<Cow<'static, str>>) -> Self {
        ProtocolError::new(ErrorCode::InvalidJson, message)
    }

    pub(crate) fn frame_too_large(message: impl Into<Cow<'static, str>>) -> Self {
        ProtocolError::new(ErrorCode::FrameTooLarge, message)
    }

    pub(crate) fn config(message: impl Into<Cow<'static, str>>) -> Self {
        ProtocolError::new(ErrorCode::InvalidConfiguration, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_code_and_message() {
        let e = ProtocolError::new(ErrorCode::InvalidJson, "bad");
        assert_eq!(e.to_string(), "ERR_IPC_INVALID_JSON: bad");
        assert_eq!(e.code(), ErrorCode::InvalidJson);
        assert_eq!(e.message(), "bad");
        let dynerr: &dyn std::error::Error = &e;
        assert!(dynerr.source().is_none());
    }
}
