//! Fidelity with a client nobody here wrote: the argument JSON that `dropbox-sdk` 0.21
//! serializes is accepted, and every result and error body the model emits deserializes
//! into the SDK's own types (whose deserializers require `.tag` first, rule 23).

use super::*;
use dropbox_sdk::types::auth::RateLimitError;
use dropbox_sdk::types::dbx_async::PollArg;
use dropbox_sdk::types::files as f;

fn sdk_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

fn parse<T: serde::de::DeserializeOwned>(r: &Response<Bytes>) -> T {
    serde_json::from_slice(r.body()).unwrap_or_else(|e| panic!("{e}: {}", body_text(r)))
}

/// The SDK reads `{"error": E, ...}` straight from the body text (borrowed strings).
fn parse_error<T: serde::de::DeserializeOwned>(r: &Response<Bytes>) -> T {
    #[derive(serde::Deserialize)]
    struct TopLevel<T> {
        error: T,
    }
    serde_json::from_slice::<TopLevel<T>>(r.body())
        .unwrap_or_else(|e| panic!("{e}: {}", body_text(r)))
        .error
}

#[test]
fn sdk_sequential_upload_round_trip() {
    let mut h = H::new();
    let src = data(20_000, 1);
    let r = h.send(up(
        "start",
        &sdk_json(&f::UploadSessionStartArg::default()),
        &src[..5000],
    ));
    let started: f::UploadSessionStartResult = parse(&r);
    let sid = started.session_id;
    let cursor = |o: u64| f::UploadSessionCursor::new(sid.clone(), o);
    let a = f::UploadSessionAppendArg::new(cursor(5000))
        .with_content_hash(crate::hash::content_hash_hex(&src[5000..10_000]));
    assert_ok_null(&h.send(up("append_v2", &sdk_json(&a), &src[5000..10_000])));
    // A wrong offset parses as the SDK's IncorrectOffset.
    let r = h.send(up(
        "append_v2",
        &sdk_json(&f::UploadSessionAppendArg::new(cursor(3))),
        b"x",
    ));
    match parse_error::<f::UploadSessionAppendError>(&r) {
        f::UploadSessionAppendError::IncorrectOffset(e) => assert_eq!(e.correct_offset, 10_000),
        other => panic!("{other:?}"),
    }
    // v1 append takes the bare cursor.
    assert_ok_null(&h.send(up(
        "append",
        &sdk_json(&cursor(10_000)),
        &src[10_000..15_000],
    )));
    let commit = f::CommitInfo::new("/sdk/seq.bin".to_string())
        .with_mode(f::WriteMode::Overwrite)
        .with_autorename(false)
        .with_client_modified("2024-01-02T03:04:05Z".to_string())
        .with_mute(true)
        .with_strict_conflict(false);
    let fin = f::UploadSessionFinishArg::new(cursor(15_000), commit)
        .with_content_hash(crate::hash::content_hash_hex(&src[15_000..]));
    let r = h.send(up("finish", &sdk_json(&fin), &src[15_000..]));
    let m: f::FileMetadata = parse(&r);
    assert_eq!(m.size, 20_000);
    assert_eq!(
        m.content_hash.as_deref(),
        Some(crate::hash::content_hash_hex(&src).as_str())
    );
    assert_eq!(m.path_display.as_deref(), Some("/sdk/seq.bin"));
    assert_eq!(m.client_modified, "2024-01-02T03:04:05Z");
    // Lost-finish verification with get_metadata.
    let r = h.send(rpc(
        "files/get_metadata",
        &sdk_json(&f::GetMetadataArg::new("/sdk/seq.bin".to_string())),
    ));
    match parse::<f::Metadata>(&r) {
        f::Metadata::File(fm) => assert_eq!(fm.rev, m.rev),
        other => panic!("{other:?}"),
    }
    let r = h.send(rpc(
        "files/get_metadata",
        &sdk_json(&f::GetMetadataArg::new("/sdk/none".to_string())),
    ));
    assert!(matches!(
        parse_error::<f::GetMetadataError>(&r),
        f::GetMetadataError::Path(f::LookupError::NotFound)
    ));
    // A reused session: the finish error parses.
    let r = h.send(up("finish", &sdk_json(&fin), b""));
    assert!(matches!(
        parse_error::<f::UploadSessionFinishError>(&r),
        f::UploadSessionFinishError::LookupFailed(f::UploadSessionLookupError::NotFound)
    ));
}

