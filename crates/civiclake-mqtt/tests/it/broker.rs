//! The embedded broker against rumqttc's MQTT 3.1.1 and MQTT 5 clients (and raw TCP) on
//! 127.0.0.1.

// The helpers below are test code too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use civiclake_core::{DeliveryReport, InboundMessage, IngestError, MessageSink, SourceKind};
use civiclake_mqtt::{
    AllowAll, BrokerAuth, BrokerConfig, ClientIdentity, ConnectRefusal, EmbeddedBroker,
};
use rumqttc::v5::mqttbytes::v5 as p5;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- sink and auth

/// A sink that records what it stores; optionally gated (one permit per call) and scripted
/// (errors returned by the first calls).
#[derive(Debug, Default)]
struct TestSink {
    stored: Mutex<Vec<Vec<InboundMessage>>>,
    attempts: Mutex<usize>,
    script: Mutex<VecDeque<IngestError>>,
    gate: Option<Arc<Semaphore>>,
    delay: Option<Duration>,
}

impl TestSink {
    fn gated() -> (Arc<Self>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let sink = TestSink {
            gate: Some(Arc::clone(&gate)),
            ..TestSink::default()
        };
        (Arc::new(sink), gate)
    }

    fn scripted(errors: Vec<IngestError>) -> Arc<Self> {
        Arc::new(TestSink {
            script: Mutex::new(errors.into()),
            ..TestSink::default()
        })
    }

    fn messages(&self) -> Vec<InboundMessage> {
        self.stored
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    fn calls(&self) -> usize {
        self.stored.lock().unwrap().len()
    }

    fn attempts(&self) -> usize {
        *self.attempts.lock().unwrap()
    }
}

#[async_trait]
impl MessageSink for TestSink {
    async fn deliver(&self, messages: Vec<InboundMessage>) -> Result<DeliveryReport, IngestError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        *self.attempts.lock().unwrap() += 1;
        if let Some(err) = self.script.lock().unwrap().pop_front() {
            return Err(err);
        }
        let n = messages.len();
        self.stored.lock().unwrap().push(messages);
        Ok(DeliveryReport {
            stored: n,
            rows: n,
            ..DeliveryReport::default()
        })
    }
}

/// `gw`/`secret` is token-7; `banned`/`secret` is refused as not authorized; anonymous
/// clients are allowed; `forbidden/...` may not be published, `secret/...` not subscribed.
#[derive(Debug)]
struct TestAuth;

impl BrokerAuth for TestAuth {
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<ClientIdentity, ConnectRefusal> {
        match (username, password) {
            (Some("gw"), Some(b"secret")) => Ok(ClientIdentity {
                principal: Some("token-7".to_string()),
                label: format!("gw/{client_id}"),
            }),
            (Some("banned"), Some(b"secret")) => Err(ConnectRefusal::NotAuthorized),
            (None, None) => Ok(ClientIdentity {
                principal: None,
                label: client_id.to_string(),
            }),
            _ => Err(ConnectRefusal::BadCredentials),
        }
    }

    fn may_publish(&self, _client: &ClientIdentity, topic: &str) -> bool {
        !topic.starts_with("forbidden/")
    }

    fn may_subscribe(&self, _client: &ClientIdentity, filter: &str) -> bool {
        !filter.starts_with("secret/")
    }
}

async fn start(sink: Arc<TestSink>) -> EmbeddedBroker {
    start_with(BrokerConfig::default(), sink).await
}

async fn start_with(config: BrokerConfig, sink: Arc<TestSink>) -> EmbeddedBroker {
    let config = BrokerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    EmbeddedBroker::start(config, Arc::new(TestAuth), sink)
        .await
        .unwrap()
}

/// Polls `cond` until it holds or the deadline passes.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- MQTT 3.1.1 client

mod v4c {
    use super::*;
    pub(crate) use rumqttc::{
        AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS,
    };

    pub(crate) type Events = mpsc::UnboundedReceiver<Result<Event, ConnectionError>>;

    pub(crate) fn options(addr: SocketAddr, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    /// Connects and drives the event loop on a task until its first error (no reconnects).
    pub(crate) fn connect(options: MqttOptions) -> (AsyncClient, Events, JoinHandle<()>) {
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    return;
                }
            }
        });
        (client, rx, task)
    }

    /// The next incoming packet that `pick` accepts; panics on a connection error.
    pub(crate) async fn next<T>(
        events: &mut Events,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Ok(Event::Incoming(p)))) => {
                    if let Some(t) = pick(&p) {
                        return t;
                    }
                }
                Ok(Some(Ok(Event::Outgoing(_)))) => {}
                Ok(Some(Err(e))) => panic!("connection error: {e:?}"),
                Ok(None) => panic!("event loop ended"),
                Err(_) => panic!("timed out waiting for a packet"),
            }
        }
    }

    /// Whether `pick` accepts an incoming packet within `within`.
    pub(crate) async fn sees(
        events: &mut Events,
        within: Duration,
        mut pick: impl FnMut(&Packet) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Ok(Event::Incoming(p)))) if pick(&p) => return true,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) | Err(_) => return false,
            }
        }
    }

    pub(crate) async fn connected(events: &mut Events) {
        next(events, |p| matches!(p, Packet::ConnAck(_)).then_some(())).await;
    }

    /// The first connection error.
    pub(crate) async fn error(events: &mut Events) -> ConnectionError {
        loop {
            match timeout(WAIT, events.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(_))) => {}
                Ok(None) => panic!("event loop ended without error"),
                Err(_) => panic!("timed out waiting for a connection error"),
            }
        }
    }
}

