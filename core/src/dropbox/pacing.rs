//! What both Dropbox machines share: the retry budget with its pause, and the
//! classification of a response by status (dropbox.md §7, §11 "Retry classes").

use super::config::DropboxConfig;
use super::wire::{self, ApiError};
use crate::error::UploadError;
use crate::retry::{BudgetExhausted, Jitter, MAX_WAIT, RetryBudget, backoff_delay};
use crate::wallclock::RetryAfter;
use http::HeaderMap;
use std::time::{Duration, Instant, SystemTime};

/// The retry budget plus the time before which no new request may go.
#[derive(Clone, Debug)]
pub(crate) struct Pacer {
    budget: RetryBudget,
    jitter: Jitter,
    pause_until: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(seed: u64, progress: u64) -> Self {
        Self {
            budget: RetryBudget::new(progress),
            jitter: Jitter::new(seed),
            pause_until: None,
        }
    }

    /// Forgets the failures (a new session).
    pub(crate) fn reset(&mut self, progress: u64) {
        self.budget.reset(progress);
    }

    /// Records progress; failures are forgotten when it moves past its high-water mark.
    pub(crate) fn observe(&mut self, progress: u64) {
        self.budget.observe_offset(progress);
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.budget.attempts()
    }

    pub(crate) fn paused(&self, now: Instant) -> bool {
        self.pause_until.is_some_and(|p| now < p)
    }

    /// The end of the current pause, if one is running at `now`.
    pub(crate) fn deadline(&self, now: Instant) -> Option<Instant> {
        self.pause_until.filter(|p| *p > now)
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) {
        if self.pause_until.is_some_and(|p| now >= p) {
            self.pause_until = None;
        }
    }

    /// Records one failure: returns the delay (and pauses new requests until then), or
    /// the `TooManyRetries` error when the budget is used up.
    pub(crate) fn fail(
        &mut self,
        cfg: &DropboxConfig,
        now: Instant,
        cause: UploadError,
        hint: Option<Duration>,
    ) -> Result<(Duration, UploadError), UploadError> {
        match self.budget.fail(&cfg.retry, now, hint, &mut self.jitter) {
            Ok(delay) => match now.checked_add(delay) {
                Some(u) => {
                    self.pause_until = Some(self.pause_until.map_or(u, |p| p.max(u)));
                    Ok((delay, cause))
                }
                None => Err(UploadError::TooManyRetries {
                    attempts: self.budget.attempts(),
                    elapsed: Duration::ZERO,
                    last: Box::new(cause),
                }),
            },
            Err(ex) => {
                let (attempts, elapsed) = match ex {
                    BudgetExhausted::Attempts { attempts, elapsed } => (attempts, elapsed),
                    BudgetExhausted::Time { elapsed } => (self.budget.attempts(), elapsed),
                };
                Err(UploadError::TooManyRetries {
                    attempts,
                    elapsed,
                    last: Box::new(cause),
                })
            }
        }
    }

    /// The wait after a 429 or lock contention: the server's hint, never below
    /// `min_throttle_wait` (dropbox.md §11: never 0 s); without a hint, the backoff
    /// schedule, floored the same way. A hint is clamped like every wait (to
    /// `RetryPolicy::max_retry_after` and [`MAX_WAIT`]), so the wait reported in
    /// `UploadError::Throttled`/`WriteContention` is the one the machine makes (a
    /// `Retry-After` or body `retry_after` of ten years, issue 7).
    pub(crate) fn throttle_wait(
        &mut self,
        cfg: &DropboxConfig,
        hint: Option<Duration>,
    ) -> Duration {
        let floor = cfg.min_throttle_wait;
        let wait = match hint {
            Some(h) => h.max(floor),
            None => {
                let attempt = self.budget.attempts().saturating_add(1);
                backoff_delay(&cfg.retry, attempt, None, self.jitter.next_u64()).max(floor)
            }
        };
        wait.min(cfg.retry.max_retry_after).min(MAX_WAIT)
    }
}

