//! [`Source`]: where the bytes come from, read one range at a time when the machine asks
//! ([`Output::NeedData`](upload_session::Output::NeedData)).
//!
//! See [`Source`] for what each kind can do.

use crate::error::Error;
use std::fmt;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};
use upload_session::SourceFingerprint;
use upload_session::bytes::Bytes;

/// Largest range read at once. The machines ask for at most one fragment (OneDrive:
/// 60 MiB, Dropbox: 150 MiB); anything larger is refused rather than allocated.
pub const MAX_READ: u64 = 256 * 1024 * 1024;

/// `AsyncRead + AsyncSeek`, as one object-safe trait.
trait ReadSeek: AsyncRead + AsyncSeek + Send + Unpin {}
impl<T: AsyncRead + AsyncSeek + Send + Unpin> ReadSeek for T {}

/// What a file looked like when the upload started (the same stamp as the blocking
/// adapter's, so checkpoints resume across adapters).
#[derive(Clone, PartialEq, Eq)]
struct FileState {
    size: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    dev_ino: (u64, u64),
}

impl FileState {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            size: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            dev_ino: (meta.dev(), meta.ino()),
        }
    }

    /// The modification stamp recorded in checkpoints.
    fn stamp(&self) -> String {
        let mut s = match self
            .modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        {
            Some(d) => format!("mtime:{}.{:09}", d.as_secs(), d.subsec_nanos()),
            None => "mtime:unknown".to_string(),
        };
        #[cfg(unix)]
        s.push_str(&format!(";dev:{};ino:{}", self.dev_ino.0, self.dev_ino.1));
        s
    }
}

enum Kind {
    File {
        file: tokio::fs::File,
        /// The same open file, for the ranges: read on the blocking pool straight into
        /// the range's buffer (tokio's `File` reads through its own 2 MiB buffer and
        /// copies; a fresh mapping per step made it fault in every page under the
        /// kernel's copy, ~2× the CPU of a plain `read`, BENCHMARKS.md §5).
        reader: std::sync::Arc<std::fs::File>,
        path: Option<PathBuf>,
        state: FileState,
    },
    Seekable(Box<dyn ReadSeek>),
    Stream {
        reader: Box<dyn AsyncRead + Send + Unpin>,
        /// Bytes consumed from the reader.
        pos: u64,
        /// The last range read: `(offset, bytes)`.
        last: Option<(u64, Bytes)>,
    },
    Bytes(Bytes),
}

/// The bytes to upload. Every kind is `Send + 'static`, so an upload future can be
/// spawned.
///
/// | Constructor | Reads | Goes back (retry, resync, restart) | Change detection |
/// |---|---|---|---|
/// | [`Source::file`] / [`Source::open`] (a `tokio::fs::File`) | `seek` + `read` of each range | anywhere | size and modification time (and, on Unix, device and inode) checked before every request and after every read |
/// | [`Source::seekable`] (`AsyncRead + AsyncSeek`) | `seek` + `read` | anywhere | the caller's stamp, for resume only |
/// | [`Source::reader`] (`AsyncRead`) | forward only, skipping what is not asked for | within the last fragment read | a short stream is an error |
/// | [`Source::bytes`] | `Bytes::slice` (no copy) | anywhere | none needed |
///
/// Memory: one range (at most one fragment) is allocated per read and lives until the
/// machine has its answer; a plain reader also keeps its last range for retries.
/// Nothing else is buffered, so an upload holds at most (requests in flight + 1) ×
/// fragment bytes of payload.
///
/// # Examples
/// ```
/// use upload_session_async::Source;
/// let s = Source::bytes(&b"hello"[..]).with_stamp("v1");
/// assert_eq!(s.size(), 5);
/// assert_eq!(s.fingerprint().modified, "v1");
/// ```
pub struct Source {
    kind: Kind,
    size: u64,
    stamp: String,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::File {
                path: Some(path), ..
            } => format!("file {}", path.display()),
            Kind::File { path: None, .. } => "file".to_string(),
            Kind::Seekable(_) => "seekable reader".to_string(),
            Kind::Stream { pos, .. } => format!("reader at {pos}"),
            Kind::Bytes(_) => "bytes".to_string(),
        };
        f.debug_struct("Source")
            .field("kind", &kind)
            .field("size", &self.size)
            .field("stamp", &self.stamp)
            .finish()
    }
}