// ---------------------------------------------------------------- MQTT 5 client

mod v5c {
    use super::*;
    pub(crate) use rumqttc::v5::mqttbytes::QoS;
    pub(crate) use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
    pub(crate) use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};

    pub(crate) type Events = mpsc::UnboundedReceiver<Result<Event, ConnectionError>>;

    pub(crate) fn options(addr: SocketAddr, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    pub(crate) fn connect(options: MqttOptions) -> (AsyncClient, Events, JoinHandle<()>) {
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    return;
                }
            }
        });
        (client, rx, task)
    }

    pub(crate) async fn next<T>(
        events: &mut Events,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Ok(Event::Incoming(p)))) => {
                    if let Some(t) = pick(&p) {
                        return t;
                    }
                }
                Ok(Some(Ok(Event::Outgoing(_)))) => {}
                Ok(Some(Err(e))) => panic!("connection error: {e:?}"),
                Ok(None) => panic!("event loop ended"),
                Err(_) => panic!("timed out waiting for a packet"),
            }
        }
    }

    pub(crate) async fn connected(events: &mut Events) -> p5::ConnAck {
        next(events, |p| match p {
            Packet::ConnAck(c) => Some(c.clone()),
            _ => None,
        })
        .await
    }

    pub(crate) async fn error(events: &mut Events) -> ConnectionError {
        loop {
            match timeout(WAIT, events.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(_))) => {}
                Ok(None) => panic!("event loop ended without error"),
                Err(_) => panic!("timed out waiting for a connection error"),
            }
        }
    }
}

// ---------------------------------------------------------------- raw TCP

/// Reads until the peer closes the connection (or `WAIT` passes: then panics); returns what
/// was read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match timeout(WAIT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the broker did not close the connection"),
        }
    }
}

fn raw_v5_connect(client_id: &str, keep_alive: u16, will: Option<p5::LastWill>) -> Vec<u8> {
    let connect = p5::Connect {
        keep_alive,
        client_id: client_id.to_string(),
        clean_start: true,
        properties: None,
    };
    let mut buf = BytesMut::new();
    p5::Packet::Connect(connect, will, None)
        .write(&mut buf, None)
        .unwrap();
    buf.to_vec()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn qos1_publish_reaches_the_sink_with_topic_payload_and_publisher() {
    let sink = Arc::new(TestSink::default());
    let broker = start(Arc::clone(&sink)).await;
    let mut o = v4c::options(broker.local_addr(), "gw-1");
    o.set_credentials("gw", "secret");
    let (client, mut events, _task) = v4c::connect(o);
    v4c::connected(&mut events).await;
    client
        .publish(
            "ingest/air/s1",
            v4c::QoS::AtLeastOnce,
            false,
            b"pm10=12".to_vec(),
        )
        .await
        .unwrap();
    v4c::next(&mut events, |p| {
        matches!(p, v4c::Packet::PubAck(_)).then_some(())
    })
    .await;
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].source, SourceKind::EmbeddedMqtt);
    assert_eq!(got[0].topic, "ingest/air/s1");
    assert_eq!(got[0].payload, b"pm10=12");
    assert_eq!(got[0].publisher.as_deref(), Some("token-7"));
    assert!(got[0].received_micros > 1_600_000_000_000_000);

    // MQTT 5: content type and user properties travel as content_type and headers.
    let mut o = v5c::options(broker.local_addr(), "gw-5");
    o.set_credentials("gw", "secret");
    let (client, mut events, _task) = v5c::connect(o);
    let connack = v5c::connected(&mut events).await;
    let props = connack.properties.unwrap();
    assert_eq!(props.max_qos, Some(1));
    assert_eq!(props.receive_max, Some(1024));
    let properties = p5::PublishProperties {
        content_type: Some("application/json".to_string()),
        user_properties: vec![("unit".to_string(), "ug/m3".to_string())],
        ..Default::default()
    };
    client
        .publish_with_properties(
            "ingest/air/s2",
            v5c::QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
            properties,
        )
        .await
        .unwrap();
    v5c::next(&mut events, |p| {
        matches!(p, v5c::Packet::PubAck(_)).then_some(())
    })
    .await;
    let got = sink.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].topic, "ingest/air/s2");
    assert_eq!(got[1].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got[1].headers,
        vec![("unit".to_string(), b"ug/m3".to_vec())]
    );
    assert_eq!(got[1].publisher.as_deref(), Some("token-7"));
    let stats = broker.stats();
    assert_eq!(stats.messages_received, 2);
    assert_eq!(stats.messages_stored, 2);
    assert_eq!(stats.connections, 2);
    broker.stop().await;
}

