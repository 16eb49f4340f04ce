//! The listener and the public handle of the broker.

use crate::auth::BrokerAuth;
use crate::codec::MessageProps;
use crate::config::{BrokerConfig, BrokerError, BrokerStats, bump};
use crate::connection;
use crate::router::{RoutedMessage, Shared, now_micros};
use crate::topic::check_topic;
use bytes::Bytes;
use civiclake_core::MessageSink;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long [`EmbeddedBroker::stop`] waits for connections to finish before aborting them.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// civiclake's MQTT broker (MQTT 3.1.1 and 5 over TCP), running on the caller's tokio runtime.
/// Messages clients publish go to the [`MessageSink`]; QoS 1 is acknowledged only once the
/// sink has made the message durable. Stops when [`EmbeddedBroker::stop`] is called or the
/// handle is dropped.
#[derive(Debug)]
pub struct EmbeddedBroker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept_task: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Binds `config.addr` (port 0 picks a free port) and starts accepting connections.
    pub async fn start(
        config: BrokerConfig,
        auth: Arc<dyn BrokerAuth>,
        sink: Arc<dyn MessageSink>,
    ) -> Result<Self, BrokerError> {
        config.validate()?;
        let addr = config.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let shared = Arc::new(Shared::new(config, auth, sink));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        tracing::info!(%local_addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker {
            shared,
            local_addr,
            shutdown,
            accept_task: Some(accept_task),
        })
    }

    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Publishes a message from the host process to the broker's subscribers (QoS 1, capped by
    /// each subscription's granted QoS), updating the retained store if `retain` (an empty
    /// payload clears the topic's retained message). It is not handed to the sink.
    pub fn publish(&self, topic: &str, payload: Bytes, retain: bool) -> Result<(), BrokerError> {
        check_topic(topic).map_err(|problem| BrokerError::InvalidTopic {
            topic: topic.to_string(),
            reason: problem.to_string(),
        })?;
        let msg = RoutedMessage {
            topic: topic.to_string(),
            payload,
            qos: 1,
            retain,
            props: MessageProps::default(),
            publisher: None,
            received_micros: now_micros(),
        };
        self.shared.route(&[Arc::new(msg)]);
        Ok(())
    }

    /// The broker's counters now.
    pub fn stats(&self) -> BrokerStats {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, closes every connection (MQTT 5 clients get DISCONNECT 0x8B; messages
    /// already received are still handed to the sink) and waits for the connections' tasks,
    /// at most about ten seconds; wills are not published.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(mut task) = self.accept_task.take()
            && tokio::time::timeout(STOP_TIMEOUT + Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
        tracing::info!(addr = %self.local_addr, "embedded MQTT broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            _ = crate::router::stopping(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let open = shared.counters.connections.load(Ordering::Relaxed);
                    if usize::try_from(open).unwrap_or(usize::MAX) >= shared.config.max_connections {
                        bump(&shared.counters.connects_refused, 1);
                        tracing::warn!(%peer, open, "MQTT connection refused: max_connections reached");
                        drop(stream);
                        continue;
                    }
                    bump(&shared.counters.connections, 1);
                    connections.spawn(connection::serve(
                        Arc::clone(&shared),
                        stream,
                        peer,
                        for_connections.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(STOP_TIMEOUT, drain).await.is_err() {
        tracing::warn!("MQTT connections did not close in time; aborting them");
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}
