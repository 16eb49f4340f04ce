//! The ecosystem map: who depends on whom on the bus, instead of the n:m picture of
//! point-to-point integrations.
//!
//! A system **produces** an event type when the catalog says so or when the log holds events
//! of that type from its source (`/<org>/<system>/...`); it **consumes** a type when the
//! catalog says so or when one of its subscriptions (owner = its organisation, `system` =
//! it) admits that type from some producer. A consumer **depends on** a producer when it
//! consumes a type the producer produces — through a subscription whose filter admits the
//! producer's source, or as declared in the catalog (no subscription yet: a gap to close).

use crate::catalog::{Catalog, source_parts};
use crate::subscription::SubscriptionSpec;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Events of one type seen in the log from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The CloudEvents source.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// How many.
    pub events: u64,
}

/// A node of the map: a system (or a subscription with no system behind it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapSystem {
    /// `<org>/<system>`, `<org>` for an organisation's subscriptions that name no system,
    /// or `subscription:<name>` for a subscription with no owner.
    pub id: String,
    /// Its name for people (the catalog's; else the id).
    pub name: String,
    /// Its organisation, when known.
    pub org: Option<String>,
    /// Whether the catalog describes it.
    pub in_catalog: bool,
}

/// A system's link to an event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The system (a [`MapSystem::id`]).
    pub system: String,
    /// The event type.
    pub event_type: String,
    /// Declared in the catalog.
    pub declared: bool,
    /// Events of the type seen from the system (producers).
    pub events: u64,
    /// Subscriptions through which it receives the type (consumers).
    pub subscriptions: Vec<String>,
}

/// A consumer depending on a producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// Who needs the events.
    pub consumer: String,
    /// Who produces them.
    pub producer: String,
    /// Through which types.
    pub event_types: Vec<String>,
    /// Through which subscriptions (empty: declared in the catalog, not wired yet).
    pub subscriptions: Vec<String>,
}

/// The whole map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EcosystemMap {
    /// Every system on the map.
    pub systems: Vec<MapSystem>,
    /// Every event type on the map.
    pub event_types: Vec<String>,
    /// Who produces what.
    pub produces: Vec<Link>,
    /// Who consumes what.
    pub consumes: Vec<Link>,
    /// Who depends on whom.
    pub dependencies: Vec<Dependency>,
}

#[derive(Default)]
struct LinkAcc {
    declared: bool,
    events: u64,
    subscriptions: BTreeSet<String>,
}

