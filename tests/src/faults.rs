//! Seeded fault plans: per-request probabilities plus scripted one-shot faults
//! (onedrive.md §11 rules 39-45, dropbox.md §12 rules 66-72).
//!
//! The plan is decided per request when its head arrives, from a ChaCha8 generator seeded
//! by [`FaultPlan::seed`], so a run reproduces exactly from its seed as long as the
//! requests arrive in the same order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What kind of request a fault may apply to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteKind {
    /// OneDrive `createUploadSession` POST.
    OneDriveCreate,
    /// OneDrive fragment PUT to an `uploadUrl` (any fragment).
    OneDrivePut,
    /// OneDrive status GET on an `uploadUrl`.
    OneDriveStatus,
    /// OneDrive commit POST on an `uploadUrl` (deferCommit) or sourceUrl PUT.
    OneDriveCommit,
    /// OneDrive DELETE of an `uploadUrl`.
    OneDriveCancel,
    /// Any other OneDrive route (item GET, simple upload).
    OneDriveOther,
    /// Dropbox `upload_session/start`.
    DropboxStart,
    /// Dropbox `upload_session/append[_v2]` or `append_batch`.
    DropboxAppend,
    /// Dropbox `upload_session/finish`.
    DropboxFinish,
    /// Dropbox batch RPC routes (`start_batch`, `finish_batch*`).
    DropboxBatch,
    /// Any other Dropbox route (`get_metadata`).
    DropboxOther,
}

impl RouteKind {
    /// True for routes whose request carries file data or commits it, where "applied,
    /// then failed" and lost responses are meaningful.
    pub fn mutates(self) -> bool {
        matches!(
            self,
            RouteKind::OneDrivePut
                | RouteKind::OneDriveCommit
                | RouteKind::OneDriveCreate
                | RouteKind::DropboxStart
                | RouteKind::DropboxAppend
                | RouteKind::DropboxFinish
                | RouteKind::DropboxBatch
        )
    }

    /// True for routes that carry file bytes in their body.
    pub fn carries_data(self) -> bool {
        matches!(
            self,
            RouteKind::OneDrivePut
                | RouteKind::DropboxStart
                | RouteKind::DropboxAppend
                | RouteKind::DropboxFinish
        )
    }

    /// True for OneDrive routes on an `uploadUrl`.
    pub fn is_upload_url(self) -> bool {
        matches!(
            self,
            RouteKind::OneDrivePut
                | RouteKind::OneDriveStatus
                | RouteKind::OneDriveCommit
                | RouteKind::OneDriveCancel
        )
    }

    /// True for Dropbox routes.
    pub fn is_dropbox(self) -> bool {
        matches!(
            self,
            RouteKind::DropboxStart
                | RouteKind::DropboxAppend
                | RouteKind::DropboxFinish
                | RouteKind::DropboxBatch
                | RouteKind::DropboxOther
        )
    }
}

