//! Fuzz target `emulator_request`: see [`upload_session_fuzz::emulator_request`].
//! Under `cargo fuzz` (`--cfg fuzzing`) this is a libFuzzer target; otherwise it replays
//! the files and directories given as arguments (default: `fuzz/corpus/emulator_request`).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| upload_session_fuzz::emulator_request(data));

#[cfg(not(fuzzing))]
fn main() {
    upload_session_fuzz::replay_main("emulator_request", upload_session_fuzz::emulator_request);
}
