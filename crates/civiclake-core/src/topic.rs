//! Topics and topic filters of civiclake's publish/subscribe, with MQTT's syntax so the same
//! names work in process, on the embedded MQTT broker and on Kafka.
//!
//! Namespaces (first level):
//! * `ingest/...` — raw data on its way into tables;
//! * `bus/...` — CloudEvents between systems (the interoperability bus);
//! * `devices/{kind}/{id}/...` — device telemetry that modules subscribe to (kiosk heartbeats,
//!   school-transport boardings); `kind` is a lowercase word, `id` the device's identifier,
//!   and at least one level follows (`devices/kiosk/k07/heartbeat`);
//! * `pipelines/{ingest|streams|alerts|bus}/{name}/...` — output of the shipped pipelines,
//!   split like their definitions in the `pipelines/` directory.
//!
//! A filter may use `+` (exactly one level) and `#` (any number of levels, last only).

use std::fmt;

/// The namespaces a topic may start with.
pub const NAMESPACES: [&str; 4] = ["ingest", "bus", "devices", "pipelines"];

/// The sub-namespaces of `pipelines/` (second level), one per kind of pipeline definition.
pub const PIPELINE_KINDS: [&str; 4] = ["ingest", "streams", "alerts", "bus"];

/// A problem with a topic or a topic filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty, too long, with an empty level, or not of its namespace's shape.
    #[error("invalid topic {topic:?}: {reason}")]
    Invalid {
        /// The topic as given.
        topic: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The first level is not one of [`NAMESPACES`].
    #[error("topic {0:?} is outside the namespaces ingest/, bus/, devices/ and pipelines/")]
    Namespace(String),
}

fn invalid(topic: &str, reason: &'static str) -> TopicError {
    TopicError::Invalid {
        topic: topic.to_string(),
        reason,
    }
}

