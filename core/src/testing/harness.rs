//! The part of the scenario harnesses every protocol shares: a machine, a virtual clock
//! and its source bytes, polled until it asks for something a test must answer.

use super::{VirtualClock, start_wall};
use crate::{Event, OutgoingRequest, Output, RequestId, UploadError, UploadMachine};
use bytes::Bytes;
use std::fmt;
use std::time::Instant;

/// What a harness stopped at.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // consumed at once
pub enum Step<C> {
    /// A request to answer.
    Send(OutgoingRequest),
    /// A wait.
    Wait(Option<Instant>),
    /// The end.
    Finished(Result<C, UploadError>),
}

/// A machine plus a virtual clock and its source bytes.
pub struct MachineHarness<M: UploadMachine> {
    /// The machine.
    pub m: M,
    /// The clock.
    pub clock: VirtualClock,
    /// The source.
    pub data: Bytes,
    /// Every event seen so far.
    pub events: Vec<Event<M::Checkpoint>>,
    /// Every range handed over with `provide_data` (offset, len).
    pub reads: Vec<(u64, u64)>,
}

impl<M> fmt::Debug for MachineHarness<M>
where
    M: UploadMachine + fmt::Debug,
    M::Checkpoint: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineHarness")
            .field("m", &self.m)
            .field("clock", &self.clock)
            .field("events", &self.events)
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

impl<M> MachineHarness<M>
where
    M: UploadMachine,
    M::Completed: fmt::Debug,
    M::Checkpoint: Clone,
{
    /// Wraps a machine (for resumed ones), telling it the clock's wall time.
    pub fn with_machine(m: M, data: Bytes) -> Self {
        let clock = VirtualClock::new(start_wall());
        let mut h = Self {
            m,
            clock,
            data,
            events: Vec::new(),
            reads: Vec::new(),
        };
        let (now, wall) = (h.clock.now(), h.clock.wall());
        h.m.handle_wall_clock(now, wall);
        h
    }

    /// Polls once (raw output; events are recorded too).
    pub fn poll(&mut self) -> Output<M::Completed, M::Checkpoint> {
        let o = self.m.poll_output(self.clock.now());
        if let Output::Event(e) = &o {
            self.events.push(e.clone());
        }
        o
    }

    /// Polls until a request, a wait or the end, serving data and recording events.
    pub fn run(&mut self) -> Step<M::Completed> {
        for _ in 0..100_000 {
            match self.poll() {
                Output::Send(r) => return Step::Send(r),
                Output::NeedData { offset, len } => {
                    let data = self.data.slice(offset as usize..(offset + len) as usize);
                    self.reads.push((offset, len));
                    self.m.provide_data(offset, data).expect("data accepted");
                }
                Output::Event(_) => {}
                Output::Wait(w) => return Step::Wait(w),
                Output::Finished(r) => return Step::Finished(r),
            }
        }
        panic!("the machine did not settle");
    }

    /// Like [`run`](Self::run), but also lets timers fire until a request or the end.
    pub fn next_request(&mut self) -> Step<M::Completed> {
        for _ in 0..1000 {
            match self.run() {
                Step::Wait(Some(t)) => {
                    self.clock.advance_to(t);
                    let now = self.clock.now();
                    self.m.handle_timeout(now);
                }
                other => return other,
            }
        }
        panic!("no request after 1000 timers");
    }

    /// Expects a request (after letting timers fire).
    pub fn expect_send(&mut self) -> OutgoingRequest {
        match self.next_request() {
            Step::Send(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Collects every request the machine emits before it waits (concurrent sessions
    /// emit several).
    pub fn expect_sends(&mut self) -> Vec<OutgoingRequest> {
        let mut v = vec![self.expect_send()];
        loop {
            match self.run() {
                Step::Send(r) => v.push(r),
                Step::Wait(None) => return v,
                other => panic!("expected requests then Wait(None), got {other:?}"),
            }
        }
    }

    /// Expects the end.
    pub fn expect_finished(&mut self) -> Result<M::Completed, UploadError> {
        match self.next_request() {
            Step::Finished(r) => r,
            other => panic!("expected the end, got {other:?}"),
        }
    }

    /// Answers request `id`.
    pub fn respond(&mut self, id: RequestId, resp: http::Response<Bytes>) {
        let now = self.clock.now();
        self.m
            .handle_response(now, id, resp)
            .expect("known request");
    }
}
