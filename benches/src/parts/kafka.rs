//! Kafka: rows/s consumed from pre-filled topics. The harness starts librdkafka's mock
//! cluster in its own process, fills `ingest.<table>` with the city's readings (line
//! protocol, `--kafka-lines` readings per message: the producer batches), then starts
//! civiclake with a `[[kafka.source]]` on those topics and waits until SQL counts every row.
//! Each consumed batch is written with its offsets in one WAL record (exactly once).

use super::{Part, Section};
use crate::ctx::Ctx;
use crate::server::{Civiclake, fresh_dir};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `kafka`: rows/s from a pre-filled topic.
pub(crate) struct KafkaConsume;

/// Counts delivery reports: a message the cluster refused is an error of the run, not a
/// silent gap.
#[derive(Default)]
struct Deliveries {
    delivered: std::sync::atomic::AtomicUsize,
    failed: std::sync::Mutex<Vec<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err((e, _)) => {
                if let Ok(mut failed) = self.failed.lock() {
                    failed.push(e.to_string());
                }
            }
        }
    }
}

/// Produces `messages`, spread over each topic's `partitions` in turn.
fn produce(brokers: &str, messages: &[(String, Vec<u8>)], partitions: i32) -> Result<(), String> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("producer: {e}"))?;
    let mut next: BTreeMap<&str, i32> = BTreeMap::new();
    for (topic, payload) in messages {
        let turn = next.entry(topic.as_str()).or_default();
        let partition = *turn;
        *turn = (*turn + 1) % partitions.max(1);
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(payload.as_slice())
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(format!("produce: {e}")),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| format!("flush: {e}"))?;
    let context = producer.context();
    let failed = context.failed.lock().map(|f| f.clone()).unwrap_or_default();
    if let Some(first) = failed.first() {
        return Err(format!(
            "{} of {} messages were not delivered, e.g. {first}",
            failed.len(),
            messages.len()
        ));
    }
    let delivered = context.delivered.load(std::sync::atomic::Ordering::Relaxed);
    if delivered != messages.len() {
        return Err(format!(
            "{delivered} of {} messages were delivered",
            messages.len()
        ));
    }
    Ok(())
}

/// Messages in the `ingest.<table>` topics (the sum of the partitions' high watermarks).
fn topic_messages(brokers: &str, tables: &[String], partitions: i32) -> Result<i64, String> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let mut total = 0;
    for t in tables {
        for partition in 0..partitions {
            let (low, high) = rdkafka::consumer::Consumer::fetch_watermarks(
                &consumer,
                &format!("ingest.{t}"),
                partition,
                Duration::from_secs(10),
            )
            .map_err(|e| format!("watermarks of ingest.{t}/{partition}: {e}"))?;
            if low != 0 {
                return Err(format!(
                    "ingest.{t}/{partition} starts at offset {low}: the mock cluster dropped its oldest messages"
                ));
            }
            total += high;
        }
    }
    Ok(total)
}

