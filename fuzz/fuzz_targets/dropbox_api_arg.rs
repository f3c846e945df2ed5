//! Fuzz target `dropbox_api_arg`: see [`upload_session_fuzz::dropbox_api_arg`].
//! Under `cargo fuzz` (`--cfg fuzzing`) this is a libFuzzer target; otherwise it replays
//! the files and directories given as arguments (default: `fuzz/corpus/dropbox_api_arg`).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| upload_session_fuzz::dropbox_api_arg(data));

#[cfg(not(fuzzing))]
fn main() {
    upload_session_fuzz::replay_main("dropbox_api_arg", upload_session_fuzz::dropbox_api_arg);
}
