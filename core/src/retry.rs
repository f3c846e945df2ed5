//! Retry policy: backoff as a pure function, a seeded jitter source, and the retry
//! budget (attempts per server offset plus total time, reset when the offset advances).
//!
//! A server hint (`Retry-After`) always wins over the policy's own schedule (STYLE §3),
//! clamped to [`RetryPolicy::max_retry_after`].

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How to wait between attempts and when to give up.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use upload_session::retry::{RetryPolicy, backoff_delay};
/// let p = RetryPolicy::default();
/// // With the jitter draw at its minimum, attempt 3 waits half of 1 s × 2².
/// assert_eq!(backoff_delay(&p, 3, None, 0), Duration::from_secs(2));
/// // A server hint wins.
/// assert_eq!(backoff_delay(&p, 3, Some(Duration::from_secs(41)), 0), Duration::from_secs(41));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Failed attempts allowed at one server offset before giving up (reset whenever the
    /// server's offset moves past its previous high-water mark).
    pub max_attempts: u32,
    /// Total time allowed since the first failure at the current offset (including the
    /// waits) before giving up. A wait that would end beyond it gives up at once.
    pub max_elapsed: Duration,
    /// First backoff delay (attempt 1), before jitter.
    pub initial_delay: Duration,
    /// Cap on the exponential delay, before jitter.
    pub max_delay: Duration,
    /// Cap on a server's `Retry-After`.
    pub max_retry_after: Duration,
    /// Seed of the jitter generator; fix it to reproduce a run.
    pub seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            max_elapsed: Duration::from_secs(30 * 60),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
            seed: 0x5EED_0F0D_D1CE,
        }
    }
}

/// No single wait is longer than this, whatever the policy or the server says: 24 hours
/// (hostile input, issue 7). A `Retry-After` of ten years, of `u64::MAX` seconds or an
/// HTTP-date in year 9999, and a policy whose `max_retry_after` or `max_delay` is
/// `Duration::MAX`, all wait at most this long (OneDrive for Business upload URLs die
/// 24 h after creation anyway, onedrive.md §4.2); the retry budget still applies on top.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Returns the delay before attempt number `attempt` (1-based).
///
/// With a server `hint`, the hint (clamped to `max_retry_after`) is the delay. Otherwise
/// the delay is "equal jitter" over an exponential schedule: with
/// `base = min(initial_delay × 2^(attempt-1), max_delay)`, the result lies in
/// `[base/2, base]`, chosen by `jitter` (any `u64`; 0 gives `base/2`, `u64::MAX` gives
/// `base`). Every result is at most [`MAX_WAIT`]. Pure: the same inputs always give the
/// same delay.
pub fn backoff_delay(
    policy: &RetryPolicy,
    attempt: u32,
    hint: Option<Duration>,
    jitter: u64,
) -> Duration {
    if let Some(h) = hint {
        return h.min(policy.max_retry_after).min(MAX_WAIT);
    }
    let exp = attempt.saturating_sub(1).min(40);
    let base = policy
        .initial_delay
        .checked_mul(1u32 << exp.min(31))
        .and_then(|d| if exp > 31 { None } else { Some(d) })
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
        .min(MAX_WAIT);
    let nanos = base.as_nanos().min(u128::from(u64::MAX)) as u64;
    let half = nanos / 2;
    let span = nanos - half; // the random part, in [0, span]
    let extra = if span == 0 {
        0
    } else {
        // Scale the draw onto [0, span] without modulo bias worth caring about.
        ((u128::from(jitter) * (u128::from(span) + 1)) >> 64) as u64
    };
    Duration::from_nanos(half + extra)
}

/// A small, seeded pseudo-random generator (SplitMix64) for jitter. Plain data, so a
/// machine that holds one stays deterministic and serialisable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// Returns a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Returns the next draw.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Why the budget refused another attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetExhausted {
    /// `max_attempts` failures at one offset.
    Attempts {
        /// Failures counted.
        attempts: u32,
        /// Time since the first of them.
        elapsed: Duration,
    },
    /// The next wait would end beyond `max_elapsed`.
    Time {
        /// Time since the first failure at this offset.
        elapsed: Duration,
    },
}

/// The retry budget of one upload: failures at the current server offset and the time
/// since the first of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    attempts: u32,
    first_failure: Option<Instant>,
    high_water: u64,
}

impl RetryBudget {
    /// Returns a fresh budget with high-water mark `offset`.
    pub fn new(offset: u64) -> Self {
        Self {
            attempts: 0,
            first_failure: None,
            high_water: offset,
        }
    }

    /// Failures counted at the current offset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The highest server offset seen so far.
    pub fn high_water(&self) -> u64 {
        self.high_water
    }

