//! The concurrent session plan (dropbox.md §4, §11).
//!
//! ```text
//!  start (empty, session_type concurrent)
//!    │
//!    ▼           up to N in flight, any completion order
//!  append chunk 0 ┐
//!  append chunk 1 ├──▶ every chunk but the last done ──▶ append last chunk, close
//!  append chunk 2 ┘    (low-water mark + completed set)        │
//!     …                                                       ▼
//!                                          finish (empty, offset = size) / Closed
//! ```
//!
//! Chunks are `[k·chunk, (k+1)·chunk)` with `chunk` a multiple of 4 MiB, so every
//! append's offset is aligned and every non-final length is a multiple of 4 MiB. The
//! last chunk (any length, possibly a whole chunk) carries `close: true` and is sent only
//! after all the others are acknowledged: once a concurrent session is closed it takes no
//! more data (§12 rule 42). A retried append resends identical bytes, which the server
//! accepts as idempotent (rule 41).
//!
//! Completion is tracked per chunk: the low-water mark (every chunk below it is done)
//! plus the set of done chunks above it. Dispatch never runs more than
//! 64 chunks (`LOOKAHEAD`) ahead of the low-water mark, which bounds that set (and the
//! out-of-order block digests of the content hash) when an early chunk keeps failing.

use super::{Op, OpKind};
use crate::range::ByteRange;
use std::collections::BTreeSet;

/// How far (in chunks) dispatch may run ahead of the low-water mark, at least.
pub(crate) const LOOKAHEAD: u64 = 64;

/// Progress of a concurrent session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conc {
    pub chunk: u64,
    pub size: u64,
    /// Number of chunks (≥ 2: smaller files use the sequential path).
    pub count: u64,
    /// Chunks `0..low_water` are done.
    pub low_water: u64,
    /// Done chunks at or above the low-water mark.
    pub done: BTreeSet<u64>,
    /// Chunks with a request in flight.
    pub in_flight: BTreeSet<u64>,
    /// Bytes of all done chunks.
    pub done_bytes: u64,
    /// The closing append landed.
    pub closed: bool,
}

impl Conc {
    pub(crate) fn new(size: u64, chunk: u64) -> Self {
        let chunk = chunk.max(1);
        Self {
            chunk,
            size,
            count: size.div_ceil(chunk),
            low_water: 0,
            done: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            done_bytes: 0,
            closed: false,
        }
    }

    /// The bytes of chunk `k`.
    pub(crate) fn range(&self, k: u64) -> ByteRange {
        let start = k.saturating_mul(self.chunk).min(self.size);
        let end = start.saturating_add(self.chunk).min(self.size);
        ByteRange::new(start, end).unwrap_or(ByteRange::empty(start))
    }

    /// The closing chunk.
    pub(crate) fn last(&self) -> u64 {
        self.count.saturating_sub(1)
    }

    /// The byte offset below which everything is in the session.
    pub(crate) fn low_water_bytes(&self) -> u64 {
        self.range(self.low_water).start()
    }

    fn is_done(&self, k: u64) -> bool {
        k < self.low_water || self.done.contains(&k)
    }

    /// The append to send next, if one may go now (`parallelism` caps the chunks in
    /// flight).
    pub(crate) fn next_op(&self, parallelism: u32) -> Option<Op> {
        if self.closed || self.in_flight.len() >= parallelism.max(1) as usize {
            return None;
        }
        let last = self.last();
        let horizon = self
            .low_water
            .saturating_add(LOOKAHEAD.max(4 * u64::from(parallelism)));
        let mut k = self.low_water;
        while k < last && k < horizon {
            if !self.is_done(k) && !self.in_flight.contains(&k) {
                return Some(self.op(k));
            }
            k += 1;
        }
        // The closing append goes alone and last.
        if self.low_water == last && self.in_flight.is_empty() && !self.is_done(last) {
            return Some(self.op(last));
        }
        None
    }

    /// The bodies of the first `n` chunks dispatch would send next, besides those in
    /// flight, in dispatch order (read-ahead candidates; the closing chunk comes last,
    /// once every other chunk is done or in flight).
    pub(crate) fn upcoming(&self, n: usize, parallelism: u32) -> Vec<ByteRange> {
        let mut out = Vec::new();
        if self.closed || n == 0 {
            return out;
        }
        let last = self.last();
        let horizon = self
            .low_water
            .saturating_add(LOOKAHEAD.max(4 * u64::from(parallelism)));
        let mut k = self.low_water;
        while k < last {
            if out.len() >= n || k >= horizon {
                return out;
            }
            if !self.is_done(k) && !self.in_flight.contains(&k) {
                out.push(self.range(k));
            }
            k += 1;
        }
        if out.len() < n && !self.is_done(last) && !self.in_flight.contains(&last) {
            out.push(self.range(last));
        }
        out
    }

