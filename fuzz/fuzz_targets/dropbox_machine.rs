//! Fuzz target `dropbox_machine`: see [`upload_session_fuzz::dropbox_machine`].
//! Under `cargo fuzz` (`--cfg fuzzing`) this is a libFuzzer target; otherwise it replays
//! the files and directories given as arguments (default: `fuzz/corpus/dropbox_machine`).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| upload_session_fuzz::dropbox_machine(data));

#[cfg(not(fuzzing))]
fn main() {
    upload_session_fuzz::replay_main("dropbox_machine", upload_session_fuzz::dropbox_machine);
}
