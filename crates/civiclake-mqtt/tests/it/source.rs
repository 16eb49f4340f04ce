//! `MqttSource` against rumqttd (in process, on 127.0.0.1), which keeps persistent sessions:
//! order and payloads, no PUBACK before the sink stored, redelivery after a restart of the
//! source.

#![allow(clippy::unwrap_used)]

use crate::common::{Publisher, RecordingSink, external, free_addr, wait_for, wait_subscribed};
use civiclake_core::IngestError;
use civiclake_mqtt::{MqttSource, MqttSourceConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// rumqttd on a loopback port, in a thread for the rest of the test process.
fn rumqttd() -> SocketAddr {
    let addr = free_addr();
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1 << 20,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 500,
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
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "rumqttd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    addr
}

fn config(name: &str, addr: SocketAddr) -> MqttSourceConfig {
    let mut c = MqttSourceConfig::new(name, addr.ip().to_string(), ["city/+/data", "city/+/probe"]);
    c.port = addr.port();
    c.keep_alive_secs = 5;
    c
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{{\"seq\":{i}}}")).collect()
}

#[tokio::test]
async fn messages_reach_the_sink_in_order_with_exact_payloads() {
    let addr = rumqttd();
    let sink = RecordingSink::new();
    let source = MqttSource::start(config("order", addr), sink.clone()).unwrap();
    assert_eq!(source.name(), "order");
    let publisher = Publisher::connect(addr, "pub-order");
    wait_subscribed(&source, &sink, &publisher, "city/order").await;

    let expected = numbered(0..300);
    for (i, p) in expected.iter().enumerate() {
        publisher
            .publish(&format!("city/s{}/data", i % 3), p.clone())
            .await;
    }
    // Also a binary payload, byte for byte.
    let binary: Vec<u8> = (0..=255u8).collect();
    publisher.publish("city/bin/data", binary.clone()).await;
    wait_for("301 messages", WAIT, || sink.data().len() >= 301).await;

    let stored = sink.stored.lock().unwrap().clone();
    let data: Vec<_> = stored
        .iter()
        .filter(|m| m.topic.ends_with("/data"))
        .collect();
    assert_eq!(data.len(), 301);
    let texts: Vec<String> = data[..300]
        .iter()
        .map(|m| String::from_utf8(m.payload.clone()).unwrap())
        .collect();
    assert_eq!(texts, expected);
    assert_eq!(data[7].topic, "city/s1/data");
    assert_eq!(data[300].payload, binary);
    for m in &data {
        assert_eq!(m.source, external("order"));
        assert_eq!(m.publisher, None);
        assert!(m.received_micros > 1_600_000_000_000_000);
    }
    let stats = source.stats();
    assert!(stats.connected);
    assert_eq!(stats.messages_stored, stored.len() as u64);
    assert_eq!(stats.messages_acked, stored.len() as u64);
    assert_eq!(stats.acks_abandoned, 0);
    assert_eq!(stats.reconnects, 0);
    source.stop().await;
}

#[tokio::test]
async fn a_refused_batch_is_retried_and_acknowledged_once() {
    let addr = rumqttd();
    let sink = RecordingSink::scripted(vec![
        IngestError::Unavailable("disk gone".into()),
        IngestError::Busy {
            reason: "wal full".into(),
            retry_after_ms: 30,
        },
    ]);
    // The probe is what meets the refusals; nothing is lost or acknowledged early.
    let source = MqttSource::start(config("retry", addr), sink.clone()).unwrap();
    let publisher = Publisher::connect(addr, "pub-retry");
    wait_subscribed(&source, &sink, &publisher, "city/retry").await;
    assert!(sink.calls.load(Ordering::Relaxed) >= 3);
    assert!(source.stats().sink_failures >= 2);

    *sink.script.lock().unwrap() = vec![IngestError::Unavailable("flush failed".into()); 2].into();
    let expected = numbered(0..50);
    for p in &expected {
        publisher.publish("city/a/data", p.clone()).await;
    }
    wait_for("50 messages", WAIT, || sink.data().len() >= 50).await;
    assert_eq!(sink.data(), expected);
    let stats = source.stats();
    assert_eq!(stats.sink_failures, 4);
    let stored = sink.len() as u64;
    assert_eq!(stats.messages_acked, stored);
    source.stop().await;

    // Everything was acknowledged: a new connection with the same session gets nothing again.
    let again = RecordingSink::new();
    let source = MqttSource::start(config("retry", addr), again.clone()).unwrap();
    wait_for("the reconnect", WAIT, || source.stats().connected).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(again.data(), Vec::<String>::new());
    source.stop().await;
}

#[tokio::test]
async fn what_was_not_acknowledged_is_redelivered_to_the_next_session() {
    let addr = rumqttd();
    let sink = RecordingSink::new();
    let source = MqttSource::start(config("redeliver", addr), sink.clone()).unwrap();
    let publisher = Publisher::connect(addr, "pub-redeliver");
    wait_subscribed(&source, &sink, &publisher, "city/redeliver").await;

    // The sink now refuses everything (busy): the messages are received, never acknowledged.
    sink.closed.store(true, Ordering::Relaxed);
    let expected = numbered(0..40);
    for p in &expected {
        publisher.publish("city/x/data", p.clone()).await;
    }
    publisher.wait_acked(40 + 1, WAIT).await;
    wait_for("40 messages received", WAIT, || {
        source.stats().messages_received >= 41
    })
    .await;
    let stats = source.stats();
    assert_eq!(stats.messages_acked, 1, "{stats:?}");
    source.stop().await;
    assert!(sink.data().is_empty());

    // Published while no civiclake is connected: kept in the session too.
    let later = numbered(40..60);
    for p in &later {
        publisher.publish("city/x/data", p.clone()).await;
    }
    publisher.wait_acked(60 + 1, WAIT).await;

    let sink = RecordingSink::new();
    let source = MqttSource::start(config("redeliver", addr), sink.clone()).unwrap();
    wait_for("60 redelivered messages", WAIT, || sink.data().len() >= 60).await;
    let all: Vec<String> = expected.iter().chain(&later).cloned().collect();
    assert_eq!(sink.data(), all);
    source.stop().await;
}

#[tokio::test]
async fn an_unreachable_broker_is_retried_and_reported() {
    let addr = free_addr();
    let sink = RecordingSink::new();
    let source = MqttSource::start(config("down", addr), sink.clone()).unwrap();
    wait_for("a connection error", WAIT, || {
        source.stats().last_error.is_some()
    })
    .await;
    let stats = source.stats();
    assert!(!stats.connected);
    let error = stats.last_error.unwrap();
    assert!(
        error.contains("I/O") || error.contains("refused"),
        "{error}"
    );
    let started = Instant::now();
    source.stop().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(sink.len(), 0);
}

#[tokio::test]
async fn invalid_settings_are_refused_at_start() {
    let mut c = MqttSourceConfig::new("bad", "127.0.0.1", ["a/#/b"]);
    c.port = 1;
    let e = MqttSource::start(c, RecordingSink::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid [[mqtt.source]] \"bad\": topic filter \"a/#/b\""),
        "{e}"
    );
}