#[tokio::test]
async fn puback_is_sent_only_after_the_sink_returns() {
    let (sink, gate) = TestSink::gated();
    let broker = start(Arc::clone(&sink)).await;
    let (client, mut events, _task) = v4c::connect(v4c::options(broker.local_addr(), "slow"));
    v4c::connected(&mut events).await;
    client
        .publish("ingest/x", v4c::QoS::AtLeastOnce, false, b"1".to_vec())
        .await
        .unwrap();
    let early = v4c::sees(&mut events, Duration::from_millis(300), |p| {
        matches!(p, v4c::Packet::PubAck(_))
    })
    .await;
    assert!(!early, "PUBACK before the sink returned");
    assert_eq!(sink.calls(), 0);
    gate.add_permits(1);
    v4c::next(&mut events, |p| {
        matches!(p, v4c::Packet::PubAck(_)).then_some(())
    })
    .await;
    assert_eq!(sink.calls(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn pipelined_publishes_are_stored_in_order_in_batches() {
    let sink = Arc::new(TestSink {
        // A WAL write with its fsync.
        delay: Some(Duration::from_millis(5)),
        ..TestSink::default()
    });
    let broker = start(Arc::clone(&sink)).await;
    let mut o = v4c::options(broker.local_addr(), "gateway");
    o.set_inflight(1000);
    let (client, mut events, _task) = v4c::connect(o);
    v4c::connected(&mut events).await;
    let publisher = tokio::spawn(async move {
        for i in 0..1000 {
            client
                .publish(
                    "ingest/batch",
                    v4c::QoS::AtLeastOnce,
                    false,
                    i.to_string().into_bytes(),
                )
                .await
                .unwrap();
        }
        client
    });
    let mut acks = 0;
    while acks < 1000 {
        v4c::next(&mut events, |p| {
            matches!(p, v4c::Packet::PubAck(_)).then_some(())
        })
        .await;
        acks += 1;
    }
    let _client = publisher.await.unwrap();
    let payloads: Vec<String> = sink
        .messages()
        .into_iter()
        .map(|m| String::from_utf8(m.payload).unwrap())
        .collect();
    let expected: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected);
    let calls = sink.calls();
    eprintln!("1000 pipelined messages stored in {calls} sink calls");
    assert!(calls < 1000, "{calls} sink calls for 1000 messages");
    assert_eq!(broker.stats().messages_stored, 1000);
    broker.stop().await;
}

#[tokio::test]
async fn a_busy_sink_is_retried_then_acknowledged() {
    let sink = TestSink::scripted(vec![IngestError::Busy {
        reason: "WAL full".to_string(),
        retry_after_ms: 50,
    }]);
    let broker = start(Arc::clone(&sink)).await;
    let (client, mut events, _task) = v4c::connect(v4c::options(broker.local_addr(), "busy"));
    v4c::connected(&mut events).await;
    client
        .publish(
            "ingest/x",
            v4c::QoS::AtLeastOnce,
            false,
            b"retry me".to_vec(),
        )
        .await
        .unwrap();
    v4c::next(&mut events, |p| {
        matches!(p, v4c::Packet::PubAck(_)).then_some(())
    })
    .await;
    assert_eq!(sink.attempts(), 2);
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"retry me");
    assert_eq!(broker.stats().sink_failures, 1);
    broker.stop().await;
}

#[tokio::test]
async fn an_unavailable_sink_closes_the_connection_without_puback() {
    let sink = TestSink::scripted(vec![IngestError::Unavailable("disk gone".to_string())]);
    let broker = start(Arc::clone(&sink)).await;
    let (client, mut events, _task) = v4c::connect(v4c::options(broker.local_addr(), "unlucky"));
    v4c::connected(&mut events).await;
    client
        .publish("ingest/x", v4c::QoS::AtLeastOnce, false, b"lost".to_vec())
        .await
        .unwrap();
    let mut acked = false;
    loop {
        match timeout(WAIT, events.recv()).await.unwrap() {
            Some(Ok(v4c::Event::Incoming(v4c::Packet::PubAck(_)))) => acked = true,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!(!acked, "PUBACK for a message the sink did not store");
    assert!(sink.messages().is_empty());
    eventually("the connection to be closed", || {
        broker.stats().connections == 0
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn refused_connects_get_the_codes_of_each_version() {
    let broker = start(Arc::new(TestSink::default())).await;
    let addr = broker.local_addr();
    for (user, code) in [
        ("gw", v4c::ConnectReturnCode::BadUserNamePassword),
        ("banned", v4c::ConnectReturnCode::NotAuthorized),
    ] {
        let mut o = v4c::options(addr, "c4");
        o.set_credentials(user, if user == "gw" { "wrong" } else { "secret" });
        let (_client, mut events, _task) = v4c::connect(o);
        match v4c::error(&mut events).await {
            v4c::ConnectionError::ConnectionRefused(got) => assert_eq!(got, code),
            other => panic!("unexpected {other:?}"),
        }
    }
    for (user, code) in [
        ("gw", v5c::ConnectReturnCode::BadUserNamePassword),
        ("banned", v5c::ConnectReturnCode::NotAuthorized),
    ] {
        let mut o = v5c::options(addr, "c5");
        o.set_credentials(user, if user == "gw" { "wrong" } else { "secret" });
        let (_client, mut events, _task) = v5c::connect(o);
        match v5c::error(&mut events).await {
            v5c::ConnectionError::ConnectionRefused(got) => assert_eq!(got, code),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(broker.stats().connects_refused, 4);

    // Protocol level 3 (MQTT 3.1): "unacceptable protocol version", then close.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut connect = vec![0x10, 0, 0, 6];
    connect.extend_from_slice(b"MQIsdp");
    connect.extend_from_slice(&[3, 2, 0, 60, 0, 1, b'x']);
    connect[1] = (connect.len() - 2) as u8;
    stream.write_all(&connect).await.unwrap();
    assert_eq!(
        read_to_close(&mut stream).await,
        vec![0x20, 0x02, 0x00, 0x01]
    );

    // MQTT 3.1.1, empty client id with a persistent session: 0x02.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut connect = vec![0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x00, 0, 60, 0, 0];
    connect[1] = (connect.len() - 2) as u8;
    stream.write_all(&connect).await.unwrap();
    assert_eq!(
        read_to_close(&mut stream).await,
        vec![0x20, 0x02, 0x00, 0x02]
    );
    broker.stop().await;
}

#[tokio::test]
async fn empty_client_ids_are_assigned() {
    let broker = start(Arc::new(TestSink::default())).await;
    let (_client, mut events, _task) = v5c::connect(v5c::options(broker.local_addr(), ""));
    let connack = v5c::connected(&mut events).await;
    let assigned = connack
        .properties
        .unwrap()
        .assigned_client_identifier
        .unwrap();
    assert!(assigned.starts_with("civiclake-"), "{assigned}");
    let (_client, mut events, _task) = v4c::connect(v4c::options(broker.local_addr(), ""));
    v4c::connected(&mut events).await;
    broker.stop().await;
}

#[tokio::test]
async fn the_acl_refuses_publishes_and_subscriptions() {
    let sink = Arc::new(TestSink::default());
    let broker = start(Arc::clone(&sink)).await;
    let addr = broker.local_addr();

    let (c5, mut e5, _t5) = v5c::connect(v5c::options(addr, "acl5"));
    v5c::connected(&mut e5).await;
    c5.publish("forbidden/a", v5c::QoS::AtLeastOnce, false, b"no".to_vec())
        .await
        .unwrap();
    let reason = v5c::next(&mut e5, |p| match p {
        v5c::Packet::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, p5::PubAckReason::NotAuthorized);
    c5.subscribe("secret/#", v5c::QoS::AtLeastOnce)
        .await
        .unwrap();
    let codes = v5c::next(&mut e5, |p| match p {
        v5c::Packet::SubAck(s) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![p5::SubscribeReasonCode::NotAuthorized]);

    let (c4, mut e4, _t4) = v4c::connect(v4c::options(addr, "acl4"));
    v4c::connected(&mut e4).await;
    c4.publish("forbidden/b", v4c::QoS::AtLeastOnce, false, b"no".to_vec())
        .await
        .unwrap();
    v4c::next(&mut e4, |p| {
        matches!(p, v4c::Packet::PubAck(_)).then_some(())
    })
    .await;
    c4.subscribe("secret/x", v4c::QoS::AtMostOnce)
        .await
        .unwrap();
    let codes = v4c::next(&mut e4, |p| match p {
        v4c::Packet::SubAck(s) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Failure]);

    // An allowed publish after the denied ones is stored; the denied ones are not.
    c4.publish("ingest/ok", v4c::QoS::AtLeastOnce, false, b"yes".to_vec())
        .await
        .unwrap();
    v4c::next(&mut e4, |p| {
        matches!(p, v4c::Packet::PubAck(_)).then_some(())
    })
    .await;
    let topics: Vec<String> = sink.messages().into_iter().map(|m| m.topic).collect();
    assert_eq!(topics, vec!["ingest/ok".to_string()]);
    assert_eq!(broker.stats().publishes_denied, 2);
    broker.stop().await;
}

#[tokio::test]
async fn clients_exchange_messages_through_wildcard_subscriptions() {
    let sink = Arc::new(TestSink::default());
    let broker = start(Arc::clone(&sink)).await;
    let addr = broker.local_addr();
    let (s1, mut e1, _t1) = v4c::connect(v4c::options(addr, "sub-plus"));
    v4c::connected(&mut e1).await;
    s1.subscribe("city/+/temp", v4c::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4c::next(&mut e1, |p| {
        matches!(p, v4c::Packet::SubAck(_)).then_some(())
    })
    .await;
    let (s2, mut e2, _t2) = v5c::connect(v5c::options(addr, "sub-hash"));
    v5c::connected(&mut e2).await;
    s2.subscribe("city/#", v5c::QoS::AtMostOnce).await.unwrap();
    v5c::next(&mut e2, |p| {
        matches!(p, v5c::Packet::SubAck(_)).then_some(())
    })
    .await;

    let (publisher, mut ep, _tp) = v4c::connect(v4c::options(addr, "pub"));
    v4c::connected(&mut ep).await;
    for (topic, payload) in [
        ("city/a/temp", "21"),
        ("city/a/humidity", "40"),
        ("other/a/temp", "0"),
    ] {
        publisher
            .publish(
                topic,
                v4c::QoS::AtLeastOnce,
                false,
                payload.as_bytes().to_vec(),
            )
            .await
            .unwrap();
    }
    let got1 = v4c::next(&mut e1, |p| match p {
        v4c::Packet::Publish(p) => Some((p.topic.clone(), p.payload.clone(), p.qos)),
        _ => None,
    })
    .await;
    assert_eq!(
        got1,
        (
            "city/a/temp".to_string(),
            Bytes::from_static(b"21"),
            v4c::QoS::AtLeastOnce
        )
    );
    let mut got2 = Vec::new();
    while got2.len() < 2 {
        let p = v5c::next(&mut e2, |p| match p {
            v5c::Packet::Publish(p) => Some((p.topic.clone(), p.qos)),
            _ => None,
        })
        .await;
        got2.push(p);
    }
    assert_eq!(
        got2,
        vec![
            (Bytes::from_static(b"city/a/temp"), v5c::QoS::AtMostOnce),
            (Bytes::from_static(b"city/a/humidity"), v5c::QoS::AtMostOnce),
        ]
    );
    let more = v4c::sees(&mut e1, Duration::from_millis(300), |p| {
        matches!(p, v4c::Packet::Publish(_))
    })
    .await;
    assert!(!more, "city/+/temp matched something else");
    eventually("three messages stored", || sink.messages().len() == 3).await;
    assert_eq!(broker.stats().messages_forwarded, 3);

    // Unsubscribed: nothing more arrives.
    s1.unsubscribe("city/+/temp").await.unwrap();
    v4c::next(&mut e1, |p| {
        matches!(p, v4c::Packet::UnsubAck(_)).then_some(())
    })
    .await;
    publisher
        .publish("city/b/temp", v4c::QoS::AtLeastOnce, false, b"22".to_vec())
        .await
        .unwrap();
    let after = v4c::sees(&mut e1, Duration::from_millis(300), |p| {
        matches!(p, v4c::Packet::Publish(_))
    })
    .await;
    assert!(!after, "delivered after UNSUBSCRIBE");
    broker.stop().await;
}

#[tokio::test]
async fn retained_messages_are_delivered_on_subscribe_and_cleared_by_an_empty_payload() {
    let broker = start(Arc::new(TestSink::default())).await;
    let addr = broker.local_addr();
    let (publisher, mut ep, _tp) = v4c::connect(v4c::options(addr, "pub"));
    v4c::connected(&mut ep).await;
    for (topic, payload) in [("status/gw1", "online"), ("status/gw2", "online")] {
        publisher
            .publish(
                topic,
                v4c::QoS::AtLeastOnce,
                true,
                payload.as_bytes().to_vec(),
            )
            .await
            .unwrap();
        v4c::next(&mut ep, |p| {
            matches!(p, v4c::Packet::PubAck(_)).then_some(())
        })
        .await;
    }
    let (s1, mut e1, _t1) = v4c::connect(v4c::options(addr, "late-1"));
    v4c::connected(&mut e1).await;
    s1.subscribe("status/gw1", v4c::QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = v4c::next(&mut e1, |p| match p {
        v4c::Packet::Publish(p) => Some((p.topic.clone(), p.payload.clone(), p.retain)),
        _ => None,
    })
    .await;
    assert_eq!(
        got,
        (
            "status/gw1".to_string(),
            Bytes::from_static(b"online"),
            true
        )
    );

    publisher
        .publish("status/gw1", v4c::QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
    v4c::next(&mut ep, |p| {
        matches!(p, v4c::Packet::PubAck(_)).then_some(())
    })
    .await;
    let (s2, mut e2, _t2) = v4c::connect(v4c::options(addr, "late-2"));
    v4c::connected(&mut e2).await;
    s2.subscribe("status/+", v4c::QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = v4c::next(&mut e2, |p| match p {
        v4c::Packet::Publish(p) => Some(p.topic.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, "status/gw2");
    let cleared = v4c::sees(&mut e2, Duration::from_millis(300), |p| {
        matches!(p, v4c::Packet::Publish(_))
    })
    .await;
    assert!(!cleared, "a cleared retained message was delivered");
    broker.stop().await;
}

#[tokio::test]
async fn host_publishes_reach_subscribers_and_not_the_sink() {
    let sink = Arc::new(TestSink::default());
    let broker = start(Arc::clone(&sink)).await;
    let (s, mut e, _t) = v5c::connect(v5c::options(broker.local_addr(), "listener"));
    v5c::connected(&mut e).await;
    s.subscribe("bus/#", v5c::QoS::AtLeastOnce).await.unwrap();
    v5c::next(&mut e, |p| {
        matches!(p, v5c::Packet::SubAck(_)).then_some(())
    })
    .await;
    broker
        .publish(
            "bus/permits/issued",
            Bytes::from_static(b"{\"id\":1}"),
            false,
        )
        .unwrap();
    let got = v5c::next(&mut e, |p| match p {
        v5c::Packet::Publish(p) => Some((p.topic.clone(), p.payload.clone(), p.qos)),
        _ => None,
    })
    .await;
    assert_eq!(
        got,
        (
            Bytes::from_static(b"bus/permits/issued"),
            Bytes::from_static(b"{\"id\":1}"),
            v5c::QoS::AtLeastOnce
        )
    );
    assert!(broker.publish("bus/#", Bytes::new(), false).is_err());
    assert_eq!(sink.attempts(), 0);
    broker.stop().await;
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_over() {
    let sink = Arc::new(TestSink::default());
    let broker = start(Arc::clone(&sink)).await;
    let addr = broker.local_addr();
    let (_old, mut old_events, _t1) = v5c::connect(v5c::options(addr, "twin"));
    v5c::connected(&mut old_events).await;
    let (new, mut new_events, _t2) = v5c::connect(v5c::options(addr, "twin"));
    v5c::connected(&mut new_events).await;
    match v5c::error(&mut old_events).await {
        v5c::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
            reason_code,
            ..
        }) => {
            assert_eq!(reason_code, p5::DisconnectReasonCode::SessionTakenOver);
        }
        other => panic!("unexpected {other:?}"),
    }
    new.publish(
        "ingest/x",
        v5c::QoS::AtLeastOnce,
        false,
        b"still here".to_vec(),
    )
    .await
    .unwrap();
    v5c::next(&mut new_events, |p| {
        matches!(p, v5c::Packet::PubAck(_)).then_some(())
    })
    .await;
    eventually("one connection left", || broker.stats().connections == 1).await;
    broker.stop().await;
}

#[tokio::test]
async fn the_will_is_published_when_a_client_vanishes() {
    let sink = Arc::new(TestSink::default());
    let broker = start(Arc::clone(&sink)).await;
    let addr = broker.local_addr();
    let (s, mut e, _t) = v4c::connect(v4c::options(addr, "watcher"));
    v4c::connected(&mut e).await;
    s.subscribe("devices/+/status", v4c::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4c::next(&mut e, |p| {
        matches!(p, v4c::Packet::SubAck(_)).then_some(())
    })
    .await;

    let mut o = v4c::options(addr, "kiosk-7");
    o.set_credentials("gw", "secret");
    o.set_last_will(v4c::LastWill::new(
        "devices/k7/status",
        "offline",
        v4c::QoS::AtLeastOnce,
        false,
    ));
    let (_client, mut events, task) = v4c::connect(o);
    v4c::connected(&mut events).await;
    task.abort();
    let got = v4c::next(&mut e, |p| match p {
        v4c::Packet::Publish(p) => Some((p.topic.clone(), p.payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        got,
        (
            "devices/k7/status".to_string(),
            Bytes::from_static(b"offline")
        )
    );
    let stored = sink.messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].topic, "devices/k7/status");
    assert_eq!(stored[0].publisher.as_deref(), Some("token-7"));
    broker.stop().await;
}

#[tokio::test]
async fn a_v5_disconnect_without_reason_code_is_clean_and_0x04_publishes_the_will() {
    let sink = Arc::new(TestSink::default());
    let broker = start(Arc::clone(&sink)).await;
    let addr = broker.local_addr();
    let (s, mut e, _t) = v4c::connect(v4c::options(addr, "watcher"));
    v4c::connected(&mut e).await;
    s.subscribe("wills/#", v4c::QoS::AtLeastOnce).await.unwrap();
    v4c::next(&mut e, |p| {
        matches!(p, v4c::Packet::SubAck(_)).then_some(())
    })
    .await;

    let will = p5::LastWill::new("wills/raw", "gone", v5c::QoS::AtLeastOnce, false, None);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&raw_v5_connect("raw-5", 30, Some(will)))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack[..2]).await.unwrap();
    assert_eq!(connack[0], 0x20);
    let mut rest = vec![0u8; usize::from(connack[1])];
    stream.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest[1], 0x00, "CONNACK reason");
    stream.write_all(&[0xE0, 0x00]).await.unwrap();
    assert!(read_to_close(&mut stream).await.is_empty());
    eventually("the raw connection to close", || {
        broker.stats().connections == 1
    })
    .await;
    let will_seen = v4c::sees(&mut e, Duration::from_millis(500), |p| {
        matches!(p, v4c::Packet::Publish(_))
    })
    .await;
    assert!(!will_seen, "will published after a normal DISCONNECT");
    assert!(sink.messages().is_empty());

    // Reason 0x04, "disconnect with will message": the will is published.
    let will = p5::LastWill::new("wills/raw", "asked for", v5c::QoS::AtLeastOnce, false, None);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&raw_v5_connect("raw-5b", 30, Some(will)))
        .await
        .unwrap();
    stream.write_all(&[0xE0, 0x01, 0x04]).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(answer[0], 0x20, "CONNACK first");
    let got = v4c::next(&mut e, |p| match p {
        v4c::Packet::Publish(p) => Some(p.payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, Bytes::from_static(b"asked for"));
    assert_eq!(sink.messages().len(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn garbage_and_protocol_violations_close_the_connection() {
    let sink = Arc::new(TestSink::default());
    let broker = start_with(
        BrokerConfig {
            max_packet_bytes: 1024,
            ..BrokerConfig::default()
        },
        Arc::clone(&sink),
    )
    .await;
    let addr = broker.local_addr();

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut stream).await.is_empty());

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00])
        .await
        .unwrap();
    assert!(read_to_close(&mut stream).await.is_empty());

    // A valid CONNECT, then a reserved packet type and random bytes.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&raw_v5_connect("raw", 30, None))
        .await
        .unwrap();
    let mut junk = vec![0xF0, 0x05, 1, 2, 3, 4, 5];
    junk.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    stream.write_all(&junk).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(answer[0], 0x20, "CONNACK first");

    // A PUBLISH with a wildcard in its topic: DISCONNECT 0x90.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&raw_v5_connect("wild", 30, None))
        .await
        .unwrap();
    let mut publish = BytesMut::new();
    p5::Publish::new("a/+", v5c::QoS::AtMostOnce, b"x".to_vec(), None)
        .write(&mut publish)
        .unwrap();
    stream.write_all(&publish).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.ends_with(&[0xE0, 0x02, 0x90, 0x00]), "{answer:02X?}");

    // A packet over max_packet_bytes: DISCONNECT 0x95, nothing stored.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&raw_v5_connect("big", 30, None))
        .await
        .unwrap();
    let mut publish = BytesMut::new();
    let mut p = p5::Publish::new("ingest/big", v5c::QoS::AtLeastOnce, vec![7u8; 2000], None);
    p.pkid = 1;
    p.write(&mut publish).unwrap();
    stream.write_all(&publish).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.ends_with(&[0xE0, 0x02, 0x95, 0x00]), "{answer:02X?}");
    assert!(sink.messages().is_empty());

    // The broker still serves.
    let (_c, mut events, _t) = v4c::connect(v4c::options(addr, "after"));
    v4c::connected(&mut events).await;
    broker.stop().await;
}

#[tokio::test]
async fn qos2_is_stored_then_completed_in_v311_and_refused_in_v5() {
    let sink = Arc::new(TestSink::default());
    let broker = start(Arc::clone(&sink)).await;
    let addr = broker.local_addr();
    let (c4, mut e4, _t4) = v4c::connect(v4c::options(addr, "q2"));
    v4c::connected(&mut e4).await;
    c4.publish("ingest/q2", v4c::QoS::ExactlyOnce, false, b"once".to_vec())
        .await
        .unwrap();
    v4c::next(&mut e4, |p| {
        matches!(p, v4c::Packet::PubRec(_)).then_some(())
    })
    .await;
    assert_eq!(sink.messages().len(), 1);
    v4c::next(&mut e4, |p| {
        matches!(p, v4c::Packet::PubComp(_)).then_some(())
    })
    .await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&raw_v5_connect("q2-5", 30, None))
        .await
        .unwrap();
    let mut publish = BytesMut::new();
    let mut p = p5::Publish::new("ingest/q2", v5c::QoS::ExactlyOnce, b"no".to_vec(), None);
    p.pkid = 1;
    p.write(&mut publish).unwrap();
    stream.write_all(&publish).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.ends_with(&[0xE0, 0x02, 0x9B, 0x00]), "{answer:02X?}");
    assert_eq!(sink.messages().len(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_one_and_a_half_keep_alives() {
    let broker = start(Arc::new(TestSink::default())).await;
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
    stream
        .write_all(&raw_v5_connect("quiet", 1, None))
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream).await;
    let waited = started.elapsed();
    assert!(answer.ends_with(&[0xE0, 0x02, 0x8D, 0x00]), "{answer:02X?}");
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    broker.stop().await;
}

#[tokio::test]
async fn stop_closes_connections_and_the_port() {
    let broker = EmbeddedBroker::start(
        BrokerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..BrokerConfig::default()
        },
        Arc::new(AllowAll),
        Arc::new(TestSink::default()),
    )
    .await
    .unwrap();
    let addr = broker.local_addr();
    let (_client, mut events, _task) = v5c::connect(v5c::options(addr, "until-the-end"));
    v5c::connected(&mut events).await;
    timeout(WAIT, broker.stop()).await.expect("stop() returns");
    match v5c::error(&mut events).await {
        v5c::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
            reason_code,
            ..
        }) => {
            assert_eq!(reason_code, p5::DisconnectReasonCode::ServerShuttingDown);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is still open"
    );
}

/// One connection's QoS 1 throughput against a sink that takes 2 ms per call (an fsync).
/// Run by hand: `cargo test -p civiclake-mqtt --test broker -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn throughput_of_one_connection() {
    let sink = Arc::new(TestSink {
        delay: Some(Duration::from_millis(2)),
        ..TestSink::default()
    });
    let broker = start(Arc::clone(&sink)).await;
    let mut o = v4c::options(broker.local_addr(), "gateway");
    o.set_inflight(1024);
    let (client, mut events, _task) = v4c::connect(o);
    v4c::connected(&mut events).await;
    let n = 50_000;
    let started = Instant::now();
    let publisher = tokio::spawn(async move {
        for i in 0..n {
            let payload = format!("air,sensor=s{} pm10={} {}", i % 100, i % 50, i);
            client
                .publish(
                    "ingest/air",
                    v4c::QoS::AtLeastOnce,
                    false,
                    payload.into_bytes(),
                )
                .await
                .unwrap();
        }
        client
    });
    let mut acks = 0;
    while acks < n {
        v4c::next(&mut events, |p| {
            matches!(p, v4c::Packet::PubAck(_)).then_some(())
        })
        .await;
        acks += 1;
    }
    let elapsed = started.elapsed();
    let _client = publisher.await.unwrap();
    eprintln!(
        "{n} QoS 1 messages in {elapsed:?} ({:.0} msg/s), {} sink calls",
        f64::from(n) / elapsed.as_secs_f64(),
        sink.calls()
    );
    assert_eq!(sink.messages().len(), n as usize);
    broker.stop().await;
}

#[tokio::test]
async fn a_full_subscriber_queue_drops_and_counts() {
    let broker = start_with(
        BrokerConfig {
            outbound_queue: 5,
            ..BrokerConfig::default()
        },
        Arc::new(TestSink::default()),
    )
    .await;
    // A raw MQTT 3.1.1 subscriber that never acknowledges: its window (100) fills up.
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
    let mut out = BytesMut::new();
    rumqttc::Connect::new("stuck").write(&mut out).unwrap();
    let mut subscribe = rumqttc::Subscribe::new("bus/#", v4c::QoS::AtLeastOnce);
    subscribe.pkid = 1;
    subscribe.write(&mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut acks = [0u8; 4 + 5];
    stream.read_exact(&mut acks).await.unwrap();
    assert_eq!(acks, [0x20, 0x02, 0x00, 0x00, 0x90, 0x03, 0x00, 0x01, 0x01]);
    for i in 0..200 {
        broker
            .publish("bus/tick", Bytes::from(format!("{i}")), false)
            .unwrap();
        tokio::task::yield_now().await;
    }
    eventually("the window to fill", || {
        let s = broker.stats();
        s.messages_forwarded + s.messages_dropped == 200
    })
    .await;
    let stats = broker.stats();
    // 100 in the client's inflight window, 5 in the queue, the rest dropped.
    assert_eq!(stats.messages_forwarded, 105, "{stats:?}");
    assert_eq!(stats.messages_dropped, 95, "{stats:?}");
    broker.stop().await;
}