/// One injected fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// 429 throttling; the request has no effect (onedrive 39; dropbox 67). `retry_after`
    /// is the `Retry-After` header (and Dropbox body `retry_after`); `None` omits both.
    /// `plain_text` selects Dropbox's plain-text 429 body.
    Throttle {
        /// Seconds to wait, or none.
        retry_after: Option<u64>,
        /// Dropbox only: plain-text body instead of JSON.
        plain_text: bool,
    },
    /// Dropbox 429 lock contention `too_many_write_operations` with a `Retry-After`
    /// header and no body `retry_after` (dropbox 66). No effect.
    LockContention {
        /// `Retry-After` header value in seconds.
        retry_after: u64,
    },
    /// Dropbox 409 `too_many_write_operations` from finish, or as a per-entry failure in
    /// a batch commit (dropbox 68). No effect.
    WriteContention,
    /// 503; no effect (onedrive 40; dropbox 69).
    Unavailable {
        /// Optional `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// A 5xx before the request was applied (no effect).
    ErrorBefore {
        /// 500, 502 or 504.
        status: u16,
    },
    /// The request is applied, then answered with this 5xx (onedrive 41; dropbox 69).
    ErrorAfter {
        /// 500, 502, 503 or 504.
        status: u16,
    },
    /// The request is applied, then the connection is closed without a response.
    LostResponse,
    /// The connection drops mid-body (onedrive 42; dropbox 70). With `keep_prefix`
    /// (OneDrive chaos mode) a random, usually unaligned prefix of the body is kept;
    /// otherwise nothing is stored.
    Reset {
        /// Keep the bytes that arrived before the drop.
        keep_prefix: bool,
    },
    /// The server stops reading the body for this long (a real stall on a socket; the
    /// pure model ignores it).
    Stall {
        /// Milliseconds.
        ms: u64,
    },
    /// OneDrive transient 404 "The upload session was not found" for a live session
    /// (onedrive 43). No effect.
    Transient404,
    /// The (successful) answer is delayed by this long (dropbox 71, slow finish; also
    /// OneDrive's final fragment).
    SlowResponse {
        /// Milliseconds.
        ms: u64,
    },
    /// Every token known so far expires now; the request gets 401 (dropbox 72, OneDrive
    /// 401 on create).
    ExpireToken,
}

impl Fault {
    /// True when the request's effect is applied although the client will not see a
    /// success (the ambiguous outcomes a client must resync from).
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            Fault::ErrorAfter { .. } | Fault::LostResponse | Fault::Reset { keep_prefix: true }
        )
    }
}

/// Per-request probabilities, each in `0.0..=1.0`, tried in the order of the fields. Only
/// faults that make sense for a route are drawn for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRates {
    /// 429 with `Retry-After`.
    pub throttle: f64,
    /// 503 with `Retry-After`.
    pub unavailable: f64,
    /// 5xx before applying.
    pub error_before: f64,
    /// 5xx after applying (mutating routes).
    pub error_after: f64,
    /// Lost response after applying (mutating routes).
    pub lost_response: f64,
    /// Connection drop mid-body, prefix discarded (data routes).
    pub reset_discard: f64,
    /// Connection drop mid-body, prefix kept (OneDrive PUT only).
    pub reset_keep_prefix: f64,
    /// Transient 404 (OneDrive upload URL routes).
    pub transient_404: f64,
    /// Slow finish (Dropbox finish, OneDrive PUT/commit).
    pub slow_finish: f64,
    /// Lock contention (Dropbox finish and batch routes).
    pub lock_contention: f64,
    /// Token expiry.
    pub expire_token: f64,
    /// Socket stall (server only).
    pub stall: f64,
    /// `Retry-After` used by random throttles (seconds, default 1 when 0).
    pub retry_after_secs: u64,
    /// Delay of random slow finishes and stalls in milliseconds (default 200 when 0).
    pub delay_ms: u64,
}

/// A fault fired once, on the `nth` (1-based) request that matches `route`
/// (or on the `nth` request of any kind when `route` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptedFault {
    /// Route filter.
    pub route: Option<RouteKind>,
    /// Which matching request (1-based).
    pub nth: u64,
    /// The fault.
    pub fault: Fault,
}

/// A complete, seeded fault plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultPlan {
    /// Seed of the generator.
    pub seed: u64,
    /// Random faults.
    pub rates: FaultRates,
    /// Scripted faults.
    pub scripted: Vec<ScriptedFault>,
}

impl FaultPlan {
    /// Returns a plan with no faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a scripted fault (builder style).
    pub fn script(mut self, route: Option<RouteKind>, nth: u64, fault: Fault) -> Self {
        self.scripted.push(ScriptedFault { route, nth, fault });
        self
    }
}

