//! Live publishing to message brokers: MQTT (as a sensor gateway does) and Kafka (as a
//! service does). One message per reading, in arrival order, at a target rate; every message
//! is confirmed (MQTT PUBACK at QoS 1, Kafka delivery report with `acks=all`) before the
//! publisher reports success, so a count it returns is a count the broker took.

use crate::SimError;
use crate::city::{City, Reading};
use crate::output::{write_line_protocol, write_ndjson};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a reading is encoded in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// One line of InfluxDB line protocol (the measurement is the table).
    LineProtocol,
    /// One JSON object (`table`, `time` RFC 3339, tags, fields, `battery`, `status`).
    Json,
}

impl Payload {
    fn encode(self, r: &Reading, out: &mut String) {
        out.clear();
        match self {
            Payload::LineProtocol => write_line_protocol(r, out),
            Payload::Json => write_ndjson(r, out),
        }
        while out.ends_with('\n') {
            out.pop();
        }
    }
}

/// Expands a topic template: `{table}`, `{sensor}` and `{district}` are replaced by the
/// reading's.
pub fn topic_for(template: &str, r: &Reading) -> String {
    template
        .replace("{table}", r.kind.table())
        .replace("{sensor}", &r.sensor)
        .replace("{district}", r.district)
}

fn check_template(template: &str, what: &str) -> Result<(), SimError> {
    if template.is_empty() {
        return Err(SimError::Config(format!(
            "the {what} topic must not be empty"
        )));
    }
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| SimError::Config(format!("{what} topic '{template}': unclosed '{{'")))?;
        let name = &after[..end];
        if !matches!(name, "table" | "sensor" | "district") {
            return Err(SimError::Config(format!(
                "{what} topic '{template}': unknown placeholder {{{name}}} (use {{table}}, {{sensor}}, {{district}})"
            )));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

fn check_rate(rate: Option<f64>) -> Result<(), SimError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0) => Err(SimError::Config(format!(
            "rate must be a positive number of messages per second, not {r}"
        ))),
        _ => Ok(()),
    }
}

/// Sleeps until `sent` messages are due at `rate` per second since `started`.
fn pace(rate: Option<f64>, started: Instant, sent: u64) {
    if let Some(rate) = rate {
        let due = Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Where and how to publish over MQTT.
#[derive(Debug, Clone)]
pub struct MqttTarget {
    /// Broker address: `mqtt://host:port`, `tcp://host:port` or `host:port` (port 1883 when
    /// left out). TLS is not supported by the generator.
    pub url: String,
    /// Topic template (see [`topic_for`]); civiclake's default route takes `ingest/{table}`.
    pub topic: String,
    /// Message encoding.
    pub payload: Payload,
    /// Client identifier.
    pub client_id: String,
    /// User name and password, when the broker asks for them.
    pub credentials: Option<(String, String)>,
    /// Target messages per second; `None`: as fast as the broker acknowledges.
    pub rate: Option<f64>,
}

/// Host and port of an MQTT URL.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), SimError> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(url);
    if url.starts_with("mqtts://") || url.starts_with("ssl://") {
        return Err(SimError::Config(format!(
            "{url}: TLS is not supported by the generator; use mqtt://host:port"
        )));
    }
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| SimError::Config(format!("{url}: '{p}' is not a port number")))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() || host.contains('/') {
        return Err(SimError::Config(format!(
            "{url}: expected mqtt://host:port"
        )));
    }
    Ok((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
    ))
}

