//! A request for one panel: time range, variable values, size in pixels.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::error::DashboardError;
use crate::model::{ALL_VALUE, Dashboard, VariableSource};
use crate::sql;

/// Image width when a request gives none.
pub const DEFAULT_WIDTH_PX: u32 = 800;
/// Image height when a request gives none.
pub const DEFAULT_HEIGHT_PX: u32 = 300;
/// Accepted image widths.
pub const WIDTH_RANGE: std::ops::RangeInclusive<u32> = 200..=4096;
/// Accepted image heights.
pub const HEIGHT_RANGE: std::ops::RangeInclusive<u32> = 120..=4096;

/// What one panel is drawn for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelRequest {
    /// Start of the range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    /// A value for every variable of the dashboard ([`ALL_VALUE`] for All).
    pub vars: BTreeMap<String, String>,
    /// Image width.
    pub width_px: u32,
    /// Image height.
    pub height_px: u32,
}

impl PanelRequest {
    /// Reads a request from query parameters:
    ///
    /// - `from`, `to`: RFC 3339 (`2026-05-04T10:00:00Z`, `2026-05-04T12:00:00+02:00`), epoch
    ///   milliseconds, `now`, or `now-<duration>` / `now+<duration>` (`now-24h`, `now-7d`,
    ///   `now-1h30m`). Defaults: `to=now`, `from` = `to` minus the dashboard's default range.
    /// - `width`, `height`: pixels (defaults 800 × 300; 200–4096 × 120–4096).
    /// - `var-<name>`: a variable's value; `$__all` selects All. A value must be in the
    ///   variable's static list when it has one. Variables not given take their default.
    ///
    /// Other parameters are ignored (they belong to the HTTP layer); an unknown variable, a
    /// repeated parameter or a bad value is an error ([`DashboardError::Request`], HTTP 400).
    pub fn from_query(
        dashboard: &Dashboard,
        params: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Self, DashboardError> {
        let bad = |m: String| DashboardError::Request(m);
        let mut from = None;
        let mut to = None;
        let mut width = None;
        let mut height = None;
        let mut given: BTreeMap<&str, &str> = BTreeMap::new();
        for (key, value) in params {
            let slot = match key.as_str() {
                "from" => &mut from,
                "to" => &mut to,
                "width" => &mut width,
                "height" => &mut height,
                _ => {
                    if let Some(name) = key.strip_prefix("var-") {
                        if dashboard.variable(name).is_none() {
                            return Err(bad(format!(
                                "dashboard `{}` has no variable `{name}`",
                                dashboard.id
                            )));
                        }
                        if given.insert(name, value).is_some() {
                            return Err(bad(format!("parameter `{key}` is given twice")));
                        }
                    }
                    continue;
                }
            };
            if slot.replace(value.as_str()).is_some() {
                return Err(bad(format!("parameter `{key}` is given twice")));
            }
        }

        let to = match to {
            Some(t) => parse_time("to", t, now)?,
            None => now,
        };
        let from = match from {
            Some(t) => parse_time("from", t, now)?,
            None => chrono::Duration::from_std(dashboard.time.default.duration)
                .ok()
                .and_then(|d| to.checked_sub_signed(d))
                .ok_or_else(|| bad("the default time range does not fit before `to`".into()))?,
        };
        if from >= to {
            return Err(bad(format!(
                "`from` ({}) must be before `to` ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            )));
        }
        let width_px = parse_px("width", width, DEFAULT_WIDTH_PX, WIDTH_RANGE)?;
        let height_px = parse_px("height", height, DEFAULT_HEIGHT_PX, HEIGHT_RANGE)?;

        let mut vars = BTreeMap::new();
        for var in &dashboard.variables {
            let value = match given.get(var.name.as_str()) {
                Some(v) => {
                    let v = *v;
                    sql::check_value(&var.name, v).map_err(bad)?;
                    if v == ALL_VALUE {
                        if !var.include_all {
                            return Err(bad(format!("variable `{}` has no All choice", var.name)));
                        }
                    } else if let VariableSource::Values(values) = &var.source
                        && !values.iter().any(|x| x == v)
                    {
                        return Err(bad(format!(
                            "variable `{}`: `{v}` is not one of its values ({})",
                            var.name,
                            values.join(", ")
                        )));
                    }
                    v.to_string()
                }
                None => var.default.clone().ok_or_else(|| {
                    bad(format!(
                        "variable `{}` has no default: give it as var-{}=…",
                        var.name, var.name
                    ))
                })?,
            };
            vars.insert(var.name.clone(), value);
        }

        Ok(Self {
            from,
            to,
            vars,
            width_px,
            height_px,
        })
    }
}

fn parse_px(
    name: &str,
    text: Option<&str>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, DashboardError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(DashboardError::Request(format!(
            "`{name}` must be a whole number of pixels from {} to {}, not `{text}`",
            range.start(),
            range.end()
        ))),
    }
}

/// Reads `now`, `now-24h`, `now+1h`, RFC 3339 or epoch milliseconds.
pub fn parse_time(
    name: &str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, DashboardError> {
    let bad = || {
        DashboardError::Request(format!(
            "`{name}` must be RFC 3339 (2026-05-04T10:00:00Z), epoch milliseconds, `now` or \
             `now-<duration>` such as now-24h, not `{text}`"
        ))
    };
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, span) = match rest.as_bytes()[0] {
            b'-' => (-1, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ => return Err(bad()),
        };
        let duration = humantime::parse_duration(span.trim()).map_err(|_| bad())?;
        let delta = chrono::Duration::from_std(duration).map_err(|_| bad())?;
        let t = if sign < 0 {
            now.checked_sub_signed(delta)
        } else {
            now.checked_add_signed(delta)
        };
        return t.ok_or_else(bad);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(bad);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DASH: &str = r#"
title = "t"
[time]
default = "last 6h"

[[variables]]
name = "district"
values = ["Centro", "Sant'Ippolito"]
all = true

[[variables]]
name = "sensor"
query = "SELECT id FROM sensors"

[[panels]]
id = "p"
title = "P"
kind = "timeseries"
sql = """SELECT date_bin($__interval, time, $__from) AS time, avg(v) AS v FROM air
WHERE $__timeFilter(time) AND $__filter(district, district) AND sensor = $sensor -- $__nothing
GROUP BY 1"""
"#;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_relative_times() {
        let d = Dashboard::from_toml("d", DASH).unwrap();
        let req = PanelRequest::from_query(&d, &params(&[("var-sensor", "s1"), ("x", "y")]), now())
            .unwrap();
        assert_eq!(req.to, now());
        assert_eq!(req.from, now() - chrono::Duration::hours(6));
        assert_eq!((req.width_px, req.height_px), (800, 300));
        assert_eq!(req.vars["district"], ALL_VALUE);

        let req = PanelRequest::from_query(
            &d,
            &params(&[
                ("from", "now-1h30m"),
                ("to", "now-30m"),
                ("var-sensor", "s1"),
                ("width", "1000"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(req.from.to_rfc3339(), "2026-05-04T10:30:00+00:00");
        assert_eq!(req.to.to_rfc3339(), "2026-05-04T11:30:00+00:00");
        assert_eq!(req.width_px, 1000);
    }

    #[test]
    fn expands_the_panel_sql() {
        let d = Dashboard::from_toml("d", DASH).unwrap();
        let req = PanelRequest::from_query(
            &d,
            &params(&[
                ("from", "2026-05-04T00:00:00+02:00"),
                ("to", "1777932000000"),
                ("var-district", "Sant'Ippolito"),
                ("var-sensor", "x'); DROP TABLE air; --"),
            ]),
            now(),
        )
        .unwrap();
        let sql = d.panel_sql(&d.panels[0], &req).unwrap();
        assert_eq!(
            sql,
            "SELECT date_bin(INTERVAL '108 seconds', time, TIMESTAMP '2026-05-03T22:00:00Z') \
             AS time, avg(v) AS v FROM air\nWHERE (time >= TIMESTAMP '2026-05-03T22:00:00Z' AND \
             time < TIMESTAMP '2026-05-04T22:00:00Z') AND (district = 'Sant''Ippolito') AND \
             sensor = 'x''); DROP TABLE air; --' -- $__nothing\nGROUP BY 1"
        );

        let mut all = req.clone();
        all.vars.insert("district".into(), ALL_VALUE.into());
        let sql = d.panel_sql(&d.panels[0], &all).unwrap();
        assert!(sql.contains("Z') AND TRUE AND sensor = "), "{sql}");
    }

    #[test]
    fn bad_requests() {
        let d = Dashboard::from_toml("d", DASH).unwrap();
        let err = |list: &[(&str, &str)]| {
            PanelRequest::from_query(&d, &params(list), now())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[]).contains("variable `sensor` has no default"));
        assert!(
            err(&[("var-sensor", "a"), ("var-district", "Nord")])
                .contains("`Nord` is not one of its values")
        );
        assert!(err(&[("var-sensor", "a"), ("var-colour", "x")]).contains("no variable `colour`"));
        assert!(err(&[("var-sensor", "a\u{0}")]).contains("control character"));
        assert!(
            err(&[("var-sensor", "a"), ("from", "yesterday")]).contains("`from` must be RFC 3339")
        );
        assert!(
            err(&[("var-sensor", "a"), ("from", "now"), ("to", "now-1h")])
                .contains("must be before")
        );
        assert!(err(&[("var-sensor", "a"), ("width", "50")]).contains("`width` must be"));
        assert!(
            err(&[("var-sensor", "a"), ("from", "now-1h"), ("from", "now-2h")])
                .contains("given twice")
        );
        let e = PanelRequest::from_query(&d, &params(&[("var-sensor", "a")]), now()).unwrap();
        let mut missing = e.clone();
        missing.vars.remove("sensor");
        assert!(
            d.panel_sql(&d.panels[0], &missing)
                .unwrap_err()
                .to_string()
                .contains("no value")
        );
    }
}
