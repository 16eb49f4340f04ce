//! Criterion micro-benchmarks of civiclake's hot paths, on simulated city data
//! (`civiclake-sim`: 100 sensors of five kinds, one reading a minute, the default untidiness).
//!
//! * `ingest/*`: the decoders `POST /api/v1/write` uses — line protocol (a gateway's mixed
//!   payload, five tables), JSON (an array of objects) and NDJSON (one object a line) for one
//!   table — with the tables already existing, as on a running server.
//! * `wal/*`: `Lake::write` on a real directory with `wal_fsync` on, as the server does it:
//!   Arrow IPC record, group commit (one `write` + one `fdatasync` for the records queued
//!   meanwhile), then the rows applied to the buffer. One writer, then four concurrent
//!   writers sharing the fsync; each write is a runtime task, as the HTTP handlers are.
//! * `buffer/*`: `Lake::snapshot` of a buffer of 200k rows, the Arrow batches a query scans;
//!   `widened` when half of them were written before a column existed and must be projected.
//! * `flush/*`: `encode_flush_files` (sort by day, tags, time; zstd Parquet, no I/O) and the
//!   whole `Lake::flush` (the same plus the file writes, the Delta commit and the WAL
//!   truncation) of 100k buffered rows.
//!
//! Run: `cargo bench -p civiclake-bench --bench micro`; every figure is per row (rows/s).

use arrow::record_batch::RecordBatch;
use civiclake_ingest::{DecodeOptions, Decoded, Precision, SchemaLookup};
use civiclake_lake::{Lake, LakeConfig, OpenMode};
use civiclake_sim::output::{write_line_protocol, write_ndjson};
use civiclake_sim::{City, CityConfig, Kind, Reading};
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
};
use criterion::{criterion_main, measurement::WallTime};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Rows in one decoded payload (a typical gateway batch).
const PAYLOAD_ROWS: usize = 10_000;
/// Rows in one WAL append (one HTTP write).
const WRITE_ROWS: usize = 1_000;
/// Concurrent writers in the group commit benchmark.
const WRITERS: usize = 4;
/// Rows in the buffer that is snapshotted.
const BUFFER_ROWS: usize = 200_000;
/// Rows in one buffer batch of the snapshot benchmark (no coalescing above 8192 rows).
const BUFFER_BATCH_ROWS: usize = 10_000;
/// Rows flushed.
const FLUSH_ROWS: usize = 100_000;

fn city() -> City {
    // 250 sensors (50 of each kind), one reading every 15 s for a day: 1.44M readings.
    City::new(CityConfig {
        sensors: 250,
        interval_secs: 15,
        ..CityConfig::default()
    })
    .expect("the default city is valid")
}

fn readings(city: &City, kind: Option<Kind>, rows: usize) -> Vec<Reading> {
    city.readings()
        .filter(|r| kind.is_none_or(|k| r.kind == k))
        .take(rows)
        .collect()
}

/// `rows` rows of `kind` as Arrow batches of `batch_rows` rows, in arrival order.
fn batches(city: &City, kind: Kind, batch_rows: usize, rows: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut total = 0;
    for item in city.record_batches(batch_rows) {
        let (k, batch) = item.expect("the simulator builds valid batches");
        if k != kind || batch.num_rows() < batch_rows {
            continue;
        }
        total += batch.num_rows();
        out.push(batch);
        if total >= rows {
            break;
        }
    }
    assert_eq!(total, rows, "the simulated city has enough {kind:?} rows");
    out
}

fn options(table: Option<&str>) -> DecodeOptions {
    DecodeOptions {
        table: table.map(str::to_string),
        precision: Precision::Nanosecond,
        ..DecodeOptions::default()
    }
}

/// The schemas the first decode of `body` creates: the tables exist, as on a live server.
fn existing_schemas(decoded: &Decoded) -> HashMap<String, arrow::datatypes::SchemaRef> {
    decoded
        .batches
        .iter()
        .map(|b| (b.table.clone(), b.batch.schema()))
        .collect()
}

type Decoder = fn(&[u8], &DecodeOptions, &dyn SchemaLookup) -> civiclake_ingest::Result<Decoded>;

fn bench_decoder(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    decode: Decoder,
    body: &[u8],
    opts: &DecodeOptions,
) {
    let first = decode(body, opts, &()).expect("the payload decodes");
    assert_eq!(
        (first.rows, first.rejected_rows),
        (PAYLOAD_ROWS, 0),
        "{name}: every row is accepted"
    );
    let schemas = existing_schemas(&first);
    group.bench_function(name, |b| {
        b.iter(|| {
            let decoded = decode(black_box(body), opts, &schemas).expect("the payload decodes");
            assert_eq!(decoded.rows, PAYLOAD_ROWS);
            decoded
        })
    });
}

fn ingest(c: &mut Criterion) {
    let city = city();
    let mixed = readings(&city, None, PAYLOAD_ROWS);
    let air = readings(&city, Some(Kind::Air), PAYLOAD_ROWS);

    let mut lp = String::new();
    for r in &mixed {
        write_line_protocol(r, &mut lp);
    }
    // One table per request (`?table=air`): the simulator's `table` key is left out.
    let mut ndjson = String::new();
    let mut line = String::new();
    for r in &air {
        line.clear();
        write_ndjson(r, &mut line);
        ndjson.push_str(&line.replacen("\"table\":\"air\",", "", 1));
    }
    let json = format!("[{}]", ndjson.trim_end().replace('\n', ","));

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(PAYLOAD_ROWS as u64));
    bench_decoder(
        &mut group,
        "line_protocol",
        civiclake_ingest::decode_line_protocol,
        lp.as_bytes(),
        &options(None),
    );
    bench_decoder(
        &mut group,
        "json",
        civiclake_ingest::decode_json,
        json.as_bytes(),
        &options(Some("air")),
    );
    bench_decoder(
        &mut group,
        "ndjson",
        civiclake_ingest::decode_ndjson,
        ndjson.as_bytes(),
        &options(Some("air")),
    );
    group.finish();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A lake in a fresh directory under the target dir (a real disk, as the server's).
fn open_lake(rt: &Runtime) -> (tempfile::TempDir, Arc<Lake>) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let mut config = LakeConfig::new(dir.path());
    config.wal_fsync = true;
    let lake = rt
        .block_on(Lake::open(config, OpenMode::ReadWrite))
        .expect("the lake opens");
    (dir, lake)
}

