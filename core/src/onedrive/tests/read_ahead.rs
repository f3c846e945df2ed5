//! Read-ahead ([`OneDriveConfig::read_ahead`](crate::onedrive::OneDriveConfig)): the
//! fragment sent next is read (and hashed) while the one before it travels, so reading
//! and hashing overlap the transfer. The protocol is unchanged (onedrive.md §2: one
//! fragment at a time, in order); only when the source is read changes.

use super::*;
use crate::onedrive::limits::FRAGMENT_UNIT;
use crate::testing::Scenario;
use crate::{ByteRange, Output, RequestKind, UploadMachine};

const U: u64 = FRAGMENT_UNIT;

fn body_is(h: &Harness, req: &OutgoingRequest, from: u64, to: u64) {
    assert_eq!(fragment_bounds(req), (from, to));
    assert_eq!(
        req.request().body(),
        &h.data.slice(from as usize..to as usize),
        "fragment {from}..{to} carries the source's bytes"
    );
}

#[test]
fn the_next_fragment_is_read_while_the_one_before_travels() {
    let size = 5 * U + 77;
    let mut h = Scenario::onedrive(size).fragment(2 * U).build();
    let first = h.to_uploading();
    body_is(&h, &first, 0, 2 * U);
    // Right after the send, before any answer: the next fragment is asked for.
    match h.poll() {
        Output::NeedData { offset, len } => assert_eq!((offset, len), (2 * U, 2 * U)),
        other => panic!("expected the read-ahead NeedData, got {other:?}"),
    }
    let d = h.data.slice((2 * U) as usize..(4 * U) as usize);
    h.m.provide_data(2 * U, d).unwrap();
    h.reads.push((2 * U, 2 * U));
    assert_eq!(
        h.m.held_bytes(),
        4 * U,
        "the fragment in flight and one ahead"
    );
    // Depth 1: nothing more until the answer.
    expect_wait_none(&mut h);
    let reads = h.reads.clone();
    accepted(&mut h, &first, 2 * U);
    // The fragment read ahead goes at once, without a read in between.
    let second = h.expect_send();
    body_is(&h, &second, 2 * U, 4 * U);
    assert_eq!(h.reads, reads, "no read before the send");
    // Then the last fragment is read ahead while the second travels.
    expect_wait_none(&mut h);
    assert_eq!(h.reads.last(), Some(&(4 * U, size - 4 * U)));
    accepted(&mut h, &second, 4 * U);
    let last = h.expect_send();
    body_is(&h, &last, 4 * U, size);
    // The last fragment has nothing after it to read.
    let reads = h.reads.clone();
    expect_wait_none(&mut h);
    assert_eq!(h.reads, reads, "nothing is read past the end");
    // Every byte was read once and hashed once: the item's QuickXorHash matches.
    let c = finish_normally(&mut h, last);
    assert_eq!(c.item.size, Some(size));
    let total: u64 = h.reads.iter().map(|r| r.1).sum();
    assert_eq!(total, size, "each byte read once: {:?}", h.reads);
}

#[test]
fn read_ahead_zero_reads_each_fragment_only_on_its_turn() {
    let size = 4 * U;
    let mut h = Scenario::onedrive(size)
        .fragment(2 * U)
        .config(|c| c.read_ahead = 0)
        .build();
    let first = h.to_uploading();
    expect_wait_none(&mut h);
    assert_eq!(h.m.held_bytes(), 2 * U);
    assert_eq!(h.reads, vec![(0, 2 * U)]);
    accepted(&mut h, &first, 2 * U);
    let second = h.expect_send();
    body_is(&h, &second, 2 * U, 4 * U);
    assert_eq!(h.reads, vec![(0, 2 * U), (2 * U, 2 * U)]);
}

#[test]
fn deeper_read_ahead_holds_at_most_that_many_fragments_beyond_the_one_in_flight() {
    let size = 10 * U;
    let mut h = Scenario::onedrive(size)
        .fragment(U)
        .config(|c| c.read_ahead = 3)
        .build();
    let mut req = h.to_uploading();
    // Serves the read-aheads until the machine waits.
    expect_wait_none(&mut h);
    assert_eq!(h.m.held_bytes(), 4 * U);
    assert_eq!(&h.reads[1..], &[(U, U), (2 * U, U), (3 * U, U)]);
    let mut at = 0;
    while at + U < size {
        at += U;
        accepted(&mut h, &req, at);
        req = h.expect_send();
        body_is(&h, &req, at, at + U);
        assert!(h.m.held_bytes() <= 4 * U, "{} bytes held", h.m.held_bytes());
    }
    finish_normally(&mut h, req);
    let total: u64 = h.reads.iter().map(|r| r.1).sum();
    assert_eq!(total, size, "each byte read once: {:?}", h.reads);
}

/// Every read starts where the one before it ended: a forward-only source
/// (`Source::reader` in the adapters) never has to go back, and no byte is read twice.
fn assert_forward_only(h: &Harness) {
    let mut at = 0;
    for &(offset, len) in &h.reads {
        assert_eq!(offset, at, "a read went back or skipped: {:?}", h.reads);
        at += len;
    }
}

