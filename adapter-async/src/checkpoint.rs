//! Checkpoint files: JSON, written atomically (temporary file, `fsync`, `rename`) with
//! `0600` permissions, because a checkpoint holds secrets (a OneDrive `uploadUrl` is a
//! bearer credential for its session).
//!
//! The format is the core's ([`encode_checkpoint`] / [`decode_checkpoint`]), as in the
//! blocking adapter (`upload-session-blocking`), so a checkpoint file written by one
//! adapter resumes in the other. The file work here (temporary file, `0600`, `fsync`,
//! `rename`) has a twin in the blocking adapter: the core does no I/O and the workspace
//! has no shared I/O crate. A reader sees either the previous complete checkpoint or the
//! new one, never a torn write, even if the process is killed mid-write. The file work
//! runs on tokio's blocking pool (`spawn_blocking`), never on the async threads.

use crate::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
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

/// Writes `bytes` to `path` atomically with owner-only permissions (blocking).
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
    // Make the rename itself durable (best effort).
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

fn read_capped(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(file, MAX_CHECKPOINT_BYTES + 1),
        &mut text,
    )?;
    Ok(Some(text))
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| file_error(path, e)),
        Err(e) => Err(file_error(path, format!("the file task failed: {e}"))),
    }
}

/// Saves `checkpoint` as JSON in `path`, atomically, readable by its owner only.
///
/// # Errors
/// [`Error::CheckpointFile`] when serialising or writing fails.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = std::env::temp_dir().join(format!("usa-doc-save-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// use upload_session_async::checkpoint;
/// let path = dir.join("upload.checkpoint.json");
/// checkpoint::save(&path, &serde_json::json!({"acknowledged": 42})).await.unwrap();
/// let back: Option<serde_json::Value> = checkpoint::load(&path).await.unwrap();
/// assert_eq!(back.unwrap()["acknowledged"], 42);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # }
/// ```
///
/// The checkpoint is serialised before this returns: the future borrows nothing.
pub fn save<K: Serialize>(
    path: &Path,
    checkpoint: &K,
) -> impl Future<Output = Result<(), Error>> + Send + 'static {
    let json = encode_checkpoint(checkpoint).map_err(|e| file_error(path, e));
    let owned = path.to_path_buf();
    async move {
        let json = json?;
        let target = owned.clone();
        blocking(&owned, move || write_atomic(&target, &json)).await
    }
}

/// Loads a checkpoint saved by [`save`] (or by the blocking adapter); `Ok(None)` when
/// the file does not exist.
///
/// # Errors
/// [`Error::CheckpointFile`] when the file cannot be read, is larger than 4 MiB, or is
/// not a valid checkpoint.
pub async fn load<K: DeserializeOwned>(path: &Path) -> Result<Option<K>, Error> {
    let owned = path.to_path_buf();
    let Some(text) = blocking(path, move || read_capped(&owned)).await? else {
        return Ok(None);
    };
    decode_checkpoint(&text)
        .map(Some)
        .map_err(|e| file_error(path, e))
}

/// Removes a checkpoint file; a missing file is not an error.
///
/// # Errors
/// [`Error::CheckpointFile`] when it exists and cannot be removed.
pub async fn remove(path: &Path) -> Result<(), Error> {
    let owned = path.to_path_buf();
    blocking(path, move || match fs::remove_file(&owned) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_is_atomic_private_and_loads_back() {
        let dir = upload_session_emulator::testkit::temp_dir("usa", "ckpt");
        let path = dir.join("c.json");
        assert!(load::<serde_json::Value>(&path).await.unwrap().is_none());
        save(&path, &serde_json::json!({"n": 1})).await.unwrap();
        save(&path, &serde_json::json!({"n": 2})).await.unwrap();
        let v: serde_json::Value = load(&path).await.unwrap().unwrap();
        assert_eq!(v["n"], 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.json")]);
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            load::<serde_json::Value>(&path).await,
            Err(Error::CheckpointFile { .. })
        ));
        fs::write(&path, vec![b' '; (MAX_CHECKPOINT_BYTES + 10) as usize]).unwrap();
        assert!(matches!(
            load::<serde_json::Value>(&path).await,
            Err(Error::CheckpointFile { .. })
        ));
        remove(&path).await.unwrap();
        remove(&path).await.unwrap();
    }
}
