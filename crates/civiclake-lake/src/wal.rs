//! Write-ahead log: numbered segment files of CRC-framed records, written by one thread that
//! groups concurrent writes into one `write` + one `fsync` (group commit).
//!
//! A record holds the entries of one request: rows, a replace-by-key, a delete-by-predicate
//! or a checkpoint ([`Entry`]); one record is applied as a whole. After the fsync, the thread
//! runs each record's `apply` closure (which changes the in-memory buffer) with the number of
//! the segment the record is in, and only then acknowledges it, so an acknowledged change is
//! both durable and visible. Rotation for a flush is a command on the same thread, so no
//! write can fall between "in a closed segment" and "in the buffer generation being flushed".
//!
//! Segment layout: an 8-byte magic then records `[u32 len][u32 crc32(payload)][payload]`,
//! little endian. Strings are `[u16 len][UTF-8]`, blobs `[u32 len][bytes]`.
//!
//! * `CLWAL001` segments (before record kinds): payload `[u32 entries]` then per entry
//!   `[table][ipc blob]` — rows only. They are still read.
//! * `CLWAL002` segments: payload `[u32 entries]` then per entry `[u8 kind]` and
//!   - 0 rows: `[table][ipc blob]`
//!   - 1 replace-by-key: `[table][u16 n][n key column names][ipc blob]`
//!   - 2 delete-where: `[table][JSON blob of the RowPredicate]`
//!   - 3 checkpoint: `[name][i64 time µs][JSON blob of the value]`
//!
//! A torn record at the end of a segment (crash during a write that was never acknowledged)
//! ends the replay of that segment.

use crate::error::{Error, Result};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use civiclake_core::RowPredicate;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Magic of segments holding rows only (read for compatibility).
const MAGIC_V1: &[u8; 8] = b"CLWAL001";
/// Magic of segments with record kinds (written).
const MAGIC: &[u8; 8] = b"CLWAL002";
/// Writes grouped into one fsync at most.
const MAX_GROUP: usize = 512;

const KIND_ROWS: u8 = 0;
const KIND_REPLACE: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_CHECKPOINT: u8 = 3;

/// One change in a WAL record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    /// Rows appended to a table.
    Rows {
        /// Table name.
        table: String,
        /// The rows.
        batch: RecordBatch,
    },
    /// Rows whose key tuple is in `batch` are deleted, then `batch` is appended.
    ReplaceByKey {
        /// Table name.
        table: String,
        /// Key columns.
        keys: Vec<String>,
        /// The new rows (one per key tuple).
        batch: RecordBatch,
    },
    /// Rows matching `predicate` are deleted.
    DeleteWhere {
        /// Table name.
        table: String,
        /// Bound predicate.
        predicate: RowPredicate,
    },
    /// A named checkpoint takes a new value.
    Checkpoint {
        /// Checkpoint name.
        name: String,
        /// When it was set (µs since the epoch, UTC).
        time: i64,
        /// The value as JSON text.
        value: String,
    },
}

fn put_str(payload: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = u16::try_from(s.len())
        .map_err(|_| Error::InvalidWrite(format!("name of {} bytes is too long", s.len())))?;
    payload.extend_from_slice(&len.to_le_bytes());
    payload.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_blob(payload: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| Error::InvalidWrite("WAL entry larger than 4 GiB".into()))?;
    payload.extend_from_slice(&len.to_le_bytes());
    payload.extend_from_slice(bytes);
    Ok(())
}

