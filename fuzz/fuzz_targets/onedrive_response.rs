//! Fuzz target `onedrive_response`: see [`upload_session_fuzz::onedrive_response`].
//! Under `cargo fuzz` (`--cfg fuzzing`) this is a libFuzzer target; otherwise it replays
//! the files and directories given as arguments (default: `fuzz/corpus/onedrive_response`).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| upload_session_fuzz::onedrive_response(data));

#[cfg(not(fuzzing))]
fn main() {
    upload_session_fuzz::replay_main("onedrive_response", upload_session_fuzz::onedrive_response);
}
