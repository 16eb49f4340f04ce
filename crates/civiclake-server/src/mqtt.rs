//! The embedded MQTT broker's place in the server: who may connect, publish and subscribe
//! (tokens and their topic grants), and the bridge between MQTT and the in-process topic
//! router (`bus/...` and `devices/...` events reach modules, module events reach MQTT
//! subscribers).

use crate::bus_intake::BusIntake;
use crate::ingest::Publishers;
use async_trait::async_trait;
use civiclake_auth::{AuthStore, Permission, Principal};
use civiclake_core::{
    CloudEvent, DeliveryReport, InboundMessage, IngestError, MessageSink, Topic, TopicFilter,
    TopicRouter,
};
use civiclake_mqtt::{BrokerAuth, ClientIdentity, ConnectRefusal, EmbeddedBroker};
use std::sync::Arc;

/// The CloudEvents extension attribute that marks an event that came from MQTT, so the
/// bridge does not send it back.
const ORIGIN_EXTENSION: &str = "civiclakeorigin";

/// MQTT clients authenticate with a civiclake token as the password (any user name). A
/// client may publish to the topics its token grants (`--topics`, role default: a gateway
/// has `ingest/#`) and subscribe to filters inside those grants; the rows a message routes to
/// need the token's table grants too (checked by the ingest service). With authentication
/// off (loopback demo), anonymous clients may do anything.
#[derive(Debug)]
pub(crate) struct TokenAuth {
    pub(crate) store: Arc<AuthStore>,
    pub(crate) publishers: Arc<Publishers>,
    pub(crate) disabled: bool,
}

impl TokenAuth {
    /// The principal of a connected client, if its token is still valid.
    fn principal(&self, client: &ClientIdentity) -> Option<Principal> {
        let id = client.principal.as_deref()?;
        if !self.store.is_active(id) {
            return None;
        }
        self.publishers.get(id)
    }
}

/// Whether topic grant `grant` covers every topic that filter `filter` can match.
pub(crate) fn filter_within(grant: &str, filter: &str) -> bool {
    let mut g = grant.split('/');
    let mut f = filter.split('/');
    loop {
        match (g.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl BrokerAuth for TokenAuth {
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<ClientIdentity, ConnectRefusal> {
        let Some(password) = password else {
            return if self.disabled {
                Ok(ClientIdentity {
                    principal: None,
                    label: format!("{client_id} (anonymous)"),
                })
            } else {
                Err(ConnectRefusal::BadCredentials)
            };
        };
        let token = std::str::from_utf8(password).map_err(|_| ConnectRefusal::BadCredentials)?;
        let principal = self.store.authenticate(token.trim()).map_err(|e| {
            tracing::info!(client_id, user = username.unwrap_or(""), error = %e, "MQTT connection refused");
            ConnectRefusal::BadCredentials
        })?;
        if !principal.is_admin() && principal.topics.is_empty() {
            return Err(ConnectRefusal::NotAuthorized);
        }
        let label = format!("{client_id} (role {})", principal.role);
        let id = principal.token_id.clone();
        self.publishers.insert(principal);
        Ok(ClientIdentity {
            principal: id,
            label,
        })
    }

    fn may_publish(&self, client: &ClientIdentity, topic: &str) -> bool {
        if client.principal.is_none() {
            return self.disabled;
        }
        self.principal(client)
            .is_some_and(|p| p.can(Permission::Publish) && p.may_publish(topic))
    }

    fn may_subscribe(&self, client: &ClientIdentity, filter: &str) -> bool {
        if client.principal.is_none() {
            return self.disabled;
        }
        self.principal(client).is_some_and(|p| {
            p.is_admin() || p.topics.iter().any(|grant| filter_within(grant, filter))
        })
    }
}

/// The sink of the embedded broker: the ingest service, then `bus/...` and `devices/...`
/// messages on to the in-process topic router for the modules.
#[derive(Debug)]
pub(crate) struct BridgeSink {
    pub(crate) ingest: Arc<crate::ingest::IngestService>,
    pub(crate) router: TopicRouter,
    /// The interoperability bus, once started: `bus/...` CloudEvents go to its log first
    /// ([`BusIntake`]).
    pub(crate) bus: Arc<std::sync::OnceLock<civiclake_bus::Bus>>,
}

/// The message as a CloudEvent: parsed when it is one (structured mode), else wrapped.
fn as_cloud_event(message: &InboundMessage) -> CloudEvent {
    if let Ok(event) = CloudEvent::from_slice(&message.payload) {
        return event.with_extension(ORIGIN_EXTENSION, "mqtt".into());
    }
    let data = serde_json::from_slice::<serde_json::Value>(&message.payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&message.payload).into_owned())
    });
    let id = format!(
        "mqtt-{}-{}",
        message.received_micros,
        message.publisher.as_deref().unwrap_or("anonymous")
    );
    CloudEvent::new(
        id,
        "/civiclake/mqtt",
        "it.comune.prato.civiclake.mqtt.message",
    )
    .with_subject(message.topic.clone())
    .with_time(message.received_micros)
    .with_data(data)
    .with_extension(ORIGIN_EXTENSION, "mqtt".into())
}

