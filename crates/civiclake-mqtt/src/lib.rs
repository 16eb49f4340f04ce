//! civiclake's MQTT: the embedded broker, and [`MqttSource`] subscriptions to external
//! brokers (described at the end, and in docs/ARCHITECTURE.md, "External MQTT brokers").
//!
//! The embedded broker: MQTT 3.1.1 and MQTT 5 over TCP on tokio, with
//! rumqttc's packet codecs (`rumqttc::mqttbytes::v4`, `rumqttc::v5::mqttbytes::v5`).
//!
//! Every PUBLISH a client may make becomes a [`civiclake_core::InboundMessage`] (source
//! `EmbeddedMqtt`, publisher = the client's [`ClientIdentity::principal`]) handed to a
//! [`civiclake_core::MessageSink`]. What is acknowledged when:
//!
//! * **QoS 1**: the PUBACK is sent only after `sink.deliver` returned `Ok`, that is once the
//!   message is durable in the WAL (or recorded in `_dead_letters`); PUBACKs go out in the
//!   order the PUBLISHes came in.
//! * **QoS 2** (MQTT 3.1.1 only): PUBREC after the sink, then PUBREL → PUBCOMP. MQTT 5
//!   clients are told Maximum QoS 1 and a QoS 2 PUBLISH gets DISCONNECT 0x9B.
//! * **QoS 0**: stored the same way, nothing to acknowledge.
//! * Sink `Busy`: the same batch is retried after the suggested delay, and the connection is
//!   not read meanwhile (backpressure). Sink `Unavailable`: the connection is closed without
//!   acknowledging; the client resends after reconnecting.
//!
//! **Pipelining.** Each connection has a reader, an ingest task and a writer. The reader
//! keeps decoding while earlier messages are being stored: messages queue (at most
//! [`BrokerConfig::receive_maximum`] unacknowledged per connection, then the reader waits
//! and TCP pushes back) and the ingest task hands everything queued to the sink in one call
//! (at most [`BrokerConfig::ingest_batch_max`]). One fsync then acknowledges a whole batch,
//! so a single gateway connection is not held to one message per WAL write.
//!
//! **Authorization.** [`BrokerAuth`] authenticates each CONNECT and decides per topic what a
//! client may publish and subscribe to. A refused PUBLISH is neither stored nor forwarded
//! (MQTT 5: PUBACK 0x87; MQTT 3.1.1: a normal PUBACK, as 3.1.1 allows, counted and logged
//! once per client and topic); a refused subscription gets a SUBACK failure (0x80 / 0x87).
//!
//! **Routing.** Messages are forwarded to subscribers (`+` and `#` wildcards; `$` topics are
//! not matched by a leading wildcard) after they are stored, at min(publish QoS, granted
//! QoS), granted QoS being at most 1. Each subscriber has a bounded queue
//! ([`BrokerConfig::outbound_queue`]; when full, messages are dropped and counted) and a QoS 1
//! inflight window (the client's MQTT 5 Receive Maximum, else 100). Retained messages are kept
//! in memory (an empty retained payload clears the topic) and sent with the retain flag on
//! subscribe. [`EmbeddedBroker::publish`] lets the host process publish to subscribers
//! without going through the sink.
//!
//! **Limits.** Sessions are always clean: session present is 0, and subscriptions and
//! unacknowledged outbound messages end with the connection (a persistent-session request is
//! accepted but not honoured; MQTT 5 clients are told Session Expiry Interval 0). The retained
//! store is in memory and lost on restart. MQTT 5 No Local and Retain As Published are
//! ignored (messages come back to a subscribing publisher; forwarded messages have retain 0),
//! Retain Handling is honoured; topic aliases, subscription identifiers, shared subscriptions
//! and AUTH are not supported; will delay and message expiry are not applied (the properties
//! are forwarded unchanged). Passwords must be UTF-8 (a limit of rumqttc's codec). A new
//! connection with a client id already connected takes over (the old connection is closed,
//! MQTT 5 with DISCONNECT 0x8E). Wills are published, subject to the ACL and through the sink,
//! when a connection ends without DISCONNECT (or with MQTT 5 reason 0x04), but not when the
//! broker itself stops. A connection silent for 1.5 × its keep alive is closed.
//!
//! **External brokers.** [`MqttSource`] subscribes (MQTT 3.1.1, QoS 1, persistent session:
//! clean session 0 under a stable client id) to a broker of the city and hands what it
//! receives to the same kind of sink, as messages of source `mqtt:<name>`. A PUBACK is queued
//! only after `sink.deliver` returned `Ok`, and only on the connection the message came on;
//! connection errors are retried with exponential backoff (0.5 s doubling to 30 s). Delivery
//! is at least once: what was stored but not acknowledged when a connection ended comes again.

mod auth;
mod broker;
mod codec;
mod config;
mod connection;
mod ingest;
mod router;
mod source;
mod topic;
mod writer;

pub use auth::{AllowAll, BrokerAuth, ClientIdentity, ConnectRefusal};
pub use broker::EmbeddedBroker;
pub use config::{BrokerConfig, BrokerError, BrokerStats};
pub use source::{MqttSource, MqttSourceConfig, SourceError, SourceStats};
