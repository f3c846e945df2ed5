//! [`Source`]: where the bytes come from, read one range at a time when the machine asks
//! ([`Output::NeedData`](upload_session::Output::NeedData)).
//!
//! See [`Source`] for what each kind can do.

use crate::Error;
use std::fmt;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};
use upload_session::SourceFingerprint;
use upload_session::bytes::Bytes;
use upload_session::driver::{
    FileStamp, ForwardRead, ForwardWindow, check_range, source_ended_early,
};

pub use upload_session::driver::MAX_READ;

/// `AsyncRead + AsyncSeek`, as one object-safe trait.
trait ReadSeek: AsyncRead + AsyncSeek + Send + Unpin {}
impl<T: AsyncRead + AsyncSeek + Send + Unpin> ReadSeek for T {}

/// What a file looks like now (the comparison and the stamp are the core's, shared with
/// the blocking adapter so that checkpoints resume across adapters).
fn file_stamp(meta: &std::fs::Metadata) -> FileStamp {
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    FileStamp {
        size: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        device_inode: Some((meta.dev(), meta.ino())),
        #[cfg(not(unix))]
        device_inode: None,
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
        state: FileStamp,
    },
    Seekable(Box<dyn ReadSeek>),
    Stream {
        reader: Box<dyn AsyncRead + Send + Unpin>,
        /// What was consumed, and the last range read.
        window: ForwardWindow,
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
            Kind::Stream { window, .. } => format!("reader at {}", window.position()),
            Kind::Bytes(_) => "bytes".to_string(),
        };
        f.debug_struct("Source")
            .field("kind", &kind)
            .field("size", &self.size)
            .field("stamp", &self.stamp)
            .finish()
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
        let state = file_stamp(&meta);
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
                window: ForwardWindow::new(),
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
        let now = file_stamp(&file.metadata().await.map_err(Error::Source)?);
        state.check_unchanged(&now)
    }

    /// Returns `len` bytes at `offset`.
    pub(crate) async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, Error> {
        let size = self.size;
        let end = check_range(offset, len, size)?;
        let short = |got: usize| source_ended_early(offset, got, size);
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
            Kind::Stream { reader, window } => {
                let (prefix, skip, want) = match window.plan(offset, end)? {
                    ForwardRead::Cached(data) => return Ok(data),
                    ForwardRead::Read { prefix, skip, want } => (prefix, skip, want),
                };
                // Skip what the machine does not need (a resume past the start).
                if skip > 0 {
                    let skipped =
                        tokio::io::copy(&mut (&mut *reader).take(skip), &mut tokio::io::sink())
                            .await
                            .map_err(Error::Source)?;
                    window.advance(skipped);
                    if skipped < skip {
                        return Err(short(0));
                    }
                }
                let fresh = read_up_to(reader.as_mut(), want)
                    .await
                    .map_err(Error::Source)?;
                window.advance(fresh.len() as u64);
                if (fresh.len() as u64) < want {
                    return Err(short(prefix.len() + fresh.len()));
                }
                Ok(window.complete(offset, prefix, fresh))
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
        let dir = upload_session_emulator::testkit::temp_dir("usa", "source");
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
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(matches!(
            s.check_unchanged().await,
            Err(Error::SourceChanged { .. })
        ));
        assert!(Source::file(&dir).await.is_err(), "a directory is refused");
    }
}
