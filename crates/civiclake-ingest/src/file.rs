//! Streaming file readers for the command-line importer.

use crate::error::{Error, Result};
use crate::json::{decode_json, decode_ndjson_lines};
use crate::line_protocol::decode_lines;
use crate::normalize::{epoch_time_to_micros, normalize_batch};
use crate::types::{DecodeOptions, Decoded, MAX_ROW_ERRORS, RowError, TableBatch, required_table};
use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use arrow::datatypes::{Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use serde::Serialize;
use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

/// Rows per batch handed to the sink (and lines per decoded chunk of text files).
const CHUNK_ROWS: usize = 65_536;

/// Rows of the CSV file used to infer its schema.
const CSV_INFER_ROWS: usize = 1000;

/// A file format the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FileFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// One JSON object per line (a file holding one JSON array is read too).
    Ndjson,
    /// InfluxDB line protocol.
    LineProtocol,
}

impl FileFormat {
    /// The format of a file by its extension (case-insensitive): `.csv`; `.parquet`, `.pq`;
    /// `.ndjson`, `.jsonl`, `.json`; `.lp`, `.txt`, `.line`.
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(FileFormat::Csv),
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "ndjson" | "jsonl" | "json" => Some(FileFormat::Ndjson),
            "lp" | "txt" | "line" => Some(FileFormat::LineProtocol),
            _ => None,
        }
    }
}

/// What [`read_file`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportStats {
    /// Rows handed to the sink.
    pub rows: usize,
    /// The first 100 rejected rows.
    pub rejected: Vec<RowError>,
    /// Rows rejected in total.
    pub rejected_rows: usize,
    /// Bytes of the file read.
    pub bytes: u64,
}

/// Reads a file as normalized batches of about 64k rows, calling `on_batch` for each and
/// `on_progress` with the bytes read so far.
///
/// CSV, Parquet and NDJSON need `opts.table`; line protocol uses it when set, else each
/// line's measurement. CSV needs a header; its schema is inferred from the first 1000 rows,
/// its time column is `time` or `timestamp` (an integer one is in `opts.precision` units) and
/// its string columns are tags. Parquet's time column is `time` or `timestamp` too (an integer
/// one holds epoch microseconds). Text formats keep column types consistent across chunks.
///
/// With `opts.accept_partial == false`, the first chunk with rejected rows stops the import
/// with [`Error::Rejected`]; batches of earlier chunks were already handed to `on_batch`.
pub fn read_file(
    path: &Path,
    format: FileFormat,
    opts: &DecodeOptions,
    on_progress: &mut dyn FnMut(u64),
    on_batch: &mut dyn FnMut(TableBatch) -> Result<()>,
) -> Result<ImportStats> {
    read_file_chunked(path, format, opts, CHUNK_ROWS, on_progress, on_batch)
}

fn read_file_chunked(
    path: &Path,
    format: FileFormat,
    opts: &DecodeOptions,
    chunk_rows: usize,
    on_progress: &mut dyn FnMut(u64),
    on_batch: &mut dyn FnMut(TableBatch) -> Result<()>,
) -> Result<ImportStats> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if format != FileFormat::LineProtocol {
        required_table(opts, format_name(format))?;
    }
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut import = Import {
        opts,
        stats: ImportStats::default(),
        seen: HashMap::new(),
        on_batch,
    };
    match format {
        FileFormat::Csv => {
            read_csv(file, &mut import, chunk_rows, on_progress).map_err(|e| match e {
                Error::Csv(arrow::error::ArrowError::IoError(_, source)) => io(source),
                other => other,
            })?
        }
        FileFormat::Parquet => read_parquet(file, size, &mut import, chunk_rows, on_progress)?,
        FileFormat::Ndjson | FileFormat::LineProtocol => {
            read_lines(file, format, &mut import, chunk_rows, on_progress).map_err(|e| match e {
                ChunkError::Io(source) => io(source),
                ChunkError::Other(e) => e,
            })?
        }
    }
    import.stats.bytes = size;
    on_progress(size);
    Ok(import.stats)
}

fn format_name(format: FileFormat) -> &'static str {
    match format {
        FileFormat::Csv => "CSV",
        FileFormat::Parquet => "Parquet",
        FileFormat::Ndjson => "NDJSON",
        FileFormat::LineProtocol => "line protocol",
    }
}

