//! Profiles and codec configuration (`docs/protocol.md` §1.6, §3.1, §4.1).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::{ErrorCode, ProtocolError};

/// Default delimiter: one form feed byte.
pub const DEFAULT_DELIMITER: &[u8] = b"\x0c";
/// Default `max_message_size`: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// Default `max_pending_bytes`: 8 MiB.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;
/// Default `max_event_name_length`: 256 UTF-16 code units.
pub const DEFAULT_MAX_EVENT_NAME_LENGTH: usize = 256;
/// Default `message_timeout`: 30 s.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `max_json_depth`: 256.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 256;
/// Largest accepted `max_json_depth`. Deeper values would let a peer drive
/// the recursive JSON parser close to the stack limit of a 2 MiB thread.
pub const MAX_JSON_DEPTH_CEILING: usize = 1024;
/// Default `max_partial_bytes`: 64 MiB (applies to every framed profile).
pub const DEFAULT_MAX_PARTIAL_BYTES: usize = 64 * 1024 * 1024;

/// A node-ipc v14 parser profile (`docs/protocol.md` §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// No framing, no JSON: bytes pass through (`rawBuffer`).
    Raw,
    /// Framing + JSON, fail-closed envelope checks, no limits (v14 default).
    #[default]
    Fast,
    /// Fast plus size, name, reserved-name and timeout checks.
    Guarded,
    /// Guarded plus a mandatory allow-list; reserved names always refused.
    Assured,
}

impl Profile {
    /// The node-ipc name: `raw`, `fast`, `guarded` or `assured`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Raw => "raw",
            Profile::Fast => "fast",
            Profile::Guarded => "guarded",
            Profile::Assured => "assured",
        }
    }

    /// Whether this profile frames JSON envelopes (everything but `raw`).
    pub const fn is_framed(self) -> bool {
        !matches!(self, Profile::Raw)
    }

    /// Whether limits and name checks apply (`guarded` and `assured`).
    pub const fn is_guarded(self) -> bool {
        matches!(self, Profile::Guarded | Profile::Assured)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Profile::Raw),
            "fast" => Ok(Profile::Fast),
            "guarded" => Ok(Profile::Guarded),
            "assured" => Ok(Profile::Assured),
            _ => Err(ProtocolError::config(
                "profile must be `raw`, `fast`, `guarded` or `assured`",
            )),
        }
    }
}

/// Everything a codec needs to know, with node-ipc v14 defaults.
///
/// Fields are public; the `with_*` setters allow chaining. A configuration is
/// checked by [`CodecConfig::validate`] when a decoder or encoder is built.
///
/// ```
/// use ipc_proto::{CodecConfig, Profile};
/// let cfg = CodecConfig::guarded().with_max_message_size(64 * 1024).with_delimiter(b"\n".to_vec());
/// assert_eq!(cfg.profile, Profile::Guarded);
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecConfig {
    /// The parser profile.
    pub profile: Profile,
    /// The frame delimiter (non-empty byte string; default `0x0C`).
    pub delimiter: Vec<u8>,
    /// Guarded/assured: largest frame in UTF-8 bytes, without the delimiter;
    /// also bounds the buffered partial frame.
    pub max_message_size: usize,
    /// Guarded/assured: bytes allowed in a stream's write queue. Enforced by
    /// the transports; stored here so a single configuration travels.
    pub max_pending_bytes: usize,
    /// Guarded/assured: longest event name in UTF-16 code units.
    pub max_event_name_length: usize,
    /// Guarded/assured: how long a partial frame may stay incomplete.
    /// `None` or zero disables the timer.
    pub message_timeout: Option<Duration>,
    /// Guarded: accept lifecycle names from the wire and allow sending them.
    /// Ignored (always `false`) in assured.
    pub allow_reserved_events: bool,
    /// Assured: the names that may be sent and received (required, non-empty).
    pub allowed_events: HashSet<String>,
    /// Allow *sending* `Object.prototype` member names (every profile).
    pub allow_unsafe_names: bool,
    /// Report `ERR_IPC_INCOMPLETE_FRAME` when a stream ends inside a frame.
    pub strict_eof: bool,
    /// Reject invalid UTF-8 (`ERR_IPC_INVALID_JSON`) instead of replacing it
    /// with U+FFFD.
    pub strict_utf8: bool,
    /// Reject lone UTF-16 surrogate escapes (`"\ud800"`) instead of
    /// replacing them with U+FFFD.
    pub strict_json: bool,
    /// Deepest array/object nesting of a frame; the envelope object itself is
    /// level 1. At most [`MAX_JSON_DEPTH_CEILING`].
    pub max_json_depth: usize,
    /// Largest partial frame any framed profile buffers (fast included).
    pub max_partial_bytes: usize,
    /// Encode payloads the way node-ipc 9/12 did (`null`, `""` and objects
    /// with a truthy `_maxListeners` become `{}`; `docs/protocol.md` §1.3).
    pub legacy_v9_payloads: bool,
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig {
            profile: Profile::Fast,
            delimiter: DEFAULT_DELIMITER.to_vec(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            max_event_name_length: DEFAULT_MAX_EVENT_NAME_LENGTH,
            message_timeout: Some(DEFAULT_MESSAGE_TIMEOUT),
            allow_reserved_events: false,
            allowed_events: HashSet::new(),
            allow_unsafe_names: false,
            strict_eof: false,
            strict_utf8: false,
            strict_json: false,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            max_partial_bytes: DEFAULT_MAX_PARTIAL_BYTES,
            legacy_v9_payloads: false,
        }
    }
}

