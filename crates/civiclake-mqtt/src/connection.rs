//! One client connection: the CONNECT handshake, then the reader loop that decodes packets
//! and queues messages to the connection's ingest task, and the close (will included).

use crate::auth::{ClientIdentity, ConnectRefusal};
use crate::codec::{
    self, CONNACK_BAD_PROTOCOL, ConnAckOut, ConnCode, ConnectInfo, DecodeError, InPublish, Inbound,
    Outbound, Protocol, Sniff, SubCode, SubFilter, Will,
};
use crate::config::bump;
use crate::ingest::{Ingest, IngestItem, busy_wait};
use crate::router::{Delivery, RoutedMessage, Shared, now_micros};
use crate::topic::{check_filter, check_topic};
use crate::writer::{Writer, WriterCmd};
use bytes::BytesMut;
use civiclake_core::IngestError;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::{Instant, timeout, timeout_at};

/// How long a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for its queued messages to be stored.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for its last packets to be written.
const WRITER_TIMEOUT: Duration = Duration::from_secs(5);
/// Outbound QoS 1 window when the client does not say (MQTT 3.1.1, or no Receive Maximum).
const DEFAULT_CLIENT_WINDOW: usize = 100;
/// Attempts to store a will while the sink is busy.
const WILL_ATTEMPTS: usize = 20;
/// Distinct denied topics remembered per connection to log each denial once.
const DENIALS_LOGGED: usize = 1000;

/// Why a connection ends.
#[derive(Debug)]
enum Close {
    /// The client sent DISCONNECT.
    Disconnect { with_will: bool },
    /// The socket closed or failed.
    PeerGone(String),
    /// No packet for 1.5 × keep alive.
    KeepAlive,
    /// The client broke the protocol; MQTT 5 reason code and explanation.
    Protocol { reason: u8, why: String },
    /// Another connection with the same client id.
    TakenOver,
    /// The broker stops.
    Shutdown,
    /// The sink cannot store.
    Unavailable(String),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Disconnect { with_will: false } => f.write_str("DISCONNECT"),
            Close::Disconnect { with_will: true } => f.write_str("DISCONNECT with will"),
            Close::PeerGone(why) => write!(f, "connection lost: {why}"),
            Close::KeepAlive => f.write_str("keep alive expired"),
            Close::Protocol { reason, why } => write!(f, "protocol error 0x{reason:02X}: {why}"),
            Close::TakenOver => {
                f.write_str("taken over by a new connection with the same client id")
            }
            Close::Shutdown => f.write_str("broker stopping"),
            Close::Unavailable(why) => write!(f, "ingest unavailable: {why}"),
        }
    }
}

impl Close {
    /// The reason of the DISCONNECT an MQTT 5 client gets, if any.
    fn v5_reason(&self) -> Option<u8> {
        match self {
            Close::Disconnect { .. } | Close::PeerGone(_) => None,
            Close::KeepAlive => Some(0x8D),
            Close::Protocol { reason, .. } => Some(*reason),
            Close::TakenOver => Some(0x8E),
            Close::Shutdown => Some(0x8B),
            Close::Unavailable(_) => Some(0x80),
        }
    }

    /// Whether the will is published: on every end but a DISCONNECT without "with will" and
    /// the broker's own shutdown.
    fn publishes_will(&self) -> bool {
        match self {
            Close::Disconnect { with_will } => *with_will,
            Close::Shutdown => false,
            _ => true,
        }
    }
}

