//! Subscriptions: what a system wants from the bus (a filter), in what shape (an optional
//! field mapping), where (a target) and how hard to try (a retry policy).

use crate::filter::EventFilter;
use crate::transform::Transform;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest subscription name.
const MAX_NAME: usize = 64;

/// A subscription as created over the API and stored in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Its name: letters, digits, `-` and `_` (used in URLs and in `bus_deliveries`).
    pub name: String,
    /// The organisation of the catalog that owns it, if any: its members manage it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The owner's system that consumes what it delivers (for the ecosystem map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// A description for the operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which events it receives.
    #[serde(default)]
    pub filter: EventFilter,
    /// How their data is reshaped before delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
    /// Where they go.
    pub target: TargetSpec,
    /// Retries and dead-lettering.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Deliveries in parallel: events of one partition key always go through the same lane,
    /// in log order (1–64, default 4).
    #[serde(default = "default_lanes")]
    pub lanes: u16,
    /// A paused subscription keeps its place and delivers nothing until resumed.
    #[serde(default)]
    pub paused: bool,
}

fn default_lanes() -> u16 {
    4
}

/// Where a subscription delivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetSpec {
    /// An HTTP endpoint receiving each event as a POST in the CloudEvents structured JSON
    /// format (`application/cloudevents+json`), with an `Idempotency-Key` header.
    Webhook {
        /// `http://` or `https://` URL.
        url: String,
        /// Extra headers sent with every request (e.g. an API key of the receiver).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        /// Time allowed for one attempt, ms (default 10,000).
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
    },
    /// A topic of civiclake's embedded MQTT broker (QoS 1 to its subscribers), carrying the
    /// event in the CloudEvents structured JSON format.
    Mqtt {
        /// The topic, e.g. `bus/out/school/meals`.
        topic: String,
    },
    /// A Kafka topic: one record per event in the CloudEvents binary mode (`ce_*` headers,
    /// the data as the value, the partition key as the key; see
    /// [`crate::target::kafka_record`]), sent with `acks=all` by an idempotent producer.
    Kafka {
        /// `bootstrap.servers`: `host:port[,host:port...]`.
        brokers: String,
        /// The topic, e.g. `civiclake.school.meals`.
        topic: String,
        /// More librdkafka settings (`security.protocol`, `sasl.mechanism`,
        /// `sasl.username`, `compression.type`, ...), except the ones civiclake sets:
        /// [`crate::target::KAFKA_RESERVED_OPTIONS`].
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        client_options: BTreeMap<String, String>,
        /// Time allowed for the brokers to acknowledge one record, ms (default 10,000).
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
    },
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl TargetSpec {
    /// A short description: `webhook http://...`, `mqtt bus/...`, `kafka <topic>`.
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Webhook { url, .. } => format!("webhook {url}"),
            TargetSpec::Mqtt { topic } => format!("mqtt {topic}"),
            TargetSpec::Kafka { topic, .. } => format!("kafka {topic}"),
        }
    }
}

/// How a subscription retries a failed delivery before dead-lettering it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all (1–100, default 8); after the last failed one the event is a dead
    /// letter of the subscription.
    pub max_attempts: u32,
    /// Wait before the second attempt, ms (default 200).
    pub initial_backoff_ms: u64,
    /// Each wait is this many times the previous one (1–10, default 2).
    pub multiplier: f64,
    /// Longest wait, ms (default 60,000).
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff_ms: 200,
            multiplier: 2.0,
            max_backoff_ms: 60_000,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1 = the first).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .multiplier
            .powi(i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX));
        let ms = (self.initial_backoff_ms as f64 * exp).min(self.max_backoff_ms as f64);
        Duration::from_millis(if ms.is_finite() {
            ms as u64
        } else {
            self.max_backoff_ms
        })
    }
}

/// Checks a name of the bus (subscription, organisation, system): 1–64 letters, digits, `-`
/// and `_`, starting with a letter or digit.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?}: use 1–{MAX_NAME} letters, digits, '-' and '_', starting with a letter or digit"
        ))
    }
}

