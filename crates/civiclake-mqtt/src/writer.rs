//! The task that owns a connection's write half: acknowledgements and other control packets
//! in the order they are queued, and messages for the client's subscriptions with QoS 1
//! packet identifiers inside the client's inflight window.

use crate::codec::{self, OutPublish, Outbound, Protocol};
use crate::config::bump;
use crate::router::{Delivery, Shared};
use bytes::BytesMut;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// How long a write may wait on a client that does not read before the connection is closed.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Most queued items encoded into one write.
const DRAIN_BATCH: usize = 512;

/// Work for the writer.
#[derive(Debug)]
pub(crate) enum WriterCmd {
    /// Send a control packet.
    Packet(Outbound),
    /// Send a retained message after the SUBACK queued before it.
    Deliver(Delivery),
    /// The client acknowledged our QoS 1 PUBLISH with this packet identifier.
    Acked(u16),
    /// Send an MQTT 5 DISCONNECT with this reason (if any), flush and stop.
    Close(Option<u8>),
}

/// The writer of one connection.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) protocol: Protocol,
    pub(crate) write: OwnedWriteHalf,
    pub(crate) control: mpsc::Receiver<WriterCmd>,
    pub(crate) deliveries: mpsc::Receiver<Delivery>,
    /// QoS 1 messages the client accepts unacknowledged.
    pub(crate) window: usize,
    /// MQTT 5 Maximum Packet Size of the client.
    pub(crate) client_max_packet: Option<usize>,
    pub(crate) label: String,
}

struct State {
    buf: BytesMut,
    inflight: HashSet<u16>,
    next_pkid: u16,
    pending: VecDeque<Delivery>,
}

impl Writer {
    /// Runs until told to close, the connection drops its sender, or a write fails.
    pub(crate) async fn run(mut self) {
        let mut st = State {
            buf: BytesMut::with_capacity(16 * 1024),
            inflight: HashSet::new(),
            next_pkid: 0,
            pending: VecDeque::new(),
        };
        let mut deliveries_open = true;
        loop {
            while st.inflight.len() < self.window {
                let Some(d) = st.pending.pop_front() else {
                    break;
                };
                self.push_delivery(&mut st, d);
            }
            if !self.flush(&mut st.buf).await {
                return;
            }
            let room = st.inflight.len() < self.window && st.pending.is_empty();
            tokio::select! {
                biased;
                cmd = self.control.recv() => match cmd {
                    Some(cmd) => {
                        if self.handle(&mut st, cmd) {
                            self.finish(&mut st.buf).await;
                            return;
                        }
                    }
                    None => {
                        self.finish(&mut st.buf).await;
                        return;
                    }
                },
                d = self.deliveries.recv(), if deliveries_open && room => match d {
                    Some(d) => self.push_delivery(&mut st, d),
                    None => deliveries_open = false,
                },
            }
            // Encode whatever else is queued into the same write.
            for _ in 0..DRAIN_BATCH {
                match self.control.try_recv() {
                    Ok(cmd) => {
                        if self.handle(&mut st, cmd) {
                            self.finish(&mut st.buf).await;
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            if deliveries_open {
                for _ in 0..DRAIN_BATCH {
                    if st.inflight.len() >= self.window || !st.pending.is_empty() {
                        break;
                    }
                    match self.deliveries.try_recv() {
                        Ok(d) => self.push_delivery(&mut st, d),
                        Err(_) => break,
                    }
                }
            }
        }
    }

    /// Handles one command; `true` when the writer must stop.
    fn handle(&self, st: &mut State, cmd: WriterCmd) -> bool {
        match cmd {
            WriterCmd::Packet(p) => {
                if let Err(e) = codec::encode(self.protocol, &p, &mut st.buf) {
                    tracing::warn!(client = %self.label, error = %e, "cannot encode MQTT packet");
                }
            }
            WriterCmd::Deliver(d) => st.pending.push_back(d),
            WriterCmd::Acked(pkid) => {
                st.inflight.remove(&pkid);
            }
            WriterCmd::Close(reason) => {
                if let (Protocol::V5, Some(reason)) = (self.protocol, reason) {
                    codec::encode_disconnect_v5(reason, &mut st.buf);
                }
                return true;
            }
        }
        false
    }

    fn push_delivery(&self, st: &mut State, d: Delivery) {
        let pkid = if d.qos > 0 {
            loop {
                st.next_pkid = st.next_pkid.wrapping_add(1).max(1);
                if !st.inflight.contains(&st.next_pkid) {
                    break st.next_pkid;
                }
            }
        } else {
            0
        };
        let start = st.buf.len();
        let publish = OutPublish {
            topic: &d.msg.topic,
            payload: &d.msg.payload,
            props: &d.msg.props,
            qos: d.qos,
            retain: d.retain,
            pkid,
        };
        let too_large = match codec::encode_publish(self.protocol, &publish, &mut st.buf) {
            Ok(()) => self
                .client_max_packet
                .is_some_and(|max| st.buf.len() - start > max),
            Err(e) => {
                tracing::warn!(client = %self.label, error = %e, "cannot encode MQTT PUBLISH");
                true
            }
        };
        if too_large {
            st.buf.truncate(start);
            bump(&self.shared.counters.messages_dropped, 1);
        } else if d.qos > 0 {
            st.inflight.insert(pkid);
        }
    }

    /// Writes `buf` out; `false` if the connection is gone.
    async fn flush(&mut self, buf: &mut BytesMut) -> bool {
        if buf.is_empty() {
            return true;
        }
        let written = tokio::time::timeout(WRITE_STALL_TIMEOUT, self.write.write_all(buf)).await;
        buf.clear();
        match written {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(client = %self.label, error = %e, "MQTT write failed");
                false
            }
            Err(_) => {
                tracing::info!(client = %self.label, "MQTT client does not read; closing");
                false
            }
        }
    }

    async fn finish(&mut self, buf: &mut BytesMut) {
        if self.flush(buf).await {
            let _ = self.write.shutdown().await;
        }
    }
}
