//! The sequential session plan (dropbox.md §3, §11): one request at a time, each at the
//! offset the server confirmed.
//!
//! ```text
//!  start [chunk 0] ──▶ append [o, o+c) ──▶ … ──▶ finish [last chunk]      (commit, default)
//!                                          └──▶ append [last] close ──▶ finish [] (commit,
//!                                                                  last_chunk_in_finish off)
//!                                          └──▶ append [last] close ──▶ Closed (batch)
//!  file ≤ one chunk: start [whole file] close ──▶ finish []  (or Closed)
//! ```
//!
//! Chunk boundaries are fixed at multiples of the chunk size, so after a resync to an
//! offset inside a chunk the rest of that chunk is resent (from the bytes still held)
//! and the following chunks are aligned again.

use super::{Op, OpKind};
use crate::range::ByteRange;

/// What the server holds of a sequential session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seq {
    /// Bytes the server confirmed.
    pub offset: u64,
    /// The session is closed (a closing start/append landed).
    pub closed: bool,
}

/// How [`resync`] says to continue after `incorrect_offset{correct_offset}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resync {
    /// Everything sent landed: continue at the end of the body.
    Landed,
    /// Part landed: continue at this offset (inside the body), or — for a resumed
    /// session — the server holds more than this process sent: continue there.
    At(u64),
    /// The server went back behind bytes it had confirmed: the session is unusable.
    Behind,
    /// The offset is beyond anything sent, or beyond the file.
    Impossible,
}

/// The end of the chunk that contains `offset`: chunks are `[k·chunk, (k+1)·chunk)`.
pub(crate) fn chunk_end(offset: u64, size: u64, chunk: u64) -> u64 {
    let chunk = chunk.max(1);
    (offset / chunk)
        .saturating_add(1)
        .saturating_mul(chunk)
        .min(size)
}

impl Seq {
    /// The start request: the first chunk, closing when it is the whole file.
    pub(crate) fn start_op(size: u64, chunk: u64) -> Op {
        let end = chunk_end(0, size, chunk);
        Op {
            kind: OpKind::Start,
            body: ByteRange::new(0, end).unwrap_or(ByteRange::empty(0)),
            close: end == size,
            chunk: None,
        }
    }

    /// The next request of an open (or just closed) session.
    pub(crate) fn next_op(&self, size: u64, chunk: u64, commit: bool, last_in_finish: bool) -> Op {
        let o = self.offset.min(size);
        let empty = ByteRange::empty(o);
        let op = |kind, end: u64, close| Op {
            kind,
            body: ByteRange::new(o, end).unwrap_or(empty),
            close,
            chunk: None,
        };
        if self.closed {
            return op(OpKind::Finish, o, false);
        }
        if o == size {
            return if commit {
                op(OpKind::Finish, o, false)
            } else {
                op(OpKind::Append, o, true)
            };
        }
        let end = chunk_end(o, size, chunk);
        if end == size {
            if commit && last_in_finish {
                op(OpKind::Finish, size, false)
            } else {
                op(OpKind::Append, size, true)
            }
        } else {
            op(OpKind::Append, end, false)
        }
    }
}

/// Interprets `incorrect_offset{c}` for a request whose body was `body`
/// (dropbox.md §11): `c == end` landed; `start ≤ c < end` resend the tail; `c` behind
/// `start` (which the server had confirmed) → the session is unusable; `c` beyond the
/// body → impossible, unless the session was resumed (this process does not know what
/// an earlier one sent) and `c` lies within the file.
pub(crate) fn resync(body: ByteRange, c: u64, size: u64, resumed: bool) -> Resync {
    if c > size {
        Resync::Impossible
    } else if c == body.end() {
        Resync::Landed
    } else if c >= body.start() && c < body.end() {
        Resync::At(c)
    } else if c < body.start() {
        Resync::Behind
    } else if resumed {
        Resync::At(c)
    } else {
        Resync::Impossible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> ByteRange {
        ByteRange::new(a, b).unwrap()
    }

    #[test]
    fn small_files_take_two_requests() {
        let s = Seq::start_op(10, 100);
        assert_eq!((s.body, s.close), (r(0, 10), true));
        let z = Seq::start_op(0, 100);
        assert_eq!((z.body, z.close), (r(0, 0), true));
        let after = Seq {
            offset: 10,
            closed: true,
        };
        let f = after.next_op(10, 100, true, true);
        assert_eq!((f.kind, f.body), (OpKind::Finish, r(10, 10)));
    }

    #[test]
    fn plan_of_a_large_file() {
        let size = 250;
        let s = Seq::start_op(size, 100);
        assert_eq!((s.body, s.close), (r(0, 100), false));
        let mut q = Seq {
            offset: 100,
            closed: false,
        };
        let a = q.next_op(size, 100, true, true);
        assert_eq!(
            (a.kind, a.body, a.close),
            (OpKind::Append, r(100, 200), false)
        );
        q.offset = 200;
        let f = q.next_op(size, 100, true, true);
        assert_eq!((f.kind, f.body), (OpKind::Finish, r(200, 250)));
        let c = q.next_op(size, 100, true, false);
        assert_eq!(
            (c.kind, c.body, c.close),
            (OpKind::Append, r(200, 250), true)
        );
        let b = q.next_op(size, 100, false, true);
        assert_eq!(
            (b.kind, b.body, b.close),
            (OpKind::Append, r(200, 250), true)
        );
        // A resync inside a chunk resends its tail, then realigns.
        q.offset = 130;
        assert_eq!(q.next_op(size, 100, true, true).body, r(130, 200));
        // All bytes in but not closed.
        q.offset = 250;
        assert_eq!(q.next_op(size, 100, true, true).kind, OpKind::Finish);
        let close = q.next_op(size, 100, false, true);
        assert_eq!(
            (close.kind, close.body, close.close),
            (OpKind::Append, r(250, 250), true)
        );
    }

    #[test]
    fn resync_rules() {
        let body = r(100, 200);
        assert_eq!(resync(body, 200, 1000, false), Resync::Landed);
        assert_eq!(resync(body, 150, 1000, false), Resync::At(150));
        assert_eq!(resync(body, 100, 1000, false), Resync::At(100));
        assert_eq!(resync(body, 99, 1000, false), Resync::Behind);
        assert_eq!(resync(body, 201, 1000, false), Resync::Impossible);
        assert_eq!(resync(body, 900, 1000, true), Resync::At(900));
        assert_eq!(resync(body, 1001, 1000, true), Resync::Impossible);
        assert_eq!(resync(r(0, 0), 0, 0, false), Resync::Landed);
    }

    #[test]
    fn chunk_ends_saturate() {
        assert_eq!(chunk_end(u64::MAX - 1, u64::MAX, 7), u64::MAX);
        assert_eq!(chunk_end(5, 3, 0), 3);
    }
}