#[async_trait]
impl MessageSink for BridgeSink {
    async fn deliver(&self, messages: Vec<InboundMessage>) -> Result<DeliveryReport, IngestError> {
        let forward: Vec<(Topic, CloudEvent)> = messages
            .iter()
            .filter_map(|m| {
                let topic = Topic::new(m.topic.clone()).ok()?;
                matches!(topic.namespace(), "bus" | "devices").then(|| (topic, as_cloud_event(m)))
            })
            .collect();
        let mut intake = BusIntake::default();
        if let Some(bus) = self.bus.get() {
            intake.publish(bus, &messages).await?;
        }
        let report = self
            .ingest
            .deliver_with_refusals(&messages, &intake.refusals(), Vec::new())
            .await?;
        for (topic, event) in forward {
            // A closed router means the server is stopping; the message itself is stored.
            let _ = self.router.publish(&topic, event);
        }
        Ok(report)
    }
}

/// Forwards events published in-process (by modules) to the broker's MQTT subscribers, as
/// CloudEvents in structured JSON; events that came from MQTT are not sent back.
pub(crate) async fn forward_router_to_mqtt(router: TopicRouter, broker: Arc<EmbeddedBroker>) {
    let Ok(filter) = TopicFilter::new("#") else {
        return;
    };
    let Ok(mut subscription) = router.subscribe(filter) else {
        return;
    };
    while let Some(message) = subscription.recv_message().await {
        if message.event.extensions.contains_key(ORIGIN_EXTENSION) {
            continue;
        }
        let payload = message.event.to_json().to_string();
        if let Err(e) = broker.publish(message.topic.as_str(), payload.into(), false) {
            tracing::warn!(topic = message.topic.as_str(), error = %e, "cannot forward an event to MQTT");
        }
    }
}

/// The broker's counters on `/metrics` (a weak handle: the broker stops when the server does).
#[derive(Debug)]
pub(crate) struct BrokerMetrics(pub(crate) std::sync::Weak<EmbeddedBroker>);

