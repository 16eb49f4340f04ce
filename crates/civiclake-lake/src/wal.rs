//! Write-ahead log: numbered segment files of CRC-framed records, written by one thread that
//! groups concurrent writes into one `write` + one `fsync` (group commit).
//!
//! A record holds the Arrow IPC encoding of the batches of one write request. After the
//! fsync, the thread runs each write's `apply` closure (which puts the rows into the
//! in-memory buffer) and only then acknowledges it, so an acknowledged row is both durable
//! and visible. Rotation for a flush is a command on the same thread, so no write can fall
//! between "in a closed segment" and "in the buffer generation being flushed".
//!
//! Segment layout: `MAGIC` then records `[u32 len][u32 crc32(payload)][payload]`, little
//! endian. Payload: `[u32 entries]` then per entry `[u16 table len][table][u32 ipc len][ipc]`.
//! A torn record at the end of a segment (crash during a write that was never acknowledged)
//! ends the replay of that segment.

use crate::error::{Error, Result};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

const MAGIC: &[u8; 8] = b"CLWAL001";
/// Writes grouped into one fsync at most.
const MAX_GROUP: usize = 512;

/// One table's rows in a WAL record.
pub(crate) type Entry = (String, RecordBatch);

/// Encodes the entries of one write request as a framed WAL record.
pub(crate) fn encode_record(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(
        64 + entries
            .iter()
            .map(|(_, b)| b.get_array_memory_size())
            .sum::<usize>(),
    );
    payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (table, batch) in entries {
        payload.extend_from_slice(&(table.len() as u16).to_le_bytes());
        payload.extend_from_slice(table.as_bytes());
        let len_pos = payload.len();
        payload.extend_from_slice(&[0; 4]);
        {
            let mut writer = StreamWriter::try_new(&mut payload, &batch.schema())?;
            writer.write(batch)?;
            writer.finish()?;
        }
        let ipc_len = (payload.len() - len_pos - 4) as u32;
        payload[len_pos..len_pos + 4].copy_from_slice(&ipc_len.to_le_bytes());
    }
    let mut record = Vec::with_capacity(payload.len() + 8);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

fn decode_payload(payload: &[u8], segment: &str) -> Result<Vec<Entry>> {
    let corrupt = |reason: &str| Error::CorruptWal {
        segment: segment.to_string(),
        reason: reason.to_string(),
    };
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let slice = payload
            .get(pos..pos + n)
            .ok_or_else(|| corrupt("record shorter than its contents"))?;
        pos += n;
        Ok(slice)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt("count"))?);
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let tlen = u16::from_le_bytes(take(2)?.try_into().map_err(|_| corrupt("table"))?);
        let table = std::str::from_utf8(take(tlen as usize)?)
            .map_err(|_| corrupt("table name is not UTF-8"))?
            .to_string();
        let ilen = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt("ipc"))?);
        let ipc = take(ilen as usize)?;
        let reader = StreamReader::try_new(ipc, None)?;
        for batch in reader {
            entries.push((table.clone(), batch?));
        }
    }
    Ok(entries)
}

/// Reads every complete record of a segment file; stops at a torn or corrupt tail.
pub(crate) fn read_segment(path: &Path) -> Result<Vec<Vec<Entry>>> {
    let name = path.display().to_string();
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data).map_err(|e| Error::io(&name, e))?;
        }
        // Deleted by a flush of the server while a read-only reader lists it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&name, e)),
    }
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        return Err(Error::CorruptWal {
            segment: name,
            reason: "bad magic".into(),
        });
    }
    let mut records = Vec::new();
    let mut pos = MAGIC.len();
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let start = pos + 8;
        let end = start + len as usize;
        if end > data.len() {
            tracing::warn!(segment = %name, offset = pos, "torn WAL record at the tail (never acknowledged), ignored");
            break;
        }
        let payload = &data[start..end];
        if crc32fast::hash(payload) != crc {
            tracing::warn!(segment = %name, offset = pos, "WAL record with a bad checksum at the tail, replay of this segment stops here");
            break;
        }
        records.push(decode_payload(payload, &name)?);
        pos = end;
    }
    Ok(records)
}

