//! The task that stores a connection's messages: it hands everything queued (up to
//! `ingest_batch_max`) to the sink in one call while the reader goes on reading, and only
//! after the sink returned `Ok` queues the acknowledgements, in order, and forwards the
//! messages to subscribers.

use crate::codec::Outbound;
use crate::config::bump;
use crate::router::{RoutedMessage, Shared};
use crate::writer::WriterCmd;
use civiclake_core::IngestError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

/// Shortest and longest wait before retrying a batch the sink found busy.
const BUSY_WAIT_MIN: Duration = Duration::from_millis(10);
const BUSY_WAIT_MAX: Duration = Duration::from_secs(5);

/// The wait the sink asked for, within bounds.
pub(crate) fn busy_wait(retry_after_ms: u64) -> Duration {
    Duration::from_millis(retry_after_ms).clamp(BUSY_WAIT_MIN, BUSY_WAIT_MAX)
}

/// One entry of a connection's ingest queue. The permit counts it against the connection's
/// receive maximum until its acknowledgement is queued.
#[derive(Debug)]
pub(crate) enum IngestItem {
    /// A message to store, then acknowledge (QoS 1 and 2) and forward.
    Message {
        msg: Arc<RoutedMessage>,
        ack: Option<Outbound>,
        permit: OwnedSemaphorePermit,
    },
    /// An acknowledgement that must wait for the messages before it (a publish refused by the
    /// ACL, a resent QoS 2 publish).
    AckOnly {
        ack: Outbound,
        permit: OwnedSemaphorePermit,
    },
}

/// The ingest task of one connection.
#[derive(Debug)]
pub(crate) struct Ingest {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: mpsc::UnboundedReceiver<IngestItem>,
    pub(crate) control: mpsc::Sender<WriterCmd>,
    /// `true` while the sink is busy: the reader stops reading.
    pub(crate) paused: watch::Sender<bool>,
    /// Fired with the reason when the sink is unavailable: the connection closes.
    pub(crate) failed: Option<oneshot::Sender<String>>,
    pub(crate) label: String,
}

impl Ingest {
    /// Runs until the queue is closed and empty, or the sink is unavailable.
    pub(crate) async fn run(mut self) {
        let max = self.shared.config.ingest_batch_max;
        let mut batch: Vec<IngestItem> = Vec::new();
        loop {
            let Some(first) = self.rx.recv().await else {
                return;
            };
            batch.clear();
            batch.push(first);
            let mut messages = usize::from(matches!(batch[0], IngestItem::Message { .. }));
            while messages < max {
                match self.rx.try_recv() {
                    Ok(item) => {
                        messages += usize::from(matches!(item, IngestItem::Message { .. }));
                        batch.push(item);
                    }
                    Err(_) => break,
                }
            }
            if messages > 0 && !self.store(&batch, messages).await {
                return;
            }
            let mut routed = Vec::with_capacity(messages);
            for item in batch.drain(..) {
                let (ack, permit) = match item {
                    IngestItem::Message { msg, ack, permit } => {
                        routed.push(msg);
                        (ack, permit)
                    }
                    IngestItem::AckOnly { ack, permit } => (Some(ack), permit),
                };
                if let Some(ack) = ack {
                    // A gone writer means a gone client; storing and forwarding still count.
                    let _ = self.control.send(WriterCmd::Packet(ack)).await;
                }
                drop(permit);
            }
            self.shared.route(&routed);
        }
    }

    /// Hands the batch's messages to the sink until it accepts them; `false` if the sink is
    /// unavailable (the connection must close without acknowledging).
    async fn store(&mut self, batch: &[IngestItem], messages: usize) -> bool {
        loop {
            let inbound = batch
                .iter()
                .filter_map(|item| match item {
                    IngestItem::Message { msg, .. } => Some(msg.to_inbound()),
                    IngestItem::AckOnly { .. } => None,
                })
                .collect();
            match self.shared.sink.deliver(inbound).await {
                Ok(_) => {
                    bump(&self.shared.counters.messages_stored, messages as u64);
                    self.paused
                        .send_if_modified(|p| std::mem::replace(p, false));
                    return true;
                }
                Err(IngestError::Busy {
                    reason,
                    retry_after_ms,
                }) => {
                    bump(&self.shared.counters.sink_failures, 1);
                    self.paused
                        .send_if_modified(|p| !std::mem::replace(p, true));
                    tracing::debug!(client = %self.label, %reason, retry_after_ms, "ingest busy; MQTT connection paused");
                    tokio::time::sleep(busy_wait(retry_after_ms)).await;
                }
                Err(IngestError::Unavailable(reason)) => {
                    bump(&self.shared.counters.sink_failures, 1);
                    tracing::warn!(client = %self.label, %reason, "ingest unavailable; closing MQTT connection without acknowledging");
                    if let Some(failed) = self.failed.take() {
                        let _ = failed.send(reason);
                    }
                    return false;
                }
            }
        }
    }
}
