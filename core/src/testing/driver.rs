//! An in-memory driver: runs any [`UploadMachine`] against a request→response function
//! with a [`VirtualClock`], no sockets and no sleeps. Checks the adapter-visible
//! invariants as it goes (at most one request in flight, no `Authorization` on a
//! pre-authenticated URL, bounded steps).

use super::VirtualClock;
use crate::{AccessToken, Event, Output, TransportFailure, UploadError, UploadMachine};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// What the "network" did with a request.
#[derive(Debug)]
pub enum Delivery {
    /// The response arrived at once.
    Response(http::Response<Bytes>),
    /// The response arrives after this delay (a slow server); if that is past the
    /// request's deadline, the driver reports [`TransportFailure::TimedOut`] instead.
    Delayed(Duration, http::Response<Bytes>),
    /// No response: a transport failure.
    Failure(TransportFailure),
}

/// What a run did.
#[derive(Debug)]
pub struct DriveReport<C> {
    /// The final result, or `None` when the run was stopped (step bound or a stuck
    /// machine).
    pub result: Option<Result<C, UploadError>>,
    /// Outputs polled.
    pub steps: u64,
    /// Requests sent.
    pub requests: u64,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// Largest `NeedData` range.
    pub max_data_len: u64,
    /// Requests to a pre-authenticated URL that carried `Authorization`.
    pub auth_on_secret_uri: u64,
    /// True when the machine waited with nothing in flight and no timer.
    pub stuck: bool,
    /// Virtual time the run took.
    pub elapsed: Duration,
    /// True when `on_event` stopped the run (a simulated crash).
    pub stopped: bool,
    /// Requests the machine had asked to send when the run was stopped (never
    /// delivered to `server`).
    pub abandoned: Vec<http::Request<Bytes>>,
}

/// Drives `m` until it finishes or `max_steps` outputs were polled.
///
/// `server` answers each request at the given wall time; `on_event` sees every event and
/// returns true to stop the run at the machine's next wait (a simulated crash: the
/// requests it was about to send are returned undelivered); `on_token` answers `Event::TokenNeeded` (returning `None` leaves the machine waiting,
/// which ends the run as stuck).
pub fn drive<M: UploadMachine>(
    m: &mut M,
    clock: &mut VirtualClock,
    source: &Bytes,
    max_steps: u64,
    mut server: impl FnMut(SystemTime, http::Request<Bytes>) -> Delivery,
    mut on_event: impl FnMut(&Event<M::Checkpoint>) -> bool,
    mut on_token: impl FnMut() -> Option<AccessToken>,
) -> DriveReport<M::Completed> {
    let start = clock.elapsed();
    let mut report = DriveReport {
        result: None,
        steps: 0,
        requests: 0,
        max_in_flight: 0,
        max_data_len: 0,
        auth_on_secret_uri: 0,
        stuck: false,
        elapsed: Duration::ZERO,
        stopped: false,
        abandoned: Vec::new(),
    };
    let mut stopping = false;
    let mut pending = VecDeque::new();
    m.handle_wall_clock(clock.now(), clock.wall());
    while report.steps < max_steps {
        report.steps += 1;
        match m.poll_output(clock.now()) {
            Output::Send(req) => {
                if req.has_secret_uri() && req.request().headers().contains_key("authorization") {
                    report.auth_on_secret_uri += 1;
                }
                report.requests += 1;
                pending.push_back(req);
                report.max_in_flight = report.max_in_flight.max(pending.len());
            }
            Output::NeedData { offset, len } => {
                report.max_data_len = report.max_data_len.max(len);
                let (Ok(a), Ok(b)) = (usize::try_from(offset), usize::try_from(offset + len))
                else {
                    break;
                };
                let Some(data) = source.get(a..b).map(|_| source.slice(a..b)) else {
                    break;
                };
                if m.provide_data(offset, data).is_err() {
                    break;
                }
            }
            Output::Event(e) => {
                stopping |= on_event(&e);
                if matches!(e, Event::TokenNeeded) {
                    if let Some(t) = on_token() {
                        m.set_access_token(t);
                    }
                }
            }
            Output::Wait(w) => {
                if stopping {
                    report.stopped = true;
                    report.abandoned = pending.drain(..).map(|r| r.into_request()).collect();
                    break;
                }
                if let Some(req) = pending.pop_front() {
                    let (id, request, deadline) = req.into_parts();
                    let delivery = server(clock.wall(), request);
                    m.handle_wall_clock(clock.now(), clock.wall());
                    let outcome = match delivery {
                        Delivery::Response(r) => m.handle_response(clock.now(), id, r),
                        Delivery::Failure(f) => m.handle_failure(clock.now(), id, f),
                        Delivery::Delayed(d, r) => {
                            clock.advance(d);
                            m.handle_wall_clock(clock.now(), clock.wall());
                            if deadline.is_some_and(|t| clock.now() > t) {
                                m.handle_failure(clock.now(), id, TransportFailure::TimedOut)
                            } else {
                                m.handle_response(clock.now(), id, r)
                            }
                        }
                    };
                    if outcome.is_err() {
                        break;
                    }
                } else if let Some(t) = w {
                    clock.advance_to(t);
                    m.handle_wall_clock(clock.now(), clock.wall());
                    m.handle_timeout(clock.now());
                } else {
                    report.stuck = true;
                    break;
                }
            }
            Output::Finished(r) => {
                report.result = Some(r);
                break;
            }
        }
    }
    report.elapsed = clock.elapsed() - start;
    report
}