/// How to react to one response.
#[derive(Debug)]
pub(crate) enum Class {
    /// 2xx.
    Success,
    /// Wait, then send again (429, 5xx, `too_many_write_operations`).
    Retry {
        cause: UploadError,
        hint: Option<Duration>,
        /// The request may have been applied (5xx).
        ambiguous: bool,
    },
    /// 401 `expired_access_token`.
    Token,
    /// A 409 route error for the machine to interpret.
    Api(ApiError),
    /// Retrying cannot help.
    Fatal(UploadError),
}

/// `Retry-After` as seconds (decimal allowed) or an HTTP-date.
fn retry_after_header(headers: &HeaderMap, wall_now: Option<SystemTime>) -> Option<Duration> {
    if let Some(d) = wire::retry_after_secs(headers) {
        return Some(d);
    }
    match RetryAfter::parse(wire::header_str(headers, "retry-after")?)? {
        RetryAfter::Delay(d) => Some(d),
        ra @ RetryAfter::At(_) => Some(ra.delay_from(wall_now?)),
    }
}

/// Classifies a response by status (dropbox.md §7.2):
/// - 2xx: success;
/// - 429: wait max(`Retry-After`, body `retry_after`, `min_throttle_wait`), a plain-text
///   body is fine; `too_many_write_operations` reasons are lock contention;
/// - 409 `too_many_write_operations`: like 429;
/// - other 409: route error;
/// - 5xx: backoff (honouring `Retry-After`), the request may have been applied;
/// - 401 `expired_access_token`: a new token; other 401, 400, 403, 422…: fatal.
pub(crate) fn classify(
    pacer: &mut Pacer,
    cfg: &DropboxConfig,
    wall_now: Option<SystemTime>,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Class {
    let cap = cfg.max_response_body;
    match status {
        200..=299 => Class::Success,
        429 => {
            let e = ApiError::parse(body, cap);
            let header = retry_after_header(headers, wall_now);
            let hint = match (header, e.retry_after) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let wait = pacer.throttle_wait(cfg, hint);
            let cause = if e.first() == Some("too_many_write_operations") {
                UploadError::WriteContention {
                    status,
                    retry_after: Some(wait),
                }
            } else {
                UploadError::Throttled {
                    status,
                    retry_after: Some(wait),
                }
            };
            Class::Retry {
                cause,
                hint: Some(wait),
                ambiguous: false,
            }
        }
        409 => {
            let e = ApiError::parse(body, cap);
            if e.first() == Some("too_many_write_operations") {
                let wait = pacer.throttle_wait(cfg, retry_after_header(headers, wall_now));
                return Class::Retry {
                    cause: UploadError::WriteContention {
                        status,
                        retry_after: Some(wait),
                    },
                    hint: Some(wait),
                    ambiguous: false,
                };
            }
            Class::Api(e)
        }
        500..=599 => {
            let e = ApiError::parse(body, cap);
            Class::Retry {
                cause: UploadError::ServerError {
                    status,
                    codes: e.tags,
                },
                hint: retry_after_header(headers, wall_now),
                ambiguous: true,
            }
        }
        401 => {
            let e = ApiError::parse(body, cap);
            if e.first() == Some("expired_access_token") {
                Class::Token
            } else {
                Class::Fatal(UploadError::Rejected {
                    status,
                    codes: e.tags,
                })
            }
        }
        400 => {
            let e = ApiError::parse(body, cap);
            Class::Fatal(UploadError::BadRequest {
                status,
                message: e.text.unwrap_or_default(),
            })
        }
        _ => {
            let e = ApiError::parse(body, cap);
            Class::Fatal(UploadError::Rejected {
                status,
                codes: e.tags,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cfg() -> DropboxConfig {
        DropboxConfig::default()
    }

    #[test]
    fn throttles_wait_for_the_larger_hint_and_never_zero() {
        let c = cfg();
        let mut p = Pacer::new(1, 0);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        let body = br#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":7}}"#;
        match classify(&mut p, &c, None, 429, &h, body) {
            Class::Retry { hint, cause, .. } => {
                assert_eq!(hint, Some(Duration::from_secs(7)));
                assert!(matches!(cause, UploadError::Throttled { status: 429, .. }));
            }
            other => panic!("{other:?}"),
        }
        // Plain text, no header: the floor, never 0 s.
        match classify(
            &mut p,
            &c,
            None,
            429,
            &HeaderMap::new(),
            b"too_many_requests",
        ) {
            Class::Retry { hint: Some(w), .. } => assert!(w >= Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        // Retry-After: 0 still waits the floor.
        h.insert("retry-after", HeaderValue::from_static("0"));
        match classify(&mut p, &c, None, 429, &h, b"") {
            Class::Retry { hint, .. } => assert_eq!(hint, Some(Duration::from_secs(1))),
            other => panic!("{other:?}"),
        }
        let lock = br#"{"error_summary": "too_many_write_operations/.", "error": {"reason": {".tag": "too_many_write_operations"}}}"#;
        match classify(&mut p, &c, None, 429, &h, lock) {
            Class::Retry { cause, .. } => {
                assert!(matches!(
                    cause,
                    UploadError::WriteContention { status: 429, .. }
                ))
            }
            other => panic!("{other:?}"),
        }
        let lock409 = br#"{"error_summary":"too_many_write_operations/..","error":{".tag":"too_many_write_operations"}}"#;
        match classify(&mut p, &c, None, 409, &HeaderMap::new(), lock409) {
            Class::Retry { cause, hint, .. } => {
                assert!(matches!(
                    cause,
                    UploadError::WriteContention { status: 409, .. }
                ));
                assert!(hint.unwrap() >= Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statuses_map_to_classes() {
        let c = cfg();
        let mut p = Pacer::new(1, 0);
        let h = HeaderMap::new();
        assert!(matches!(
            classify(&mut p, &c, None, 200, &h, b"null"),
            Class::Success
        ));
        assert!(matches!(
            classify(&mut p, &c, None, 503, &h, b""),
            Class::Retry {
                ambiguous: true,
                ..
            }
        ));
        assert!(matches!(
            classify(
                &mut p,
                &c,
                None,
                401,
                &h,
                br#"{"error":{".tag":"expired_access_token"}}"#
            ),
            Class::Token
        ));
        assert!(matches!(
            classify(
                &mut p,
                &c,
                None,
                401,
                &h,
                br#"{"error":{".tag":"invalid_access_token"}}"#
            ),
            Class::Fatal(UploadError::Rejected { status: 401, .. })
        ));
        match classify(
            &mut p,
            &c,
            None,
            400,
            &h,
            b"Error in call to API function: bad",
        ) {
            Class::Fatal(UploadError::BadRequest { message, .. }) => {
                assert!(message.contains("bad"))
            }
            other => panic!("{other:?}"),
        }
        match classify(
            &mut p,
            &c,
            None,
            403,
            &h,
            br#"{"error":{".tag":"no_permission"}}"#,
        ) {
            Class::Fatal(UploadError::Rejected { status: 403, codes }) => {
                assert_eq!(codes.0, ["no_permission"])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(&mut p, &c, None, 409, &h, br#"{"error":{".tag":"closed"}}"#),
            Class::Api(_)
        ));
    }

    #[test]
    fn budget_exhaustion_reports_the_last_cause() {
        let mut c = cfg();
        c.retry.max_attempts = 2;
        let mut p = Pacer::new(1, 0);
        let t = Instant::now();
        assert!(p.fail(&c, t, UploadError::SessionNotFound, None).is_ok());
        assert!(p.paused(t));
        assert!(p.fail(&c, t, UploadError::SessionNotFound, None).is_ok());
        match p.fail(&c, t, UploadError::SessionClosed, None) {
            Err(UploadError::TooManyRetries {
                attempts: 2, last, ..
            }) => {
                assert_eq!(*last, UploadError::SessionClosed)
            }
            other => panic!("{other:?}"),
        }
    }
}