/// Publishes every reading as one MQTT message (QoS 1) in arrival order and waits for the
/// broker's PUBACK of each. Returns the messages acknowledged. Blocking: call it off any
/// async runtime. A lost connection is an error naming how many messages were acknowledged.
pub fn publish_mqtt(
    city: &City,
    target: &MqttTarget,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, SimError> {
    check_rate(target.rate)?;
    check_template(&target.topic, "MQTT")?;
    let (host, port) = parse_mqtt_url(&target.url)?;
    let mut options = MqttOptions::new(target.client_id.clone(), host.clone(), port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    options.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((user, pass)) = &target.credentials {
        options.set_credentials(user.clone(), pass.clone());
    }
    let (client, mut connection) = Client::new(options, 1024);
    let acked = Arc::new(AtomicU64::new(0));
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let events = {
        let (acked, failure) = (acked.clone(), failure.clone());
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack)))
                        if ack.code != rumqttc::ConnectReturnCode::Success =>
                    {
                        if let Ok(mut f) = failure.lock() {
                            *f = Some(format!("the broker refused the connection: {:?}", ack.code));
                        }
                        return;
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            *f = Some(e.to_string());
                        }
                        return;
                    }
                }
            }
        })
    };
    let failed = |failure: &Arc<Mutex<Option<String>>>| failure.lock().ok().and_then(|f| f.clone());
    let error = |why: String, acked: u64| {
        SimError::Broker(format!(
            "MQTT broker {host}:{port}: {why} ({acked} messages acknowledged)"
        ))
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let mut payload = String::with_capacity(256);
    let result = (|| {
        for r in city.readings() {
            if let Some(why) = failed(&failure) {
                return Err(error(why, acked.load(Ordering::Relaxed)));
            }
            target.payload.encode(&r, &mut payload);
            client
                .publish(
                    topic_for(&target.topic, &r),
                    QoS::AtLeastOnce,
                    false,
                    payload.as_bytes().to_vec(),
                )
                .map_err(|e| error(e.to_string(), acked.load(Ordering::Relaxed)))?;
            sent += 1;
            if sent.is_multiple_of(1000) {
                progress(acked.load(Ordering::Relaxed));
            }
            pace(target.rate, started, sent);
        }
        // Every message must be acknowledged before this reports success.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::Relaxed) < sent {
            if let Some(why) = failed(&failure) {
                return Err(error(why, acked.load(Ordering::Relaxed)));
            }
            if Instant::now() > deadline {
                return Err(error(
                    format!("{sent} messages sent, PUBACKs still missing after 60 s"),
                    acked.load(Ordering::Relaxed),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    })();
    let _ = client.disconnect();
    drop(client);
    let _ = events.join();
    result?;
    let n = acked.load(Ordering::Relaxed);
    progress(n);
    Ok(n)
}

/// Where and how to produce to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic template (see [`topic_for`]; Kafka topic names allow letters, digits, `.`, `_`
    /// and `-`).
    pub topic: String,
    /// Message encoding.
    pub payload: Payload,
    /// Target messages per second; `None`: as fast as the producer takes them.
    pub rate: Option<f64>,
    /// How long a message may wait for its delivery (`message.timeout.ms`); an undelivered
    /// message is then an error.
    pub delivery_timeout: Duration,
}

/// Counts delivery reports.
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock()
                    && first.is_none()
                {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

/// Produces every reading as one Kafka message (key: the sensor) in arrival order, with
/// `acks=all` and idempotence, and waits for every delivery report. Returns the messages
/// delivered; any message not delivered is an error with the first cause.
pub fn publish_kafka(
    city: &City,
    target: &KafkaTarget,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, SimError> {
    check_rate(target.rate)?;
    check_template(&target.topic, "Kafka")?;
    if target.brokers.trim().is_empty() {
        return Err(SimError::Config("no Kafka brokers given".into()));
    }
    let context = Deliveries {
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", target.brokers.trim())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            target.delivery_timeout.as_millis().max(1).to_string(),
        )
        .create_with_context(context)
        .map_err(|e| SimError::Broker(format!("Kafka {}: {e}", target.brokers)))?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut payload = String::with_capacity(256);
    for r in city.readings() {
        target.payload.encode(&r, &mut payload);
        let topic = topic_for(&target.topic, &r);
        let mut record = BaseRecord::to(&topic)
            .key(r.sensor.as_ref())
            .payload(payload.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(SimError::Broker(format!(
                        "Kafka {}: cannot produce to {topic}: {e}",
                        target.brokers
                    )));
                }
            }
        }
        sent += 1;
        if sent.is_multiple_of(1000) {
            progress(producer.context().delivered.load(Ordering::Relaxed));
        }
        pace(target.rate, started, sent);
    }
    producer
        .flush(target.delivery_timeout + Duration::from_secs(10))
        .map_err(|e| SimError::Broker(format!("Kafka {}: flush: {e}", target.brokers)))?;
    let ctx = producer.context();
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 || delivered != sent {
        let why = ctx
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "no delivery report".into());
        return Err(SimError::Broker(format!(
            "Kafka {}: {delivered} of {sent} messages delivered, {failed} failed: {why}",
            target.brokers
        )));
    }
    progress(delivered);
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CityConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use std::collections::{BTreeMap, HashMap};
    use std::net::{SocketAddr, TcpListener};

    fn small_city() -> City {
        City::new(CityConfig {
            sensors: 7,
            days: 1,
            interval_secs: 3600,
            ..CityConfig::default()
        })
        .expect("city")
    }

    fn free_addr() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    }

    /// rumqttd on a loopback port, in a thread for the rest of the test process.
    fn broker() -> SocketAddr {
        let addr = free_addr();
        let server = rumqttd::ServerSettings {
            name: "v4".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 1,
            connections: rumqttd::ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: 1 << 20,
                max_inflight_count: 1000,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let config = rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: 100,
                max_outgoing_packet_count: 1000,
                max_segment_size: 100 * 1024 * 1024,
                max_segment_count: 10,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(HashMap::from([("1".to_string(), server)])),
            v5: None,
            ws: None,
            cluster: None,
            console: None,
            bridge: None,
            prometheus: None,
            metrics: None,
        };
        std::thread::spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            let _ = broker.start();
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        addr
    }

    #[test]
    fn mqtt_urls_and_templates_are_checked() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".to_string(), 1884)
        );
        assert_eq!(
            parse_mqtt_url("localhost").unwrap(),
            ("localhost".to_string(), 1883)
        );
        let e = parse_mqtt_url("mqtt://h:99999").unwrap_err().to_string();
        assert!(e.contains("not a port number"), "{e}");
        let e = parse_mqtt_url("mqtts://h:8883").unwrap_err().to_string();
        assert!(e.contains("TLS"), "{e}");
        assert!(check_template("ingest/{table}/{sensor}", "MQTT").is_ok());
        let e = check_template("ingest/{kind}", "MQTT")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown placeholder {kind}"), "{e}");
        let e = check_template("ingest/{table", "MQTT")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn mqtt_publishes_every_reading_acknowledged_on_its_topic() {
        let addr = broker();
        let city = small_city();
        // A subscriber that sees what the broker delivers.
        let mut opts = MqttOptions::new("sub", addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        let (sub, mut conn) = Client::new(opts, 100);
        sub.subscribe("ingest/#", QoS::AtLeastOnce)
            .expect("subscribe");
        let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            for event in conn.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let text = String::from_utf8_lossy(&p.payload).to_string();
                        if tx.send((p.topic, text)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        subscribed_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("SUBACK");
        let target = MqttTarget {
            url: format!("mqtt://{addr}"),
            topic: "ingest/{table}/{sensor}".into(),
            payload: Payload::LineProtocol,
            client_id: "sim-test".into(),
            credentials: None,
            rate: Some(2000.0),
        };
        let mut last = 0;
        let n = publish_mqtt(&city, &target, &mut |p| last = p).expect("publish");
        assert_eq!(n, city.total_rows());
        assert_eq!(n, 7 * 24);
        assert_eq!(last, n);
        let mut got = Vec::new();
        while got.len() < n as usize {
            got.push(rx.recv_timeout(Duration::from_secs(20)).expect("a message"));
        }
        // The messages are the readings, in order, each on its sensor's topic.
        let expected: Vec<(String, String)> = city
            .readings()
            .map(|r| {
                let mut s = String::new();
                Payload::LineProtocol.encode(&r, &mut s);
                (topic_for("ingest/{table}/{sensor}", &r), s)
            })
            .collect();
        assert_eq!(got, expected);
        let air = got
            .iter()
            .find(|(topic, _)| topic == "ingest/air/air-00005")
            .expect("a message of air-00005");
        assert!(
            air.1.starts_with("air,sensor=air-00005,district="),
            "{air:?}"
        );
    }

    #[test]
    fn mqtt_to_a_closed_port_is_a_clear_error() {
        let addr = free_addr();
        let target = MqttTarget {
            url: format!("{addr}"),
            topic: "ingest/{table}".into(),
            payload: Payload::Json,
            client_id: "sim-test-closed".into(),
            credentials: None,
            rate: None,
        };
        let e = publish_mqtt(&small_city(), &target, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("MQTT broker {addr}")), "{e}");
        assert!(e.contains("0 messages acknowledged"), "{e}");
    }

    #[test]
    fn kafka_delivers_every_reading_keyed_by_sensor() {
        let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        for t in ["air", "noise", "traffic", "parking", "waste"] {
            cluster
                .create_topic(&format!("sim.{t}"), 2, 1)
                .expect("topic");
        }
        let brokers = cluster.bootstrap_servers();
        let city = small_city();
        let target = KafkaTarget {
            brokers: brokers.clone(),
            topic: "sim.{table}".into(),
            payload: Payload::Json,
            rate: None,
            delivery_timeout: Duration::from_secs(60),
        };
        let n = publish_kafka(&city, &target, &mut |_| {}).expect("produce");
        assert_eq!(n, 7 * 24);

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "sim-test")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer
            .subscribe(&["sim.air", "sim.noise"])
            .expect("subscribe");
        let mut per_sensor: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let want = city
            .rows_per_table()
            .iter()
            .filter(|(k, _)| matches!(k.table(), "air" | "noise"))
            .map(|(_, n)| *n)
            .sum::<u64>();
        assert_eq!(want, 2 * 2 * 24, "sensors 0, 5 (air) and 1, 6 (noise)");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0u64;
        while seen < want {
            assert!(Instant::now() < deadline, "only {seen} of {want} consumed");
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                    let payload =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    let v: serde_json::Value = serde_json::from_str(&payload).expect("JSON");
                    assert_eq!(v["sensor"], key.as_str());
                    assert_eq!(format!("sim.{}", v["table"].as_str().unwrap()), m.topic());
                    per_sensor.entry(key).or_default().push(payload);
                    seen += 1;
                }
                Some(Err(e)) => panic!("consume: {e}"),
                None => {}
            }
        }
        assert_eq!(
            per_sensor.keys().collect::<Vec<_>>(),
            ["air-00000", "air-00005", "noise-00001", "noise-00006"]
        );
        // One key goes to one partition: each sensor's readings keep their order.
        for (sensor, msgs) in &per_sensor {
            assert_eq!(msgs.len(), 24, "{sensor}");
            let expected: Vec<String> = city
                .readings()
                .filter(|r| r.sensor.as_ref() == sensor)
                .map(|r| {
                    let mut s = String::new();
                    Payload::Json.encode(&r, &mut s);
                    s
                })
                .collect();
            assert_eq!(msgs, &expected, "{sensor}");
        }
    }

    #[test]
    fn kafka_without_a_broker_fails_with_the_cause() {
        let addr = free_addr();
        let target = KafkaTarget {
            brokers: addr.to_string(),
            topic: "sim.{table}".into(),
            payload: Payload::LineProtocol,
            rate: None,
            delivery_timeout: Duration::from_secs(3),
        };
        let city = City::new(CityConfig {
            sensors: 1,
            days: 1,
            interval_secs: 86_400,
            ..CityConfig::default()
        })
        .unwrap();
        let e = publish_kafka(&city, &target, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 of 1 messages delivered"), "{e}");
    }
}