/// State of one import.
struct Import<'a> {
    opts: &'a DecodeOptions,
    stats: ImportStats,
    /// Schemas of the batches handed over so far, so later chunks coerce to them.
    seen: HashMap<String, SchemaRef>,
    on_batch: &'a mut dyn FnMut(TableBatch) -> Result<()>,
}

impl Import<'_> {
    fn table(&self) -> String {
        self.opts.table.clone().unwrap_or_default()
    }

    fn emit(&mut self, table_batch: TableBatch) -> Result<()> {
        let schema = table_batch.batch.schema();
        match self.seen.get(&table_batch.table) {
            None => {
                self.seen.insert(table_batch.table.clone(), schema);
            }
            Some(previous) => {
                let mut fields: Vec<_> = previous.fields().iter().cloned().collect();
                for field in schema.fields() {
                    if previous.field_with_name(field.name()).is_err() {
                        fields.push(field.clone());
                    }
                }
                if fields.len() > previous.fields().len() {
                    let merged = Arc::new(Schema::new(fields));
                    self.seen.insert(table_batch.table.clone(), merged);
                }
            }
        }
        self.stats.rows += table_batch.batch.num_rows();
        (self.on_batch)(table_batch)
    }

    /// Hands over a decoded chunk, or stops on rejected rows unless partial writes are fine.
    fn emit_decoded(&mut self, decoded: Decoded, chunk_rows: usize) -> Result<()> {
        self.stats.rejected_rows += decoded.rejected_rows;
        if !self.opts.accept_partial && decoded.rejected_rows > 0 {
            return Err(Error::Rejected {
                rows_before: self.stats.rows,
                errors: decoded.rejected,
            });
        }
        let room = MAX_ROW_ERRORS.saturating_sub(self.stats.rejected.len());
        self.stats
            .rejected
            .extend(decoded.rejected.into_iter().take(room));
        for table_batch in decoded.batches {
            let batch = table_batch.batch;
            let mut offset = 0;
            while offset < batch.num_rows() {
                let length = chunk_rows.min(batch.num_rows() - offset);
                self.emit(TableBatch {
                    table: table_batch.table.clone(),
                    batch: batch.slice(offset, length),
                })?;
                offset += length;
            }
        }
        Ok(())
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

fn time_column_of(schema: &Schema, what: &str) -> Result<&'static str> {
    ["time", "timestamp"]
        .into_iter()
        .find(|name| schema.field_with_name(name).is_ok())
        .ok_or_else(|| Error::Schema(format!("the {what} has no 'time' or 'timestamp' column")))
}

fn read_csv(
    mut file: File,
    import: &mut Import<'_>,
    chunk_rows: usize,
    on_progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let format = Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(&mut BufReader::new(&mut file), Some(CSV_INFER_ROWS))
        .map_err(Error::Csv)?;
    let time_column = time_column_of(&schema, "CSV file")?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::Csv(e.into()))?;
    let count = Rc::new(Cell::new(0));
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .with_batch_size(chunk_rows)
        .build(Counting {
            inner: file,
            count: count.clone(),
        })
        .map_err(Error::Csv)?;
    let table = import.table();
    for batch in reader {
        let batch = batch.map_err(Error::Csv)?;
        let batch = epoch_time_to_micros(batch, time_column, import.opts.precision)?;
        let batch = normalize_batch(&batch, time_column, None)?;
        import.emit(TableBatch {
            table: table.clone(),
            batch,
        })?;
        on_progress(count.get());
    }
    Ok(())
}

fn read_parquet(
    file: File,
    size: u64,
    import: &mut Import<'_>,
    chunk_rows: usize,
    on_progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(Error::Parquet)?;
    let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let time_column = time_column_of(builder.schema(), "Parquet file")?;
    let reader = builder
        .with_batch_size(chunk_rows)
        .build()
        .map_err(Error::Parquet)?;
    let table = import.table();
    let mut rows_read = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| Error::Parquet(ParquetError::ArrowError(e.to_string())))?;
        rows_read += batch.num_rows() as u64;
        let batch = normalize_batch(&batch, time_column, None)?;
        import.emit(TableBatch {
            table: table.clone(),
            batch,
        })?;
        on_progress(size.saturating_mul(rows_read.min(total_rows)) / total_rows);
    }
    Ok(())
}