/// The running fault engine: plan, generator, and per-route counters.
#[derive(Clone, Debug)]
pub struct FaultEngine {
    plan: FaultPlan,
    rng: ChaCha8Rng,
    seen_total: u64,
    seen: std::collections::HashMap<RouteKind, u64>,
    fired: Vec<bool>,
    injected: u64,
}

impl FaultEngine {
    /// Starts an engine for `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        let fired = vec![false; plan.scripted.len()];
        Self {
            rng: ChaCha8Rng::seed_from_u64(plan.seed),
            plan,
            seen_total: 0,
            seen: Default::default(),
            fired,
            injected: 0,
        }
    }

    /// Returns the plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Number of faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected
    }

    /// Decides the fault (if any) for one request of kind `route`. Call exactly once per
    /// recognised request.
    pub fn decide(&mut self, route: RouteKind) -> Option<Fault> {
        self.seen_total += 1;
        let n = {
            let c = self.seen.entry(route).or_insert(0);
            *c += 1;
            *c
        };
        for (i, s) in self.plan.scripted.iter().enumerate() {
            if self.fired[i] {
                continue;
            }
            let hit = match s.route {
                Some(r) => r == route && s.nth == n,
                None => s.nth == self.seen_total,
            };
            if hit {
                self.fired[i] = true;
                self.injected += 1;
                return Some(s.fault.clone());
            }
        }
        let f = self.draw(route);
        if f.is_some() {
            self.injected += 1;
        }
        f
    }

    /// Draws a uniform number in `0..n` (n > 0) from the plan's generator; used for
    /// random prefix lengths so they reproduce from the seed.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.rng.random_range(0..n)
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        // Always draw, so the sequence does not depend on which rates are zero.
        let x: f64 = self.rng.random();
        p > 0.0 && x < p
    }

    fn draw(&mut self, route: RouteKind) -> Option<Fault> {
        let r = self.plan.rates.clone();
        let retry = if r.retry_after_secs == 0 {
            1
        } else {
            r.retry_after_secs
        };
        let delay = if r.delay_ms == 0 { 200 } else { r.delay_ms };
        let status5xx = [500u16, 502, 504][self.below(3) as usize];
        let finishing = matches!(
            route,
            RouteKind::DropboxFinish | RouteKind::OneDrivePut | RouteKind::OneDriveCommit
        );
        let contention = matches!(route, RouteKind::DropboxFinish | RouteKind::DropboxBatch);
        let candidates: [(f64, bool, Fault); 12] = [
            (
                r.throttle,
                true,
                Fault::Throttle {
                    retry_after: Some(retry),
                    plain_text: false,
                },
            ),
            (
                r.unavailable,
                true,
                Fault::Unavailable {
                    retry_after: Some(retry),
                },
            ),
            (
                r.error_before,
                true,
                Fault::ErrorBefore { status: status5xx },
            ),
            (
                r.error_after,
                route.mutates(),
                Fault::ErrorAfter { status: status5xx },
            ),
            (r.lost_response, route.mutates(), Fault::LostResponse),
            (
                r.reset_discard,
                route.carries_data(),
                Fault::Reset { keep_prefix: false },
            ),
            (
                r.reset_keep_prefix,
                route == RouteKind::OneDrivePut,
                Fault::Reset { keep_prefix: true },
            ),
            (r.transient_404, route.is_upload_url(), Fault::Transient404),
            (r.slow_finish, finishing, Fault::SlowResponse { ms: delay }),
            (
                r.lock_contention,
                contention,
                Fault::LockContention { retry_after: retry },
            ),
            (
                r.expire_token,
                route == RouteKind::OneDriveCreate || route.is_dropbox(),
                Fault::ExpireToken,
            ),
            (r.stall, route.carries_data(), Fault::Stall { ms: delay }),
        ];
        let mut chosen = None;
        for (p, applies, fault) in candidates {
            let hit = self.chance(p);
            if chosen.is_none() && applies && hit {
                chosen = Some(fault);
            }
        }
        chosen
    }
}
