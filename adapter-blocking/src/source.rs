//! [`Source`]: where the bytes come from, read one range at a time when the machine asks
//! ([`Output::NeedData`](upload_session::Output::NeedData)).
//!
//! See [`Source`] for what each kind can do.

use crate::Error;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use upload_session::SourceFingerprint;
use upload_session::bytes::Bytes;
use upload_session::driver::{
    FileStamp, ForwardRead, ForwardWindow, check_range, source_ended_early,
};

pub use upload_session::driver::MAX_READ;

/// `Read + Seek`, as one object-safe trait.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// What a file looks like now (the comparison and the stamp are the core's, shared with
/// the async adapter so that checkpoints resume across adapters).
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

enum Kind<'a> {
    File {
        file: File,
        path: PathBuf,
        state: FileStamp,
    },
    Seekable(Box<dyn ReadSeek + 'a>),
    Stream {
        reader: Box<dyn Read + 'a>,
        /// What was consumed, and the last range read.
        window: ForwardWindow,
    },
    Bytes(Bytes),
    Slice(&'a [u8]),
}

/// The bytes to upload.
///
/// | Constructor | Reads | Goes back (retry, resync, restart) | Change detection |
/// |---|---|---|---|
/// | [`Source::file`] | `seek` + `read` of each range | anywhere | size and modification time (and, on Unix, device and inode) checked before every request and after every read |
/// | [`Source::seekable`] | `seek` + `read` | anywhere | the caller's stamp, for resume only |
/// | [`Source::reader`] | forward only, skipping what is not asked for | within the last fragment read | a short stream is an error |
/// | [`Source::bytes`] / [`Source::slice`] | `Bytes::slice` (no copy) / one copy per range | anywhere | none needed |
///
/// Memory: one range (at most one fragment) is allocated per read; a plain reader keeps
/// that last range for retries. Nothing else is buffered.
///
/// # Examples
/// ```
/// use upload_session_blocking::Source;
/// let s = Source::slice(b"hello").with_stamp("v1");
/// assert_eq!(s.size(), 5);
/// assert_eq!(s.fingerprint().modified, "v1");
/// ```
pub struct Source<'a> {
    kind: Kind<'a>,
    size: u64,
    stamp: String,
}

impl fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::File { path, .. } => format!("file {}", path.display()),
            Kind::Seekable(_) => "seekable reader".to_string(),
            Kind::Stream { window, .. } => format!("reader at {}", window.position()),
            Kind::Bytes(_) => "bytes".to_string(),
            Kind::Slice(_) => "slice".to_string(),
        };
        f.debug_struct("Source")
            .field("kind", &kind)
            .field("size", &self.size)
            .field("stamp", &self.stamp)
            .finish()
    }
}

/// Reads exactly `len` bytes (or fewer at end of stream) into a fresh buffer.
fn read_up_to(r: &mut dyn Read, len: u64) -> io::Result<Vec<u8>> {
    let cap = usize::try_from(len).map_err(|_| io::Error::other("range too large"))?;
    let mut buf = Vec::with_capacity(cap);
    r.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

impl Source<'static> {
    /// Opens a file. Its size and modification stamp are taken now; a change of either
    /// during the upload stops it with [`Error::SourceChanged`].
    ///
    /// # Errors
    /// The file cannot be opened or is not a regular file.
    pub fn file(path: impl AsRef<Path>) -> io::Result<Source<'static>> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let state = file_stamp(&meta);
        Ok(Source {
            size: state.size,
            stamp: state.stamp(),
            kind: Kind::File { file, path, state },
        })
    }

    /// Wraps bytes already in memory (ranges are cheap `Bytes::slice`s, never copies).
    pub fn bytes(data: impl Into<Bytes>) -> Source<'static> {
        let data = data.into();
        Source {
            size: data.len() as u64,
            stamp: String::new(),
            kind: Kind::Bytes(data),
        }
    }
}

