//! Checkpoint files: JSON, written atomically (temporary file, `fsync`, `rename`) with
//! `0600` permissions, because a checkpoint holds secrets (a OneDrive `uploadUrl` is a
//! bearer credential for its session).
//!
//! A reader therefore sees either the previous complete checkpoint or the new one, never
//! a torn write, even if the process is killed mid-write. The bytes are the core's
//! format ([`encode_checkpoint`] / [`decode_checkpoint`]), shared with the async adapter.
//!
//! The file work here (temporary file, `0600`, `fsync`, `rename`) has a twin in the
//! async adapter: the core does no I/O and the workspace has no shared I/O crate.

use crate::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use upload_session::driver::{MAX_CHECKPOINT_BYTES, decode_checkpoint, encode_checkpoint};

fn file_error(path: &Path, detail: impl ToString) -> Error {
    Error::checkpoint_file(path, detail)
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp))
}

fn open_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Writes `bytes` to `path` atomically with owner-only permissions.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path)?;
    // A leftover from a killed run of this process id: it is ours to replace.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let mut f = open_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable (best effort: not every platform can open a
    // directory).
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Saves `checkpoint` as JSON in `path`, atomically, readable by its owner only.
///
/// # Errors
/// [`Error::CheckpointFile`] when serialising or writing fails.
///
/// # Examples
/// ```
/// # let dir = std::env::temp_dir().join(format!("usb-doc-save-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("upload.checkpoint.json");
/// upload_session_blocking::checkpoint::save(&path, &serde_json::json!({"acknowledged": 42})).unwrap();
/// let back: Option<serde_json::Value> = upload_session_blocking::checkpoint::load(&path).unwrap();
/// assert_eq!(back.unwrap()["acknowledged"], 42);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn save<K: Serialize>(path: &Path, checkpoint: &K) -> Result<(), Error> {
    let json = encode_checkpoint(checkpoint).map_err(|e| file_error(path, e))?;
    write_atomic(path, &json).map_err(|e| file_error(path, e))
}

/// Loads a checkpoint saved by [`save`]; `Ok(None)` when the file does not exist.
///
/// # Errors
/// [`Error::CheckpointFile`] when the file cannot be read, is larger than 4 MiB, or is
/// not a valid checkpoint.
pub fn load<K: DeserializeOwned>(path: &Path) -> Result<Option<K>, Error> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, e)),
    };
    let mut text = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(file, MAX_CHECKPOINT_BYTES + 1),
        &mut text,
    )
    .map_err(|e| file_error(path, e))?;
    decode_checkpoint(&text)
        .map(Some)
        .map_err(|e| file_error(path, e))
}

/// Removes a checkpoint file; a missing file is not an error.
///
/// # Errors
/// [`Error::CheckpointFile`] when it exists and cannot be removed.
pub fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(file_error(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_is_atomic_private_and_loads_back() {
        let dir = upload_session_emulator::testkit::temp_dir("usb", "ckpt");
        let path = dir.join("c.json");
        assert!(load::<serde_json::Value>(&path).unwrap().is_none());
        save(&path, &serde_json::json!({"n": 1})).unwrap();
        save(&path, &serde_json::json!({"n": 2})).unwrap();
        let v: serde_json::Value = load(&path).unwrap().unwrap();
        assert_eq!(v["n"], 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.json")]);
        // Garbage is a typed error, not a panic.
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            load::<serde_json::Value>(&path),
            Err(Error::CheckpointFile { .. })
        ));
        remove(&path).unwrap();
        remove(&path).unwrap();
    }
}
