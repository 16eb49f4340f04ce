//! MQTT topic names and topic filters as the specification defines them (MQTT 3.1.1 §4.7,
//! MQTT 5 §4.7): levels separated by `/` (empty levels are allowed), `+` matches exactly one
//! level, `#` matches the rest and must be the last level, and topics that start with `$` are
//! not matched by a filter that starts with a wildcard.

/// Why a topic name or a filter is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicProblem {
    /// Zero bytes long.
    Empty,
    /// Contains U+0000.
    Nul,
    /// A topic name contains `+` or `#`.
    Wildcard,
    /// A filter has `+` or `#` sharing a level with other characters, or `#` not last.
    MisplacedWildcard,
}

impl std::fmt::Display for TopicProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopicProblem::Empty => "is empty",
            TopicProblem::Nul => "contains the character U+0000",
            TopicProblem::Wildcard => "contains a wildcard (+ or #)",
            TopicProblem::MisplacedWildcard => {
                "has a wildcard that is not a whole level, or a # that is not the last level"
            }
        })
    }
}

/// Checks a topic name of a PUBLISH (or a will, or a host publish).
pub(crate) fn check_topic(topic: &str) -> Result<(), TopicProblem> {
    if topic.is_empty() {
        return Err(TopicProblem::Empty);
    }
    if topic.contains('\0') {
        return Err(TopicProblem::Nul);
    }
    if topic.contains(['+', '#']) {
        return Err(TopicProblem::Wildcard);
    }
    Ok(())
}

/// Checks a topic filter of a SUBSCRIBE or UNSUBSCRIBE.
pub(crate) fn check_filter(filter: &str) -> Result<(), TopicProblem> {
    if filter.is_empty() {
        return Err(TopicProblem::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicProblem::Nul);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if last => {}
            other if other.contains(['+', '#']) => return Err(TopicProblem::MisplacedWildcard),
            "#" => return Err(TopicProblem::MisplacedWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `topic` (a valid topic name) matches `filter` (a valid filter).
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert_eq!(check_topic("a/b"), Ok(()));
        assert_eq!(check_topic("/a//b/"), Ok(()));
        assert_eq!(check_topic(""), Err(TopicProblem::Empty));
        assert_eq!(check_topic("a/+"), Err(TopicProblem::Wildcard));
        assert_eq!(check_topic("a/#"), Err(TopicProblem::Wildcard));
        assert_eq!(check_topic("a\0b"), Err(TopicProblem::Nul));
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/+/c", "a/#", "+/+", "/#", "a//b", "$SYS/#"] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a/#/b", "a#", "a/b+", "++", "#/a", "a/#b"] {
            assert_eq!(
                check_filter(bad),
                Err(TopicProblem::MisplacedWildcard),
                "{bad}"
            );
        }
        assert_eq!(check_filter(""), Err(TopicProblem::Empty));
    }

    #[test]
    fn matching() {
        assert!(matches("a/b/c", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("a/+/c", "a/x/c"));
        assert!(!matches("a/+/c", "a/x/y/c"));
        assert!(matches("a/+", "a/"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(matches("+/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("$SYS/+", "$SYS/x"));
    }
}
