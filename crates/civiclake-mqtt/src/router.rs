//! State shared by all connections: who is connected under which client id, subscriptions,
//! retained messages and counters; and the routing of messages to subscribers.

use crate::auth::BrokerAuth;
use crate::codec::MessageProps;
use crate::config::{BrokerConfig, Counters, bump};
use bytes::Bytes;
use civiclake_core::{InboundMessage, MessageSink, SourceKind};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// A message on its way to the sink and to subscribers.
#[derive(Debug)]
pub(crate) struct RoutedMessage {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) props: MessageProps,
    pub(crate) publisher: Option<String>,
    pub(crate) received_micros: i64,
}

impl RoutedMessage {
    /// The message as the sink receives it.
    pub(crate) fn to_inbound(&self) -> InboundMessage {
        InboundMessage {
            source: SourceKind::EmbeddedMqtt,
            topic: self.topic.clone(),
            partition: None,
            offset: None,
            key: None,
            payload: self.payload.to_vec(),
            content_type: self.props.content_type.clone(),
            headers: self
                .props
                .user_properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect(),
            received_micros: self.received_micros,
            publisher: self.publisher.clone(),
        }
    }
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Resolves once the broker stops (the flag is set or its sender is gone).
pub(crate) async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A message queued for one subscriber.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) msg: Arc<RoutedMessage>,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<Delivery>,
    /// Filter → granted QoS, in subscription order.
    filters: Vec<(String, u8)>,
}

#[derive(Debug)]
struct SessionEntry {
    conn_id: u64,
    kick: oneshot::Sender<()>,
}

/// Everything the broker's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) auth: Arc<dyn BrokerAuth>,
    pub(crate) sink: Arc<dyn MessageSink>,
    pub(crate) counters: Counters,
    next_conn: AtomicU64,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    subscribers: RwLock<HashMap<u64, Subscriber>>,
    retained: RwLock<HashMap<String, Arc<RoutedMessage>>>,
}

impl Shared {
    pub(crate) fn new(
        config: BrokerConfig,
        auth: Arc<dyn BrokerAuth>,
        sink: Arc<dyn MessageSink>,
    ) -> Self {
        Shared {
            config,
            auth,
            sink,
            counters: Counters::default(),
            next_conn: AtomicU64::new(1),
            sessions: Mutex::new(HashMap::new()),
            subscribers: RwLock::new(HashMap::new()),
            retained: RwLock::new(HashMap::new()),
        }
    }

    /// A new connection id.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `client_id` for connection `conn_id`, telling the connection that had it
    /// before to close (session takeover). The receiver fires when a later connection takes it.
    pub(crate) fn register_session(&self, client_id: &str, conn_id: u64) -> oneshot::Receiver<()> {
        let (kick, kicked) = oneshot::channel();
        let previous = self
            .sessions
            .lock()
            .insert(client_id.to_string(), SessionEntry { conn_id, kick });
        if let Some(previous) = previous {
            // The old connection may be gone already; then there is nobody to tell.
            let _ = previous.kick.send(());
        }
        kicked
    }

    /// Forgets `client_id` unless a later connection took it over.
    pub(crate) fn deregister_session(&self, client_id: &str, conn_id: u64) {
        let mut sessions = self.sessions.lock();
        if sessions
            .get(client_id)
            .is_some_and(|s| s.conn_id == conn_id)
        {
            sessions.remove(client_id);
        }
    }

    /// Adds connection `conn_id` as a (so far filterless) subscriber.
    pub(crate) fn add_subscriber(&self, conn_id: u64, tx: mpsc::Sender<Delivery>) {
        self.subscribers.write().insert(
            conn_id,
            Subscriber {
                tx,
                filters: Vec::new(),
            },
        );
    }

    /// Removes connection `conn_id` and its subscriptions.
    pub(crate) fn remove_subscriber(&self, conn_id: u64) {
        self.subscribers.write().remove(&conn_id);
    }

    /// Subscribes `conn_id` to `filter` with `qos` granted (replacing an existing subscription
    /// to the same filter). Returns whether it existed, and the retained messages it matches.
    pub(crate) fn subscribe(
        &self,
        conn_id: u64,
        filter: &str,
        qos: u8,
    ) -> (bool, Vec<Arc<RoutedMessage>>) {
        let existed = {
            let mut subscribers = self.subscribers.write();
            let Some(sub) = subscribers.get_mut(&conn_id) else {
                return (false, Vec::new());
            };
            match sub.filters.iter_mut().find(|(f, _)| f == filter) {
                Some(existing) => {
                    existing.1 = qos;
                    true
                }
                None => {
                    sub.filters.push((filter.to_string(), qos));
                    false
                }
            }
        };
        let retained = self
            .retained
            .read()
            .values()
            .filter(|m| crate::topic::matches(filter, &m.topic))
            .cloned()
            .collect();
        (existed, retained)
    }

    /// Unsubscribes `conn_id` from `filter`; whether it was subscribed.
    pub(crate) fn unsubscribe(&self, conn_id: u64, filter: &str) -> bool {
        let mut subscribers = self.subscribers.write();
        let Some(sub) = subscribers.get_mut(&conn_id) else {
            return false;
        };
        let before = sub.filters.len();
        sub.filters.retain(|(f, _)| f != filter);
        sub.filters.len() != before
    }

    /// Updates the retained store with `msgs` and queues them to every matching subscriber,
    /// once per subscriber at the highest QoS its matching subscriptions granted (capped at
    /// the message's QoS).
    pub(crate) fn route(&self, msgs: &[Arc<RoutedMessage>]) {
        for msg in msgs.iter().filter(|m| m.retain) {
            let mut retained = self.retained.write();
            if msg.payload.is_empty() {
                retained.remove(&msg.topic);
            } else {
                retained.insert(msg.topic.clone(), Arc::clone(msg));
            }
        }
        let subscribers = self.subscribers.read();
        if subscribers.is_empty() {
            return;
        }
        let (mut forwarded, mut dropped) = (0, 0);
        for msg in msgs {
            for sub in subscribers.values() {
                let granted = sub
                    .filters
                    .iter()
                    .filter(|(f, _)| crate::topic::matches(f, &msg.topic))
                    .map(|(_, q)| *q)
                    .max();
                let Some(granted) = granted else { continue };
                let delivery = Delivery {
                    msg: Arc::clone(msg),
                    qos: granted.min(msg.qos),
                    retain: false,
                };
                match sub.tx.try_send(delivery) {
                    Ok(()) => forwarded += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        bump(&self.counters.messages_forwarded, forwarded);
        bump(&self.counters.messages_dropped, dropped);
        if dropped > 0 {
            tracing::debug!(dropped, "MQTT subscriber queue full, messages dropped");
        }
    }
}