fn write(rt: &Runtime, lake: &Lake, table: &str, batch: RecordBatch) {
    let rows = batch.num_rows();
    let written = rt
        .block_on(lake.write(vec![(table.to_string(), batch)]))
        .expect("the write succeeds");
    assert_eq!(written, rows);
}

/// Flushes (untimed) once the WAL benchmarks have buffered [`BUFFER_ROWS`] rows, so memory
/// stays flat however many iterations criterion runs.
fn keep_buffer_small(rt: &Runtime, lake: &Lake) {
    if lake.buffered_rows() >= BUFFER_ROWS {
        rt.block_on(lake.flush()).expect("the flush succeeds");
    }
}

fn wal(c: &mut Criterion) {
    let city = city();
    let rt = runtime();
    let input = batches(&city, Kind::Air, WRITE_ROWS, 40 * WRITE_ROWS);
    let (_dir, lake) = open_lake(&rt);
    let mut group = c.benchmark_group("wal");

    let mut next = input.iter().cycle();
    for writers in [1, WRITERS] {
        // Each writer is a task of the runtime, as the HTTP handlers are.
        group.throughput(Throughput::Elements((writers * WRITE_ROWS) as u64));
        let id = BenchmarkId::new("append_1000_rows_fsync", format!("{writers}_writers"));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let batches: Vec<RecordBatch> = (0..writers)
                        .map(|_| next.next().expect("cycle never ends").clone())
                        .collect();
                    let start = Instant::now();
                    let writes: Vec<_> = batches
                        .into_iter()
                        .map(|batch| {
                            let lake = lake.clone();
                            rt.spawn(
                                async move { lake.write(vec![("air".to_string(), batch)]).await },
                            )
                        })
                        .collect();
                    for written in rt.block_on(futures::future::join_all(writes)) {
                        let written = written
                            .expect("the writer task runs")
                            .expect("the write succeeds");
                        assert_eq!(written, WRITE_ROWS);
                    }
                    spent += start.elapsed();
                    keep_buffer_small(&rt, &lake);
                }
                spent
            })
        });
    }
    group.finish();
    rt.block_on(lake.shutdown()).expect("the lake stops");
}

fn buffer(c: &mut Criterion) {
    let city = city();
    let rt = runtime();
    let input = batches(&city, Kind::Air, BUFFER_BATCH_ROWS, BUFFER_ROWS);
    let (_dir, lake) = open_lake(&rt);
    for batch in &input {
        write(&rt, &lake, "air", batch.clone());
    }
    // `air_widened`: the first half written before the table had a `status` column.
    let status = input[0]
        .schema()
        .index_of("status")
        .expect("sim batches have status");
    let without_status: Vec<usize> = (0..input[0].num_columns())
        .filter(|&i| i != status)
        .collect();
    for (i, batch) in input.iter().enumerate() {
        let batch = if i < input.len() / 2 {
            batch
                .project(&without_status)
                .expect("a projection of existing columns")
        } else {
            batch.clone()
        };
        write(&rt, &lake, "air_widened", batch);
    }

    let mut group = c.benchmark_group("buffer");
    group.throughput(Throughput::Elements(BUFFER_ROWS as u64));
    for (name, table) in [("snapshot", "air"), ("snapshot_widened", "air_widened")] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let snapshot = lake
                    .snapshot(black_box(table))
                    .expect("the snapshot is taken")
                    .expect("the table exists");
                let rows: usize = snapshot.batches.iter().map(RecordBatch::num_rows).sum();
                assert_eq!(rows, BUFFER_ROWS);
                snapshot
            })
        });
    }
    group.finish();
    rt.block_on(lake.shutdown()).expect("the lake stops");
}

fn flush(c: &mut Criterion) {
    let city = city();
    let rt = runtime();
    let input = batches(&city, Kind::Air, BUFFER_BATCH_ROWS, FLUSH_ROWS);
    let schema = input[0].schema();
    let defaults = LakeConfig::new(".");

    let mut group = c.benchmark_group("flush");
    group.throughput(Throughput::Elements(FLUSH_ROWS as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("encode_zstd_parquet", |b| {
        b.iter(|| {
            let files = civiclake_lake::encode_flush_files(
                &schema,
                black_box(&input),
                defaults.row_group_rows,
                defaults.zstd_level,
            )
            .expect("the rows encode");
            assert_eq!(files.iter().map(|f| f.rows).sum::<usize>(), FLUSH_ROWS);
            files
        })
    });

    let (_dir, lake) = open_lake(&rt);
    group.bench_function("lake_flush", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                for batch in &input {
                    write(&rt, &lake, "air", batch.clone());
                }
                let start = Instant::now();
                let stats = rt.block_on(lake.flush()).expect("the flush succeeds");
                spent += start.elapsed();
                assert_eq!(stats.rows, FLUSH_ROWS);
            }
            spent
        })
    });
    group.finish();
    rt.block_on(lake.shutdown()).expect("the lake stops");
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = ingest, wal, buffer, flush
}
criterion_main!(micro);
