//! Read-ahead (`UploadOptions::read_ahead`): the chunk sent next is read (and hashed)
//! while the current one is in flight, held, and sent from memory once a slot frees;
//! held bytes stay bounded and checkpoints never claim them.

use super::*;
use crate::dropbox::{Completed, DropboxUpload};
use crate::testing::dropbox::{DbxNext, DropboxHarness, DropboxScenario, offset, route};
use crate::{Output, UploadMachine};
use serde_json::json;

const SIZE: u64 = 20 * M + 5;
const C: u64 = 8 * M;

fn chunks_held(h: &DropboxHarness, chunk: u64) -> u64 {
    h.m.held_bytes().div_ceil(chunk)
}

#[test]
fn the_next_chunk_is_read_while_the_current_one_is_in_flight() {
    let mut h = DropboxScenario::new(SIZE).build();
    let start = h.expect_send();
    check_wire(&start);
    // While the start (chunk 0) travels, the machine asks for chunk 1 at once.
    assert!(matches!(h.run(), DbxNext::Wait(None)));
    assert_eq!(h.m.in_flight(), 1);
    assert_eq!(h.reads, [(0, C), (C, C)]);
    assert_eq!(h.m.held_bytes(), 2 * C);
    h.session(start.id(), "sid-1");
    // Chunk 1 goes from memory, no read before it.
    let a1 = h.expect_send();
    check_wire(&a1);
    assert_eq!((route(&a1), offset(&a1)), ("append_v2".to_string(), C));
    assert_eq!(
        a1.request().body(),
        &h.data.slice(C as usize..2 * C as usize)
    );
    // And the last chunk (in the finish) is read while chunk 1 travels.
    assert!(matches!(h.run(), DbxNext::Wait(None)));
    assert_eq!(h.reads, [(0, C), (C, C), (2 * C, SIZE - 2 * C)]);
    // The checkpoint claims only what the server acknowledged, not the read-ahead.
    let cp = h.m.checkpoint().unwrap();
    assert_eq!(cp.acknowledged, C);
    h.ok_null(a1.id());
    let fin = h.expect_send();
    check_wire(&fin);
    assert_eq!((route(&fin), offset(&fin)), ("finish".to_string(), 2 * C));
    // Nothing is left to read ahead behind the finish.
    assert!(matches!(h.run(), DbxNext::Wait(None)));
    assert_eq!(h.reads.len(), 3, "every byte read exactly once");
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    let done = h.expect_finished().unwrap();
    assert!(matches!(done, Completed::Committed(ref c) if c.hash_verified));
    assert_eq!(h.m.held_bytes(), 0);
}