impl civiclake_api::MetricsSource for BrokerMetrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let Some(broker) = self.0.upgrade() else {
            return;
        };
        let s = broker.stats();
        let families: [(&str, &str, &str, u64); 8] = [
            (
                "civiclake_mqtt_connections",
                "gauge",
                "MQTT clients connected to the embedded broker.",
                s.connections,
            ),
            (
                "civiclake_mqtt_connects_refused_total",
                "counter",
                "MQTT connections refused (credentials, limits).",
                s.connects_refused,
            ),
            (
                "civiclake_mqtt_messages_received_total",
                "counter",
                "PUBLISH packets received (wills included).",
                s.messages_received,
            ),
            (
                "civiclake_mqtt_messages_stored_total",
                "counter",
                "Messages handed to ingest and stored (rows or dead letters) before their acknowledgement.",
                s.messages_stored,
            ),
            (
                "civiclake_mqtt_messages_forwarded_total",
                "counter",
                "Messages sent to subscribers.",
                s.messages_forwarded,
            ),
            (
                "civiclake_mqtt_messages_dropped_total",
                "counter",
                "Messages dropped for a subscriber whose queue was full.",
                s.messages_dropped,
            ),
            (
                "civiclake_mqtt_publishes_denied_total",
                "counter",
                "PUBLISH packets refused by the topic grants.",
                s.publishes_denied,
            ),
            (
                "civiclake_mqtt_sink_failures_total",
                "counter",
                "Times ingest could not store a batch (saturated or unavailable).",
                s.sink_failures,
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

/// The external MQTT sources' counters on `/metrics`, labelled by source name.
#[derive(Debug)]
pub(crate) struct SourceMetrics(pub(crate) Vec<std::sync::Weak<civiclake_mqtt::MqttSource>>);

impl civiclake_api::MetricsSource for SourceMetrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let sources: Vec<_> = self.0.iter().filter_map(std::sync::Weak::upgrade).collect();
        type Pick = fn(&civiclake_mqtt::SourceStats) -> u64;
        let families: [(&str, &str, &str, Pick); 4] = [
            (
                "civiclake_mqtt_source_connected",
                "gauge",
                "1 while the subscription to the external broker is connected.",
                |s| u64::from(s.connected),
            ),
            (
                "civiclake_mqtt_source_messages_stored_total",
                "counter",
                "Messages from the external broker stored (rows or dead letters) and acknowledged.",
                |s| s.messages_stored,
            ),
            (
                "civiclake_mqtt_source_reconnects_total",
                "counter",
                "Reconnections to the external broker.",
                |s| s.reconnects,
            ),
            (
                "civiclake_mqtt_source_sink_failures_total",
                "counter",
                "Times a batch from the external broker could not be stored (retried).",
                |s| s.sink_failures,
            ),
        ];
        for (name, kind, help, pick) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for source in &sources {
                let _ = writeln!(
                    out,
                    "{name}{{source=\"{}\"}} {}",
                    source.name().replace('\\', "\\\\").replace('"', "\\\""),
                    pick(&source.stats())
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_within_a_grant_only_when_the_grant_covers_it() {
        assert!(filter_within("ingest/#", "ingest/air"));
        assert!(filter_within("ingest/#", "ingest/+/x"));
        assert!(filter_within("ingest/#", "ingest/#"));
        assert!(filter_within(
            "devices/kiosk/+/#",
            "devices/kiosk/k1/status"
        ));
        assert!(filter_within(
            "devices/kiosk/+/status",
            "devices/kiosk/+/status"
        ));
        assert!(!filter_within(
            "devices/kiosk/k1/#",
            "devices/kiosk/+/status"
        ));
        assert!(!filter_within("ingest/air", "ingest/#"));
        assert!(!filter_within("ingest/air", "ingest/+"));
        assert!(!filter_within("ingest/#", "bus/x"));
        assert!(!filter_within("ingest/air", "ingest/air/x"));
        assert!(filter_within("#", "anything/#"));
    }
}

/// The embedded broker as the bus's MQTT target (a weak handle: the broker's sink reaches the
/// bus, so a strong one would keep both alive after the server stops).
#[derive(Debug)]
pub(crate) struct BrokerPublisher(pub(crate) std::sync::Weak<EmbeddedBroker>);

impl civiclake_bus::target::MessagePublisher for BrokerPublisher {
    fn publish(&self, topic: &str, payload: bytes::Bytes) -> Result<(), String> {
        let broker = self
            .0
            .upgrade()
            .ok_or("the embedded MQTT broker has stopped")?;
        broker
            .publish(topic, payload, false)
            .map_err(|e| e.to_string())
    }
}