enum ChunkError {
    Io(std::io::Error),
    Other(Error),
}

impl From<Error> for ChunkError {
    fn from(e: Error) -> Self {
        ChunkError::Other(e)
    }
}

fn read_lines(
    file: File,
    format: FileFormat,
    import: &mut Import<'_>,
    chunk_rows: usize,
    on_progress: &mut dyn FnMut(u64),
) -> Result<(), ChunkError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    if format == FileFormat::Ndjson {
        // A `.json` file may hold one array rather than one object per line.
        let start = reader.fill_buf().map_err(ChunkError::Io)?;
        if start.trim_ascii_start().first() == Some(&b'[') {
            let mut body = Vec::new();
            reader.read_to_end(&mut body).map_err(ChunkError::Io)?;
            let decoded = decode_json(&body, import.opts, &import.seen)?;
            import.emit_decoded(decoded, chunk_rows)?;
            on_progress(body.len() as u64);
            return Ok(());
        }
    }
    let mut chunk = Vec::new();
    let mut lines = 0;
    let mut first_line = 1;
    let mut bytes = 0u64;
    loop {
        let n = reader
            .read_until(b'\n', &mut chunk)
            .map_err(ChunkError::Io)?;
        bytes += n as u64;
        if n > 0 {
            lines += 1;
        }
        if (n == 0 && !chunk.is_empty()) || lines == chunk_rows {
            let decoded = match format {
                FileFormat::Ndjson => {
                    decode_ndjson_lines(&chunk, first_line, import.opts, &import.seen)?
                }
                _ => decode_lines(&chunk, first_line, import.opts, &import.seen)?,
            };
            import.emit_decoded(decoded, chunk_rows)?;
            on_progress(bytes);
            first_line += lines;
            lines = 0;
            chunk.clear();
        }
        if n == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use crate::types::Precision;
    use arrow::array::{
        ArrayRef, Float32Array, Int32Array, RecordBatch, StringArray, TimestampNanosecondArray,
    };
    use parquet::arrow::ArrowWriter;
    use std::io::Write;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            table: Some("air".into()),
            precision: Precision::Nanosecond,
            now_micros: 42,
            accept_partial: false,
            pseudonymiser: None,
        }
    }

    fn write(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        File::create(&path).unwrap().write_all(content).unwrap();
        path
    }

    /// Reads a file in chunks of `chunk_rows`, returning the stats, the batches and the last
    /// progress value.
    fn read(
        path: &Path,
        format: FileFormat,
        opts: &DecodeOptions,
        chunk_rows: usize,
    ) -> Result<(ImportStats, Vec<TableBatch>, u64)> {
        let mut batches = Vec::new();
        let mut progress = 0;
        let stats = read_file_chunked(
            path,
            format,
            opts,
            chunk_rows,
            &mut |bytes| {
                assert!(bytes >= progress, "progress goes forward");
                progress = bytes;
            },
            &mut |b| {
                batches.push(b);
                Ok(())
            },
        )?;
        Ok((stats, batches, progress))
    }

    #[test]
    fn formats_by_extension() {
        let of = |p: &str| FileFormat::from_path(Path::new(p));
        assert_eq!(of("a/b.csv"), Some(FileFormat::Csv));
        assert_eq!(of("x.CSV"), Some(FileFormat::Csv));
        assert_eq!(of("x.parquet"), Some(FileFormat::Parquet));
        assert_eq!(of("x.pq"), Some(FileFormat::Parquet));
        assert_eq!(of("x.ndjson"), Some(FileFormat::Ndjson));
        assert_eq!(of("x.jsonl"), Some(FileFormat::Ndjson));
        assert_eq!(of("x.json"), Some(FileFormat::Ndjson));
        assert_eq!(of("x.lp"), Some(FileFormat::LineProtocol));
        assert_eq!(of("x.txt"), Some(FileFormat::LineProtocol));
        assert_eq!(of("x.line"), Some(FileFormat::LineProtocol));
        assert_eq!(of("x.xlsx"), None);
        assert_eq!(of("noext"), None);
    }

    #[test]
    fn reads_csv() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"time,sensor,district,pm25,count,ok\n\
            2026-01-01T00:00:00Z,s1,d1,12.5,3,true\n\
            2026-01-01T01:00:01.5+01:00,s2,,7,4,false\n\
            2026-01-01T00:00:02Z,s1,d2,,5,\n";
        let path = write(&dir, "air.csv", content);
        let (stats, batches, progress) = read(&path, FileFormat::Csv, &opts(), CHUNK_ROWS).unwrap();
        assert_eq!(stats.rows, 3);
        assert_eq!(stats.bytes, content.len() as u64);
        assert_eq!(progress, content.len() as u64);
        assert_eq!(batches.len(), 1);
        let b = &batches[0].batch;
        assert_eq!(batches[0].table, "air");
        assert_eq!(
            names(b),
            ["time", "district", "sensor", "count", "ok", "pm25"]
        );
        assert_eq!(
            times(b),
            [
                1_767_225_600_000_000,
                1_767_225_601_500_000,
                1_767_225_602_000_000
            ]
        );
        assert_eq!(
            tags(b, "sensor"),
            [Some("s1".into()), Some("s2".into()), Some("s1".into())]
        );
        assert_eq!(
            tags(b, "district"),
            [Some("d1".into()), None, Some("d2".into())]
        );
        assert_eq!(floats(b, "pm25"), [Some(12.5), Some(7.0), None]);
        assert_eq!(ints(b, "count"), [Some(3), Some(4), Some(5)]);
        assert_eq!(bools(b, "ok"), [Some(true), Some(false), None]);

        let (stats, batches, _) = read(&path, FileFormat::Csv, &opts(), 2).unwrap();
        assert_eq!(stats.rows, 3);
        assert_eq!(
            batches
                .iter()
                .map(|b| b.batch.num_rows())
                .collect::<Vec<_>>(),
            [2, 1]
        );
    }

    #[test]
    fn reads_csv_with_epoch_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "e.csv",
            b"timestamp,v\n1767225600,1.5\n1767225601,2\n",
        );
        let o = DecodeOptions {
            precision: Precision::Second,
            ..opts()
        };
        let (_, batches, _) = read(&path, FileFormat::Csv, &o, CHUNK_ROWS).unwrap();
        let b = &batches[0].batch;
        assert_eq!(names(b), ["time", "v"]);
        assert_eq!(times(b), [1_767_225_600_000_000, 1_767_225_601_000_000]);
        assert_eq!(floats(b, "v"), [Some(1.5), Some(2.0)]);
    }

    #[test]
    fn csv_and_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "n.csv", b"when,v\n2026-01-01T00:00:00Z,1\n");
        let err = read(&path, FileFormat::Csv, &opts(), CHUNK_ROWS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the CSV file has no 'time' or 'timestamp' column"
        );
        let no_table = DecodeOptions {
            table: None,
            ..opts()
        };
        assert!(matches!(
            read(&path, FileFormat::Csv, &no_table, CHUNK_ROWS),
            Err(Error::MissingTable { format: "CSV" })
        ));
        let err = read(
            &dir.path().join("missing.csv"),
            FileFormat::Csv,
            &opts(),
            10,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert_eq!(err.class(), civiclake_core::ErrorClass::Internal);
        let bad = write(
            &dir,
            "bad.csv",
            b"time,v\n2026-01-01T00:00:00Z,1\n2026-01-01T00:00:00Z,1,2\n",
        );
        assert!(matches!(
            read(&bad, FileFormat::Csv, &opts(), 10),
            Err(Error::Csv(_))
        ));
        let mut sink_fails = |_: TableBatch| {
            Err(Error::sink(
                civiclake_core::ErrorClass::Unavailable,
                "disk full",
            ))
        };
        let ok = write(&dir, "ok.csv", b"time,v\n2026-01-01T00:00:00Z,1\n");
        let err =
            read_file(&ok, FileFormat::Csv, &opts(), &mut |_| {}, &mut sink_fails).unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(err.class(), civiclake_core::ErrorClass::Unavailable);
    }

    #[test]
    fn reads_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("air.parquet");
        let batch = RecordBatch::try_from_iter(vec![
            (
                "timestamp",
                Arc::new(TimestampNanosecondArray::from(vec![
                    1_000, 2_000, 3_999, 4_000, 5_000,
                ])) as ArrayRef,
            ),
            (
                "sensor",
                Arc::new(StringArray::from(vec!["a", "b", "a", "c", "a"])),
            ),
            ("n", Arc::new(Int32Array::from(vec![1, 2, 3, 4, 5]))),
            (
                "f",
                Arc::new(Float32Array::from(vec![0.5, 1.5, 2.5, 3.5, 4.5])),
            ),
        ])
        .unwrap();
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let (stats, batches, progress) = read(&path, FileFormat::Parquet, &opts(), 2).unwrap();
        assert_eq!(stats.rows, 5);
        assert_eq!(progress, size);
        assert_eq!(
            batches
                .iter()
                .map(|b| b.batch.num_rows())
                .collect::<Vec<_>>(),
            [2, 2, 1]
        );
        let b = &batches[1].batch;
        assert_eq!(names(b), ["time", "sensor", "f", "n"]);
        assert_eq!(times(b), [3, 4]);
        assert_eq!(tags(b, "sensor"), [Some("a".into()), Some("c".into())]);
        assert_eq!(ints(b, "n"), [Some(3), Some(4)]);
        assert_eq!(floats(b, "f"), [Some(2.5), Some(3.5)]);
        assert_eq!(
            b.schema().field(0).data_type(),
            &civiclake_core::time_type()
        );
    }

    #[test]
    fn reads_ndjson_in_chunks_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"{\"s\": \"a\", \"v\": 1}\n{\"s\": \"b\", \"v\": 2}\n\n{\"v\": true}\n{\"v\": 5, \"time\": 1000}\n";
        let path = write(&dir, "x.ndjson", content);
        let o = DecodeOptions {
            accept_partial: true,
            precision: Precision::Millisecond,
            ..opts()
        };
        let (stats, batches, progress) = read(&path, FileFormat::Ndjson, &o, 2).unwrap();
        assert_eq!(stats.rows, 3);
        assert_eq!(stats.rejected_rows, 1);
        assert_eq!(stats.rejected[0].line, 4);
        assert_eq!(
            stats.rejected[0].message,
            "column 'v' is float in table 'air' but the object gives boolean"
        );
        assert_eq!(progress, content.len() as u64);
        assert_eq!(batches.len(), 2);
        assert_eq!(floats(&batches[0].batch, "v"), [Some(1.0), Some(2.0)]);
        assert_eq!(floats(&batches[1].batch, "v"), [Some(5.0)]);
        assert_eq!(times(&batches[1].batch), [1_000_000]);

        let err = read(&path, FileFormat::Ndjson, &opts(), 2).unwrap_err();
        match err {
            Error::Rejected {
                rows_before,
                errors,
            } => {
                assert_eq!(rows_before, 2);
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].line, 4);
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn reads_a_json_array_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "x.json", b"  [{\"v\": 1}, {\"v\": 2}, {\"v\": 3}]");
        let (stats, batches, _) = read(&path, FileFormat::Ndjson, &opts(), 2).unwrap();
        assert_eq!(stats.rows, 3);
        assert_eq!(
            batches
                .iter()
                .map(|b| b.batch.num_rows())
                .collect::<Vec<_>>(),
            [2, 1]
        );
        assert_eq!(floats(&batches[1].batch, "v"), [Some(3.0)]);
    }

    #[test]
    fn reads_line_protocol_keeping_types_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "x.lp",
            b"# c\nm x=1.5 1000\nm,t=a y=1i\nm x=2i\nother z=1\nm x=\"s\"\n",
        );
        let o = DecodeOptions {
            table: None,
            accept_partial: true,
            ..opts()
        };
        let (stats, batches, _) = read(&path, FileFormat::LineProtocol, &o, 2).unwrap();
        assert_eq!(stats.rows, 4);
        let tables: Vec<&str> = batches.iter().map(|b| b.table.as_str()).collect();
        assert_eq!(tables, ["m", "m", "other"]);
        assert_eq!(floats(&batches[0].batch, "x"), [Some(1.5)]);
        assert_eq!(times(&batches[0].batch), [1]);
        assert_eq!(floats(&batches[1].batch, "x"), [None, Some(2.0)]);
        assert_eq!(stats.rejected.len(), 1);
        assert_eq!(stats.rejected[0].line, 6);
        assert_eq!(
            stats.rejected[0].message,
            "column 'x' is float in table 'm' but the line gives string"
        );
    }
}
