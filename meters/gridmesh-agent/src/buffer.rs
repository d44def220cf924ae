//! The agent's disk buffer: every batch is on disk before it is sent, and leaves only when the
//! service has acknowledged its commit. A `kill -9` at any instant loses nothing that was
//! appended and corrupts nothing: each append is written and fsynced before it returns, a torn
//! last record is cut off at the next start, and the acknowledgement watermark is replaced
//! atomically.
//!
//! Layout in the buffer's directory:
//! * `seg-<first seq>.log`: append-only segments of records
//!   `[0xB1][len u32][seq u64][crc32 u32][payload]` (big-endian; the CRC covers seq and payload);
//! * `acked`: the highest sequence number below which everything is acknowledged (8 bytes and
//!   their CRC), written to a temporary file and renamed.
//!
//! **When it fills** (more than `max_bytes` on disk): the oldest segment is dropped, its batches
//! counted in [`Buffer::dropped`]. The newest readings are kept; the service sees the dropped
//! sequence numbers as gaps. With the default 512 MiB and batches of 10 readings, a week of one
//! reading a second (the agent merges its devices into one reading per poll: 604 800 readings,
//! 60 480 batches of about 925 bytes on disk with every field present) takes about 53 MiB, so
//! the default holds more than 9 weeks; even five separate readings a second (five devices kept
//! apart) would fit a week in about 267 MiB. A test checks this arithmetic against real
//! encoded batches.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

const MAGIC: u8 = 0xB1;
const HEADER: usize = 1 + 4 + 8 + 4;

/// Bytes a batch of `payload` bytes takes on disk (its record header included).
#[must_use]
pub fn record_bytes(payload: usize) -> u64 {
    (HEADER + payload) as u64
}
/// Largest payload accepted (a batch is far smaller).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// What went wrong with the buffer.
#[derive(Debug, Error)]
pub enum BufferError {
    /// The file system refused.
    #[error("buffer {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A payload beyond [`MAX_PAYLOAD`].
    #[error("a batch of {0} bytes is larger than the buffer takes ({MAX_PAYLOAD})")]
    TooLarge(usize),
    /// Sequence numbers must grow.
    #[error("sequence number {seq} is not after the last one buffered ({last})")]
    NotIncreasing {
        /// Given.
        seq: u64,
        /// The last appended.
        last: u64,
    },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> BufferError + '_ {
    move |source| BufferError::Io { path: path.to_owned(), source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    segment: u64,
    offset: u64,
    len: u32,
}

/// What the buffer found when it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Batches waiting to be sent.
    pub pending: usize,
    /// Bytes of a torn last record cut off.
    pub truncated_bytes: u64,
}

/// The disk buffer of one agent.
#[derive(Debug)]
pub struct Buffer {
    dir: PathBuf,
    max_bytes: u64,
    /// Segment first seq → its size in bytes.
    segments: BTreeMap<u64, u64>,
    /// Pending batches by sequence number.
    index: BTreeMap<u64, Entry>,
    /// Everything at or below is acknowledged.
    watermark: u64,
    /// Acknowledged above the watermark (acks may come out of order).
    acked_above: BTreeSet<u64>,
    last_seq: Option<u64>,
    dropped: u64,
    segment_bytes: u64,
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.log"))
}