/// Segment numbers present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(Error::io(dir.display(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name
            .strip_suffix(".wal")
            .and_then(|n| n.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Path of segment `id` in `dir`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

type ApplyFn = Box<dyn FnOnce() + Send>;
type RotateFn = Box<dyn FnOnce(u64) + Send>;

enum Command {
    Write {
        record: Vec<u8>,
        apply: ApplyFn,
        ack: oneshot::Sender<Result<()>>,
    },
    Rotate {
        on_rotate: RotateFn,
        ack: oneshot::Sender<Result<u64>>,
    },
}

/// Handle to the WAL writer thread.
pub(crate) struct Wal {
    tx: parking_lot::Mutex<Option<mpsc::Sender<Command>>>,
    dir: PathBuf,
    bytes: Arc<AtomicU64>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish()
    }
}

struct Writer {
    dir: PathBuf,
    id: u64,
    file: File,
    size: u64,
    fsync: bool,
    segment_bytes: u64,
    bytes: Arc<AtomicU64>,
}

impl Writer {
    fn open(
        dir: &Path,
        id: u64,
        fsync: bool,
        segment_bytes: u64,
        bytes: Arc<AtomicU64>,
    ) -> Result<Self> {
        let path = segment_path(dir, id);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        file.write_all(MAGIC)
            .map_err(|e| Error::io(path.display(), e))?;
        if fsync {
            file.sync_all().map_err(|e| Error::io(path.display(), e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir.display(), e))?;
        }
        bytes.fetch_add(MAGIC.len() as u64, Ordering::Relaxed);
        Ok(Self {
            dir: dir.to_path_buf(),
            id,
            file,
            size: MAGIC.len() as u64,
            fsync,
            segment_bytes,
            bytes,
        })
    }

    fn next(&mut self) -> Result<u64> {
        let closed = self.id;
        let next = Writer::open(
            &self.dir,
            closed + 1,
            self.fsync,
            self.segment_bytes,
            self.bytes.clone(),
        )?;
        *self = next;
        Ok(closed)
    }

    fn write_group(&mut self, buf: &[u8]) -> Result<()> {
        let path = || segment_path(&self.dir, self.id).display().to_string();
        self.file.write_all(buf).map_err(|e| Error::io(path(), e))?;
        if self.fsync {
            self.file.sync_data().map_err(|e| Error::io(path(), e))?;
        }
        self.size += buf.len() as u64;
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn run(mut writer: Writer, rx: mpsc::Receiver<Command>) {
    let mut group: Vec<(ApplyFn, oneshot::Sender<Result<()>>)> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        while pending.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(cmd) => pending.push(cmd),
                Err(_) => break,
            }
        }
        for cmd in pending {
            match cmd {
                Command::Write { record, apply, ack } => {
                    buf.extend_from_slice(&record);
                    group.push((apply, ack));
                }
                Command::Rotate { on_rotate, ack } => {
                    commit_group(&mut writer, &mut buf, &mut group);
                    let result = writer.next().inspect(|&closed| on_rotate(closed));
                    let _ = ack.send(result);
                }
            }
        }
        commit_group(&mut writer, &mut buf, &mut group);
        if writer.size >= writer.segment_bytes
            && let Err(e) = writer.next()
        {
            tracing::error!(error = %e, "could not open the next WAL segment");
        }
    }
}

fn commit_group(
    writer: &mut Writer,
    buf: &mut Vec<u8>,
    group: &mut Vec<(ApplyFn, oneshot::Sender<Result<()>>)>,
) {
    if group.is_empty() {
        return;
    }
    let result = writer.write_group(buf);
    buf.clear();
    for (apply, ack) in group.drain(..) {
        match &result {
            Ok(()) => {
                apply();
                let _ = ack.send(Ok(()));
            }
            Err(e) => {
                let _ = ack.send(Err(Error::Internal(format!("WAL write failed: {e}"))));
            }
        }
    }
}

