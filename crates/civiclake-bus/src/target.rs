//! Delivery targets. A target takes one event for one subscription and says how the attempt
//! went; the delivery engine decides about retries, dead letters and the audit record. New
//! kinds of target (a SOAP endpoint, a ModI-signed REST call) implement [`Target`].

use crate::log::LoggedEvent;
use crate::subscription::TargetSpec;
use async_trait::async_trait;
use bytes::Bytes;
use civiclake_core::CloudEvent;
use std::sync::Arc;
use std::time::Duration;

/// What a target is given for one attempt.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The subscription delivering.
    pub subscription: &'a str,
    /// The event as the subscription delivers it (after its transformation).
    pub event: &'a CloudEvent,
    /// The event as the log holds it.
    pub logged: &'a LoggedEvent,
    /// The same for every attempt and replay of this event to this subscription.
    pub idempotency_key: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The replay this delivery belongs to, if any.
    pub replay: Option<&'a str>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target took the event.
    Delivered,
    /// A failure that may pass (timeouts, 5xx, 429, connection refused): try again.
    Retry,
    /// A failure that will not pass by trying again (e.g. 400, 404): dead-letter now.
    Reject,
}

/// One attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The outcome.
    pub outcome: Outcome,
    /// The target's status code (HTTP), when it answered.
    pub status_code: Option<u16>,
    /// What went wrong, for the audit trail and the dead letter.
    pub error: Option<String>,
    /// A wait the target asked for (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Attempt {
    fn delivered(status_code: Option<u16>) -> Self {
        Self {
            outcome: Outcome::Delivered,
            status_code,
            error: None,
            retry_after: None,
        }
    }
}

/// A place events are delivered to.
#[async_trait]
pub trait Target: Send + Sync + std::fmt::Debug {
    /// For the audit trail: `webhook http://...`.
    fn describe(&self) -> String;
    /// One attempt to deliver.
    async fn deliver(&self, out: &Outgoing<'_>) -> Attempt;
}

/// Publishes to civiclake's embedded MQTT broker (provided by the server).
pub trait MessagePublisher: Send + Sync + std::fmt::Debug {
    /// Publishes `payload` on `topic`; an error says why it could not.
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), String>;
}

/// Builds the target of a subscription.
pub fn build_target(
    spec: &TargetSpec,
    http: &reqwest::Client,
    mqtt: Option<&Arc<dyn MessagePublisher>>,
) -> Result<Arc<dyn Target>, String> {
    match spec {
        TargetSpec::Webhook {
            url,
            headers,
            timeout_ms,
        } => {
            let mut map = http::HeaderMap::new();
            for (name, value) in headers {
                let name = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{name:?} is not a header name"))?;
                let value = http::HeaderValue::from_str(value)
                    .map_err(|_| format!("the value of header {name} is not valid"))?;
                map.insert(name, value);
            }
            Ok(Arc::new(Webhook {
                url: url.clone(),
                headers: map,
                timeout: Duration::from_millis(*timeout_ms),
                client: http.clone(),
            }))
        }
        TargetSpec::Mqtt { topic } => {
            let publisher = mqtt
                .cloned()
                .ok_or("MQTT targets need the embedded MQTT broker (mqtt_addr is off)")?;
            Ok(Arc::new(Mqtt {
                topic: topic.clone(),
                publisher,
            }))
        }
    }
}

/// An HTTP endpoint: one POST per event, CloudEvents structured JSON.
#[derive(Debug)]
pub struct Webhook {
    url: String,
    headers: http::HeaderMap,
    timeout: Duration,
    client: reqwest::Client,
}

/// Longest part of an error answer's body kept in the audit trail.
const ERROR_BODY_CHARS: usize = 300;

/// Statuses worth trying again: a timeout, a conflict that may clear, too early, too many
/// requests, and every 5xx.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || status >= 500
}

#[async_trait]
impl Target for Webhook {
    fn describe(&self) -> String {
        format!("webhook {}", self.url)
    }

    async fn deliver(&self, out: &Outgoing<'_>) -> Attempt {
        let body = out.event.to_json().to_string();
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/cloudevents+json")
            .header("Idempotency-Key", out.idempotency_key)
            .header("Civiclake-Subscription", out.subscription)
            .header("Civiclake-Attempt", out.attempt.to_string())
            .header("Civiclake-Seq", out.logged.seq.to_string());
        if let Some(replay) = out.replay {
            request = request.header("Civiclake-Replay", replay);
        }
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                if response.status().is_success() {
                    // Read to the end, so the connection is kept for the next event.
                    let _ = response.bytes().await;
                    return Attempt::delivered(Some(status));
                }
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(ERROR_BODY_CHARS).collect();
                Attempt {
                    outcome: if retryable(status) {
                        Outcome::Retry
                    } else {
                        Outcome::Reject
                    },
                    status_code: Some(status),
                    error: Some(if text.trim().is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {}", text.trim())
                    }),
                    retry_after,
                }
            }
            Err(e) => Attempt {
                outcome: Outcome::Retry,
                status_code: None,
                error: Some(if e.is_timeout() {
                    format!("no answer within {} ms", self.timeout.as_millis())
                } else if e.is_connect() {
                    format!("cannot connect: {}", error_chain(&e))
                } else {
                    error_chain(&e)
                }),
                retry_after: None,
            },
        }
    }
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A topic of the embedded MQTT broker.
#[derive(Debug)]
pub struct Mqtt {
    topic: String,
    publisher: Arc<dyn MessagePublisher>,
}

#[async_trait]
impl Target for Mqtt {
    fn describe(&self) -> String {
        format!("mqtt {}", self.topic)
    }

    async fn deliver(&self, out: &Outgoing<'_>) -> Attempt {
        let payload = Bytes::from(out.event.to_json().to_string());
        match self.publisher.publish(&self.topic, payload) {
            Ok(()) => Attempt::delivered(None),
            Err(e) => Attempt {
                outcome: Outcome::Retry,
                status_code: None,
                error: Some(e),
                retry_after: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_statuses_are_retried() {
        for s in [408, 409, 425, 429, 500, 502, 503, 504] {
            assert!(retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422] {
            assert!(!retryable(s), "{s}");
        }
    }
}
