//! Outputs: line protocol and NDJSON (text, one reading a line), Parquet (one file per
//! table), HTTP publishing to a civiclake server, and live publishing to an MQTT broker or
//! to Kafka (one message per reading, every message confirmed by the broker).
//!
//! The progress callbacks receive the number of rows written so far.

pub use crate::brokers::{
    KafkaTarget, MqttTarget, Payload, parse_mqtt_url, publish_kafka, publish_mqtt, topic_for,
};
use crate::city::{City, Reading, Value};
use crate::{Kind, SimError};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rows between two progress reports of the file outputs.
const PROGRESS_EVERY: u64 = 10_000;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Appends `r` as one line of line protocol (nanosecond timestamp) to `out`.
pub fn write_line_protocol(r: &Reading, out: &mut String) {
    // Names and tag values are plain ASCII words: nothing to escape.
    let _ = write!(
        out,
        "{},sensor={},district={} ",
        r.kind.table(),
        r.sensor,
        r.district
    );
    for (name, value) in r.fields() {
        match value {
            Value::Float(v) => {
                let _ = write!(out, "{name}={v:?},");
            }
            Value::Int(v) => {
                let _ = write!(out, "{name}={v}i,");
            }
        }
    }
    let _ = writeln!(
        out,
        "battery={:?},status=\"{}\" {}",
        r.battery,
        r.status.as_str(),
        i128::from(r.time_micros) * 1000
    );
}

/// Appends `r` as one NDJSON object to `out`: `table`, `time` (RFC 3339, µs), the tags
/// `sensor` and `district`, the present fields, `battery` and `status`.
pub fn write_ndjson(r: &Reading, out: &mut String) {
    let time = chrono::DateTime::from_timestamp_micros(r.time_micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default();
    let _ = write!(
        out,
        "{{\"table\":\"{}\",\"time\":\"{time}\",\"sensor\":\"{}\",\"district\":\"{}\"",
        r.kind.table(),
        r.sensor,
        r.district
    );
    for (name, value) in r.fields() {
        match value {
            Value::Float(v) => {
                let _ = write!(out, ",\"{name}\":{v:?}");
            }
            Value::Int(v) => {
                let _ = write!(out, ",\"{name}\":{v}");
            }
        }
    }
    let _ = writeln!(
        out,
        ",\"battery\":{:?},\"status\":\"{}\"}}",
        r.battery,
        r.status.as_str()
    );
}

fn write_text(
    city: &City,
    path: &Path,
    progress: &mut dyn FnMut(u64),
    line: fn(&Reading, &mut String),
) -> Result<u64, SimError> {
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = String::with_capacity(64 * 1024);
    let mut rows = 0u64;
    for r in city.readings() {
        line(&r, &mut buf);
        rows += 1;
        if buf.len() >= 60 * 1024 {
            w.write_all(buf.as_bytes()).map_err(io_err(path))?;
            buf.clear();
        }
        if rows.is_multiple_of(PROGRESS_EVERY) {
            progress(rows);
        }
    }
    w.write_all(buf.as_bytes()).map_err(io_err(path))?;
    w.flush().map_err(io_err(path))?;
    progress(rows);
    Ok(rows)
}

/// Writes every reading to one line-protocol file at `path`, in arrival order. Returns the
/// rows written.
pub fn write_line_protocol_file(
    city: &City,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, SimError> {
    write_text(city, path, progress, write_line_protocol)
}

/// Writes every reading to one NDJSON file at `path` (see [`write_ndjson`]).
pub fn write_ndjson_file(
    city: &City,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, SimError> {
    write_text(city, path, progress, write_ndjson)
}

/// Writes one Parquet file per table (`air.parquet`, ...) into the directory `dir` (created
/// when missing), zstd-compressed, in the lake's column conventions. Returns the files
/// written and the rows.
pub fn write_parquet_dir(
    city: &City,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(Vec<PathBuf>, u64), SimError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writers: Vec<(Kind, PathBuf, ArrowWriter<std::fs::File>)> = Vec::new();
    for (kind, rows) in city.rows_per_table() {
        if rows == 0 {
            continue;
        }
        let path = dir.join(format!("{}.parquet", kind.table()));
        let file = std::fs::File::create(&path).map_err(io_err(&path))?;
        let w = ArrowWriter::try_new(file, kind.schema(), Some(props.clone()))?;
        writers.push((kind, path, w));
    }
    let mut rows = 0u64;
    for batch in city.record_batches(65_536) {
        let (kind, batch) = batch?;
        if let Some((_, _, w)) = writers.iter_mut().find(|(k, _, _)| *k == kind) {
            w.write(&batch)?;
        }
        rows += batch.num_rows() as u64;
        progress(rows);
    }
    let mut paths = Vec::new();
    for (_, path, w) in writers {
        w.close()?;
        paths.push(path);
    }
    Ok((paths, rows))
}

/// Where and how fast to publish over HTTP.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// Base URL of the civiclake server, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Token sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Target rows per second; `None` sends as fast as the server takes them.
    pub rate: Option<f64>,
    /// Most rows per request.
    pub batch_rows: usize,
}

/// Publishes every reading to `POST {url}/api/v1/write` as line protocol, in arrival order,
/// in requests of at most `batch_rows` rows (smaller at low rates, so that the pacing is
/// smooth: about ten requests a second). Blocking: call it off any async runtime.
pub fn publish_http(
    city: &City,
    target: &HttpTarget,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, SimError> {
    if let Some(rate) = target.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(SimError::Config(format!(
            "rate must be a positive number of rows per second, not {rate}"
        )));
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &target.token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| {
                SimError::Config("the token contains characters a header cannot carry".into())
            })?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::blocking::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| SimError::Http(e.to_string()))?;
    let base = target.url.trim_end_matches('/');
    let endpoint = format!("{base}/api/v1/write");
    let batch_rows = match target.rate {
        Some(rate) => ((rate / 10.0).ceil() as usize).clamp(1, target.batch_rows.max(1)),
        None => target.batch_rows.max(1),
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let mut body = String::with_capacity(batch_rows * 160);
    let mut in_body = 0usize;
    let mut send = |body: &mut String, rows: usize, sent: &mut u64| -> Result<(), SimError> {
        let resp = client
            .post(&endpoint)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(std::mem::take(body))
            .send()
            .map_err(|e| SimError::Http(format!("cannot reach {base}: {e}")))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().unwrap_or_default();
            return Err(SimError::Http(format!(
                "{base} refused a write: {status}: {text}"
            )));
        }
        *sent += rows as u64;
        progress(*sent);
        if let Some(rate) = target.rate {
            let due = Duration::from_secs_f64(*sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    };
    for r in city.readings() {
        write_line_protocol(&r, &mut body);
        in_body += 1;
        if in_body == batch_rows {
            send(&mut body, in_body, &mut sent)?;
            in_body = 0;
        }
    }
    if in_body > 0 {
        send(&mut body, in_body, &mut sent)?;
    }
    Ok(sent)
}