fn put_ipc(payload: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
    let len_pos = payload.len();
    payload.extend_from_slice(&[0; 4]);
    {
        let mut writer = StreamWriter::try_new(&mut *payload, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    let ipc_len = u32::try_from(payload.len() - len_pos - 4)
        .map_err(|_| Error::InvalidWrite("WAL entry larger than 4 GiB".into()))?;
    payload[len_pos..len_pos + 4].copy_from_slice(&ipc_len.to_le_bytes());
    Ok(())
}

fn json_error(e: serde_json::Error) -> Error {
    Error::Internal(format!("WAL entry encoding: {e}"))
}

/// Encodes the entries of one request as a framed WAL record.
pub(crate) fn encode_record(entries: &[Entry]) -> Result<Vec<u8>> {
    let size: usize = entries
        .iter()
        .map(|e| match e {
            Entry::Rows { batch, .. } | Entry::ReplaceByKey { batch, .. } => {
                batch.get_array_memory_size()
            }
            _ => 256,
        })
        .sum();
    let mut payload = Vec::with_capacity(64 + size);
    payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        match entry {
            Entry::Rows { table, batch } => {
                payload.push(KIND_ROWS);
                put_str(&mut payload, table)?;
                put_ipc(&mut payload, batch)?;
            }
            Entry::ReplaceByKey { table, keys, batch } => {
                payload.push(KIND_REPLACE);
                put_str(&mut payload, table)?;
                let n = u16::try_from(keys.len())
                    .map_err(|_| Error::InvalidWrite("too many key columns".into()))?;
                payload.extend_from_slice(&n.to_le_bytes());
                for k in keys {
                    put_str(&mut payload, k)?;
                }
                put_ipc(&mut payload, batch)?;
            }
            Entry::DeleteWhere { table, predicate } => {
                payload.push(KIND_DELETE);
                put_str(&mut payload, table)?;
                put_blob(
                    &mut payload,
                    &serde_json::to_vec(predicate).map_err(json_error)?,
                )?;
            }
            Entry::Checkpoint { name, time, value } => {
                payload.push(KIND_CHECKPOINT);
                put_str(&mut payload, name)?;
                payload.extend_from_slice(&time.to_le_bytes());
                put_blob(&mut payload, value.as_bytes())?;
            }
        }
    }
    let mut record = Vec::with_capacity(payload.len() + 8);
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::InvalidWrite("WAL record larger than 4 GiB".into()))?;
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// A cursor over a record's payload.
struct Reader<'a> {
    payload: &'a [u8],
    pos: usize,
    segment: &'a str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, reason: &str) -> Error {
        Error::CorruptWal {
            segment: self.segment.to_string(),
            reason: reason.to_string(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.payload.get(self.pos..end))
            .ok_or_else(|| self.corrupt("record shorter than its contents"))?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| self.corrupt("length"))
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| self.corrupt("name is not UTF-8"))
    }

    fn blob(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn batches(&mut self) -> Result<Vec<RecordBatch>> {
        let ipc = self.blob()?;
        let reader = StreamReader::try_new(ipc, None)?;
        Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

fn decode_payload(payload: &[u8], segment: &str, version: u8) -> Result<Vec<Entry>> {
    let mut r = Reader {
        payload,
        pos: 0,
        segment,
    };
    let count = r.u32()?;
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let kind = if version == 1 { KIND_ROWS } else { r.u8()? };
        match kind {
            KIND_ROWS => {
                let table = r.string()?;
                for batch in r.batches()? {
                    entries.push(Entry::Rows {
                        table: table.clone(),
                        batch,
                    });
                }
            }
            KIND_REPLACE => {
                let table = r.string()?;
                let n = r.u16()?;
                let keys = (0..n).map(|_| r.string()).collect::<Result<Vec<_>>>()?;
                let batches = r.batches()?;
                let batch = match batches.as_slice() {
                    [b] => b.clone(),
                    [first, ..] => arrow::compute::concat_batches(&first.schema(), &batches)?,
                    [] => return Err(r.corrupt("replace-by-key without rows")),
                };
                entries.push(Entry::ReplaceByKey { table, keys, batch });
            }
            KIND_DELETE => {
                let table = r.string()?;
                let predicate = serde_json::from_slice(r.blob()?)
                    .map_err(|e| r.corrupt(&format!("delete predicate: {e}")))?;
                entries.push(Entry::DeleteWhere { table, predicate });
            }
            KIND_CHECKPOINT => {
                let name = r.string()?;
                let time = r.i64()?;
                let value = std::str::from_utf8(r.blob()?)
                    .map_err(|_| r.corrupt("checkpoint value is not UTF-8"))?
                    .to_string();
                entries.push(Entry::Checkpoint { name, time, value });
            }
            other => return Err(r.corrupt(&format!("unknown entry kind {other}"))),
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
    let version = match data.get(..MAGIC.len()) {
        Some(m) if m == MAGIC => 2,
        Some(m) if m == MAGIC_V1 => 1,
        _ if data.is_empty() => return Ok(Vec::new()),
        _ => {
            return Err(Error::CorruptWal {
                segment: name,
                reason: "bad magic".into(),
            });
        }
    };
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
        records.push(decode_payload(payload, &name, version)?);
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

/// Runs on the WAL thread after the record is durable, with the record's segment number.
type ApplyFn = Box<dyn FnOnce(u64) + Send>;
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
    let segment = writer.id;
    for (apply, ack) in group.drain(..) {
        match &result {
            Ok(()) => {
                apply(segment);
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

    /// Appends a record durably, then runs `apply` with the record's segment, then returns.
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

    fn rows(table: &str, v: i64) -> Entry {
        Entry::Rows {
            table: table.into(),
            batch: batch(v),
        }
    }

    #[test]
    fn records_round_trip_and_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        let mut data = MAGIC.to_vec();
        data.extend(encode_record(&[rows("t1", 1), rows("t2", 10)]).unwrap());
        data.extend(encode_record(&[rows("t1", 3)]).unwrap());
        let third = encode_record(&[rows("t1", 5)]).unwrap();
        data.extend(&third[..third.len() - 3]);
        std::fs::write(&path, &data).unwrap();
        let records = read_segment(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], vec![rows("t1", 1), rows("t2", 10)]);
        assert_eq!(records[1], vec![rows("t1", 3)]);
    }

    #[test]
    fn every_entry_kind_round_trips_in_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 3);
        let entries = vec![
            rows("air", 1),
            Entry::ReplaceByKey {
                table: "agg".into(),
                keys: vec!["a".into(), "b".into()],
                batch: batch(7),
            },
            Entry::DeleteWhere {
                table: "air".into(),
                predicate: RowPredicate::time_before(1_000).and(RowPredicate::eq("sensor", "s'1")),
            },
            Entry::Checkpoint {
                name: "kafka/air/0".into(),
                time: 1_767_225_600_000_000,
                value: r#"{"offset":42}"#.into(),
            },
        ];
        let mut data = MAGIC.to_vec();
        data.extend(encode_record(&entries).unwrap());
        std::fs::write(&path, &data).unwrap();
        assert_eq!(read_segment(&path).unwrap(), vec![entries]);
    }

    /// A record as civiclake wrote it before record kinds existed (`CLWAL001`).
    fn v1_record(table: &str, b: &RecordBatch) -> Vec<u8> {
        let mut payload = 1u32.to_le_bytes().to_vec();
        payload.extend_from_slice(&(table.len() as u16).to_le_bytes());
        payload.extend_from_slice(table.as_bytes());
        let mut ipc = Vec::new();
        let mut w = StreamWriter::try_new(&mut ipc, &b.schema()).unwrap();
        w.write(b).unwrap();
        w.finish().unwrap();
        drop(w);
        payload.extend_from_slice(&(ipc.len() as u32).to_le_bytes());
        payload.extend_from_slice(&ipc);
        let mut record = (payload.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        record
    }

    #[test]
    fn segments_of_the_first_format_read_as_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 2);
        let mut data = MAGIC_V1.to_vec();
        data.extend(v1_record("air", &batch(1)));
        data.extend(v1_record("noise", &batch(4)));
        std::fs::write(&path, &data).unwrap();
        assert_eq!(
            read_segment(&path).unwrap(),
            vec![vec![rows("air", 1)], vec![rows("noise", 4)]]
        );
    }

    #[test]
    fn unknown_entry_kind_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 4);
        let payload = [1u8, 0, 0, 0, 9];
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        data.extend_from_slice(&payload);
        std::fs::write(&path, &data).unwrap();
        let err = read_segment(&path).unwrap_err().to_string();
        assert!(err.contains("unknown entry kind 9"), "{err}");
    }

    #[test]
    fn corrupt_checksum_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 7);
        let mut data = MAGIC.to_vec();
        data.extend(encode_record(&[rows("t", 1)]).unwrap());
        let mut second = encode_record(&[rows("t", 2)]).unwrap();
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
            let rec = encode_record(&[rows("t", i)]).unwrap();
            wal.append(
                rec,
                Box::new(move |segment| {
                    assert_eq!(segment, 1);
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
