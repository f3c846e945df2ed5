//! Fuzz targets for `upload-session` (the core) and `upload-session-emulator`.
//!
//! Each target is a plain function over `&[u8]` so it runs in three places:
//! - `cargo fuzz run <target>` (libFuzzer, nightly or `RUSTC_BOOTSTRAP=1`): the thin
//!   wrappers in `fuzz_targets/`;
//! - `cargo test -p upload-session-fuzz` (stable): `tests/replay.rs` runs every file of
//!   `corpus/<target>/` through it;
//! - `cargo run -p upload-session-fuzz --bin <target> -- FILE…` (stable): replays files.
//!
//! | target | what |
//! |---|---|
//! | [`onedrive_response`] | OneDrive parsers on any status/headers/body; one input in 32 also answers a phase of a real upload |
//! | [`dropbox_response`] | the same for Dropbox (start, append, finish, get_metadata, finish_batch_v2) |
//! | [`onedrive_machine`] | the OneDrive machine against a scripted server (honest emulator, garbage, transport failures, time jumps, cancel, token expiry, crash + resume) with protocol invariants |
//! | [`dropbox_machine`] | the same for Dropbox sequential and concurrent sessions |
//! | [`dropbox_api_arg`] | `Dropbox-API-Arg` encoding round trip |
//! | [`emulator_request`] | the emulator's request handling (whole and streamed) with arbitrary requests |
//!
//! A target panics when it finds a bug (a panic in the code under test, or a broken
//! invariant): that is what libFuzzer reports as a crash.
//!
//! Everything is deterministic: no randomness except the input, and time is virtual
//! (an `Instant` read once per process only as an origin).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api_arg;
mod dropbox;
mod emulator;
mod onedrive;
mod shapes;

pub use api_arg::dropbox_api_arg;
pub use dropbox::{dropbox_machine, dropbox_response, dropbox_response_in_upload};
pub use emulator::emulator_request;
pub use onedrive::{onedrive_machine, onedrive_response, onedrive_response_in_upload};

use std::path::{Path, PathBuf};

/// A target: its name and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name.
pub const TARGETS: &[Target] = &[
    ("onedrive_response", onedrive_response),
    ("dropbox_response", dropbox_response),
    ("onedrive_machine", onedrive_machine),
    ("dropbox_machine", dropbox_machine),
    ("dropbox_api_arg", dropbox_api_arg),
    ("emulator_request", emulator_request),
];

/// The checked-in corpus directory of `target`: `fuzz/corpus/<target>`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Every file under `dir` (recursively), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `main` of a target binary built without `--cfg fuzzing`: runs every file named on the
/// command line (files or directories; default: the target's corpus) through `f`.
pub fn replay_main(target: &str, f: fn(&[u8])) {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let roots = if args.is_empty() {
        vec![corpus_dir(target)]
    } else {
        args
    };
    let mut n = 0usize;
    for root in roots {
        let files = if root.is_dir() {
            files_under(&root)
        } else {
            vec![root]
        };
        for file in files {
            match std::fs::read(&file) {
                Ok(data) => {
                    eprintln!("{target}: {}", file.display());
                    f(&data);
                    n += 1;
                }
                Err(e) => eprintln!("{target}: cannot read {}: {e}", file.display()),
            }
        }
    }
    println!("{target}: replayed {n} inputs");
}

/// A checkpoint type that goes through its JSON form when a fuzzed process "crashes".
pub(crate) trait JsonCheckpoint: Sized {
    /// `to_json` then `from_json`: the file a restarted process would read.
    fn round_trip(&self) -> Self;
}

impl JsonCheckpoint for upload_session::onedrive::Checkpoint {
    fn round_trip(&self) -> Self {
        let json = self.to_json().expect("a checkpoint does not serialise");
        Self::from_json(&json).expect("a checkpoint does not read back")
    }
}

impl JsonCheckpoint for upload_session::dropbox::Checkpoint {
    fn round_trip(&self) -> Self {
        let json = self.to_json().expect("a checkpoint does not serialise");
        Self::from_json(&json).expect("a checkpoint does not read back")
    }
}

/// A simulated crash of the machine targets: a new machine resumes from the last
/// checkpoint's JSON. `None` when the resume is refused with a typed error (e.g. the
/// session expired while the process was down): then no crash happened and the running
/// process goes on, its requests still on the wire.
pub(crate) fn resume_after_crash<M>(
    cp: &M::Checkpoint,
    fingerprint: &upload_session::SourceFingerprint,
    cfg: &M::Config,
    token: Option<upload_session::AccessToken>,
) -> Option<M>
where
    M: upload_session::driver::Resumable,
    M::Checkpoint: JsonCheckpoint,
    M::Config: Clone,
{
    let m = match M::resume(cp.round_trip(), fingerprint, cfg.clone(), token) {
        Ok(m) => m,
        // A checkpoint the machine emitted itself must never be inconsistent (this
        // caught a real bug: a Dropbox checkpoint taken right after a forward resync).
        Err(upload_session::ResumeError::Inconsistent(why)) => {
            panic!("the machine emitted a checkpoint it cannot resume: {why}")
        }
        Err(e) => {
            if shapes::trace() {
                eprintln!("    resume refused: {e:?}");
            }
            return None;
        }
    };
    if shapes::trace() {
        eprintln!("    crash, resumed from the last checkpoint");
    }
    Some(m)
}
