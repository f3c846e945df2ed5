//! Building: typed errors before anything is sent; secrets stay out of `Debug`.

use super::*;
use crate::dropbox::{CommitInfo, DropboxUpload, SessionType, limits};
use crate::testing::dropbox::DropboxScenario;
use crate::{AccessToken, BuildError, Output, UploadMachine};
use std::time::Instant;

fn b(size: u64) -> crate::dropbox::Builder {
    DropboxUpload::builder(CommitInfo::new("/a.bin").unwrap(), size)
}

#[test]
fn chunk_sizes_are_checked_at_build_time() {
    assert_eq!(
        b(10).chunk_size(0).build().err(),
        Some(BuildError::ChunkSizeZero)
    );
    assert_eq!(
        b(10).chunk_size(limits::MAX_BODY + 1).build().err(),
        Some(BuildError::ChunkSizeTooLarge {
            size: limits::MAX_BODY + 1,
            max: limits::MAX_BODY
        })
    );
    assert!(b(10).chunk_size(limits::MAX_BODY).build().is_ok());
    assert!(b(10).chunk_size(1).build().is_ok());
    let conc = |c| {
        b(10)
            .session_type(SessionType::Concurrent)
            .chunk_size(c)
            .build()
    };
    assert!(matches!(
        conc(B + 1).err(),
        Some(BuildError::ChunkSizeNotMultiple {
            multiple: 4_194_304,
            nearest_below: 4_194_304,
            ..
        })
    ));
    assert!(matches!(
        conc(limits::MAX_BODY).err(),
        Some(BuildError::ChunkSizeNotMultiple { .. })
    ));
    assert!(conc(limits::MAX_CONCURRENT_CHUNK).is_ok());
    assert!(b(10).parallelism(0).build().is_err());
}

#[test]
fn file_size_and_fingerprint_are_checked() {
    assert_eq!(
        b(limits::MAX_FILE_SIZE + 1).build().err(),
        Some(BuildError::FileTooLarge {
            size: limits::MAX_FILE_SIZE + 1,
            max: limits::MAX_FILE_SIZE
        })
    );
    assert!(b(limits::MAX_FILE_SIZE).build().is_ok());
    assert!(matches!(
        b(10)
            .fingerprint(crate::SourceFingerprint::new(11, "x"))
            .build()
            .err(),
        Some(BuildError::FingerprintSize { .. })
    ));
    assert!(CommitInfo::new("relative/path").is_err());
}

#[test]
fn without_a_token_the_machine_asks_first_and_sends_nothing() {
    let mut h = DropboxScenario::new(10).no_token().build();
    assert!(matches!(h.poll(), Output::Event(crate::Event::TokenNeeded)));
    assert!(matches!(h.poll(), Output::Wait(None)));
    assert_eq!(h.m.phase(), crate::dropbox::Phase::NeedToken);
    h.m.set_access_token(AccessToken::new("fresh").unwrap());
    let start = h.expect_send();
    assert_eq!(start.request().headers()["authorization"], "Bearer fresh");
}

#[test]
fn debug_output_never_shows_the_token_or_payload() {
    let mut h = DropboxScenario::new(100).build();
    let req = h.expect_send();
    let dbg = format!("{:?} {:?}", h.m, req);
    assert!(!dbg.contains("test-token"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
    assert!(dbg.contains("body_len: 100"));
    // The request's own header value is marked sensitive.
    assert!(req.request().headers()["authorization"].is_sensitive());
    let _ = Instant::now();
    let _ = h.m.is_finished();
}