#[test]
fn sdk_concurrent_upload_and_errors() {
    let mut h = H::new();
    let src = data(BLOCK + 100, 2);
    let a = f::UploadSessionStartArg::default().with_session_type(f::UploadSessionType::Concurrent);
    let sid =
        parse::<f::UploadSessionStartResult>(&h.send(up("start", &sdk_json(&a), b""))).session_id;
    let cursor = |o: u64| f::UploadSessionCursor::new(sid.clone(), o);
    let r = h.send(up(
        "append_v2",
        &sdk_json(&f::UploadSessionAppendArg::new(cursor(1))),
        b"x",
    ));
    assert!(matches!(
        parse_error::<f::UploadSessionAppendError>(&r),
        f::UploadSessionAppendError::ConcurrentSessionInvalidOffset
    ));
    let tail = f::UploadSessionAppendArg::new(cursor(BLOCK as u64)).with_close(true);
    assert_ok_null(&h.send(up("append_v2", &sdk_json(&tail), &src[BLOCK..])));
    let fin = f::UploadSessionFinishArg::new(
        cursor(src.len() as u64),
        f::CommitInfo::new("/sdk/c".to_string()),
    );
    let r = h.send(up("finish", &sdk_json(&fin), b""));
    assert!(matches!(
        parse_error::<f::UploadSessionFinishError>(&r),
        f::UploadSessionFinishError::ConcurrentSessionMissingData
    ));
    let block = f::UploadSessionAppendArg::new(cursor(0));
    let r = h.send(up("append_v2", &sdk_json(&block), &src[..BLOCK]));
    assert!(matches!(
        parse_error::<f::UploadSessionAppendError>(&r),
        f::UploadSessionAppendError::Closed
    ));
    // Conflicts parse too.
    h.emu.dropbox_mut().seed_folder("/sdk/folder");
    let s2 = h.seq();
    let fin = f::UploadSessionFinishArg::new(
        f::UploadSessionCursor::new(s2, 0),
        f::CommitInfo::new("/sdk/folder".to_string()),
    );
    let r = h.send(up("finish", &sdk_json(&fin), b"z"));
    assert!(matches!(
        parse_error::<f::UploadSessionFinishError>(&r),
        f::UploadSessionFinishError::Path(f::WriteError::Conflict(f::WriteConflictError::Folder))
    ));
}