    fn op(&self, k: u64) -> Op {
        Op {
            kind: OpKind::Append,
            body: self.range(k),
            close: k == self.last(),
            chunk: Some(k),
        }
    }

    /// Marks chunk `k` done; returns false when it already was.
    pub(crate) fn complete(&mut self, k: u64) -> bool {
        self.in_flight.remove(&k);
        if k >= self.count || self.is_done(k) {
            return false;
        }
        self.done_bytes = self.done_bytes.saturating_add(self.range(k).len());
        self.done.insert(k);
        while self.done.remove(&self.low_water) {
            self.low_water += 1;
        }
        if k == self.last() {
            self.closed = true;
        }
        true
    }

    /// True when every chunk is done.
    pub(crate) fn all_done(&self) -> bool {
        self.low_water >= self.count
    }

    /// Forgets the session's progress (a new session starts).
    pub(crate) fn reset(&mut self) {
        self.low_water = 0;
        self.done.clear();
        self.in_flight.clear();
        self.done_bytes = 0;
        self.closed = false;
    }

    /// Restores progress from a checkpoint: `low_water` in bytes and the done chunks
    /// above it. Returns false when they do not fit this layout.
    pub(crate) fn restore(&mut self, low_water_bytes: u64, done: &[u64], closed: bool) -> bool {
        if low_water_bytes % self.chunk != 0 && low_water_bytes != self.size {
            return false;
        }
        self.reset();
        let lw = if low_water_bytes == self.size {
            self.count
        } else {
            low_water_bytes / self.chunk
        };
        if lw > self.count {
            return false;
        }
        for k in 0..lw.min(self.count) {
            // O(count) once, at resume time.
            self.done_bytes += self.range(k).len();
        }
        self.low_water = lw;
        for &k in done {
            if k <= lw || k >= self.count {
                return false;
            }
            if !self.complete(k) {
                return false;
            }
        }
        // The closing chunk is done only when the session is closed, and vice versa.
        if self.all_done() != closed {
            return false;
        }
        self.closed = closed;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M4: u64 = 4_194_304;

    #[test]
    fn dispatch_order_parallelism_and_closing_last() {
        let mut c = Conc::new(3 * M4 + 5, M4);
        assert_eq!(c.count, 4);
        let mut sent = vec![];
        while let Some(op) = c.next_op(2) {
            c.in_flight.insert(op.chunk.unwrap());
            sent.push(op.chunk.unwrap());
        }
        assert_eq!(sent, [0, 1]);
        assert!(c.complete(1));
        assert_eq!(c.low_water, 0);
        let op = c.next_op(2).unwrap();
        assert_eq!((op.chunk, op.close), (Some(2), false));
        c.in_flight.insert(2);
        assert!(c.next_op(2).is_none());
        assert!(c.complete(2));
        // chunk 0 still in flight: the closing chunk must wait.
        assert!(c.next_op(2).is_none());
        assert!(c.complete(0));
        assert_eq!(c.low_water, 3);
        let last = c.next_op(2).unwrap();
        assert_eq!(
            (last.chunk, last.close, last.body.len()),
            (Some(3), true, 5)
        );
        assert_eq!(last.body.start() % M4, 0);
        c.in_flight.insert(3);
        assert!(c.complete(3));
        assert!(c.closed && c.all_done());
        assert_eq!(c.done_bytes, 3 * M4 + 5);
        assert!(!c.complete(3), "completing twice is a no-op");
        assert_eq!(c.done_bytes, 3 * M4 + 5);
    }

    #[test]
    fn exact_multiple_closes_with_a_full_chunk() {
        let c = Conc::new(4 * M4, 2 * M4);
        assert_eq!(c.count, 2);
        let r = c.range(1);
        assert_eq!((r.start(), r.len()), (2 * M4, 2 * M4));
    }

    #[test]
    fn restore_checks_its_input() {
        let mut c = Conc::new(10 * M4 + 1, M4);
        assert!(c.restore(2 * M4, &[4, 5], false));
        assert_eq!((c.low_water, c.done.len()), (2, 2));
        assert_eq!(c.done_bytes, 4 * M4);
        assert!(!c.restore(M4 + 1, &[], false));
        assert!(!c.restore(2 * M4, &[1], false));
        assert!(!c.restore(2 * M4, &[11], false));
        assert!(!c.restore(2 * M4, &[], true));
        assert!(c.restore(10 * M4 + 1, &[], true));
        assert!(c.all_done());
        assert!(!c.restore(20 * M4, &[], false));
    }

    #[test]
    fn lookahead_bounds_the_done_set() {
        let mut c = Conc::new(1000 * M4, M4);
        c.in_flight.insert(0);
        let mut n = 0;
        while let Some(op) = c.next_op(64) {
            let k = op.chunk.unwrap();
            c.in_flight.insert(k);
            c.complete(k);
            n += 1;
            assert!(n < 10_000);
        }
        assert!(c.done.len() as u64 <= LOOKAHEAD.max(256));
    }
}