impl CodecConfig {
    /// The raw profile.
    pub fn raw() -> Self {
        CodecConfig {
            profile: Profile::Raw,
            ..Self::default()
        }
    }

    /// The fast profile (node-ipc v14 default).
    pub fn fast() -> Self {
        Self::default()
    }

    /// The guarded profile.
    pub fn guarded() -> Self {
        CodecConfig {
            profile: Profile::Guarded,
            ..Self::default()
        }
    }

    /// The assured profile with its allow-list.
    pub fn assured<I, S>(allowed_events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CodecConfig {
            profile: Profile::Assured,
            allowed_events: allowed_events.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// A configuration for `profile` with every other value at its default.
    pub fn for_profile(profile: Profile) -> Self {
        CodecConfig {
            profile,
            ..Self::default()
        }
    }

    /// Sets the profile.
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }
    /// Sets the delimiter.
    pub fn with_delimiter(mut self, delimiter: impl Into<Vec<u8>>) -> Self {
        self.delimiter = delimiter.into();
        self
    }
    /// Sets `max_message_size`.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
    /// Sets `max_pending_bytes`.
    pub fn with_max_pending_bytes(mut self, bytes: usize) -> Self {
        self.max_pending_bytes = bytes;
        self
    }
    /// Sets `max_event_name_length`.
    pub fn with_max_event_name_length(mut self, units: usize) -> Self {
        self.max_event_name_length = units;
        self
    }
    /// Sets `message_timeout` (`None` or zero disables it).
    pub fn with_message_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.message_timeout = timeout;
        self
    }
    /// Sets `allow_reserved_events`.
    pub fn with_allow_reserved_events(mut self, allow: bool) -> Self {
        self.allow_reserved_events = allow;
        self
    }
    /// Replaces the assured allow-list.
    pub fn with_allowed_events<I, S>(mut self, events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_events = events.into_iter().map(Into::into).collect();
        self
    }
    /// Sets `allow_unsafe_names`.
    pub fn with_allow_unsafe_names(mut self, allow: bool) -> Self {
        self.allow_unsafe_names = allow;
        self
    }
    /// Sets `strict_eof`.
    pub fn with_strict_eof(mut self, strict: bool) -> Self {
        self.strict_eof = strict;
        self
    }
    /// Sets `strict_utf8`.
    pub fn with_strict_utf8(mut self, strict: bool) -> Self {
        self.strict_utf8 = strict;
        self
    }
    /// Sets `strict_json`.
    pub fn with_strict_json(mut self, strict: bool) -> Self {
        self.strict_json = strict;
        self
    }
    /// Sets `max_json_depth`.
    pub fn with_max_json_depth(mut self, depth: usize) -> Self {
        self.max_json_depth = depth;
        self
    }
    /// Sets `max_partial_bytes`.
    pub fn with_max_partial_bytes(mut self, bytes: usize) -> Self {
        self.max_partial_bytes = bytes;
        self
    }
    /// Sets `legacy_v9_payloads`.
    pub fn with_legacy_v9_payloads(mut self, legacy: bool) -> Self {
        self.legacy_v9_payloads = legacy;
        self
    }

