//! Helpers shared by the tests of `MqttSource` against real brokers: recording sinks and a
//! rumqttc publisher.

// Test code: a failed unwrap is a failed test. Not every test file uses every helper.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use async_trait::async_trait;
use civiclake_core::{DeliveryReport, InboundMessage, IngestError, MessageSink, SourceKind};
use civiclake_mqtt::MqttSource;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A free port on 127.0.0.1 (free when asked).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// A sink that records what it stored; optionally scripted (the first calls fail with the
/// given errors), closed (every call is `Busy` while closed) or slow.
#[derive(Debug, Default)]
pub struct RecordingSink {
    pub stored: Mutex<Vec<InboundMessage>>,
    pub calls: AtomicU64,
    pub script: Mutex<VecDeque<IngestError>>,
    pub closed: AtomicBool,
    pub delay: Option<Duration>,
}

impl RecordingSink {
    pub fn new() -> Arc<Self> {
        Arc::new(RecordingSink::default())
    }

    pub fn scripted(errors: Vec<IngestError>) -> Arc<Self> {
        Arc::new(RecordingSink {
            script: Mutex::new(errors.into()),
            ..RecordingSink::default()
        })
    }

    pub fn closed() -> Arc<Self> {
        Arc::new(RecordingSink {
            closed: AtomicBool::new(true),
            ..RecordingSink::default()
        })
    }

    pub fn slow(delay: Duration) -> Arc<Self> {
        Arc::new(RecordingSink {
            delay: Some(delay),
            ..RecordingSink::default()
        })
    }

    /// Payloads stored, as strings, in order.
    pub fn payloads(&self) -> Vec<String> {
        self.stored
            .lock()
            .unwrap()
            .iter()
            .map(|m| String::from_utf8(m.payload.clone()).unwrap())
            .collect()
    }

    /// Stored payloads on topics other than the probe topic.
    pub fn data(&self) -> Vec<String> {
        self.stored
            .lock()
            .unwrap()
            .iter()
            .filter(|m| !m.topic.ends_with("/probe"))
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.stored.lock().unwrap().len()
    }
}

#[async_trait]
impl MessageSink for RecordingSink {
    async fn deliver(&self, messages: Vec<InboundMessage>) -> Result<DeliveryReport, IngestError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        if self.closed.load(Ordering::Relaxed) {
            return Err(IngestError::Busy {
                reason: "closed by the test".into(),
                retry_after_ms: 20,
            });
        }
        if let Some(e) = self.script.lock().unwrap().pop_front() {
            return Err(e);
        }
        let n = messages.len();
        self.stored.lock().unwrap().extend(messages);
        Ok(DeliveryReport {
            stored: n,
            rows: n,
            ..DeliveryReport::default()
        })
    }
}

/// A QoS 1 publisher whose event loop runs in a task (reconnecting forever).
pub struct Publisher {
    pub client: AsyncClient,
    pub acked: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Publisher {
    pub fn connect(addr: SocketAddr, id: &str) -> Publisher {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(10));
        options.set_inflight(200);
        options.set_clean_session(false);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let acked = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&acked);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Publisher {
            client,
            acked,
            task,
        }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    /// Waits until the broker acknowledged `n` messages in all.
    pub async fn wait_acked(&self, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acked.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "the broker acknowledged {} of {n} publishes",
                self.acked.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `cond` holds, failing with `what` after `within`.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the source is subscribed: publishes to `<prefix>/probe` until a probe reaches
/// the sink.
pub async fn wait_subscribed(
    source: &MqttSource,
    sink: &RecordingSink,
    publisher: &Publisher,
    prefix: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publisher.publish(&format!("{prefix}/probe"), "probe").await;
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            if sink
                .stored
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.topic.ends_with("/probe"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            Instant::now() < deadline,
            "the source never received a probe: {:?}",
            source.stats()
        );
    }
}

/// The source kind of a source named `name`.
pub fn external(name: &str) -> SourceKind {
    SourceKind::ExternalMqtt(name.to_string())
}