impl SubscriptionSpec {
    /// Checks everything that can be checked before the first delivery.
    pub fn validate(&self) -> Result<(), String> {
        check_name("subscription", &self.name)?;
        if let Some(owner) = &self.owner {
            check_name("organisation", owner)?;
        }
        if let Some(system) = &self.system {
            if self.owner.is_none() {
                return Err(format!(
                    "system {system:?} without an owner: name the organisation it belongs to"
                ));
            }
            check_name("system", system)?;
        }
        if !(1..=64).contains(&self.lanes) {
            return Err(format!("lanes must be 1 to 64, not {}", self.lanes));
        }
        let r = &self.retry;
        if !(1..=100).contains(&r.max_attempts) {
            return Err(format!(
                "retry.max_attempts must be 1 to 100, not {}",
                r.max_attempts
            ));
        }
        if !(1.0..=10.0).contains(&r.multiplier) {
            return Err(format!(
                "retry.multiplier must be 1 to 10, not {}",
                r.multiplier
            ));
        }
        if r.initial_backoff_ms > r.max_backoff_ms {
            return Err(format!(
                "retry.initial_backoff_ms ({}) is above retry.max_backoff_ms ({})",
                r.initial_backoff_ms, r.max_backoff_ms
            ));
        }
        if r.max_backoff_ms > 3_600_000 {
            return Err("retry.max_backoff_ms must be at most one hour (3600000)".into());
        }
        self.filter.validate().map_err(|e| format!("filter: {e}"))?;
        if let Some(t) = &self.transform {
            t.validate().map_err(|e| format!("transform: {e}"))?;
        }
        match &self.target {
            TargetSpec::Webhook {
                url,
                headers,
                timeout_ms,
            } => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| format!("target.url {url:?} is not a URL: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(format!(
                        "target.url {url:?}: use an http:// or https:// URL with a host"
                    ));
                }
                for (name, value) in headers {
                    http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("target.headers: {name:?} is not a header name"))?;
                    http::HeaderValue::from_str(value).map_err(|_| {
                        format!("target.headers.{name}: the value is not a valid header value")
                    })?;
                }
                if !(100..=300_000).contains(timeout_ms) {
                    return Err(format!(
                        "target.timeout_ms must be 100 to 300000, not {timeout_ms}"
                    ));
                }
            }
            TargetSpec::Mqtt { topic } => {
                let t =
                    civiclake_core::Topic::new(topic).map_err(|e| format!("target.topic: {e}"))?;
                if t.namespace() != "bus" {
                    return Err(format!(
                        "target.topic {topic:?}: the bus delivers to bus/... topics"
                    ));
                }
            }
            TargetSpec::Kafka {
                brokers,
                topic,
                client_options,
                timeout_ms,
            } => crate::target::check_kafka_target(brokers, topic, client_options, *timeout_ms)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> Result<SubscriptionSpec, String> {
        let s: SubscriptionSpec = serde_json::from_value(v).map_err(|e| e.to_string())?;
        s.validate().map(|_| s)
    }

    #[test]
    fn defaults_and_validation() {
        let s = spec(json!({
            "name": "canteen-to-accounting",
            "target": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}
        }))
        .unwrap();
        assert_eq!(s.lanes, 4);
        assert_eq!(s.retry.max_attempts, 8);
        assert!(!s.paused);
        assert_eq!(s.target.describe(), "webhook http://127.0.0.1:9/hook");

        let bad = |v: serde_json::Value| spec(v).unwrap_err();
        assert!(
            bad(json!({"name": "a b", "target": {"kind": "mqtt", "topic": "bus/x"}}))
                .contains("subscription name \"a b\"")
        );
        assert!(
            bad(json!({"name": "x", "target": {"kind": "webhook", "url": "ftp://h/x"}}))
                .contains("use an http:// or https:// URL")
        );
        assert!(
            bad(json!({"name": "x", "target": {"kind": "mqtt", "topic": "ingest/air"}}))
                .contains("bus/... topics")
        );
        assert!(
            bad(json!({"name": "x", "lanes": 0, "target": {"kind": "mqtt", "topic": "bus/x"}}))
                .contains("lanes must be 1 to 64")
        );
        assert!(
            bad(json!({"name": "x", "retry": {"max_attempts": 0}, "target": {"kind": "mqtt", "topic": "bus/x"}}))
                .contains("max_attempts must be 1 to 100")
        );
        assert!(
            bad(json!({"name": "x", "colour": 1, "target": {"kind": "mqtt", "topic": "bus/x"}}))
                .contains("unknown field `colour`")
        );
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let r = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            multiplier: 2.0,
            max_backoff_ms: 1000,
        };
        let waits: Vec<u64> = (1..=6).map(|a| r.backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.backoff(u32::MAX).as_millis(), 1000);
    }
}