fn is_device_kind(level: &str) -> bool {
    let mut chars = level.chars();
    level.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_device_id(level: &str) -> bool {
    level.len() <= 128
        && level
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Checks the levels after the namespace. In a filter, a `+` or `#` level stands for any
/// level(s), and a filter that ends in `#` may be shorter than a topic.
fn check_namespace_shape(topic: &str, levels: &[&str], filter: bool) -> Result<(), TopicError> {
    let wild = |l: &str| filter && (l == "+" || l == "#");
    let open_ended = filter && levels.last() == Some(&"#");
    let long_enough = |n: usize| levels.len() >= n || open_ended;
    match levels[0] {
        "devices" => {
            if !long_enough(4) {
                return Err(invalid(
                    topic,
                    "device topics are devices/{kind}/{id}/... with at least one level after the id",
                ));
            }
            if let Some(kind) = levels.get(1)
                && !wild(kind)
                && !is_device_kind(kind)
            {
                return Err(invalid(
                    topic,
                    "a device kind is a lowercase word (a-z, 0-9, '_', '-', at most 64 bytes)",
                ));
            }
            if let Some(id) = levels.get(2)
                && !wild(id)
                && !is_device_id(id)
            {
                return Err(invalid(
                    topic,
                    "a device id uses ASCII letters, digits, '_', '-', '.', ':' (at most 128 bytes)",
                ));
            }
        }
        "pipelines" => {
            if !long_enough(3) {
                return Err(invalid(
                    topic,
                    "pipeline topics are pipelines/{ingest|streams|alerts|bus}/{name}/...",
                ));
            }
            if let Some(kind) = levels.get(1)
                && !wild(kind)
                && !PIPELINE_KINDS.contains(kind)
            {
                return Err(invalid(
                    topic,
                    "the pipelines/ namespace is split into pipelines/ingest/, pipelines/streams/, pipelines/alerts/ and pipelines/bus/",
                ));
            }
        }
        _ => {
            if !long_enough(2) {
                return Err(invalid(
                    topic,
                    "a topic needs at least one level after its namespace",
                ));
            }
        }
    }
    Ok(())
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
    if first == "+" || first == "#" {
        return Ok(());
    }
    if !NAMESPACES.contains(&first) {
        return Err(TopicError::Namespace(topic.to_string()));
    }
    check_namespace_shape(topic, &levels, allow_wildcards)
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

    /// The first level: `ingest`, `bus`, `devices` or `pipelines`.
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }

    /// The levels of the topic, in order.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// For a `devices/{kind}/{id}/...` topic, the device's kind and id.
    pub fn device(&self) -> Option<(&str, &str)> {
        let mut levels = self.0.split('/');
        if levels.next() != Some("devices") {
            return None;
        }
        Some((levels.next()?, levels.next()?))
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

    fn reason(topic: &str) -> String {
        Topic::new(topic).unwrap_err().to_string()
    }

    #[test]
    fn device_topics_have_kind_id_and_a_channel() {
        let topic = t("devices/scanner/lab-01/scans");
        assert_eq!(topic.device(), Some(("scanner", "lab-01")));
        assert_eq!(
            t("devices/bus-stop/ps:12.a/boardings/raw").device(),
            Some(("bus-stop", "ps:12.a"))
        );
        assert_eq!(t("bus/lab/loans").device(), None);
        assert!(reason("devices/kiosk/k07").contains("at least one level after the id"));
        assert!(reason("devices/Kiosk/k07/heartbeat").contains("device kind is a lowercase word"));
        assert!(reason("devices/kiosk/k 07/heartbeat").contains("device id uses"));
        assert!(reason("devices/kiosk/k\u{e8}/heartbeat").contains("device id uses"));
        // Filters: wildcards stand for the kind and the id; '#' may end early.
        assert!(TopicFilter::new("devices/+/+/heartbeat").is_ok());
        assert!(TopicFilter::new("devices/kiosk/#").is_ok());
        assert!(TopicFilter::new("devices/#").is_ok());
        assert!(
            TopicFilter::new("devices/kiosk/+")
                .unwrap_err()
                .to_string()
                .contains("at least one level after the id")
        );
        assert!(
            TopicFilter::new("devices/KIOSK/+/hb")
                .unwrap_err()
                .to_string()
                .contains("lowercase word")
        );
    }

    #[test]
    fn pipelines_are_split_in_four_sub_namespaces() {
        for kind in PIPELINE_KINDS {
            let topic = t(&format!("pipelines/{kind}/air_hourly"));
            assert_eq!(topic.namespace(), "pipelines");
            assert_eq!(topic.levels().nth(1), Some(kind));
        }
        assert!(reason("pipelines/reports/x").contains("pipelines/streams/"));
        assert!(
            reason("pipelines/alerts").contains("pipelines/{ingest|streams|alerts|bus}/{name}")
        );
        assert!(TopicFilter::new("pipelines/+/air_hourly").is_ok());
        assert!(TopicFilter::new("pipelines/alerts/#").is_ok());
        assert!(TopicFilter::new("pipelines/#").is_ok());
        assert!(TopicFilter::new("pipelines/other/#").is_err());
    }

    #[test]
    fn every_namespace_needs_a_level_after_it() {
        for ns in ["ingest", "bus"] {
            assert!(reason(ns).contains("at least one level after its namespace"));
            assert!(TopicFilter::new(format!("{ns}/#")).is_ok());
            assert!(TopicFilter::new(ns).is_err());
        }
        assert!(reason("devices").contains("devices/{kind}/{id}"));
        assert!(reason("pipelines").contains("pipelines/{ingest|streams|alerts|bus}"));
        assert_eq!(
            reason("alerts/x"),
            "topic \"alerts/x\" is outside the namespaces ingest/, bus/, devices/ and pipelines/"
        );
        assert!(reason(&format!("bus/{}", "x".repeat(1024))).contains("1 to 1024 bytes"));
        assert!(reason("bus/a\tb").contains("control characters"));
        assert!(TopicFilter::new("+/lab/#").is_ok());
    }
}