fn sync_dir(dir: &Path) -> Result<(), BufferError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir`, keeping at most `max_bytes` on disk.
    ///
    /// # Errors
    /// The directory or a file cannot be read or written.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Self, Recovery), BufferError> {
        Self::open_with(dir, max_bytes, SEGMENT_BYTES)
    }

    /// [`Buffer::open`] with segments of `segment_bytes` (small ones in tests).
    ///
    /// # Errors
    /// As [`Buffer::open`].
    pub fn open_with(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
    ) -> Result<(Self, Recovery), BufferError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let watermark = read_watermark(dir)?;
        let mut firsts: Vec<u64> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut me = Self {
            dir: dir.to_owned(),
            max_bytes,
            segments: BTreeMap::new(),
            index: BTreeMap::new(),
            watermark,
            acked_above: BTreeSet::new(),
            last_seq: None,
            dropped: 0,
            segment_bytes: segment_bytes.max(1),
        };
        let mut recovery = Recovery::default();
        let count = firsts.len();
        for (k, first) in firsts.into_iter().enumerate() {
            let path = seg_path(dir, first);
            let (valid, size) = me.scan(first, &path)?;
            if valid < size {
                // Only the last segment can end in a torn write; elsewhere it is damage, and
                // the rest of that segment cannot be trusted either.
                let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                f.set_len(valid).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                recovery.truncated_bytes += size - valid;
                if k + 1 < count {
                    tracing::warn!(segment = %path.display(), "damaged buffer segment cut short");
                }
            }
            me.segments.insert(first, valid);
        }
        me.index.retain(|seq, _| *seq > watermark);
        me.drop_acked_segments()?;
        recovery.pending = me.index.len();
        Ok((me, recovery))
    }

    /// Indexes a segment's valid records; returns (valid length, file length).
    fn scan(&mut self, first: u64, path: &Path) -> Result<(u64, u64), BufferError> {
        let mut bytes = Vec::new();
        File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_err(path))?;
        let mut at = 0_usize;
        while at + HEADER <= bytes.len() {
            let h = &bytes[at..at + HEADER];
            let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
            let seq = u64::from_be_bytes([h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12]]);
            let crc = u32::from_be_bytes([h[13], h[14], h[15], h[16]]);
            if h[0] != MAGIC || len > MAX_PAYLOAD || at + HEADER + len > bytes.len() {
                break;
            }
            let payload = &bytes[at + HEADER..at + HEADER + len];
            if checksum(seq, payload) != crc || self.last_seq.is_some_and(|l| seq <= l) {
                break;
            }
            self.index.insert(seq, Entry { segment: first, offset: at as u64, len: len as u32 });
            self.last_seq = Some(seq);
            at += HEADER + len;
        }
        Ok((at as u64, bytes.len() as u64))
    }

    /// Appends a batch; when this returns, it is on disk.
    ///
    /// # Errors
    /// A sequence number not after the last, an oversized payload, or the disk.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), BufferError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(BufferError::TooLarge(payload.len()));
        }
        if let Some(last) = self.last_seq.filter(|l| seq <= *l) {
            return Err(BufferError::NotIncreasing { seq, last });
        }
        let (first, size) = match self.segments.iter().next_back() {
            Some((&first, &size)) if size < self.segment_bytes => (first, size),
            _ => (seq, 0),
        };
        let path = seg_path(&self.dir, first);
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.push(MAGIC);
        record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        record.extend_from_slice(&seq.to_be_bytes());
        record.extend_from_slice(&checksum(seq, payload).to_be_bytes());
        record.extend_from_slice(payload);
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        f.write_all(&record).map_err(io_err(&path))?;
        f.sync_data().map_err(io_err(&path))?;
        if size == 0 {
            sync_dir(&self.dir)?;
        }
        self.segments.insert(first, size + record.len() as u64);
        self.index.insert(seq, Entry { segment: first, offset: size, len: payload.len() as u32 });
        self.last_seq = Some(seq);
        self.enforce_limit()
    }

    /// Up to `limit` pending batches, oldest first: (sequence number, payload).
    ///
    /// # Errors
    /// A segment cannot be read.
    pub fn pending(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, BufferError> {
        self.pending_seqs(limit)
            .into_iter()
            .map(|seq| Ok((seq, self.payload(seq)?.unwrap_or_default())))
            .collect()
    }

    /// The sequence numbers of up to `limit` pending batches, oldest first (no disk read).
    #[must_use]
    pub fn pending_seqs(&self, limit: usize) -> Vec<u64> {
        self.index.keys().copied().filter(|s| !self.acked_above.contains(s)).take(limit).collect()
    }

    /// A pending batch's payload; `None` when it is no longer pending.
    ///
    /// # Errors
    /// Its segment cannot be read.
    pub fn payload(&self, seq: u64) -> Result<Option<Vec<u8>>, BufferError> {
        let Some(e) = self.index.get(&seq) else { return Ok(None) };
        let path = seg_path(&self.dir, e.segment);
        let mut f = File::open(&path).map_err(io_err(&path))?;
        f.seek(SeekFrom::Start(e.offset + HEADER as u64)).map_err(io_err(&path))?;
        let mut payload = vec![0_u8; e.len as usize];
        f.read_exact(&mut payload).map_err(io_err(&path))?;
        Ok(Some(payload))
    }

    /// Number of batches not acknowledged.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len() - self.acked_above.len()
    }

    /// True when everything is acknowledged.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last sequence number appended (kept across restarts), if any: the agent continues
    /// after it.
    #[must_use]
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq.or((self.watermark > 0).then_some(self.watermark))
    }

    /// Batches dropped because the buffer was full, since it opened.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes on disk.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }

    /// Marks a batch acknowledged; whole segments go once everything in them is.
    ///
    /// # Errors
    /// The watermark or a segment cannot be written or removed.
    pub fn ack(&mut self, seq: u64) -> Result<(), BufferError> {
        if seq <= self.watermark || !self.index.contains_key(&seq) {
            return Ok(());
        }
        self.acked_above.insert(seq);
        // The watermark moves over every acknowledged batch at the front.
        let mut moved = false;
        while let Some((&front, _)) = self.index.iter().next() {
            if !self.acked_above.remove(&front) {
                break;
            }
            self.index.remove(&front);
            self.watermark = front;
            moved = true;
        }
        if moved {
            write_watermark(&self.dir, self.watermark)?;
            self.drop_acked_segments()?;
        }
        Ok(())
    }

    fn drop_acked_segments(&mut self) -> Result<(), BufferError> {
        let live: BTreeSet<u64> = self.index.values().map(|e| e.segment).collect();
        let newest = self.segments.keys().next_back().copied();
        let gone: Vec<u64> =
            self.segments.keys().copied().filter(|f| !live.contains(f) && Some(*f) != newest).collect();
        for first in gone {
            let path = seg_path(&self.dir, first);
            fs::remove_file(&path).map_err(io_err(&path))?;
            self.segments.remove(&first);
        }
        Ok(())
    }

    fn enforce_limit(&mut self) -> Result<(), BufferError> {
        while self.bytes() > self.max_bytes && self.segments.len() > 1 {
            let Some((&oldest, _)) = self.segments.iter().next() else { break };
            let lost: Vec<u64> =
                self.index.iter().filter(|(_, e)| e.segment == oldest).map(|(s, _)| *s).collect();
            for s in &lost {
                self.index.remove(s);
                self.acked_above.remove(s);
            }
            self.dropped += lost.len() as u64;
            let path = seg_path(&self.dir, oldest);
            fs::remove_file(&path).map_err(io_err(&path))?;
            self.segments.remove(&oldest);
            if let Some(&last_lost) = lost.last() {
                self.watermark = self.watermark.max(last_lost);
                write_watermark(&self.dir, self.watermark)?;
            }
            tracing::warn!(dropped = lost.len(), "the disk buffer is full: oldest batches dropped");
        }
        Ok(())
    }
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_be_bytes());
    h.update(payload);
    h.finalize()
}

fn read_watermark(dir: &Path) -> Result<u64, BufferError> {
    let path = dir.join("acked");
    match fs::read(&path) {
        Ok(b) if b.len() == 12 => {
            let seq = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            let crc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
            // A damaged watermark means "nothing acknowledged": batches are sent again, and
            // the service stores each once.
            Ok(if checksum(seq, &[]) == crc { seq } else { 0 })
        }
        Ok(_) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(BufferError::Io { path, source: e }),
    }
}

fn write_watermark(dir: &Path, seq: u64) -> Result<(), BufferError> {
    let tmp = dir.join("acked.tmp");
    let mut b = seq.to_be_bytes().to_vec();
    b.extend_from_slice(&checksum(seq, &[]).to_be_bytes());
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&b).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    let path = dir.join("acked");
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}