    /// Records the server's offset. Returns true (and resets the budget) when it moved
    /// past the high-water mark; an offset that goes backwards or stays put does not
    /// reset anything, so a server that oscillates cannot keep an upload alive forever.
    pub fn observe_offset(&mut self, offset: u64) -> bool {
        if offset > self.high_water {
            self.high_water = offset;
            self.attempts = 0;
            self.first_failure = None;
            true
        } else {
            false
        }
    }

    /// Forgets everything, for a fresh session starting at `offset`.
    pub fn reset(&mut self, offset: u64) {
        *self = Self::new(offset);
    }

    /// Records one failure at `now` and returns the delay before the next attempt, or
    /// why no attempt is left. `hint` is the server's `Retry-After`, if any.
    ///
    /// # Errors
    /// [`BudgetExhausted`] when the attempts or the time are used up.
    pub fn fail(
        &mut self,
        policy: &RetryPolicy,
        now: Instant,
        hint: Option<Duration>,
        jitter: &mut Jitter,
    ) -> Result<Duration, BudgetExhausted> {
        self.attempts = self.attempts.saturating_add(1);
        let first = *self.first_failure.get_or_insert(now);
        let elapsed = now.saturating_duration_since(first);
        if self.attempts > policy.max_attempts {
            return Err(BudgetExhausted::Attempts {
                attempts: self.attempts - 1,
                elapsed,
            });
        }
        let delay = backoff_delay(policy, self.attempts, hint, jitter.next_u64());
        if elapsed.saturating_add(delay) > policy.max_elapsed {
            return Err(BudgetExhausted::Time { elapsed });
        }
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = RetryPolicy::default();
        let lo: Vec<u64> = (1..=9)
            .map(|a| backoff_delay(&p, a, None, 0).as_millis() as u64)
            .collect();
        assert_eq!(
            lo,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        let hi: Vec<u64> = (1..=8)
            .map(|a| backoff_delay(&p, a, None, u64::MAX).as_millis() as u64)
            .collect();
        assert_eq!(hi, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
        assert_eq!(
            backoff_delay(&p, u32::MAX, None, 0),
            Duration::from_secs(30)
        );
        assert_eq!(backoff_delay(&p, 0, None, 0), Duration::from_millis(500));
    }

    #[test]
    fn hints_win_but_are_clamped() {
        let p = RetryPolicy::default();
        assert_eq!(
            backoff_delay(&p, 1, Some(Duration::ZERO), 7),
            Duration::ZERO
        );
        assert_eq!(
            backoff_delay(&p, 1, Some(Duration::from_secs(u64::MAX)), 7),
            p.max_retry_after
        );
        let open = RetryPolicy {
            max_retry_after: Duration::MAX,
            max_delay: Duration::MAX,
            initial_delay: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(backoff_delay(&open, 1, Some(Duration::MAX), 7), MAX_WAIT);
        assert_eq!(backoff_delay(&open, 3, None, u64::MAX), MAX_WAIT);
    }

    #[test]
    fn jitter_is_reproducible_from_its_seed() {
        let a: Vec<u64> = {
            let mut j = Jitter::new(42);
            (0..5).map(|_| j.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut j = Jitter::new(42);
            (0..5).map(|_| j.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut j = Jitter::new(43);
            (0..5).map(|_| j.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn budget_counts_attempts_and_resets_on_progress_only() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut b = RetryBudget::new(0);
        for _ in 0..3 {
            assert!(b.fail(&p, t0, None, &mut j).is_ok());
        }
        assert_eq!(
            b.fail(&p, t0, None, &mut j),
            Err(BudgetExhausted::Attempts {
                attempts: 3,
                elapsed: Duration::ZERO
            })
        );
        assert!(b.observe_offset(10));
        assert_eq!(b.attempts(), 0);
        assert!(b.fail(&p, t0, None, &mut j).is_ok());
        // going backwards or staying put does not reset
        assert!(!b.observe_offset(5));
        assert!(!b.observe_offset(10));
        assert_eq!(b.attempts(), 1);
    }

    #[test]
    fn budget_gives_up_when_the_wait_would_overrun_the_time_cap() {
        let p = RetryPolicy {
            max_elapsed: Duration::from_secs(100),
            ..RetryPolicy::default()
        };
        let t0 = Instant::now();
        let mut j = Jitter::new(1);
        let mut b = RetryBudget::new(0);
        assert!(
            b.fail(&p, t0, Some(Duration::from_secs(60)), &mut j)
                .is_ok()
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            b.fail(&p, later, Some(Duration::from_secs(41)), &mut j),
            Err(BudgetExhausted::Time {
                elapsed: Duration::from_secs(60)
            })
        );
    }
}
