//! The broker's settings, errors and counters.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

/// Settings of the embedded broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Address to listen on; port 0 picks a free port (see [`crate::EmbeddedBroker::local_addr`]).
    pub addr: SocketAddr,
    /// Largest packet accepted from a client (remaining length, bytes); a larger one closes
    /// the connection. Advertised to MQTT 5 clients as Maximum Packet Size.
    pub max_packet_bytes: usize,
    /// How many messages of one connection may be received and not yet acknowledged (waiting
    /// to be stored); beyond that the broker stops reading the connection (TCP backpressure).
    /// Advertised to MQTT 5 clients as Receive Maximum.
    pub receive_maximum: u16,
    /// Open connections beyond which new ones are closed at once.
    pub max_connections: usize,
    /// Most messages handed to the sink in one call.
    pub ingest_batch_max: usize,
    /// Messages queued per subscriber; when the queue is full new messages for that
    /// subscriber are dropped and counted.
    pub outbound_queue: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 1883)),
            max_packet_bytes: 1024 * 1024,
            receive_maximum: 1024,
            max_connections: 10_000,
            ingest_batch_max: 2048,
            outbound_queue: 10_000,
        }
    }
}

/// What can go wrong with the broker itself (problems of single connections are logged and
/// counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listening socket could not be bound.
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid MQTT broker setting: {0}")]
    Config(String),
    /// A topic given to [`crate::EmbeddedBroker::publish`] is not a valid MQTT topic name.
    #[error("invalid MQTT topic {topic:?}: it {reason}")]
    InvalidTopic {
        /// The topic as given.
        topic: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A snapshot of the broker's counters (all since start, except `connections`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Open client connections now.
    pub connections: u64,
    /// Connections refused: bad credentials, not authorized, unsupported protocol version,
    /// invalid client identifier, or over `max_connections`.
    pub connects_refused: u64,
    /// PUBLISH packets received from clients (wills included).
    pub messages_received: u64,
    /// Messages the sink accepted (they are durable).
    pub messages_stored: u64,
    /// Messages queued to subscribers (one per subscriber).
    pub messages_forwarded: u64,
    /// Messages for a subscriber dropped because its queue was full or the message was larger
    /// than the subscriber's Maximum Packet Size.
    pub messages_dropped: u64,
    /// Publishes refused by the topic ACL (not stored, not forwarded).
    pub publishes_denied: u64,
    /// Calls to the sink that returned an error (busy or unavailable).
    pub sink_failures: u64,
}

/// The live counters behind [`BrokerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) connects_refused: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) messages_stored: AtomicU64,
    pub(crate) messages_forwarded: AtomicU64,
    pub(crate) messages_dropped: AtomicU64,
    pub(crate) publishes_denied: AtomicU64,
    pub(crate) sink_failures: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> BrokerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BrokerStats {
            connections: get(&self.connections),
            connects_refused: get(&self.connects_refused),
            messages_received: get(&self.messages_received),
            messages_stored: get(&self.messages_stored),
            messages_forwarded: get(&self.messages_forwarded),
            messages_dropped: get(&self.messages_dropped),
            publishes_denied: get(&self.publishes_denied),
            sink_failures: get(&self.sink_failures),
        }
    }
}

impl BrokerConfig {
    /// Rejects settings the broker cannot work with.
    pub(crate) fn validate(&self) -> Result<(), BrokerError> {
        let fail = |m: &str| Err(BrokerError::Config(m.to_string()));
        if self.max_packet_bytes < 64 || self.max_packet_bytes > 268_435_455 {
            return fail("max_packet_bytes must be between 64 and 268435455");
        }
        if self.receive_maximum == 0 {
            return fail("receive_maximum must be at least 1");
        }
        if self.max_connections == 0 {
            return fail("max_connections must be at least 1");
        }
        if self.ingest_batch_max == 0 {
            return fail("ingest_batch_max must be at least 1");
        }
        if self.outbound_queue == 0 {
            return fail("outbound_queue must be at least 1");
        }
        Ok(())
    }
}