fn changed(detail: impl Into<String>) -> Error {
    Error::SourceChanged {
        detail: detail.into(),
    }
}

/// Reads exactly `len` bytes (or fewer at end of stream) into a fresh buffer.
async fn read_up_to<R: AsyncRead + Unpin + ?Sized>(r: &mut R, len: u64) -> io::Result<Vec<u8>> {
    let cap = usize::try_from(len).map_err(|_| io::Error::other("range too large"))?;
    let mut buf = Vec::with_capacity(cap);
    (&mut *r).take(len).read_to_end(&mut buf).await?;
    Ok(buf)
}

impl Source {
    /// Opens the file at `path`. Its size and modification stamp are taken now; a change
    /// of either during the upload stops it with [`Error::SourceChanged`].
    ///
    /// # Errors
    /// The file cannot be opened or is not a regular file.
    pub async fn file(path: impl AsRef<Path>) -> io::Result<Source> {
        let path = path.as_ref().to_path_buf();
        let file = tokio::fs::File::open(&path).await?;
        let mut s = Self::open(file).await?;
        if let Kind::File { path: p, .. } = &mut s.kind {
            *p = Some(path);
        }
        Ok(s)
    }

    /// Wraps an open [`tokio::fs::File`] (read from offset 0, whatever its position),
    /// with the same change detection as [`Source::file`].
    ///
    /// # Errors
    /// Its metadata cannot be read, or it is not a regular file.
    pub async fn open(file: tokio::fs::File) -> io::Result<Source> {
        let meta = file.metadata().await?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let state = FileState::of(&meta);
        let reader = std::sync::Arc::new(file.try_clone().await?.into_std().await);
        Ok(Source {
            size: state.size,
            stamp: state.stamp(),
            kind: Kind::File {
                file,
                reader,
                path: None,
                state,
            },
        })
    }

    /// Wraps bytes already in memory (ranges are cheap `Bytes::slice`s, never copies).
    pub fn bytes(data: impl Into<Bytes>) -> Source {
        let data = data.into();
        Source {
            size: data.len() as u64,
            stamp: String::new(),
            kind: Kind::Bytes(data),
        }
    }

    /// Wraps any `AsyncRead + AsyncSeek`; its size is found by seeking to its end.
    /// Offsets are absolute (byte 0 is the start of the stream).
    ///
    /// # Errors
    /// Seeking fails.
    pub async fn seekable(
        mut reader: impl AsyncRead + AsyncSeek + Send + Unpin + 'static,
    ) -> io::Result<Source> {
        let size = reader.seek(SeekFrom::End(0)).await?;
        Ok(Source {
            size,
            stamp: String::new(),
            kind: Kind::Seekable(Box::new(reader)),
        })
    }

    /// Wraps a plain `AsyncRead` of exactly `size` bytes. It is read forward only; the
    /// last fragment read is kept so that a retry of it (or of part of it) needs no
    /// rewind. A machine that needs to go back further (a session restart) stops with
    /// [`Error::SourceNotRewindable`]. A stream shorter than `size` stops with
    /// [`Error::SourceChanged`].
    pub fn reader(reader: impl AsyncRead + Send + Unpin + 'static, size: u64) -> Source {
        Source {
            size,
            stamp: String::new(),
            kind: Kind::Stream {
                reader: Box::new(reader),
                pos: 0,
                last: None,
            },
        }
    }

