//! An append-only log of records on disk: each record is its length (u32, little endian), its
//! bytes, and a CRC-32 of them. A crash can leave the last record torn; reading stops at the
//! first record that is short or whose checksum fails, and the next append truncates it away,
//! so what was fsync'd before the crash is exactly what is read back.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The largest record read back: a metric batch or an event, with room to spare. A length past
/// it is treated as a torn record, not an allocation request.
pub const MAX_RECORD_BYTES: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct LogError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// An open log, positioned after its last whole record.
pub struct Log {
    path: PathBuf,
    file: File,
    /// Appended since the last fsync.
    dirty: bool,
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

impl Log {
    fn err(path: &Path) -> impl Fn(std::io::Error) -> LogError + '_ {
        move |source| LogError {
            path: path.display().to_string(),
            source,
        }
    }

    /// Opens (or creates) the log at `path` and returns it with every whole record in it.
    pub fn open(path: &Path) -> Result<(Log, Vec<Vec<u8>>), LogError> {
        let err = Log::err(path);
        let mut file = OpenOptions::new()
            .read(true)
            .append(false)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(&err)?;
        let mut all = Vec::new();
        file.read_to_end(&mut all).map_err(&err)?;
        let (records, whole) = parse(&all);
        if whole < all.len() {
            tracing::warn!(
                log = %path.display(),
                dropped = all.len() - whole,
                "a torn record at the end of the log (a crash mid-write) was cut off"
            );
            file.set_len(whole as u64).map_err(&err)?;
            file.sync_all().map_err(&err)?;
        }
        file.seek(SeekFrom::Start(whole as u64)).map_err(&err)?;
        Ok((
            Log {
                path: path.to_path_buf(),
                file,
                dirty: false,
            },
            records,
        ))
    }

    /// Appends one record (not yet durable: see [`Log::sync`]).
    pub fn append(&mut self, record: &[u8]) -> Result<(), LogError> {
        let len = u32::try_from(record.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD_BYTES)
            .ok_or_else(|| LogError {
                path: self.path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("a record of {} bytes is past the limit", record.len()),
                ),
            })?;
        let mut buf = Vec::with_capacity(record.len() + 8);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(record);
        buf.extend_from_slice(&crc32(record).to_le_bytes());
        self.file.write_all(&buf).map_err(Log::err(&self.path))?;
        self.dirty = true;
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.dirty {
            self.file.sync_data().map_err(Log::err(&self.path))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Appends one record and makes it durable before returning.
    pub fn append_durable(&mut self, record: &[u8]) -> Result<(), LogError> {
        self.append(record)?;
        self.sync()
    }
}

/// Every whole record of `all`, and how many bytes they take.
fn parse(all: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(head) = all.get(at..at + 4) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if len > MAX_RECORD_BYTES {
            break;
        }
        let len = len as usize;
        let Some(body) = all.get(at + 4..at + 4 + len) else {
            break;
        };
        let Some(sum) = all.get(at + 4 + len..at + 8 + len) else {
            break;
        };
        if crc32(body).to_le_bytes() != sum {
            break;
        }
        out.push(body.to_vec());
        at += 8 + len;
    }
    (out, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("events.log");
        let (mut log, none) = Log::open(&p).expect("open");
        assert!(none.is_empty());
        log.append_durable(b"one").expect("append");
        log.append(b"two").expect("append");
        log.sync().expect("sync");
        drop(log);
        // A crash mid-write: half a record at the end.
        let mut f = OpenOptions::new().append(true).open(&p).expect("open");
        f.write_all(&[200, 0, 0, 0, b'x']).expect("torn");
        drop(f);
        let (mut log, back) = Log::open(&p).expect("reopen");
        assert_eq!(back, vec![b"one".to_vec(), b"two".to_vec()]);
        log.append_durable(b"three").expect("append after the cut");
        drop(log);
        let (_, back) = Log::open(&p).expect("reopen");
        assert_eq!(
            back,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn a_flipped_bit_ends_the_log_there() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("x.log");
        let (mut log, _) = Log::open(&p).expect("open");
        log.append_durable(b"kept").expect("a");
        log.append_durable(b"damaged").expect("b");
        drop(log);
        let mut bytes = std::fs::read(&p).expect("read");
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(&p, &bytes).expect("write");
        let (_, back) = Log::open(&p).expect("reopen");
        assert_eq!(back, vec![b"kept".to_vec()]);
        // A length past the limit is a torn record, not an allocation.
        std::fs::write(&p, [0xff, 0xff, 0xff, 0x7f, 1, 2, 3]).expect("write");
        let (_, back) = Log::open(&p).expect("reopen");
        assert!(back.is_empty());
    }

    #[test]
    fn crc_is_the_standard_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }
}
