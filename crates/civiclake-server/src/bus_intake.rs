//! `bus/...` messages of the message sources — the embedded MQTT broker, `[[mqtt.source]]`
//! and `[[kafka.source]]` — onto the interoperability bus's log: one path for all of them
//! ([`BusIntake`]), run before the batch is stored.
//!
//! A message is for the bus when its route topic starts with `bus/` (a Kafka topic's `.` are
//! read as `/`: the Kafka topic `bus.acme.billing` is `bus/acme/billing`). It must be a
//! CloudEvent in structured JSON (a Kafka source turns binary mode into that first) and its
//! `source` must lie in the topic's namespace: on `bus/<organisation>/<system>[/...]` the
//! source is `/<organisation>/<system>[/...]`. Who may publish on a topic is said by the
//! topic grants (MQTT) or by the operator's configuration (Kafka); the namespace rule makes
//! the topic also say whose events they are, so that an organisation cannot publish in
//! another's name through a topic it is allowed on. The bus then checks the event's type and
//! data against the schema registry.
//!
//! The events are appended in the order of the batch, up to
//! [`civiclake_bus::bus::MAX_EVENTS_PER_PUBLISH`] per log write. A message the bus does not
//! take — not a CloudEvent, outside the topic's namespace, a type without a schema (422),
//! data its schema refuses (400) — is a [`Refusal`]: a row of `_dead_letters` under route
//! `bus` with the reason, written in the same WAL record as the batch (and a Kafka source's
//! checkpoints). When the bus cannot write its log (503) the call fails: the batch is not
//! stored and the source tries again (an MQTT client is not acknowledged; a Kafka source
//! retries the batch without checkpointing it). A retry carries on where the failed call
//! stopped, so what was appended before the failure is not appended twice.

use crate::ingest::{Refusal, route_topic};
use civiclake_bus::bus::MAX_EVENTS_PER_PUBLISH;
use civiclake_bus::{Bus, BusError};
use civiclake_core::{CloudEvent, InboundMessage, IngestError, SourceKind};
use std::collections::BTreeMap;

/// The route of the bus's refusals in `_dead_letters`.
pub(crate) const BUS_ROUTE: &str = "bus";

/// Where one batch's `bus/...` messages got to; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct BusIntake {
    /// Messages of the batch dealt with, from the first: appended, refused, or not for the
    /// bus.
    done: usize,
    /// The refused messages: position in the batch → why.
    refused: BTreeMap<usize, String>,
    /// Events appended to the log.
    published: usize,
}

/// Who published a message, as the bus log records it (`bus_events.publisher`).
fn publisher_of(m: &InboundMessage) -> String {
    match &m.source {
        SourceKind::EmbeddedMqtt => {
            format!("mqtt:{}", m.publisher.as_deref().unwrap_or("anonymous"))
        }
        SourceKind::ExternalMqtt(name) => format!("mqtt-source:{name}"),
        SourceKind::Kafka(_) => format!("kafka:{}", m.topic),
    }
}

/// Why an event with `source` may not come through `topic` (whose route topic is `route`,
/// a `bus/...` topic), if it may not: the source must be `/<organisation>/<system>[/...]`
/// for a topic `bus/<organisation>/<system>[/...]`.
pub(crate) fn namespace_refusal(topic: &str, route: &str, source: &str) -> Option<String> {
    let mut levels = route.strip_prefix("bus/").unwrap_or(route).split('/');
    let (org, system) = match (levels.next(), levels.next()) {
        (Some(org), Some(system)) if !org.is_empty() && !system.is_empty() => (org, system),
        _ => {
            return Some(format!(
                "topic {topic}: events are published on bus/<organisation>/<system>[/...], with a source /<organisation>/<system>[/...]"
            ));
        }
    };
    let namespace = format!("/{org}/{system}");
    let inside = source
        .strip_prefix(&namespace)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    (!inside).then(|| {
        format!(
            "source {source:?} is outside the namespace of topic {topic}: events on it have a source {namespace}[/...]"
        )
    })
}

/// The event of a `bus/...` message (route topic `route`), or why it is refused before the
/// bus sees it.
fn event_of(m: &InboundMessage, route: &str) -> Result<CloudEvent, String> {
    let event = CloudEvent::from_slice(&m.payload).map_err(|e| match m.source {
        SourceKind::Kafka(_) => {
            format!("not a CloudEvent (structured JSON, or binary mode with ce_* headers): {e}")
        }
        _ => format!("not a CloudEvent in structured JSON: {e}"),
    })?;
    match namespace_refusal(&m.topic, route, &event.source) {
        Some(reason) => Err(reason),
        None => Ok(event),
    }
}

impl BusIntake {
    /// Events appended to the log so far.
    pub(crate) fn published(&self) -> usize {
        self.published
    }

    /// The refused messages, for `_dead_letters`.
    pub(crate) fn refusals(&self) -> Vec<Refusal> {
        self.refused
            .iter()
            .map(|(&index, error)| Refusal {
                index,
                route: BUS_ROUTE.to_string(),
                error: error.clone(),
            })
            .collect()
    }