    /// Sets the modification stamp recorded in checkpoints (an ETag, a version…). A
    /// resume is refused when it differs. Files have one already (their mtime).
    #[must_use]
    pub fn with_stamp(mut self, stamp: impl Into<String>) -> Self {
        self.stamp = stamp.into();
        self
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The fingerprint a machine records in its checkpoints (size and stamp).
    pub fn fingerprint(&self) -> SourceFingerprint {
        SourceFingerprint::new(self.size, self.stamp.clone())
    }

    /// True for a file source (whose changes are detected).
    pub fn is_file(&self) -> bool {
        matches!(self.kind, Kind::File { .. })
    }

    /// Checks that a file source still has the size and modification stamp it had when
    /// it was opened (other sources cannot be checked and always pass).
    ///
    /// # Errors
    /// [`Error::SourceChanged`], or [`Error::Source`] when the file cannot be examined.
    /// (It takes `&mut self` so that the future stays `Send` without requiring the
    /// source to be `Sync`.)
    pub async fn check_unchanged(&mut self) -> Result<(), Error> {
        let Kind::File { file, state, .. } = &self.kind else {
            return Ok(());
        };
        let now = FileState::of(&file.metadata().await.map_err(Error::Source)?);
        if now.size != state.size {
            return Err(changed(format!(
                "its size went from {} to {} bytes",
                state.size, now.size
            )));
        }
        if now != *state {
            return Err(changed("it was modified (its modification time changed)"));
        }
        Ok(())
    }

    /// Returns `len` bytes at `offset`.
    pub(crate) async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, Error> {
        let size = self.size;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                Error::Source(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("range {offset}+{len} is outside the source ({size} bytes)"),
                ))
            })?;
        if len > MAX_READ {
            return Err(Error::Source(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a range of {len} bytes is more than {MAX_READ} at once"),
            )));
        }
        let short = |got: usize| {
            changed(format!(
                "it ended at byte {} although it was {size} bytes long",
                offset + got as u64,
            ))
        };
        match &mut self.kind {
            Kind::Bytes(b) => Ok(b.slice(offset as usize..end as usize)),
            Kind::File { reader, .. } => {
                let reader = reader.clone();
                // `len` ≤ MAX_READ (checked above), so the buffer is bounded. It is
                // allocated here, not on the blocking thread: buffers freed by the loop
                // then go back to the loop's allocator arena instead of piling up in one
                // arena per blocking thread (peak RSS, BENCHMARKS.md §5). The clone
                // shares the file position with `file`, which is never read from.
                let mut buf = Vec::with_capacity(len as usize);
                let buf = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
                    use std::io::{Read, Seek};
                    let mut f: &std::fs::File = &reader;
                    f.seek(SeekFrom::Start(offset))?;
                    f.take(len).read_to_end(&mut buf)?;
                    Ok(buf)
                })
                .await
                .map_err(|e| Error::Source(io::Error::other(e)))?
                .map_err(Error::Source)?;
                if (buf.len() as u64) < len {
                    return Err(short(buf.len()));
                }
                Ok(Bytes::from(buf))
            }
            Kind::Seekable(r) => {
                r.seek(SeekFrom::Start(offset))
                    .await
                    .map_err(Error::Source)?;
                let buf = read_up_to(r.as_mut(), len).await.map_err(Error::Source)?;
                if (buf.len() as u64) < len {
                    return Err(short(buf.len()));
                }
                Ok(Bytes::from(buf))
            }
            Kind::Stream { reader, pos, last } => {
                // A retry of (part of) the last range: serve it from memory.
                if let Some((start, data)) = last {
                    let last_end = *start + data.len() as u64;
                    if offset >= *start && end <= last_end {
                        let from = (offset - *start) as usize;
                        return Ok(data.slice(from..from + len as usize));
                    }
                }
                let (prefix, read_from) = match last.take() {
                    // Starts inside the last range and goes on past it.
                    Some((start, data)) if offset >= start && offset < *pos => {
                        (data.slice((offset - start) as usize..), *pos)
                    }
                    Some((start, _)) if offset < *pos => {
                        return Err(Error::SourceNotRewindable {
                            offset,
                            buffered_from: start,
                        });
                    }
                    None if offset < *pos => {
                        return Err(Error::SourceNotRewindable {
                            offset,
                            buffered_from: *pos,
                        });
                    }
                    _ => (Bytes::new(), offset),
                };
                // Skip what the machine does not need (a resume past the start).
                let skip = read_from - *pos;
                if skip > 0 {
                    let skipped =
                        tokio::io::copy(&mut (&mut *reader).take(skip), &mut tokio::io::sink())
                            .await
                            .map_err(Error::Source)?;
                    *pos += skipped;
                    if skipped < skip {
                        return Err(short(0));
                    }
                }
                let want = end - read_from;
                let fresh = read_up_to(reader.as_mut(), want)
                    .await
                    .map_err(Error::Source)?;
                *pos += fresh.len() as u64;
                if (fresh.len() as u64) < want {
                    return Err(short(prefix.len() + fresh.len()));
                }
                let data = if prefix.is_empty() {
                    Bytes::from(fresh)
                } else {
                    let mut joined = Vec::with_capacity(prefix.len() + fresh.len());
                    joined.extend_from_slice(&prefix);
                    joined.extend_from_slice(&fresh);
                    Bytes::from(joined)
                };
                *last = Some((offset, data.clone()));
                Ok(data)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn bytes_return_exact_ranges_and_refuse_outside_ones() {
        let data = pattern(1000);
        let mut b = Source::bytes(data.clone());
        assert_eq!(&b.read(10, 20).await.unwrap()[..], &data[10..30]);
        assert_eq!(&b.read(990, 10).await.unwrap()[..], &data[990..]);
        assert!(matches!(b.read(995, 10).await, Err(Error::Source(_))));
        assert!(matches!(b.read(u64::MAX, 2).await, Err(Error::Source(_))));
    }

    #[tokio::test]
    async fn seekable_reads_any_range_in_any_order() {
        let data = pattern(5000);
        let mut s = Source::seekable(Cursor::new(data.clone())).await.unwrap();
        assert_eq!(s.size(), 5000);
        assert_eq!(&s.read(4000, 1000).await.unwrap()[..], &data[4000..]);
        assert_eq!(&s.read(0, 100).await.unwrap()[..], &data[..100]);
    }

    #[tokio::test]
    async fn stream_serves_retries_of_the_last_range_and_refuses_older_ones() {
        let data = pattern(3000);
        let mut s = Source::reader(Cursor::new(data.clone()), 3000);
        assert_eq!(&s.read(0, 1000).await.unwrap()[..], &data[..1000]);
        assert_eq!(&s.read(0, 1000).await.unwrap()[..], &data[..1000]);
        assert_eq!(&s.read(400, 600).await.unwrap()[..], &data[400..1000]);
        // Straddling the buffered range and new data (a resync inside a fragment).
        assert_eq!(&s.read(500, 1000).await.unwrap()[..], &data[500..1500]);
        assert!(matches!(
            s.read(0, 10).await,
            Err(Error::SourceNotRewindable {
                offset: 0,
                buffered_from: 500
            })
        ));
        // Skips forward; a short stream is a changed source.
        assert_eq!(&s.read(2000, 500).await.unwrap()[..], &data[2000..2500]);
        let mut short = Source::reader(Cursor::new(pattern(100)), 200);
        assert!(matches!(
            short.read(0, 200).await,
            Err(Error::SourceChanged { .. })
        ));
    }

    #[tokio::test]
    async fn file_changes_are_detected_and_the_stamp_matches_the_blocking_adapter() {
        let dir = std::env::temp_dir().join(format!("usa-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        std::fs::write(&path, pattern(4096)).unwrap();
        let mut s = Source::file(&path).await.unwrap();
        let stamp = s.fingerprint().modified;
        assert!(stamp.starts_with("mtime:"), "{stamp}");
        #[cfg(unix)]
        assert!(
            stamp.contains(";dev:") && stamp.contains(";ino:"),
            "{stamp}"
        );
        s.check_unchanged().await.unwrap();
        assert_eq!(&s.read(96, 4000).await.unwrap()[..], &pattern(4096)[96..]);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(1000).unwrap();
        assert!(matches!(
            s.check_unchanged().await,
            Err(Error::SourceChanged { .. })
        ));
        assert!(matches!(
            s.read(0, 4096).await,
            Err(Error::SourceChanged { .. })
        ));
        f.set_len(4096).unwrap();
        let mut s = Source::open(tokio::fs::File::open(&path).await.unwrap())
            .await
            .unwrap();
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(matches!(
            s.check_unchanged().await,
            Err(Error::SourceChanged { .. })
        ));
        assert!(Source::file(&dir).await.is_err(), "a directory is refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
