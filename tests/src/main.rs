//! `upload-session-emulator`: the emulator as a standalone server. (Skeleton.)

fn main() {
    eprintln!("not implemented yet");
    std::process::exit(2);
}