    /// The partial-frame timeout that is actually armed: guarded/assured
    /// only, and never zero.
    pub fn effective_message_timeout(&self) -> Option<Duration> {
        if !self.profile.is_guarded() {
            return None;
        }
        self.message_timeout.filter(|d| !d.is_zero())
    }

    /// Whether lifecycle names are accepted (never in assured).
    pub fn reserved_allowed(&self) -> bool {
        self.allow_reserved_events && self.profile != Profile::Assured
    }

    /// Checks the configuration (`ERR_IPC_INVALID_CONFIGURATION`).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.profile.is_framed() && self.delimiter.is_empty() {
            return Err(ProtocolError::config("delimiter must not be empty"));
        }
        for (name, value) in [
            ("max_message_size", self.max_message_size),
            ("max_pending_bytes", self.max_pending_bytes),
            ("max_event_name_length", self.max_event_name_length),
            ("max_partial_bytes", self.max_partial_bytes),
        ] {
            if value == 0 {
                return Err(ProtocolError::new(
                    ErrorCode::InvalidConfiguration,
                    format!("{name} must be a positive integer"),
                ));
            }
        }
        if self.max_json_depth < 2 || self.max_json_depth > MAX_JSON_DEPTH_CEILING {
            return Err(ProtocolError::new(
                ErrorCode::InvalidConfiguration,
                format!("max_json_depth must be between 2 and {MAX_JSON_DEPTH_CEILING}"),
            ));
        }
        if self.profile == Profile::Assured && self.allowed_events.is_empty() {
            return Err(ProtocolError::config(
                "the assured profile requires a non-empty allowed_events list",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_v14() {
        let c = CodecConfig::default();
        assert_eq!(c.profile, Profile::Fast);
        assert_eq!(c.delimiter, b"\x0c");
        assert_eq!(c.max_message_size, 1_048_576);
        assert_eq!(c.max_pending_bytes, 8_388_608);
        assert_eq!(c.max_event_name_length, 256);
        assert_eq!(c.message_timeout, Some(Duration::from_millis(30_000)));
        assert_eq!(c.max_json_depth, 256);
        assert_eq!(c.max_partial_bytes, 64 << 20);
        assert!(!c.allow_reserved_events && !c.allow_unsafe_names && !c.legacy_v9_payloads);
        assert!(!c.strict_eof && !c.strict_utf8 && !c.strict_json);
        c.validate().unwrap();
    }

    #[test]
    fn validation() {
        let code = |c: CodecConfig| c.validate().unwrap_err().code();
        assert_eq!(
            code(CodecConfig::fast().with_delimiter(Vec::new())),
            ErrorCode::InvalidConfiguration
        );
        CodecConfig::raw()
            .with_delimiter(Vec::new())
            .validate()
            .unwrap();
        assert_eq!(
            code(CodecConfig::guarded().with_max_message_size(0)),
            ErrorCode::InvalidConfiguration
        );
        assert_eq!(
            code(CodecConfig::guarded().with_max_event_name_length(0)),
            ErrorCode::InvalidConfiguration
        );
        assert_eq!(
            code(CodecConfig::fast().with_max_json_depth(5000)),
            ErrorCode::InvalidConfiguration
        );
        assert_eq!(
            code(CodecConfig::assured(Vec::<String>::new())),
            ErrorCode::InvalidConfiguration
        );
        CodecConfig::assured(["a"]).validate().unwrap();
    }

    #[test]
    fn timeout_and_reserved_rules() {
        assert_eq!(CodecConfig::fast().effective_message_timeout(), None);
        assert_eq!(
            CodecConfig::guarded().effective_message_timeout(),
            Some(DEFAULT_MESSAGE_TIMEOUT)
        );
        assert_eq!(
            CodecConfig::guarded()
                .with_message_timeout(Some(Duration::ZERO))
                .effective_message_timeout(),
            None
        );
        assert!(CodecConfig::guarded()
            .with_allow_reserved_events(true)
            .reserved_allowed());
        assert!(!CodecConfig::assured(["a"])
            .with_allow_reserved_events(true)
            .reserved_allowed());
    }

    #[test]
    fn profile_names() {
        for p in [
            Profile::Raw,
            Profile::Fast,
            Profile::Guarded,
            Profile::Assured,
        ] {
            assert_eq!(p.as_str().parse::<Profile>().unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(
            "custom".parse::<Profile>().unwrap_err().code(),
            ErrorCode::InvalidConfiguration
        );
    }
}