    /// Appends the `bus/...` CloudEvents of `messages` (the same batch at every call) to the
    /// log of `bus`, from where the previous call stopped; records the refused ones. Fails
    /// only when the log cannot be written (the bus answered 503: unavailable or stopping).
    pub(crate) async fn publish(
        &mut self,
        bus: &Bus,
        messages: &[InboundMessage],
    ) -> Result<(), IngestError> {
        while self.done < messages.len() {
            // The next run of events with one publisher (one log write).
            let mut chunk: Vec<(usize, CloudEvent)> = Vec::new();
            let mut publisher: Option<String> = None;
            let mut end = self.done;
            while end < messages.len() && chunk.len() < MAX_EVENTS_PER_PUBLISH {
                let m = &messages[end];
                let route = route_topic(m);
                if !route.starts_with("bus/") || self.refused.contains_key(&end) {
                    end += 1;
                    continue;
                }
                let event = match event_of(m, &route) {
                    Ok(e) => e,
                    Err(reason) => {
                        self.refused.insert(end, reason);
                        end += 1;
                        continue;
                    }
                };
                let p = publisher_of(m);
                if publisher.as_ref().is_some_and(|q| *q != p) {
                    break;
                }
                publisher = Some(p);
                chunk.push((end, event));
                end += 1;
            }
            let publisher = publisher.unwrap_or_default();
            // A publish is all or nothing: take out what the bus refuses, publish the rest.
            while !chunk.is_empty() {
                let events: Vec<CloudEvent> = chunk.iter().map(|(_, e)| e.clone()).collect();
                match bus.publish(&publisher, events).await {
                    Ok(published) => {
                        self.published += published.len();
                        break;
                    }
                    Err(e) if e.http_status() == 503 => {
                        return Err(IngestError::Unavailable(e.to_string()));
                    }
                    Err(BusError::Event { index, source, .. }) if index < chunk.len() => {
                        let (position, _) = chunk.remove(index);
                        self.refused.insert(position, source.to_string());
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        for (position, _) in chunk.drain(..) {
                            self.refused.insert(position, reason.clone());
                        }
                    }
                }
            }
            self.done = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_must_lie_in_the_namespace_of_its_topic() {
        let ok = |topic: &str, source: &str| {
            let route = topic.replace('.', "/");
            namespace_refusal(topic, &route, source)
        };
        assert_eq!(ok("bus/acme/billing", "/acme/billing"), None);
        assert_eq!(ok("bus/acme/billing", "/acme/billing/"), None);
        assert_eq!(ok("bus/acme/billing", "/acme/billing/invoices"), None);
        assert_eq!(ok("bus/acme/billing/invoices", "/acme/billing"), None);
        assert_eq!(ok("bus.acme.billing", "/acme/billing/x"), None);
        let refused = ok("bus/acme/billing", "/evil/billing").unwrap();
        assert_eq!(
            refused,
            "source \"/evil/billing\" is outside the namespace of topic bus/acme/billing: events on it have a source /acme/billing[/...]"
        );
        let refused = ok("bus.acme.billing", "/acme/billingx").unwrap();
        assert!(refused.contains("\"/acme/billingx\""), "{refused}");
        assert!(refused.contains("topic bus.acme.billing"), "{refused}");
        assert!(ok("bus/acme/billing", "acme/billing").is_some());
        assert!(ok("bus/acme/billing", "https://acme.example/billing").is_some());
        assert!(ok("bus/acme/billing", "/acme").is_some());
        let short = ok("bus/acme", "/acme").unwrap();
        assert!(
            short.contains("topic bus/acme: events are published on bus/<organisation>/<system>"),
            "{short}"
        );
        assert!(ok("bus//billing", "//billing").is_some());
    }

    #[test]
    fn publishers_name_the_way_in() {
        let mut m = InboundMessage::new(SourceKind::EmbeddedMqtt, "bus/a/b", "{}");
        assert_eq!(publisher_of(&m), "mqtt:anonymous");
        m.publisher = Some("tok-1".into());
        assert_eq!(publisher_of(&m), "mqtt:tok-1");
        let m = InboundMessage::new(SourceKind::ExternalMqtt("city".into()), "bus/a/b", "{}");
        assert_eq!(publisher_of(&m), "mqtt-source:city");
        let m = InboundMessage::new(SourceKind::Kafka("k".into()), "bus.a.b", "{}");
        assert_eq!(publisher_of(&m), "kafka:bus.a.b");
    }

    #[test]
    fn refusals_before_the_bus_say_why() {
        let m = InboundMessage::new(SourceKind::Kafka("k".into()), "bus.a.b", "nope");
        let e = event_of(&m, "bus/a/b").unwrap_err();
        assert!(
            e.starts_with("not a CloudEvent (structured JSON, or binary mode"),
            "{e}"
        );
        let m = InboundMessage::new(SourceKind::EmbeddedMqtt, "bus/a/b", "[1]");
        let e = event_of(&m, "bus/a/b").unwrap_err();
        assert!(e.starts_with("not a CloudEvent in structured JSON"), "{e}");
        let m = InboundMessage::new(
            SourceKind::EmbeddedMqtt,
            "bus/a/b",
            r#"{"specversion":"1.0","id":"1","source":"/x/y","type":"t"}"#,
        );
        let e = event_of(&m, "bus/a/b").unwrap_err();
        assert!(e.contains("outside the namespace of topic bus/a/b"), "{e}");
        let m = InboundMessage::new(
            SourceKind::EmbeddedMqtt,
            "bus/a/b",
            r#"{"specversion":"1.0","id":"1","source":"/a/b","type":"t"}"#,
        );
        assert_eq!(event_of(&m, "bus/a/b").unwrap().id, "1");
    }
}
