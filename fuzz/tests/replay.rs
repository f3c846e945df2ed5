//! Replays the checked-in corpus on stable: every file under `fuzz/corpus/<target>/`
//! goes through its target function (a crash or a broken invariant panics the test).

use upload_session_fuzz::{
    TARGETS, corpus_dir, dropbox_response_in_upload, files_under, onedrive_response_in_upload,
};

#[test]
fn corpus_replays_without_a_crash() {
    let mut total = 0;
    for (name, f) in TARGETS {
        let files = files_under(&corpus_dir(name));
        assert!(!files.is_empty(), "no corpus for {name}");
        for file in &files {
            let data = std::fs::read(file).expect("readable corpus file");
            let r = std::panic::catch_unwind(|| f(&data));
            assert!(r.is_ok(), "{name}: {} crashes", file.display());
        }
        println!("{name}: {} inputs", files.len());
        total += files.len();
    }
    println!("replayed {total} corpus inputs");
}

#[test]
fn empty_and_tiny_inputs_are_handled() {
    for (_, f) in TARGETS {
        f(&[]);
        f(&[0]);
        f(&[0xff; 64]);
    }
}

/// The response targets send only one input in 32 through a real upload (for speed): the
/// checked-in corpus of both goes through one every time here.
#[test]
fn response_corpus_replays_inside_an_upload() {
    let targets: [upload_session_fuzz::Target; 2] = [
        ("onedrive_response", onedrive_response_in_upload),
        ("dropbox_response", dropbox_response_in_upload),
    ];
    for (name, f) in targets {
        let files = files_under(&corpus_dir(name));
        assert!(!files.is_empty(), "no corpus for {name}");
        for file in &files {
            let data = std::fs::read(file).expect("readable corpus file");
            let r = std::panic::catch_unwind(|| f(&data));
            assert!(
                r.is_ok(),
                "{name}: {} crashes inside an upload",
                file.display()
            );
        }
    }
}
