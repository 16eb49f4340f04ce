//! Topics and topic filters of civiclake's publish/subscribe, with MQTT's syntax so the same
//! names work in process, on the embedded MQTT broker and on Kafka.
//!
//! Namespaces (first level):
//! * `ingest/...` — raw data on its way into tables;
//! * `bus/...` — CloudEvents between systems (the interoperability bus);
//! * `devices/{kind}/{id}/...` — device telemetry that modules subscribe to.
//!
//! A filter may use `+` (exactly one level) and `#` (any number of levels, last only).

use std::fmt;

/// The namespaces a topic may start with.
pub const NAMESPACES: [&str; 3] = ["ingest", "bus", "devices"];

/// A problem with a topic or a topic filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty, too long, or with an empty level.
    #[error("invalid topic {topic:?}: {reason}")]
    Invalid {
        /// The topic as given.
        topic: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The first level is not one of [`NAMESPACES`].
    #[error("topic {0:?} is outside the namespaces ingest/, bus/ and devices/")]
    Namespace(String),
}

fn invalid(topic: &str, reason: &'static str) -> TopicError {
    TopicError::Invalid {
        topic: topic.to_string(),
        reason,
    }
}

fn check_levels(topic: &str, allow_wildcards: bool) -> Result<(), TopicError> {
    if topic.is_empty() || topic.len() > 1024 {
        return Err(invalid(topic, "a topic has 1 to 1024 bytes"));
    }
    if topic.chars().any(|c| c == '\0' || c.is_control()) {
        return Err(invalid(topic, "control characters are not allowed"));
    }
    let levels: Vec<&str> = topic.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.is_empty() {
            return Err(invalid(
                topic,
                "empty level (leading, trailing or double '/')",
            ));
        }
        let wildcard = level.contains('+') || level.contains('#');
        if wildcard && !allow_wildcards {
            return Err(invalid(topic, "a topic cannot contain '+' or '#'"));
        }
        if wildcard && *level != "+" && *level != "#" {
            return Err(invalid(topic, "a wildcard must fill a whole level"));
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(invalid(topic, "'#' must be the last level"));
        }
    }
    let first = levels[0];
    if !NAMESPACES.contains(&first) && first != "+" && first != "#" {
        return Err(TopicError::Namespace(topic.to_string()));
    }
    if first == "devices" && !allow_wildcards && levels.len() < 3 {
        return Err(invalid(topic, "device topics are devices/{kind}/{id}/..."));
    }
    Ok(())
}

/// A concrete topic (no wildcards) in one of the namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(String);

impl Topic {
    /// Checks and wraps `topic`.
    pub fn new(topic: impl Into<String>) -> Result<Self, TopicError> {
        let topic = topic.into();
        check_levels(&topic, false)?;
        Ok(Self(topic))
    }

    /// The topic as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first level: `ingest`, `bus` or `devices`.
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic filter with MQTT wildcards (`+` one level, `#` the rest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter(String);

impl TopicFilter {
    /// Checks and wraps `filter`.
    pub fn new(filter: impl Into<String>) -> Result<Self, TopicError> {
        let filter = filter.into();
        check_levels(&filter, true)?;
        Ok(Self(filter))
    }

    /// The filter as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `topic` matches this filter.
    pub fn matches(&self, topic: &Topic) -> bool {
        let mut f = self.0.split('/');
        let mut t = topic.0.split('/');
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    #[test]
    fn wildcards_match_as_in_mqtt() {
        let f = TopicFilter::new("devices/kiosk/+/heartbeat").unwrap();
        assert!(f.matches(&t("devices/kiosk/k07/heartbeat")));
        assert!(!f.matches(&t("devices/kiosk/k07/status")));
        assert!(!f.matches(&t("devices/kiosk/k07/heartbeat/extra")));
        let all = TopicFilter::new("bus/#").unwrap();
        assert!(all.matches(&t("bus/council/proposal.approved")));
        assert!(!all.matches(&t("ingest/air")));
        assert!(
            TopicFilter::new("#")
                .unwrap()
                .matches(&t("ingest/air/centro"))
        );
        assert!(
            TopicFilter::new("ingest/air")
                .unwrap()
                .matches(&t("ingest/air"))
        );
        assert!(
            !TopicFilter::new("ingest/air")
                .unwrap()
                .matches(&t("ingest/air/x"))
        );
    }

    #[test]
    fn bad_topics_and_filters_say_why() {
        assert_eq!(
            Topic::new("weather/x").unwrap_err(),
            TopicError::Namespace("weather/x".into())
        );
        assert!(
            Topic::new("ingest/+")
                .unwrap_err()
                .to_string()
                .contains("cannot contain")
        );
        assert!(
            Topic::new("ingest//air")
                .unwrap_err()
                .to_string()
                .contains("empty level")
        );
        assert!(
            Topic::new("devices/kiosk")
                .unwrap_err()
                .to_string()
                .contains("devices/{kind}/{id}")
        );
        assert!(
            TopicFilter::new("bus/#/x")
                .unwrap_err()
                .to_string()
                .contains("last level")
        );
        assert!(
            TopicFilter::new("bus/a+")
                .unwrap_err()
                .to_string()
                .contains("whole level")
        );
        assert_eq!(t("devices/kiosk/k1/hb").namespace(), "devices");
    }
}