impl<'a> Source<'a> {
    /// Wraps a borrowed byte slice (each range is copied once into the request).
    pub fn slice(data: &'a [u8]) -> Source<'a> {
        Source {
            size: data.len() as u64,
            stamp: String::new(),
            kind: Kind::Slice(data),
        }
    }

    /// Wraps any `Read + Seek`; its size is found by seeking to its end. Offsets are
    /// absolute (byte 0 is the start of the stream, whatever its current position).
    ///
    /// # Errors
    /// Seeking fails.
    pub fn seekable(mut reader: impl Read + Seek + 'a) -> io::Result<Source<'a>> {
        let size = reader.seek(SeekFrom::End(0))?;
        Ok(Source {
            size,
            stamp: String::new(),
            kind: Kind::Seekable(Box::new(reader)),
        })
    }

    /// Wraps a plain `Read` of exactly `size` bytes. It is read forward only; the last
    /// fragment read is kept so that a retry of it needs no rewind. A machine that needs
    /// to go back further (a session restart) stops with
    /// [`Error::SourceNotRewindable`]. A stream shorter than `size` stops with
    /// [`Error::SourceChanged`].
    pub fn reader(reader: impl Read + 'a, size: u64) -> Source<'a> {
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

    /// Checks that a file source still has the size and modification stamp it had when
    /// it was opened (other sources cannot be checked and always pass).
    ///
    /// # Errors
    /// [`Error::SourceChanged`], or [`Error::Source`] when the file cannot be examined.
    pub fn check_unchanged(&self) -> Result<(), Error> {
        let Kind::File { file, state, .. } = &self.kind else {
            return Ok(());
        };
        state.check_unchanged(&file_stamp(&file.metadata().map_err(Error::Source)?))
    }

    /// Returns `len` bytes at `offset`.
    pub(crate) fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, Error> {
        let size = self.size;
        let end = check_range(offset, len, size)?;
        let short = |got: usize| source_ended_early(offset, got, size);
        match &mut self.kind {
            Kind::Bytes(b) => Ok(b.slice(offset as usize..end as usize)),
            Kind::Slice(s) => s
                .get(offset as usize..end as usize)
                .map(Bytes::copy_from_slice)
                .ok_or_else(|| short(0)),
            Kind::File { file, .. } => {
                file.seek(SeekFrom::Start(offset)).map_err(Error::Source)?;
                let buf = read_up_to(file, len).map_err(Error::Source)?;
                if (buf.len() as u64) < len {
                    return Err(short(buf.len()));
                }
                Ok(Bytes::from(buf))
            }
            Kind::Seekable(r) => {
                r.seek(SeekFrom::Start(offset)).map_err(Error::Source)?;
                let buf = read_up_to(r, len).map_err(Error::Source)?;
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
                        io::copy(&mut reader.take(skip), &mut io::sink()).map_err(Error::Source)?;
                    window.advance(skipped);
                    if skipped < skip {
                        return Err(short(0));
                    }
                }
                let fresh = read_up_to(reader, want).map_err(Error::Source)?;
                window.advance(fresh.len() as u64);
                if (fresh.len() as u64) < want {
                    return Err(short(prefix.len() + fresh.len()));
                }
                Ok(window.complete(offset, prefix, fresh))
            }
        }
    }

    /// True for a file source (whose changes are detected).
    pub fn is_file(&self) -> bool {
        matches!(self.kind, Kind::File { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn bytes_and_slices_return_exact_ranges() {
        let data = pattern(1000);
        let mut s = Source::slice(&data);
        assert_eq!(&s.read(10, 20).unwrap()[..], &data[10..30]);
        let mut b = Source::bytes(data.clone());
        assert_eq!(&b.read(990, 10).unwrap()[..], &data[990..]);
        assert!(matches!(b.read(995, 10), Err(Error::Source(_))));
        assert!(matches!(b.read(u64::MAX, 2), Err(Error::Source(_))));
    }

    #[test]
    fn seekable_reads_any_range_in_any_order() {
        let data = pattern(5000);
        let mut s = Source::seekable(Cursor::new(data.clone())).unwrap();
        assert_eq!(s.size(), 5000);
        assert_eq!(&s.read(4000, 1000).unwrap()[..], &data[4000..]);
        assert_eq!(&s.read(0, 100).unwrap()[..], &data[..100]);
    }

    #[test]
    fn stream_serves_retries_of_the_last_range_and_refuses_older_ones() {
        let data = pattern(3000);
        let mut s = Source::reader(Cursor::new(data.clone()), 3000);
        assert_eq!(&s.read(0, 1000).unwrap()[..], &data[..1000]);
        // Retry of the same range, and of a suffix of it.
        assert_eq!(&s.read(0, 1000).unwrap()[..], &data[..1000]);
        assert_eq!(&s.read(400, 600).unwrap()[..], &data[400..1000]);
        // A range straddling the last one and new data (a resync inside a fragment).
        assert_eq!(&s.read(500, 1000).unwrap()[..], &data[500..1500]);
        // Going back before the buffered range is impossible.
        assert!(matches!(
            s.read(0, 10),
            Err(Error::SourceNotRewindable {
                offset: 0,
                buffered_from: 500
            })
        ));
    }

    #[test]
    fn stream_skips_forward_and_detects_a_short_stream() {
        let data = pattern(3000);
        let mut s = Source::reader(Cursor::new(data.clone()), 3000);
        assert_eq!(&s.read(2000, 500).unwrap()[..], &data[2000..2500]);
        let mut short = Source::reader(Cursor::new(pattern(100)), 200);
        assert!(matches!(
            short.read(0, 200),
            Err(Error::SourceChanged { .. })
        ));
    }

    #[test]
    fn file_changes_are_detected() {
        let dir = upload_session_emulator::testkit::temp_dir("usb", "source");
        let path = dir.join("f.bin");
        std::fs::write(&path, pattern(4096)).unwrap();
        let mut s = Source::file(&path).unwrap();
        assert!(s.fingerprint().modified.starts_with("mtime:"));
        s.check_unchanged().unwrap();
        assert_eq!(&s.read(96, 4000).unwrap()[..], &pattern(4096)[96..]);
        // Shrink it: detected by the check and by the read.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(1000).unwrap();
        assert!(matches!(
            s.check_unchanged(),
            Err(Error::SourceChanged { .. })
        ));
        assert!(matches!(s.read(0, 4096), Err(Error::SourceChanged { .. })));
        // Same size, new modification time.
        f.set_len(4096).unwrap();
        let mut s = Source::file(&path).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(matches!(
            s.check_unchanged(),
            Err(Error::SourceChanged { .. })
        ));
        assert!(s.read(0, 10).is_ok());
    }
}
