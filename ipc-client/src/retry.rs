//! node-ipc's reconnect policy, bit for bit (`docs/protocol.md` §3.6), plus an opt-in
//! jittered exponential backoff.
//!
//! The policy is a small state machine with no clock: the client's supervisor
//! calls [`RetryState::on_close`] when a connection (or a connection attempt)
//! ends, sleeps for the returned delay, then calls [`RetryState::on_timer`],
//! and calls [`RetryState::on_connect`] whenever a connection succeeds.
//!
//! ```text
//! on construct:  remaining := maxRetries || 0
//! on connect:    remaining := maxRetries
//! on close:      stopRetrying || remaining < 1 || explicit || violation
//!                    → disconnect, destroy
//!                else → disconnect now, reconnect after `retry`
//! on timer:      explicit → stop silently; stopRetrying → destroy;
//!                else remaining -= 1, reconnect
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How many reconnect attempts follow a disconnect (`maxRetries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxRetries {
    /// Retry forever (node-ipc's default, `Infinity`).
    #[default]
    Unlimited,
    /// At most this many attempts after each disconnect; the budget refills
    /// on every successful connect. `Limited(0)` never reconnects.
    Limited(u64),
}

impl MaxRetries {
    /// Interprets a JavaScript `maxRetries` value the way node-ipc does:
    /// `Infinity` → unlimited, `true` → 1, positive numbers are floored, and
    /// every falsy or negative value means no reconnect.
    pub fn from_js(value: &serde_json::Value) -> MaxRetries {
        use serde_json::Value;
        match value {
            Value::Bool(true) => MaxRetries::Limited(1),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_infinite() && f > 0.0 => MaxRetries::Unlimited,
                Some(f) if f >= 1.0 => {
                    if f >= u64::MAX as f64 {
                        MaxRetries::Unlimited
                    } else {
                        MaxRetries::Limited(f.floor() as u64)
                    }
                }
                _ => MaxRetries::Limited(0),
            },
            // JSON cannot carry Infinity; accept the string node users write.
            Value::String(s) if s == "Infinity" => MaxRetries::Unlimited,
            _ => MaxRetries::Limited(0),
        }
    }
}

/// The delay between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Backoff {
    /// node-ipc's fixed delay of `retry` (the compatible default).
    #[default]
    Fixed,
    /// `retry · 2^k` for the k-th consecutive attempt, capped at `max`, with a
    /// random ±`jitter` fraction so restarting servers are not hammered in
    /// lock-step.
    Exponential {
        /// Upper bound of the delay before jitter.
        max: Duration,
        /// Relative jitter, e.g. 0.2 for ±20 %.
        jitter: f64,
    },
    /// `retry · k` for the k-th consecutive attempt (k from 1), capped at
    /// `max`: net-ipc's policy (see [`RetryConfig::net_ipc`]).
    Linear {
        /// Upper bound of the delay.
        max: Duration,
    },
}

impl Backoff {
    /// The opt-in default: exponential up to 30 s with ±20 % jitter.
    pub fn exponential() -> Backoff {
        Backoff::Exponential {
            max: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

/// The retry settings node-ipc reads live (`retry`, `maxRetries`,
/// `stopRetrying`) plus the backoff choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Base delay between attempts (`retry`, default 500 ms).
    pub retry: Duration,
    /// Attempts after each disconnect (`maxRetries`).
    pub max_retries: MaxRetries,
    /// When set, the next close is final (`stopRetrying`).
    pub stop_retrying: bool,
    /// Delay shape.
    pub backoff: Backoff,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            retry: Duration::from_millis(500),
            max_retries: MaxRetries::Unlimited,
            stop_retrying: false,
            backoff: Backoff::Fixed,
        }
    }
}

impl RetryConfig {
    /// net-ipc's client policy: after a disconnect, at most 3 attempts, the
    /// k-th after `min(500 ms · k, 10 s)`.
    pub fn net_ipc() -> RetryConfig {
        RetryConfig {
            retry: ipc_proto::netipc::RETRY_INCREMENT,
            max_retries: MaxRetries::Limited(u64::from(ipc_proto::netipc::DEFAULT_RETRIES)),
            stop_retrying: false,
            backoff: Backoff::Linear {
                max: ipc_proto::netipc::MAX_RETRY_DELAY,
            },
        }
    }
}

/// What to do after a close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnClose {
    /// Emit `disconnect`, then `destroy`: the client is finished.
    Destroy,
    /// Emit `disconnect` now and call [`RetryState::on_timer`] after the delay.
    RetryAfter(Duration),
}

/// What to do when the retry timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimer {
    /// The client was disconnected explicitly meanwhile: stop without events.
    Stop,
    /// `stopRetrying` was set meanwhile: emit `destroy` and stop.
    Destroy,
    /// Start a new connection attempt.
    Reconnect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Unlimited,
    Left(u64),
}

/// The per-client retry state.
#[derive(Debug, Clone)]
pub struct RetryState {
    remaining: Budget,
    consecutive: u32,
}

impl RetryState {
    /// The state of a newly constructed client.
    pub fn new(config: &RetryConfig) -> Self {
        RetryState {
            remaining: budget(config.max_retries),
            consecutive: 0,
        }
    }

    /// Attempts left before the client gives up (`None` = unlimited).
    pub fn remaining(&self) -> Option<u64> {
        match self.remaining {
            Budget::Unlimited => None,
            Budget::Left(n) => Some(n),
        }
    }

    /// A connection succeeded: the budget refills.
    pub fn on_connect(&mut self, config: &RetryConfig) {
        self.remaining = budget(config.max_retries);
        self.consecutive = 0;
    }

    /// A connection or an attempt ended. `explicit` = the user disconnected;
    /// `violation` = a protocol violation or a non-retryable failure.
    pub fn on_close(&mut self, config: &RetryConfig, explicit: bool, violation: bool) -> OnClose {
        let exhausted = self.remaining == Budget::Left(0);
        if config.stop_retrying || exhausted || explicit || violation {
            return OnClose::Destroy;
        }
        let delay = self.delay(config);
        self.consecutive = self.consecutive.saturating_add(1);
        OnClose::RetryAfter(delay)
    }

    /// The retry timer fired.
    pub fn on_timer(&mut self, config: &RetryConfig, explicit: bool) -> OnTimer {
        if explicit {
            return OnTimer::Stop;
        }
        if config.stop_retrying {
            return OnTimer::Destroy;
        }
        if let Budget::Left(n) = &mut self.remaining {
            *n = n.saturating_sub(1);
        }
        OnTimer::Reconnect
    }

    fn delay(&self, config: &RetryConfig) -> Duration {
        match config.backoff {
            Backoff::Fixed => config.retry,
            Backoff::Linear { max } => config
                .retry
                .saturating_mul(self.consecutive.saturating_add(1))
                .min(max),
            Backoff::Exponential { max, jitter } => {
                let factor = 2u32.saturating_pow(self.consecutive.min(30));
                let base = config.retry.saturating_mul(factor).min(max);
                let jitter = jitter.clamp(0.0, 1.0);
                // A uniform sample in [-1, 1).
                let unit = (random_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
                base.mul_f64((1.0 + jitter * unit).max(0.0))
            }
        }
    }
}

fn budget(max: MaxRetries) -> Budget {
    match max {
        MaxRetries::Unlimited => Budget::Unlimited,
        MaxRetries::Limited(n) => Budget::Left(n),
    }
}

/// 64 random bits from the standard library's randomly keyed hasher.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(max: MaxRetries) -> RetryConfig {
        RetryConfig {
            max_retries: max,
            ..RetryConfig::default()
        }
    }

    #[test]
    fn net_ipc_policy_is_linear_capped_and_limited_to_three() {
        let c = RetryConfig::net_ipc();
        let mut st = RetryState::new(&c);
        let mut delays = Vec::new();
        while let OnClose::RetryAfter(d) = st.on_close(&c, false, false) {
            delays.push(d.as_millis());
            assert_eq!(st.on_timer(&c, false), OnTimer::Reconnect);
        }
        assert_eq!(delays, [500, 1000, 1500]);
        // A connection refills the budget and restarts the ramp; the cap holds.
        st.on_connect(&c);
        let far = RetryConfig {
            max_retries: MaxRetries::Unlimited,
            ..c
        };
        let mut st = RetryState::new(&far);
        let mut last = 0;
        for _ in 0..30 {
            if let OnClose::RetryAfter(d) = st.on_close(&far, false, false) {
                last = d.as_millis();
            }
        }
        assert_eq!(last, 10_000);
    }

    #[test]
    fn js_values_of_max_retries() {
        assert_eq!(MaxRetries::from_js(&json!(0)), MaxRetries::Limited(0));
        assert_eq!(MaxRetries::from_js(&json!(false)), MaxRetries::Limited(0));
        assert_eq!(MaxRetries::from_js(&json!(null)), MaxRetries::Limited(0));
        assert_eq!(MaxRetries::from_js(&json!(-3)), MaxRetries::Limited(0));
        assert_eq!(MaxRetries::from_js(&json!(0.5)), MaxRetries::Limited(0));
        assert_eq!(MaxRetries::from_js(&json!(true)), MaxRetries::Limited(1));
        assert_eq!(MaxRetries::from_js(&json!(2.5)), MaxRetries::Limited(2));
        assert_eq!(MaxRetries::from_js(&json!(7)), MaxRetries::Limited(7));
        assert_eq!(
            MaxRetries::from_js(&json!("Infinity")),
            MaxRetries::Unlimited
        );
    }

    /// Nothing listening, `maxRetries = 2`: two reconnect attempts, then the
    /// third close is final.
    #[test]
    fn limited_budget_is_spent_then_destroy() {
        let c = cfg(MaxRetries::Limited(2));
        let mut s = RetryState::new(&c);
        for _ in 0..2 {
            assert_eq!(
                s.on_close(&c, false, false),
                OnClose::RetryAfter(Duration::from_millis(500))
            );
            assert_eq!(s.on_timer(&c, false), OnTimer::Reconnect);
        }
        assert_eq!(s.on_close(&c, false, false), OnClose::Destroy);
    }

    #[test]
    fn budget_refills_on_connect() {
        let c = cfg(MaxRetries::Limited(1));
        let mut s = RetryState::new(&c);
        for _ in 0..5 {
            assert!(matches!(
                s.on_close(&c, false, false),
                OnClose::RetryAfter(_)
            ));
            assert_eq!(s.on_timer(&c, false), OnTimer::Reconnect);
            s.on_connect(&c);
        }
        assert_eq!(s.remaining(), Some(1));
    }

    #[test]
    fn zero_never_reconnects_and_unlimited_always_does() {
        let c = cfg(MaxRetries::Limited(0));
        assert_eq!(
            RetryState::new(&c).on_close(&c, false, false),
            OnClose::Destroy
        );
        let c = cfg(MaxRetries::Unlimited);
        let mut s = RetryState::new(&c);
        for _ in 0..1000 {
            assert!(matches!(
                s.on_close(&c, false, false),
                OnClose::RetryAfter(_)
            ));
            assert_eq!(s.on_timer(&c, false), OnTimer::Reconnect);
        }
        assert_eq!(s.remaining(), None);
    }

    #[test]
    fn stop_retrying_explicit_and_violation() {
        let mut c = cfg(MaxRetries::Unlimited);
        let mut s = RetryState::new(&c);
        assert_eq!(s.on_close(&c, true, false), OnClose::Destroy);
        assert_eq!(s.on_close(&c, false, true), OnClose::Destroy);
        // scheduled, then stopRetrying set before the timer fires (v14)
        assert!(matches!(
            s.on_close(&c, false, false),
            OnClose::RetryAfter(_)
        ));
        c.stop_retrying = true;
        assert_eq!(s.on_timer(&c, false), OnTimer::Destroy);
        assert_eq!(s.on_close(&c, false, false), OnClose::Destroy);
        // explicit disconnect while a retry is scheduled: silent stop
        c.stop_retrying = false;
        assert!(matches!(
            s.on_close(&c, false, false),
            OnClose::RetryAfter(_)
        ));
        assert_eq!(s.on_timer(&c, true), OnTimer::Stop);
    }

    #[test]
    fn exponential_backoff_grows_is_capped_and_jittered() {
        let c = RetryConfig {
            retry: Duration::from_millis(100),
            backoff: Backoff::Exponential {
                max: Duration::from_secs(2),
                jitter: 0.2,
            },
            ..RetryConfig::default()
        };
        let mut s = RetryState::new(&c);
        let mut delays = Vec::new();
        for _ in 0..10 {
            match s.on_close(&c, false, false) {
                OnClose::RetryAfter(d) => delays.push(d),
                OnClose::Destroy => panic!("unlimited budget destroyed"),
            }
            s.on_timer(&c, false);
        }
        for (k, d) in delays.iter().enumerate() {
            let base = (100u64 << k).min(2000) as f64;
            let ms = d.as_secs_f64() * 1000.0;
            assert!(
                ms >= base * 0.8 - 1e-6 && ms <= base * 1.2 + 1e-6,
                "k={k} {ms}"
            );
        }
        s.on_connect(&c);
        match s.on_close(&c, false, false) {
            OnClose::RetryAfter(d) => assert!(d <= Duration::from_millis(120)),
            OnClose::Destroy => panic!(),
        }
    }
}