/// Counts the connection as open until dropped.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted TCP connection to its end. The caller has counted it as open.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _open = OpenGuard(Arc::clone(&shared));
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let max = shared.config.max_packet_bytes;

    let level = tokio::select! {
        level = timeout(CONNECT_TIMEOUT, read_connect(&mut read, &mut buf, max)) => level,
        _ = crate::router::stopping(&mut shutdown) => return,
    };
    let protocol = match level {
        Ok(Ok(4)) => Protocol::V4,
        Ok(Ok(5)) => Protocol::V5,
        Ok(Ok(level)) => {
            bump(&shared.counters.connects_refused, 1);
            tracing::info!(%peer, level, "MQTT CONNECT with an unsupported protocol level refused");
            let _ = write.write_all(&CONNACK_BAD_PROTOCOL).await;
            return;
        }
        Ok(Err(why)) => {
            tracing::debug!(%peer, %why, "MQTT connection closed before CONNECT");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "MQTT connection sent no CONNECT in time");
            return;
        }
    };
    let connect = match codec::decode(protocol, &mut buf, max) {
        Ok(Some(Inbound::Connect(c))) => *c,
        Ok(_) => return,
        Err(e) => {
            tracing::info!(%peer, error = %e, "malformed MQTT CONNECT");
            return;
        }
    };

    let mut assigned_client_id = None;
    let client_id = if connect.client_id.is_empty() {
        if protocol == Protocol::V4 && !connect.clean_start {
            tracing::info!(%peer, "MQTT CONNECT with an empty client id and a persistent session refused");
            refuse(&shared, protocol, &mut write, ConnCode::BadClientId).await;
            return;
        }
        let id = format!("civiclake-{}", uuid::Uuid::new_v4().simple());
        if protocol == Protocol::V5 {
            assigned_client_id = Some(id.clone());
        }
        id
    } else {
        connect.client_id.clone()
    };
    if let Some(will) = &connect.will {
        if let Err(problem) = check_topic(&will.topic) {
            tracing::info!(%peer, client_id, topic = will.topic, %problem, "MQTT CONNECT with an invalid will topic refused");
            if protocol == Protocol::V5 {
                refuse(&shared, protocol, &mut write, ConnCode::TopicNameInvalid).await;
            } else {
                bump(&shared.counters.connects_refused, 1);
            }
            return;
        }
        if protocol == Protocol::V5 && will.qos > 1 {
            refuse(&shared, protocol, &mut write, ConnCode::QosNotSupported).await;
            return;
        }
    }
    let identity = match shared.auth.authenticate(
        &client_id,
        connect.username.as_deref(),
        connect.password.as_deref(),
    ) {
        Ok(identity) => identity,
        Err(refusal) => {
            tracing::info!(%peer, client_id, ?refusal, "MQTT CONNECT refused");
            let code = match refusal {
                ConnectRefusal::BadCredentials => ConnCode::BadCredentials,
                ConnectRefusal::NotAuthorized => ConnCode::NotAuthorized,
            };
            refuse(&shared, protocol, &mut write, code).await;
            return;
        }
    };

    run_session(
        shared,
        protocol,
        connect,
        client_id,
        assigned_client_id,
        identity,
        peer,
        read,
        write,
        buf,
        shutdown,
    )
    .await;
}