/// onedrive.md §10: the server kept only part of the fragment in flight; the realigned
/// fragment straddles the held tail and the read-ahead.
fn partial_accept_with_read_ahead(depth: u32) {
    let size = 9 * U + 5;
    let mut h = Scenario::onedrive(size)
        .fragment(2 * U)
        .config(|c| c.read_ahead = depth)
        .build();
    let first = h.to_uploading();
    expect_wait_none(&mut h); // reads ahead
    let partial = U + 1000;
    accepted(&mut h, &first, partial);
    let next = h.expect_send();
    // Assembled from memory: nothing is read again.
    body_is(&h, &next, partial, 3 * U);
    let mut req = next;
    let mut at = 3 * U;
    while at < size {
        // As an adapter does: poll until the machine waits (serving the read-ahead).
        expect_wait_none(&mut h);
        accepted(&mut h, &req, at);
        req = h.expect_send();
        let end = (at + 2 * U).min(size);
        body_is(&h, &req, at, end);
        let cap = (1 + u64::from(depth)) * 2 * U;
        assert!(h.m.held_bytes() <= cap, "{} bytes held", h.m.held_bytes());
        at = end;
    }
    // Hashes saw each byte once: the item verifies.
    finish_normally(&mut h, req);
    assert_forward_only(&h);
    let total: u64 = h.reads.iter().map(|r| r.1).sum();
    assert_eq!(total, size, "each byte read once: {:?}", h.reads);
}

#[test]
fn a_partial_accept_is_served_from_memory_and_reads_stay_forward_only() {
    partial_accept_with_read_ahead(1);
}

#[test]
fn a_partial_accept_with_deep_read_ahead_is_served_from_memory() {
    partial_accept_with_read_ahead(3);
}

#[test]
fn reads_are_forward_only_in_a_plain_upload() {
    let size = 7 * U + 3;
    let mut h = Scenario::onedrive(size).fragment(2 * U).build();
    let mut req = h.to_uploading();
    let mut at = 0;
    while at + 2 * U < size {
        at += 2 * U;
        expect_wait_none(&mut h);
        accepted(&mut h, &req, at);
        req = h.expect_send();
    }
    finish_normally(&mut h, req);
    assert_forward_only(&h);
}

#[test]
fn a_server_going_back_drops_the_read_ahead() {
    let size = 6 * U;
    let mut h = Scenario::onedrive(size).fragment(2 * U).build();
    let first = h.to_uploading();
    accepted(&mut h, &first, 2 * U);
    let second = h.expect_send();
    expect_wait_none(&mut h); // 4U..6U read ahead
    // A lost fragment: the server asks for 2U again after a failure and a status query.
    h.m.handle_failure(h.clock.now(), second.id(), crate::TransportFailure::Reset)
        .unwrap();
    let q = loop {
        match h.run() {
            Next::Send(r) if r.kind() == RequestKind::QueryStatus => break r,
            Next::Wait(Some(t)) => h.clock.advance_to(t),
            other => panic!("{other:?}"),
        }
    };
    status(&mut h, &q, Some(2 * U));
    let again = h.expect_send();
    body_is(&h, &again, 2 * U, 4 * U);
    accepted(&mut h, &again, 4 * U);
    let last = h.expect_send();
    body_is(&h, &last, 4 * U, 6 * U);
    finish_normally(&mut h, last);
}

#[test]
fn cancel_with_a_read_ahead_held_deletes_the_session_and_drops_it() {
    let mut h = Scenario::onedrive(6 * U).fragment(2 * U).build();
    let _first = h.to_uploading();
    expect_wait_none(&mut h);
    assert_eq!(h.m.held_bytes(), 4 * U);
    h.m.cancel(h.clock.now());
    let del = h.expect_send();
    assert_eq!(del.kind(), RequestKind::Cancel);
    assert_eq!(h.m.held_bytes(), 0);
}

#[test]
fn data_for_a_read_ahead_that_was_not_asked_is_misuse() {
    let mut h = Scenario::onedrive(6 * U).fragment(2 * U).build();
    let _first = h.to_uploading();
    // Not polled yet: no read-ahead was asked for.
    let d = h.data.slice((2 * U) as usize..(4 * U) as usize);
    assert!(h.m.provide_data(2 * U, d).is_err());
    match h.poll() {
        Output::NeedData { offset, len } => {
            let wrong = h.data.slice(0..len as usize);
            assert!(h.m.provide_data(offset + 1, wrong).is_err());
            assert_eq!(
                ByteRange::from_len(offset, len),
                ByteRange::new(2 * U, 4 * U)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn read_ahead_beyond_the_maximum_is_refused_at_build() {
    let r = crate::onedrive::OneDriveUpload::builder(crate::onedrive::Target::path("/a"), 10)
        .config(crate::onedrive::OneDriveConfig {
            read_ahead: crate::onedrive::limits::MAX_READ_AHEAD + 1,
            ..Default::default()
        })
        .build();
    assert!(
        matches!(
            r,
            Err(crate::BuildError::InvalidOption {
                option: "read_ahead",
                ..
            })
        ),
        "{r:?}"
    );
}