/// Builds the map from the catalog, the subscriptions and what the log has seen.
pub fn build(
    catalog: &Catalog,
    subscriptions: &[SubscriptionSpec],
    observed: &[Observed],
) -> EcosystemMap {
    let mut systems: BTreeMap<String, MapSystem> = BTreeMap::new();
    let mut produces: BTreeMap<(String, String), LinkAcc> = BTreeMap::new();
    let mut consumes: BTreeMap<(String, String), LinkAcc> = BTreeMap::new();
    // The source of each producing node, for subscription filters.
    let mut source_of: BTreeMap<String, String> = BTreeMap::new();
    for s in catalog.systems() {
        let id = format!("{}/{}", s.org, s.id);
        systems.insert(
            id.clone(),
            MapSystem {
                id: id.clone(),
                name: s.name.clone(),
                org: Some(s.org.clone()),
                in_catalog: true,
            },
        );
        source_of.insert(id.clone(), s.source());
        for t in &s.produces {
            produces
                .entry((id.clone(), t.clone()))
                .or_default()
                .declared = true;
        }
        for t in &s.consumes {
            consumes
                .entry((id.clone(), t.clone()))
                .or_default()
                .declared = true;
        }
    }
    for o in observed {
        let Some((org, sys)) = source_parts(&o.source) else {
            continue;
        };
        let id = format!("{org}/{sys}");
        systems.entry(id.clone()).or_insert_with(|| MapSystem {
            id: id.clone(),
            name: id.clone(),
            org: Some(org.to_string()),
            in_catalog: false,
        });
        source_of
            .entry(id.clone())
            .or_insert_with(|| format!("/{org}/{sys}"));
        produces
            .entry((id, o.event_type.clone()))
            .or_default()
            .events += o.events;
    }
    // Subscriptions: each consumes, from each producer its filter admits, the types it admits.
    let mut wired: BTreeMap<(String, String), (BTreeSet<String>, BTreeSet<String>)> =
        BTreeMap::new();
    let producing: Vec<(String, String)> = produces.keys().cloned().collect();
    for sub in subscriptions {
        let consumer = match (&sub.owner, &sub.system) {
            (Some(o), Some(s)) => format!("{o}/{s}"),
            (Some(o), None) => o.clone(),
            (None, _) => format!("subscription:{}", sub.name),
        };
        systems.entry(consumer.clone()).or_insert_with(|| {
            let known = catalog.organisation(&consumer).ok();
            MapSystem {
                id: consumer.clone(),
                name: known.map_or_else(|| consumer.clone(), |o| o.name.clone()),
                org: sub.owner.clone(),
                in_catalog: false,
            }
        });
        for (producer, ty) in &producing {
            let source = source_of.get(producer).map_or("", String::as_str);
            if producer == &consumer || !sub.filter.admits(ty, source) {
                continue;
            }
            consumes
                .entry((consumer.clone(), ty.clone()))
                .or_default()
                .subscriptions
                .insert(sub.name.clone());
            let w = wired
                .entry((consumer.clone(), producer.clone()))
                .or_default();
            w.0.insert(ty.clone());
            w.1.insert(sub.name.clone());
        }
    }
    // Declared consumption not wired by a subscription: a dependency still, on every
    // producer of the type.
    for ((consumer, ty), acc) in &consumes {
        if !acc.declared {
            continue;
        }
        for (producer, pty) in &producing {
            if pty == ty && producer != consumer {
                wired
                    .entry((consumer.clone(), producer.clone()))
                    .or_default()
                    .0
                    .insert(ty.clone());
            }
        }
    }
    let mut event_types: BTreeSet<String> = BTreeSet::new();
    let links = |m: BTreeMap<(String, String), LinkAcc>, types: &mut BTreeSet<String>| {
        m.into_iter()
            .map(|((system, event_type), a)| {
                types.insert(event_type.clone());
                Link {
                    system,
                    event_type,
                    declared: a.declared,
                    events: a.events,
                    subscriptions: a.subscriptions.into_iter().collect(),
                }
            })
            .collect::<Vec<_>>()
    };
    let produces = links(produces, &mut event_types);
    let consumes = links(consumes, &mut event_types);
    EcosystemMap {
        systems: systems.into_values().collect(),
        event_types: event_types.into_iter().collect(),
        produces,
        consumes,
        dependencies: wired
            .into_iter()
            .map(|((consumer, producer), (types, subs))| Dependency {
                consumer,
                producer,
                event_types: types.into_iter().collect(),
                subscriptions: subs.into_iter().collect(),
            })
            .collect(),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Shortens a label to `max` characters with an ellipsis.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

const ROW: f64 = 34.0;
const BOX_H: f64 = 24.0;
const BOX_W: f64 = 240.0;
const TOP: f64 = 56.0;
const COLS: [f64; 3] = [20.0, 400.0, 780.0];
/// Okabe–Ito: declared and wired, declared only, observed only.
const WIRED: &str = "#0072B2";
const DECLARED: &str = "#E69F00";
const OBSERVED: &str = "#009E73";

/// Draws the map as SVG: producers on the left, event types in the middle, consumers on
/// the right; a solid line is in the catalog (blue when events flow or a subscription
/// carries it, orange when only declared), a dashed green one is seen in the log or wired
/// by a subscription but not declared in the catalog.
pub fn svg(map: &EcosystemMap) -> String {
    let names: BTreeMap<&str, &MapSystem> =
        map.systems.iter().map(|s| (s.id.as_str(), s)).collect();
    let producers: Vec<&str> = map
        .produces
        .iter()
        .map(|l| l.system.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let consumers: Vec<&str> = map
        .consumes
        .iter()
        .map(|l| l.system.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = producers
        .len()
        .max(consumers.len())
        .max(map.event_types.len())
        .max(1);
    let width = COLS[2] + BOX_W + 20.0;
    let height = TOP + rows as f64 * ROW + 76.0;
    let y_of = |i: usize| TOP + i as f64 * ROW;
    let index = |list: &[&str], id: &str| list.iter().position(|x| *x == id);
    let types: Vec<&str> = map.event_types.iter().map(String::as_str).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-labelledby="map-title" font-family="DejaVu Sans, sans-serif" font-size="12">"#
    );
    out.push_str(
        r#"<title id="map-title">Who depends on whom: producers, event types, consumers</title>"#,
    );
    for (x, label) in [
        (COLS[0], "Producers"),
        (COLS[1], "Event types"),
        (COLS[2], "Consumers"),
    ] {
        let _ = write!(
            out,
            r#"<text x="{x}" y="30" font-size="14" font-weight="bold">{label}</text>"#
        );
    }
    if map.systems.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" fill="#555">Nothing yet: describe systems in the catalog, publish events or subscribe.</text>"##,
            COLS[0],
            TOP + 16.0
        );
    }
    let edge = |out: &mut String,
                x1: f64,
                y1: f64,
                x2: f64,
                y2: f64,
                colour: &str,
                dashed: bool,
                tip: &str| {
        let mid = (x1 + x2) / 2.0;
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}><title>{}</title></path>"#,
            escape(tip)
        );
    };
    let colour = |l: &Link| {
        let flows = l.events > 0 || !l.subscriptions.is_empty();
        match (l.declared, flows) {
            (true, true) => (WIRED, false),
            (true, false) => (DECLARED, false),
            (false, _) => (OBSERVED, true),
        }
    };
    for l in &map.produces {
        let (Some(p), Some(t)) = (index(&producers, &l.system), index(&types, &l.event_type))
        else {
            continue;
        };
        let (c, dashed) = colour(l);
        let tip = format!(
            "{} produces {}{}",
            l.system,
            l.event_type,
            if l.events > 0 {
                format!(" ({} events in the log)", l.events)
            } else {
                String::new()
            }
        );
        edge(
            &mut out,
            COLS[0] + BOX_W,
            y_of(p) + BOX_H / 2.0,
            COLS[1],
            y_of(t) + BOX_H / 2.0,
            c,
            dashed,
            &tip,
        );
    }
    for l in &map.consumes {
        let (Some(c_i), Some(t)) = (index(&consumers, &l.system), index(&types, &l.event_type))
        else {
            continue;
        };
        let (c, dashed) = colour(l);
        let tip = format!(
            "{} consumes {}{}",
            l.system,
            l.event_type,
            if l.subscriptions.is_empty() {
                " (declared, no subscription)".to_string()
            } else {
                format!(" through {}", l.subscriptions.join(", "))
            }
        );
        edge(
            &mut out,
            COLS[1] + BOX_W,
            y_of(t) + BOX_H / 2.0,
            COLS[2],
            y_of(c_i) + BOX_H / 2.0,
            c,
            dashed,
            &tip,
        );
    }
    let node = |out: &mut String, x: f64, y: f64, label: &str, tip: &str, fill: &str| {
        let _ = write!(
            out,
            r##"<g><title>{}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="{fill}" stroke="#333"/><text x="{}" y="{}">{}</text></g>"##,
            escape(tip),
            x + 8.0,
            y + 16.0,
            escape(&clip(label, 34))
        );
    };
    for (col, list) in [(COLS[0], &producers), (COLS[2], &consumers)] {
        for (i, id) in list.iter().enumerate() {
            let s = names.get(id);
            let in_catalog = s.is_some_and(|s| s.in_catalog);
            let label = s.map_or(*id, |s| s.name.as_str());
            let tip = if in_catalog {
                format!("{label} ({id})")
            } else {
                format!("{id}: not in the catalog")
            };
            node(
                &mut out,
                col,
                y_of(i),
                label,
                &tip,
                if in_catalog { "#ffffff" } else { "#f3f3f3" },
            );
        }
    }
    for (i, t) in types.iter().enumerate() {
        node(&mut out, COLS[1], y_of(i), t, t, "#eef5fb");
    }
    for (i, (c, dashed, label)) in [
        (
            WIRED,
            false,
            "declared, and events flow or a subscription carries them",
        ),
        (DECLARED, false, "declared in the catalog only"),
        (
            OBSERVED,
            true,
            "seen in the log or subscribed, not declared",
        ),
    ]
    .iter()
    .enumerate()
    {
        let y = height - 52.0 + i as f64 * 18.0;
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<line x1="20" y1="{y}" x2="48" y2="{y}" stroke="{c}" stroke-width="2"{dash}/><text x="56" y="{}" font-size="11">{label}</text>"#,
            y + 4.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{OrgKind, Organisation, System};
    use crate::filter::EventFilter;
    use crate::subscription::{RetryPolicy, TargetSpec};

    const MENU: &str = "it.prato.school.menu.Published";
    const PAID: &str = "it.prato.pagopa.Paid";

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        for o in ["comune", "mensa"] {
            c.put_organisation(Organisation {
                id: o.into(),
                name: format!("Org {o}"),
                kind: OrgKind::Office,
                ipa_code: None,
                description: None,
                contacts: vec![],
            });
        }
        let sys = |org: &str, id: &str, produces: &[&str], consumes: &[&str]| System {
            org: org.into(),
            id: id.into(),
            name: format!("{id} system"),
            owner: "someone".into(),
            description: None,
            contacts: vec![],
            produces: produces.iter().map(|s| s.to_string()).collect(),
            consumes: consumes.iter().map(|s| s.to_string()).collect(),
        };
        c.put_system(sys("mensa", "menu", &[MENU], &[]));
        c.put_system(sys("comune", "portal", &[], &[MENU, PAID]));
        c
    }

    fn sub(
        name: &str,
        owner: Option<&str>,
        system: Option<&str>,
        types: &[&str],
    ) -> SubscriptionSpec {
        SubscriptionSpec {
            name: name.into(),
            owner: owner.map(str::to_string),
            system: system.map(str::to_string),
            description: None,
            filter: EventFilter {
                types: types.iter().map(|s| s.to_string()).collect(),
                ..EventFilter::default()
            },
            transform: None,
            target: TargetSpec::Mqtt {
                topic: "bus/out".into(),
            },
            retry: RetryPolicy::default(),
            lanes: 1,
            paused: false,
        }
    }

    #[test]
    fn dependencies_come_from_the_catalog_the_log_and_the_subscriptions() {
        let observed = vec![
            Observed {
                source: "/mensa/menu".into(),
                event_type: MENU.into(),
                events: 12,
            },
            Observed {
                source: "/pagopa/nodo/ec".into(),
                event_type: PAID.into(),
                events: 3,
            },
            Observed {
                source: "not-a-path".into(),
                event_type: PAID.into(),
                events: 1,
            },
        ];
        let subs = vec![
            sub(
                "portal-menu",
                Some("comune"),
                Some("portal"),
                &["it.prato.school.*"],
            ),
            sub("audit-all", None, None, &[]),
        ];
        let map = build(&catalog(), &subs, &observed);
        let ids: Vec<&str> = map.systems.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "comune/portal",
                "mensa/menu",
                "pagopa/nodo",
                "subscription:audit-all"
            ]
        );
        assert!(!map.systems[2].in_catalog);
        assert_eq!(map.event_types, [PAID, MENU]);
        let menu = map
            .produces
            .iter()
            .find(|l| l.system == "mensa/menu")
            .unwrap();
        assert!(menu.declared);
        assert_eq!(menu.events, 12);
        let deps: Vec<(&str, &str, Vec<String>, Vec<String>)> = map
            .dependencies
            .iter()
            .map(|d| {
                (
                    d.consumer.as_str(),
                    d.producer.as_str(),
                    d.event_types.clone(),
                    d.subscriptions.clone(),
                )
            })
            .collect();
        assert_eq!(
            deps,
            [
                // Wired by its subscription.
                (
                    "comune/portal",
                    "mensa/menu",
                    vec![MENU.to_string()],
                    vec!["portal-menu".to_string()]
                ),
                // Declared (consumes PAID), no subscription yet.
                (
                    "comune/portal",
                    "pagopa/nodo",
                    vec![PAID.to_string()],
                    vec![]
                ),
                (
                    "subscription:audit-all",
                    "mensa/menu",
                    vec![MENU.to_string()],
                    vec!["audit-all".to_string()]
                ),
                (
                    "subscription:audit-all",
                    "pagopa/nodo",
                    vec![PAID.to_string()],
                    vec!["audit-all".to_string()]
                ),
            ]
        );
        let svg = svg(&map);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.ends_with("</svg>"));
        assert!(
            svg.contains(
                "mensa/menu produces it.prato.school.menu.Published (12 events in the log)"
            )
        );
        assert!(
            svg.contains("comune/portal consumes it.prato.pagopa.Paid (declared, no subscription)")
        );
        assert!(svg.contains("pagopa/nodo: not in the catalog"));
        assert_eq!(
            svg.matches("<path").count(),
            map.produces.len() + map.consumes.len()
        );
    }

    #[test]
    fn labels_are_escaped_and_an_empty_map_says_so() {
        let empty = svg(&EcosystemMap::default());
        assert!(empty.contains("Nothing yet"));
        let mut c = Catalog::default();
        c.put_organisation(Organisation {
            id: "o".into(),
            name: "O".into(),
            kind: OrgKind::Office,
            ipa_code: None,
            description: None,
            contacts: vec![],
        });
        c.put_system(System {
            org: "o".into(),
            id: "s".into(),
            name: "<script>&".into(),
            owner: "x".into(),
            description: None,
            contacts: vec![],
            produces: vec![MENU.into()],
            consumes: vec![],
        });
        let out = svg(&build(&c, &[], &[]));
        assert!(out.contains("&lt;script&gt;&amp;"));
        assert!(!out.contains("<script>"));
    }
}