#[test]
fn sdk_batch_routes() {
    let mut h = H::new();
    let r = h.send(rpc(
        "files/upload_session/start_batch",
        &sdk_json(&f::UploadSessionStartBatchArg::new(2)),
    ));
    let ids = parse::<f::UploadSessionStartBatchResult>(&r).session_ids;
    assert_eq!(ids.len(), 2);
    let entries = ids
        .iter()
        .map(|id| {
            f::UploadSessionAppendBatchArgEntry::new(f::UploadSessionCursor::new(id.clone(), 0), 3)
                .with_close(true)
        })
        .collect();
    let r = h.send(up(
        "append_batch",
        &sdk_json(&f::UploadSessionAppendBatchArg::new(entries)),
        b"abcdef",
    ));
    let res: f::UploadSessionAppendBatchResult = parse(&r);
    assert!(
        res.entries
            .iter()
            .all(|e| matches!(e, f::UploadSessionAppendBatchResultEntry::Success))
    );
    let fin: Vec<f::UploadSessionFinishArg> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            f::UploadSessionFinishArg::new(
                f::UploadSessionCursor::new(id.clone(), 3),
                f::CommitInfo::new(format!("/sdk/b{i}")),
            )
        })
        .collect();
    let mut bad = fin.clone();
    bad.push(f::UploadSessionFinishArg::new(
        f::UploadSessionCursor::new("pid_upload_session:nope".to_string(), 0),
        f::CommitInfo::new("/sdk/x".to_string()),
    ));
    // v1: launch, then poll.
    let r = h.send(rpc(
        "files/upload_session/finish_batch",
        &sdk_json(&f::UploadSessionFinishBatchArg::new(bad)),
    ));
    let job = match parse::<f::UploadSessionFinishBatchLaunch>(&r) {
        f::UploadSessionFinishBatchLaunch::AsyncJobId(id) => id,
        other => panic!("{other:?}"),
    };
    let poll = sdk_json(&PollArg::new(job));
    let r = h.send(rpc("files/upload_session/finish_batch/check", &poll));
    assert!(matches!(
        parse::<f::UploadSessionFinishBatchJobStatus>(&r),
        f::UploadSessionFinishBatchJobStatus::InProgress
    ));
    h.advance(5);
    let r = h.send(rpc("files/upload_session/finish_batch/check", &poll));
    match parse::<f::UploadSessionFinishBatchJobStatus>(&r) {
        f::UploadSessionFinishBatchJobStatus::Complete(res) => {
            assert_eq!(res.entries.len(), 3);
            assert!(matches!(
                res.entries[0],
                f::UploadSessionFinishBatchResultEntry::Success(_)
            ));
            assert!(matches!(
                res.entries[2],
                f::UploadSessionFinishBatchResultEntry::Failure(
                    f::UploadSessionFinishError::LookupFailed(
                        f::UploadSessionLookupError::NotFound
                    )
                )
            ));
        }
        other => panic!("{other:?}"),
    }
    assert_file(&h, "/sdk/b1", b"def");
    // v2 result.
    let s = h.start_ok(json!({"close": true}), b"v2");
    let arg = f::UploadSessionFinishBatchArg::new(vec![f::UploadSessionFinishArg::new(
        f::UploadSessionCursor::new(s, 2),
        f::CommitInfo::new("/sdk/v2".to_string()).with_mode(f::WriteMode::Add),
    )]);
    let r = h.send(rpc("files/upload_session/finish_batch_v2", &sdk_json(&arg)));
    let res: f::UploadSessionFinishBatchResult = parse(&r);
    match &res.entries[0] {
        f::UploadSessionFinishBatchResultEntry::Success(m) => assert_eq!(m.size, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sdk_parses_rate_limits_and_auth_errors() {
    use crate::{Fault, RouteKind};
    let mut h = H::faults(
        FaultPlan::none()
            .script(
                Some(RouteKind::DropboxFinish),
                1,
                Fault::LockContention { retry_after: 1 },
            )
            .script(
                Some(RouteKind::DropboxAppend),
                1,
                Fault::Throttle {
                    retry_after: Some(7),
                    plain_text: false,
                },
            ),
    );
    let sid = h.seq();
    let r = h.append(&sid, 0, false, b"x");
    let e: RateLimitError = parse_error(&r);
    assert_eq!(e.retry_after, 7);
    assert!(matches!(
        e.reason,
        dropbox_sdk::types::auth::RateLimitReason::TooManyRequests
    ));
    let r = h.finish(&sid, 0, "/x", b"");
    let e: RateLimitError = parse_error(&r);
    assert!(matches!(
        e.reason,
        dropbox_sdk::types::auth::RateLimitReason::TooManyWriteOperations
    ));
    h.emu.expire_tokens();
    let r = h.append(&sid, 0, false, b"x");
    assert!(matches!(
        parse_error::<dropbox_sdk::types::auth::AuthError>(&r),
        dropbox_sdk::types::auth::AuthError::ExpiredAccessToken
    ));
}