impl Part for KafkaConsume {
    fn name(&self) -> &'static str {
        "kafka"
    }
    fn about(&self) -> &'static str {
        "Kafka: rows/s consumed from pre-filled topics (librdkafka mock cluster)"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let per_message = ctx.settings.kafka_lines.max(1);
        let limit = ctx.settings.kafka_rows;
        // Readings grouped by table, `per_message` lines per message, topic ingest.<table>.
        let mut buffers: BTreeMap<String, (Vec<u8>, usize)> = BTreeMap::new();
        let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
        let mut rows = 0usize;
        for (table, line) in ctx.data.readings().take(limit) {
            let (buf, n) = buffers.entry(table.clone()).or_default();
            buf.extend_from_slice(line);
            buf.push(b'\n');
            *n += 1;
            if *n == per_message {
                messages.push((format!("ingest.{table}"), std::mem::take(buf)));
                *n = 0;
            }
            rows += 1;
        }
        for (table, (buf, n)) in buffers {
            if n > 0 {
                messages.push((format!("ingest.{table}"), buf));
            }
        }
        let tables: Vec<String> = {
            let mut t: Vec<String> = messages
                .iter()
                .map(|(topic, _)| topic.trim_start_matches("ingest.").to_string())
                .collect();
            t.sort();
            t.dedup();
            t
        };
        // librdkafka's mock cluster keeps at most 5 MB per partition and deletes the oldest
        // messages beyond that: enough partitions that each holds at most 3 MB.
        let largest_topic = {
            let mut bytes: BTreeMap<&str, usize> = BTreeMap::new();
            for (topic, payload) in &messages {
                *bytes.entry(topic.as_str()).or_default() += payload.len();
            }
            bytes.into_values().max().unwrap_or(0)
        };
        let partitions = i32::try_from(largest_topic.div_ceil(3 << 20).max(4))
            .map_err(|_| "too much data for the mock cluster".to_string())?;
        let cluster = rdkafka::mocking::MockCluster::new(1)
            .map_err(|e| format!("librdkafka's mock cluster: {e}"))?;
        for t in &tables {
            cluster
                .create_topic(&format!("ingest.{t}"), partitions, 1)
                .map_err(|e| format!("create topic: {e}"))?;
        }
        let brokers = cluster.bootstrap_servers();
        eprintln!(
            "[kafka] producing {rows} readings in {} messages to {} topics of {partitions} partitions...",
            messages.len(),
            tables.len()
        );
        let t = Instant::now();
        produce(&brokers, &messages, partitions)?;
        eprintln!("[kafka] produced in {:.1} s", t.elapsed().as_secs_f64());
        let in_topics = topic_messages(&brokers, &tables, partitions)?;
        if in_topics != messages.len() as i64 {
            return Err(format!(
                "the topics hold {in_topics} messages, {} were produced",
                messages.len()
            ));
        }
        let dir = fresh_dir(self.name())?;
        let topics: Vec<String> = tables.iter().map(|t| format!("\"ingest.{t}\"")).collect();
        std::fs::write(
            dir.join("civiclake.toml"),
            format!(
                // The mock coordinator waits a session timeout (less a second) before the
                // group's first assignment: librdkafka's 45 s default would dominate the run.
                "[[kafka.source]]\nname = \"bench\"\nbrokers = \"{brokers}\"\ngroup_id = \"bench\"\ntopics = [{}]\n[kafka.source.client_options]\n\"session.timeout.ms\" = \"6000\"\n",
                topics.join(", ")
            ),
        )
        .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let server = Civiclake::start_with_config(
            &ctx.settings.civiclake,
            &dir,
            &dir.join("civiclake.toml"),
        )?;
        let cpu_before = server.cpu_seconds();
        // A table that does not exist yet counts 0; any other error is reported.
        let count = |s: &Civiclake| -> Result<usize, String> {
            let mut n = 0;
            for t in &tables {
                match s.count_rows(t) {
                    Ok(c) => n += c as usize,
                    Err(e) if e.contains("not found") || e.contains("does not exist") => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(n)
        };
        let mut first_seen = None;
        let deadline = Instant::now() + Duration::from_secs(1800);
        let mut stored = 0;
        let mut reported = Instant::now();
        while stored < rows {
            std::thread::sleep(Duration::from_millis(250));
            stored = count(&server)?;
            if stored > 0 && first_seen.is_none() {
                first_seen = Some(Instant::now());
            }
            if reported.elapsed() >= Duration::from_secs(10) {
                reported = Instant::now();
                let dead = server.count_rows("_dead_letters").unwrap_or(0);
                eprintln!(
                    "[kafka] {stored} of {rows} rows queryable after {:.0} s ({dead} dead letters)",
                    started.elapsed().as_secs_f64()
                );
            }
            if Instant::now() > deadline {
                return Err(format!("only {stored} of {rows} rows after 30 min"));
            }
        }
        let done = Instant::now();
        let cpu = server.cpu_seconds() - cpu_before;
        ctx.record_rss(self.name(), &server);
        let total_s = done.duration_since(started).as_secs_f64();
        let steady_s = first_seen.map_or(total_s, |f| done.duration_since(f).as_secs_f64());
        // Counts are polled every 250 ms: under a second between the first row and the last
        // says nothing about the steady rate.
        let steady = (steady_s >= 1.0).then(|| rows as f64 / steady_s);
        let rate = rows as f64 / total_s;
        let markdown = format!(
            "### Kafka: consuming pre-filled topics\n\n{rows} readings in {} messages of up to {per_message} line-protocol readings, on {} topics of {partitions} partitions (librdkafka's mock cluster, in the harness's process; it keeps at most 5 MB per partition, so there are enough partitions for the data), consumed by one `[[kafka.source]]` consumer group; each batch is written with its offsets in one WAL record (exactly once). Timed from the server's start to the SQL count reaching every row (counts polled every 250 ms).\n\n| | |\n|---|---|\n| rows/s, start to all rows queryable | **{rate:.0}** |\n| rows/s, first row seen to all rows | {} |\n| server CPU | {:.2} CPU-s per million rows |\n",
            messages.len(),
            tables.len(),
            steady.map_or_else(
                || "under a second: too short to tell".to_string(),
                |r| format!("{r:.0}")
            ),
            cpu / (rows as f64 / 1e6),
        );
        Ok(Section {
            markdown,
            json: json!({
                "rows": rows,
                "messages": messages.len(),
                "lines_per_message": per_message,
                "partitions_per_topic": partitions,
                "seconds": total_s,
                "rows_per_s": rate,
                "rows_per_s_steady": steady,
                "cpu_s_per_million": cpu / (rows as f64 / 1e6),
            }),
        })
    }
}