impl Wal {
    /// Starts the writer thread on a new segment numbered `next_id`.
    pub(crate) fn start(
        dir: &Path,
        next_id: u64,
        fsync: bool,
        segment_bytes: u64,
        existing_bytes: u64,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        let bytes = Arc::new(AtomicU64::new(existing_bytes));
        let writer = Writer::open(dir, next_id, fsync, segment_bytes, bytes.clone())?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("civiclake-wal".into())
            .spawn(move || run(writer, rx))
            .map_err(|e| Error::io("WAL thread", e))?;
        Ok(Self {
            tx: parking_lot::Mutex::new(Some(tx)),
            dir: dir.to_path_buf(),
            bytes,
            thread: parking_lot::Mutex::new(Some(thread)),
        })
    }

    fn send(&self, cmd: Command) -> Result<()> {
        let guard = self.tx.lock();
        let tx = guard.as_ref().ok_or(Error::ShuttingDown)?;
        tx.send(cmd).map_err(|_| Error::ShuttingDown)
    }

    /// Appends a record durably, then runs `apply`, then returns.
    pub(crate) async fn append(&self, record: Vec<u8>, apply: ApplyFn) -> Result<()> {
        let (ack, rx) = oneshot::channel();
        self.send(Command::Write { record, apply, ack })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Closes the current segment and opens the next; `on_rotate(closed_id)` runs on the WAL
    /// thread between the two, with no write in between.
    pub(crate) async fn rotate(&self, on_rotate: RotateFn) -> Result<u64> {
        let (ack, rx) = oneshot::channel();
        self.send(Command::Rotate { on_rotate, ack })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Deletes every segment numbered `<= upto`.
    pub(crate) fn truncate(&self, upto: u64) -> Result<()> {
        for id in list_segments(&self.dir)? {
            if id > upto {
                break;
            }
            let path = segment_path(&self.dir, id);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path).map_err(|e| Error::io(path.display(), e))?;
            self.bytes.fetch_sub(
                len.min(self.bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        Ok(())
    }

    /// Bytes in WAL segments on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Stops the writer thread after the writes already queued.
    pub(crate) fn stop(&self) {
        self.tx.lock().take();
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(v: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![v, v + 1])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn records_round_trip_and_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        let mut data = MAGIC.to_vec();
        data.extend(encode_record(&[("t1".into(), batch(1)), ("t2".into(), batch(10))]).unwrap());
        data.extend(encode_record(&[("t1".into(), batch(3))]).unwrap());
        let third = encode_record(&[("t1".into(), batch(5))]).unwrap();
        data.extend(&third[..third.len() - 3]);
        std::fs::write(&path, &data).unwrap();
        let records = read_segment(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].len(), 2);
        assert_eq!(records[0][1].0, "t2");
        assert_eq!(records[0][1].1, batch(10));
        assert_eq!(records[1][0].1, batch(3));
    }

    #[test]
    fn corrupt_checksum_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 7);
        let mut data = MAGIC.to_vec();
        data.extend(encode_record(&[("t".into(), batch(1))]).unwrap());
        let mut second = encode_record(&[("t".into(), batch(2))]).unwrap();
        let last = second.len() - 1;
        second[last] ^= 0xff;
        data.extend(second);
        std::fs::write(&path, &data).unwrap();
        assert_eq!(read_segment(&path).unwrap().len(), 1);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![7]);
    }

    #[tokio::test]
    async fn writer_applies_after_durable_write_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(dir.path(), 1, true, 1 << 30, 0).unwrap();
        let applied = Arc::new(AtomicU64::new(0));
        for i in 0..3 {
            let a = applied.clone();
            let rec = encode_record(&[("t".into(), batch(i))]).unwrap();
            wal.append(
                rec,
                Box::new(move || {
                    a.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .await
            .unwrap();
        }
        assert_eq!(applied.load(Ordering::SeqCst), 3);
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let closed = wal
            .rotate(Box::new(move |id| s.store(id, Ordering::SeqCst)))
            .await
            .unwrap();
        assert_eq!(closed, 1);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
        assert_eq!(read_segment(&segment_path(dir.path(), 1)).unwrap().len(), 3);
        wal.truncate(1).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![2]);
        wal.stop();
    }
}