/// Reads until the buffer holds the whole first packet; its protocol level if it is a CONNECT.
async fn read_connect(
    read: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<u8, String> {
    loop {
        match codec::sniff_connect(buf, max) {
            Sniff::Level(level) => return Ok(level),
            Sniff::NotConnect => return Err("the first packet is not an MQTT CONNECT".to_string()),
            Sniff::TooLarge => {
                return Err("the CONNECT is over the maximum packet size".to_string());
            }
            Sniff::Incomplete => {}
        }
        buf.reserve(4096);
        match read.read_buf(buf).await {
            Ok(0) => return Err("connection closed".to_string()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Answers a refused CONNECT with its CONNACK.
async fn refuse(shared: &Shared, protocol: Protocol, write: &mut OwnedWriteHalf, code: ConnCode) {
    bump(&shared.counters.connects_refused, 1);
    let mut out = BytesMut::new();
    let connack = Outbound::ConnAck(ConnAckOut {
        code,
        assigned_client_id: None,
        receive_maximum: shared.config.receive_maximum,
        max_packet_size: max_u32(shared.config.max_packet_bytes),
    });
    if codec::encode(protocol, &connack, &mut out).is_ok() {
        let _ = write.write_all(&out).await;
        let _ = write.shutdown().await;
    }
}

fn max_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The reader's view of an accepted connection.
struct Session {
    shared: Arc<Shared>,
    protocol: Protocol,
    identity: ClientIdentity,
    conn_id: u64,
    keep_alive: u16,
    control: mpsc::Sender<WriterCmd>,
    ingest: mpsc::UnboundedSender<IngestItem>,
    permits: Arc<Semaphore>,
    paused: watch::Receiver<bool>,
    /// QoS 2 packet identifiers received and not yet released (MQTT 3.1.1).
    qos2: HashSet<u16>,
    denials_logged: HashSet<String>,
}

#[allow(clippy::too_many_arguments)]
async fn run_session(
    shared: Arc<Shared>,
    protocol: Protocol,
    connect: ConnectInfo,
    client_id: String,
    assigned_client_id: Option<String>,
    identity: ClientIdentity,
    peer: SocketAddr,
    mut read: OwnedReadHalf,
    write: OwnedWriteHalf,
    mut buf: BytesMut,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn_id = shared.next_conn_id();
    let label = identity.label.clone();
    let kicked = shared.register_session(&client_id, conn_id);
    let receive_maximum = usize::from(shared.config.receive_maximum);

    let (control_tx, control_rx) = mpsc::channel(receive_maximum + 64);
    let (deliveries_tx, deliveries_rx) = mpsc::channel(shared.config.outbound_queue);
    shared.add_subscriber(conn_id, deliveries_tx);
    let connack = Outbound::ConnAck(ConnAckOut {
        code: ConnCode::Accepted,
        assigned_client_id,
        receive_maximum: shared.config.receive_maximum,
        max_packet_size: max_u32(shared.config.max_packet_bytes),
    });
    // The channel is empty: this cannot fail for lack of room.
    let _ = control_tx.try_send(WriterCmd::Packet(connack));
    let writer = Writer {
        shared: Arc::clone(&shared),
        protocol,
        write,
        control: control_rx,
        deliveries: deliveries_rx,
        window: connect
            .receive_maximum
            .map_or(DEFAULT_CLIENT_WINDOW, |m| usize::from(m.max(1))),
        client_max_packet: connect
            .max_packet_size
            .and_then(|m| usize::try_from(m).ok()),
        label: label.clone(),
    };
    let mut writer_task = tokio::spawn(writer.run());

    let (ingest_tx, ingest_rx) = mpsc::unbounded_channel();
    let (paused_tx, paused_rx) = watch::channel(false);
    let (failed_tx, failed_rx) = oneshot::channel();
    let ingest = Ingest {
        shared: Arc::clone(&shared),
        rx: ingest_rx,
        control: control_tx.clone(),
        paused: paused_tx,
        failed: Some(failed_tx),
        label: label.clone(),
    };
    let mut ingest_task = tokio::spawn(ingest.run());

    tracing::debug!(%peer, client_id, client = %label, ?protocol, "MQTT client connected");
    let mut session = Session {
        shared: Arc::clone(&shared),
        protocol,
        identity,
        conn_id,
        keep_alive: connect.keep_alive,
        control: control_tx,
        ingest: ingest_tx,
        permits: Arc::new(Semaphore::new(receive_maximum)),
        paused: paused_rx,
        qos2: HashSet::new(),
        denials_logged: HashSet::new(),
    };
    let close = tokio::select! {
        close = session.read_loop(&mut read, &mut buf) => close,
        Ok(()) = kicked => Close::TakenOver,
        _ = crate::router::stopping(&mut shutdown) => Close::Shutdown,
        Ok(reason) = failed_rx => Close::Unavailable(reason),
    };

    shared.remove_subscriber(conn_id);
    shared.deregister_session(&client_id, conn_id);
    let Session {
        identity,
        control,
        ingest,
        ..
    } = session;
    drop(ingest);
    if timeout(DRAIN_TIMEOUT, &mut ingest_task).await.is_err() {
        tracing::warn!(client = %label, "MQTT connection closed with messages still being stored");
        ingest_task.abort();
    }
    let _ = timeout(
        WRITER_TIMEOUT,
        control.send(WriterCmd::Close(close.v5_reason())),
    )
    .await;
    drop(control);
    if timeout(WRITER_TIMEOUT, &mut writer_task).await.is_err() {
        writer_task.abort();
    }
    match &close {
        Close::Disconnect { .. } | Close::PeerGone(_) | Close::Shutdown => {
            tracing::debug!(client_id, client = %label, reason = %close, "MQTT client disconnected");
        }
        _ => tracing::info!(client_id, client = %label, reason = %close, "MQTT connection closed"),
    }
    if close.publishes_will()
        && let Some(will) = connect.will
    {
        publish_will(&shared, &identity, will).await;
    }
}

impl Session {
    /// Reads and handles packets until the connection must close.
    async fn read_loop(&mut self, read: &mut OwnedReadHalf, buf: &mut BytesMut) -> Close {
        let max = self.shared.config.max_packet_bytes;
        let keep_alive =
            (self.keep_alive > 0).then(|| Duration::from_millis(u64::from(self.keep_alive) * 1500));
        let mut deadline = keep_alive.map(|k| Instant::now() + k);
        loop {
            loop {
                match codec::decode(self.protocol, buf, max) {
                    Ok(Some(packet)) => {
                        if let Some(close) = self.handle(packet).await {
                            return close;
                        }
                    }
                    Ok(None) => break,
                    Err(DecodeError::TooLarge(n)) => {
                        return Close::Protocol {
                            reason: 0x95,
                            why: format!("a packet of {n} bytes is over the maximum of {max}"),
                        };
                    }
                    Err(e) => {
                        return Close::Protocol {
                            reason: 0x81,
                            why: e.to_string(),
                        };
                    }
                }
            }
            if *self.paused.borrow() {
                // The sink is busy: stop reading (TCP backpressure) until it takes messages.
                let _ = self.paused.wait_for(|p| !*p).await;
                deadline = keep_alive.map(|k| Instant::now() + k);
            }
            buf.reserve(8 * 1024);
            let read_result = match deadline {
                Some(d) => match timeout_at(d, read.read_buf(buf)).await {
                    Ok(r) => r,
                    Err(_) => return Close::KeepAlive,
                },
                None => read.read_buf(buf).await,
            };
            match read_result {
                Ok(0) => return Close::PeerGone("connection closed by the client".to_string()),
                Ok(_) => deadline = keep_alive.map(|k| Instant::now() + k),
                Err(e) => return Close::PeerGone(e.to_string()),
            }
        }
    }

    async fn send(&self, cmd: WriterCmd) -> Option<Close> {
        match self.control.send(cmd).await {
            Ok(()) => None,
            Err(_) => Some(Close::PeerGone("write failed".to_string())),
        }
    }

    async fn handle(&mut self, packet: Inbound) -> Option<Close> {
        match packet {
            Inbound::Connect(_) => Some(Close::Protocol {
                reason: 0x82,
                why: "a second CONNECT".to_string(),
            }),
            Inbound::Publish(p) => self.on_publish(p).await,
            Inbound::PubAck(pkid) => self.send(WriterCmd::Acked(pkid)).await,
            // The broker never sends QoS 2, so it expects neither.
            Inbound::PubRec(pkid) | Inbound::PubComp(pkid) => {
                tracing::debug!(client = %self.identity.label, pkid, "unexpected PUBREC/PUBCOMP ignored");
                None
            }
            Inbound::PubRel(pkid) => {
                let found = self.qos2.remove(&pkid) || self.protocol == Protocol::V4;
                self.send(WriterCmd::Packet(Outbound::PubComp { pkid, found }))
                    .await
            }
            Inbound::Subscribe {
                pkid,
                filters,
                with_subscription_id,
            } => self.on_subscribe(pkid, filters, with_subscription_id).await,
            Inbound::Unsubscribe { pkid, filters } => {
                let mut found = Vec::with_capacity(filters.len());
                for filter in &filters {
                    if let Err(problem) = check_filter(filter) {
                        return Some(Close::Protocol {
                            reason: 0x8F,
                            why: format!("UNSUBSCRIBE filter {filter:?} {problem}"),
                        });
                    }
                    found.push(self.shared.unsubscribe(self.conn_id, filter));
                }
                self.send(WriterCmd::Packet(Outbound::UnsubAck { pkid, found }))
                    .await
            }
            Inbound::PingReq => self.send(WriterCmd::Packet(Outbound::PingResp)).await,
            Inbound::Disconnect { with_will } => Some(Close::Disconnect { with_will }),
            Inbound::Unexpected(what) => Some(Close::Protocol {
                reason: 0x82,
                why: format!("a client may not send {what}"),
            }),
        }
    }

    fn enqueue(&self, item: IngestItem) -> Option<Close> {
        match self.ingest.send(item) {
            Ok(()) => None,
            Err(_) => Some(Close::Unavailable("ingest stopped".to_string())),
        }
    }

    async fn on_publish(&mut self, p: InPublish) -> Option<Close> {
        bump(&self.shared.counters.messages_received, 1);
        if p.topic_alias.is_some() {
            return Some(Close::Protocol {
                reason: 0x94,
                why: "topic aliases are not supported (Topic Alias Maximum is 0)".to_string(),
            });
        }
        if let Err(problem) = check_topic(&p.topic) {
            return Some(Close::Protocol {
                reason: 0x90,
                why: format!("PUBLISH topic {:?} {problem}", p.topic),
            });
        }
        if self.protocol == Protocol::V5 && p.qos > 1 {
            return Some(Close::Protocol {
                reason: 0x9B,
                why: "QoS 2 is not supported (Maximum QoS is 1)".to_string(),
            });
        }
        let ack = match p.qos {
            0 => None,
            1 => Some(Outbound::PubAck {
                pkid: p.pkid,
                not_authorized: false,
            }),
            _ => Some(Outbound::PubRec { pkid: p.pkid }),
        };
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return Some(Close::Shutdown);
        };
        if p.qos == 2 && !self.qos2.insert(p.pkid) {
            // A resent QoS 2 PUBLISH before its PUBREL: it is stored or being stored.
            return self.enqueue(IngestItem::AckOnly {
                ack: Outbound::PubRec { pkid: p.pkid },
                permit,
            });
        }
        if !self.shared.auth.may_publish(&self.identity, &p.topic) {
            bump(&self.shared.counters.publishes_denied, 1);
            if self.denials_logged.len() < DENIALS_LOGGED
                && self.denials_logged.insert(p.topic.clone())
            {
                tracing::warn!(client = %self.identity.label, topic = p.topic, "MQTT publish refused by the ACL");
            }
            let ack = ack.map(|ack| match ack {
                Outbound::PubAck { pkid, .. } => Outbound::PubAck {
                    pkid,
                    not_authorized: self.protocol == Protocol::V5,
                },
                other => other,
            });
            return match ack {
                Some(ack) => self.enqueue(IngestItem::AckOnly { ack, permit }),
                None => None,
            };
        }
        let msg = Arc::new(RoutedMessage {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            props: p.props,
            publisher: self.identity.principal.clone(),
            received_micros: now_micros(),
        });
        self.enqueue(IngestItem::Message { msg, ack, permit })
    }

    async fn on_subscribe(
        &mut self,
        pkid: u16,
        filters: Vec<SubFilter>,
        with_subscription_id: bool,
    ) -> Option<Close> {
        for f in &filters {
            if let Err(problem) = check_filter(&f.filter) {
                return Some(Close::Protocol {
                    reason: 0x8F,
                    why: format!("SUBSCRIBE filter {:?} {problem}", f.filter),
                });
            }
        }
        let v5 = self.protocol == Protocol::V5;
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained = Vec::new();
        for f in filters {
            let code = if v5 && with_subscription_id {
                SubCode::SubscriptionIdNotSupported
            } else if v5 && f.filter.starts_with("$share/") {
                SubCode::SharedNotSupported
            } else if !self.shared.auth.may_subscribe(&self.identity, &f.filter) {
                tracing::warn!(client = %self.identity.label, filter = f.filter, "MQTT subscription refused by the ACL");
                SubCode::NotAuthorized
            } else {
                let granted = f.qos.min(1);
                let (existed, matching) = self.shared.subscribe(self.conn_id, &f.filter, granted);
                let send_retained = match f.retain_handling {
                    0 => true,
                    1 => !existed,
                    _ => false,
                };
                if send_retained {
                    retained.extend(matching.into_iter().map(|msg| Delivery {
                        qos: granted.min(msg.qos),
                        retain: true,
                        msg,
                    }));
                }
                SubCode::Granted(granted)
            };
            codes.push(code);
        }
        if let Some(close) = self
            .send(WriterCmd::Packet(Outbound::SubAck { pkid, codes }))
            .await
        {
            return Some(close);
        }
        for d in retained {
            if let Some(close) = self.send(WriterCmd::Deliver(d)).await {
                return Some(close);
            }
        }
        None
    }
}

/// Publishes a closed connection's will like a message from the client: ACL, sink, then
/// subscribers and the retained store.
async fn publish_will(shared: &Shared, identity: &ClientIdentity, will: Will) {
    bump(&shared.counters.messages_received, 1);
    if !shared.auth.may_publish(identity, &will.topic) {
        bump(&shared.counters.publishes_denied, 1);
        tracing::warn!(client = %identity.label, topic = will.topic, "MQTT will refused by the ACL");
        return;
    }
    let msg = Arc::new(RoutedMessage {
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        props: will.props,
        publisher: identity.principal.clone(),
        received_micros: now_micros(),
    });
    for _ in 0..WILL_ATTEMPTS {
        match shared.sink.deliver(vec![msg.to_inbound()]).await {
            Ok(_) => {
                bump(&shared.counters.messages_stored, 1);
                shared.route(&[msg]);
                return;
            }
            Err(IngestError::Busy { retry_after_ms, .. }) => {
                bump(&shared.counters.sink_failures, 1);
                tokio::time::sleep(busy_wait(retry_after_ms)).await;
            }
            Err(IngestError::Unavailable(reason)) => {
                bump(&shared.counters.sink_failures, 1);
                tracing::warn!(client = %identity.label, topic = msg.topic, %reason, "MQTT will not published: ingest unavailable");
                return;
            }
        }
    }
    tracing::warn!(client = %identity.label, topic = msg.topic, "MQTT will not published: ingest stayed busy");
}