#[test]
fn the_read_ahead_need_data_comes_right_after_the_send_and_before_the_wait() {
    // Raw outputs: Send(start), NeedData(chunk 1), Wait(None).
    let mut m = DropboxUpload::builder(crate::dropbox::CommitInfo::new("/a").unwrap(), SIZE)
        .access_token(crate::AccessToken::new("t").unwrap())
        .build()
        .unwrap();
    let now = std::time::Instant::now();
    let data = crate::testing::pattern(SIZE);
    let mut seen = Vec::new();
    loop {
        match m.poll_output(now) {
            Output::NeedData { offset, len } => {
                seen.push(format!("need {offset}+{len} in flight {}", m.in_flight()));
                let d = data.slice(offset as usize..(offset + len) as usize);
                m.provide_data(offset, d).unwrap();
            }
            Output::Send(r) => seen.push(format!("send {:?}", r.kind())),
            Output::Wait(None) => break,
            Output::Event(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            format!("need 0+{C} in flight 0"),
            "send CreateSession".to_string(),
            format!("need {C}+{C} in flight 1"),
        ]
    );
}

#[test]
fn read_ahead_zero_reads_only_after_the_answer() {
    let mut h = DropboxScenario::new(SIZE).read_ahead(0).build();
    let start = h.expect_send();
    assert!(matches!(h.run(), DbxNext::Wait(None)));
    assert_eq!(h.reads, [(0, C)]);
    h.session(start.id(), "sid-1");
    let a1 = h.expect_send();
    assert_eq!(h.reads, [(0, C), (C, C)]);
    assert!(matches!(h.run(), DbxNext::Wait(None)));
    assert_eq!(h.reads.len(), 2);
    h.ok_null(a1.id());
    let fin = h.expect_send();
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    assert!(h.expect_finished().is_ok());
}

#[test]
fn a_resync_inside_the_chunk_keeps_the_read_ahead_and_resends_the_tail_from_memory() {
    let mut h = DropboxScenario::new(SIZE).build();
    let a1 = h.to_uploading(); // chunk 1 in flight, chunk 2 read ahead
    assert!(matches!(h.run(), DbxNext::Wait(None)));
    let reads = h.reads.clone();
    assert_eq!(reads.last(), Some(&(2 * C, SIZE - 2 * C)));
    h.conflict(
        a1.id(),
        json!({".tag": "incorrect_offset", "correct_offset": C + 3 * M}),
    );
    let tail = h.expect_send();
    check_wire(&tail);
    assert_eq!(offset(&tail), C + 3 * M);
    assert_eq!(
        tail.request().body(),
        &h.data.slice((C + 3 * M) as usize..2 * C as usize)
    );
    h.ok_null(tail.id());
    let fin = h.expect_send();
    assert_eq!(offset(&fin), 2 * C);
    assert_eq!(h.reads, reads, "nothing read again");
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    assert!(h.expect_finished().is_ok());
}

#[test]
fn a_resync_behind_drops_the_read_ahead_and_reads_the_right_range_again() {
    let mut h = DropboxScenario::new(SIZE).build();
    let a1 = h.to_uploading();
    assert!(matches!(h.run(), DbxNext::Wait(None)));
    let before = h.reads.len();
    assert_eq!(h.m.held_bytes(), C + (SIZE - 2 * C));
    // The server went back behind confirmed bytes: a new session from byte 0.
    h.conflict(
        a1.id(),
        json!({".tag": "incorrect_offset", "correct_offset": 4 * M}),
    );
    let start = h.expect_send();
    assert_eq!(route(&start), "start");
    assert_eq!(start.request().body(), &h.data.slice(0..C as usize));
    // The held chunks 1 and 2 were dropped for chunk 0, then chunk 1 read ahead again.
    assert!(matches!(h.run(), DbxNext::Wait(None)));
    assert_eq!(&h.reads[before..], [(0, C), (C, C)]);
    assert_eq!(h.m.held_bytes(), 2 * C);
    h.session(start.id(), "sid-2");
    let a = h.expect_send();
    assert_eq!(offset(&a), C);
    h.ok_null(a.id());
    let fin = h.expect_send();
    let meta = h.metadata();
    h.ok(fin.id(), meta);
    let done = h.expect_finished().unwrap();
    assert!(matches!(done, Completed::Committed(ref c) if c.hash_verified));
}

/// Drives a whole upload, answering each request with success (and failing every third
/// append once, so retries keep bodies held), checking the memory bound at every step.
fn bounded(scenario: DropboxScenario, chunk: u64, slots: u64, read_ahead: u64, size: u64) {
    let mut h = scenario.build();
    let cap = slots + read_ahead;
    let mut max_seen = 0;
    let mut pending = Vec::new();
    let mut n = 0u32;
    loop {
        match h.next_request() {
            DbxNext::Send(r) => pending.push(r),
            DbxNext::Wait(None) => {
                assert!(chunks_held(&h, chunk) <= cap);
                max_seen = max_seen.max(chunks_held(&h, chunk));
                let Some(r) = pending.pop() else {
                    panic!("waiting with nothing in flight")
                };
                n += 1;
                match route(&r).as_str() {
                    "start" => h.session(r.id(), "sid"),
                    "finish" => {
                        let meta = h.metadata();
                        h.ok(r.id(), meta)
                    }
                    _ if n % 3 == 0 => {
                        h.respond(r.id(), crate::testing::raw(503, bytes::Bytes::new()))
                    }
                    _ => h.ok_null(r.id()),
                }
            }
            DbxNext::Finished(r) => {
                assert!(r.is_ok(), "{r:?}");
                break;
            }
            DbxNext::Wait(Some(_)) => unreachable!("next_request lets timers fire"),
        }
        assert!(
            chunks_held(&h, chunk) <= cap,
            "held {} bytes",
            h.m.held_bytes()
        );
    }
    assert_eq!(
        max_seen,
        cap.min(size.div_ceil(chunk)),
        "the bound is reached"
    );
}

#[test]
fn held_bytes_never_exceed_in_flight_plus_read_ahead_chunks() {
    let size = 10 * C + 7;
    for ra in [0u32, 1, 3] {
        bounded(
            DropboxScenario::new(size).read_ahead(ra),
            C,
            1,
            u64::from(ra),
            size,
        );
    }
    let size = 12 * B + 9;
    for (par, ra) in [(1u32, 1u32), (3, 1), (2, 2), (3, 0)] {
        bounded(
            DropboxScenario::concurrent(size, par).read_ahead(ra),
            B,
            u64::from(par),
            u64::from(ra),
            size,
        );
    }
}

#[test]
fn a_concurrent_session_reads_the_next_chunk_while_every_slot_is_busy() {
    let size = 6 * B + 100;
    let mut h = DropboxScenario::concurrent(size, 2).build();
    let start = h.expect_send();
    h.session(start.id(), "c1");
    let first = h.expect_sends();
    assert_eq!(first.len(), 2);
    // Both slots busy: chunk 2 is read ahead.
    assert_eq!(h.reads, [(0, B), (B, B), (2 * B, B)]);
    h.ok_null(first[0].id());
    // Chunk 2 goes from memory; chunk 3 is read ahead.
    let next = h.expect_sends();
    assert_eq!(next.len(), 1);
    assert_eq!(offset(&next[0]), 2 * B);
    assert_eq!(h.reads.last(), Some(&(3 * B, B)));
    // The checkpoint claims only acknowledged chunks (chunk 0: the low-water mark),
    // not chunk 2 in flight nor chunk 3 read ahead.
    let cp = h.m.checkpoint().unwrap();
    assert_eq!((cp.acknowledged, cp.completed_blocks.clone()), (B, vec![]));
}
