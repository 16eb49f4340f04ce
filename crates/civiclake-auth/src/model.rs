//! Permissions, roles and principals: what a token may do.
//!
//! A role is data: a named set of permissions with the tables and topics it reaches by
//! default and the columns it sees masked. The shipped roles are defined here; the store in
//! the data directory may redefine them or add new ones.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One thing a principal may do. Each endpoint asks for one permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Everything: tokens, roles, maintenance, every table including system tables.
    Admin,
    /// Read-only SQL over the granted tables (`/api/v1/query`, the catalog).
    Query,
    /// Write rows into the granted tables (`/api/v1/write`, `/write`).
    Write,
    /// Publish to the granted topics (MQTT, Kafka, in-process).
    Publish,
    /// View dashboards and pages over the granted tables.
    Dashboards,
    /// Read `/metrics` (Prometheus).
    Metrics,
    /// Manage council sessions, agendas, proposals, votes and minutes.
    CouncilManage,
    /// Read council business, vote and attend as a councillor.
    CouncilRead,
    /// Manage school services: enrolments, diets, fares, lines, trips.
    SchoolManage,
    /// Record daily school operations: canteen presence, boardings.
    SchoolStaff,
    /// Operate kiosks: availability, incidents, locations.
    KioskOperate,
    /// Be a kiosk: send telemetry and transactions for itself.
    KioskDevice,
    /// See and act on the school services of one's own children (`subject` = fiscal code).
    Guardian,
    /// See one's own data and take part in public consultations (`subject` = fiscal code).
    Citizen,
    /// Run the interoperability bus: catalog, schemas, subscriptions, replays, dead letters.
    BusAdmin,
    /// Act on the bus for one organisation (`org` of the token): describe its systems and
    /// endpoints, register the schemas of the types they produce, run its subscriptions.
    BusMember,
}

impl Permission {
    /// Every permission, in order.
    pub const ALL: [Permission; 16] = [
        Permission::Admin,
        Permission::Query,
        Permission::Write,
        Permission::Publish,
        Permission::Dashboards,
        Permission::Metrics,
        Permission::CouncilManage,
        Permission::CouncilRead,
        Permission::SchoolManage,
        Permission::SchoolStaff,
        Permission::KioskOperate,
        Permission::KioskDevice,
        Permission::Guardian,
        Permission::Citizen,
        Permission::BusAdmin,
        Permission::BusMember,
    ];

    /// The kebab-case name used in files and the API.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::Query => "query",
            Permission::Write => "write",
            Permission::Publish => "publish",
            Permission::Dashboards => "dashboards",
            Permission::Metrics => "metrics",
            Permission::CouncilManage => "council-manage",
            Permission::CouncilRead => "council-read",
            Permission::SchoolManage => "school-manage",
            Permission::SchoolStaff => "school-staff",
            Permission::KioskOperate => "kiosk-operate",
            Permission::KioskDevice => "kiosk-device",
            Permission::Guardian => "guardian",
            Permission::Citizen => "citizen",
            Permission::BusAdmin => "bus-admin",
            Permission::BusMember => "bus-member",
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A role: a named set of permissions with default grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Name (lowercase, `-` allowed), e.g. `analyst`.
    pub name: String,
    /// What the role is for.
    #[serde(default)]
    pub description: String,
    /// What it may do.
    pub permissions: BTreeSet<Permission>,
    /// Table globs it reaches when a token names none (`*` = every non-system table).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Topic filters it may publish to when a token names none (MQTT syntax).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Columns shown masked, as `table_glob.column_glob` (e.g. `*.fiscal_code`).
    #[serde(default)]
    pub mask: Vec<String>,
    /// Whether a token of this role must name its tables (`--tables`).
    #[serde(default)]
    pub requires_tables: bool,
    /// Whether a token of this role must name its organisation on the bus (`--org`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_org: bool,
}

impl Role {
    fn shipped(
        name: &str,
        description: &str,
        permissions: &[Permission],
        tables: &[&str],
        topics: &[&str],
        mask: &[&str],
        requires_tables: bool,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            permissions: permissions.iter().copied().collect(),
            tables: tables.iter().map(|s| s.to_string()).collect(),
            topics: topics.iter().map(|s| s.to_string()).collect(),
            mask: mask.iter().map(|s| s.to_string()).collect(),
            requires_tables,
            requires_org: false,
        }
    }

    fn requiring_org(mut self) -> Self {
        self.requires_org = true;
        self
    }

    /// Checks the role's fields.
    pub fn validate(&self) -> Result<(), String> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(format!(
                "invalid role name {:?}: use 1-64 lowercase letters, digits or '-'",
                self.name
            ));
        }
        for g in self.tables.iter().chain(&self.topics) {
            validate_glob(g)?;
        }
        for m in &self.mask {
            if m.split_once('.').is_none() {
                return Err(format!(
                    "invalid mask {m:?}: write table_glob.column_glob, e.g. *.fiscal_code"
                ));
            }
        }
        Ok(())
    }
}

/// Columns masked for every role but admin unless a role says otherwise: personal data.
pub const PERSONAL_DATA_MASK: [&str; 7] = [
    "*.fiscal_code",
    "*.*_fiscal_code",
    "*.email",
    "*.phone",
    "*.iban",
    "*.address",
    "*.isee*",
];

/// Sensor tables published as open data by the `public` role (edit the role to change).
pub const PUBLIC_TABLES: [&str; 6] = [
    "air*", "noise*", "traffic*", "parking*", "waste*", "weather*",
];

/// The roles civiclake ships with.
pub fn shipped_roles() -> Vec<Role> {
    use Permission::*;
    let mask = &PERSONAL_DATA_MASK;
    vec![
        Role::shipped(
            "admin",
            "Everything: tokens, roles, maintenance, all tables",
            &Permission::ALL,
            &["*", "_*"],
            &["#"],
            &[],
            false,
        ),
        Role::shipped(
            "analyst",
            "Read-only SQL over the lake; personal data masked",
            &[Query, Dashboards],
            &["*"],
            &[],
            mask,
            false,
        ),
        Role::shipped(
            "planner",
            "Dashboards over the lake",
            &[Dashboards],
            &["*"],
            &[],
            mask,
            false,
        ),
        Role::shipped(
            "gateway",
            "A sensor gateway: writes the given tables, publishes to the given topics",
            &[Write, Publish],
            &[],
            &["ingest/#"],
            &[],
            true,
        ),
        Role::shipped(
            "service",
            "Another service: reads the given tables through the API",
            &[Query],
            &[],
            &[],
            mask,
            true,
        ),
        Role::shipped(
            "council-secretariat",
            "Council secretariat: sessions, agendas, proposals, minutes",
            &[CouncilManage, CouncilRead, Query, Dashboards],
            &["council_*"],
            &[],
            &[],
            false,
        ),
        Role::shipped(
            "councillor",
            "A councillor: council business, votes, attendance",
            &[CouncilRead, Dashboards],
            &["council_*"],
            &[],
            mask,
            false,
        ),
        Role::shipped(
            "school-office",
            "School services office: canteen, transport, trips, fares",
            &[SchoolManage, SchoolStaff, Query, Dashboards],
            &["school_*"],
            &[],
            &[],
            false,
        ),
        Role::shipped(
            "school-staff",
            "School staff: daily presence and boardings",
            &[SchoolStaff],
            &["school_*"],
            &[],
            mask,
            false,
        ),
        Role::shipped(
            "kiosk-operator",
            "Kiosk operator: availability, incidents, usage and revenue",
            &[KioskOperate, Query, Dashboards],
            &["kiosk_*"],
            &[],
            mask,
            false,
        ),
        Role::shipped(
            "kiosk-device",
            "A kiosk: telemetry and transactions of itself",
            &[KioskDevice, Publish],
            &[],
            &["devices/kiosk/{subject}/#"],
            &[],
            false,
        ),
        Role::shipped(
            "guardian",
            "A parent or guardian: their children's school services (subject = fiscal code)",
            &[Guardian],
            &[],
            &[],
            &[],
            false,
        ),
        Role::shipped(
            "citizen",
            "A citizen: their own data and public participation (subject = fiscal code)",
            &[Citizen],
            &[],
            &[],
            &[],
            false,
        ),
        Role::shipped(
            "bus-operator",
            "Runs the interoperability bus: catalog, schemas, subscriptions, replays, dead letters",
            &[BusAdmin, Publish, Query, Dashboards],
            &["bus_*"],
            &["bus/#"],
            &[],
            false,
        ),
        Role::shipped(
            "bus-publisher",
            "A system on the bus: publishes events under the topics its token names (bus/<organisation>/#)",
            &[Publish],
            &[],
            &[],
            &[],
            false,
        ),
        Role::shipped(
            "bus-member",
            "An organisation on the bus (the token names it): publishes under bus/<organisation>/#, describes its systems and endpoints, registers the schemas of the types they produce, runs its own subscriptions",
            &[BusMember, Publish],
            &[],
            &[],
            &[],
            false,
        )
        .requiring_org(),
        Role::shipped(
            "public",
            "Anyone: read-only open data",
            &[Query, Dashboards],
            &PUBLIC_TABLES,
            &[],
            mask,
            false,
        ),
    ]
}

/// Who is making a request, and what they may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Id of the token (None for the demo's anonymous principal).
    pub token_id: Option<String>,
    /// Role name.
    pub role: String,
    /// What it may do.
    pub permissions: BTreeSet<Permission>,
    /// Table globs it reaches.
    pub tables: Vec<String>,
    /// Topic filters it may publish to.
    pub topics: Vec<String>,
    /// Masked columns (`table_glob.column_glob`).
    pub mask: Vec<String>,
    /// The person the token is for (a fiscal code), for guardian and citizen tokens.
    pub subject: Option<String>,
    /// The organisation of the bus the token acts for (bus-member tokens).
    pub org: Option<String>,
}

impl Principal {
    /// A principal with every permission: used when auth is off (`--insecure-no-auth`, loopback
    /// only) and for local tools working on the data directory directly.
    pub fn unrestricted() -> Self {
        let admin = shipped_roles()
            .into_iter()
            .next()
            .map(|r| r.permissions)
            .unwrap_or_default();
        Self {
            token_id: None,
            role: "admin".into(),
            permissions: admin,
            tables: vec!["*".into(), "_*".into()],
            topics: vec!["#".into()],
            mask: Vec::new(),
            subject: None,
            org: None,
        }
    }

    /// Builds the principal of a token of `role`, with the token's own grants if any.
    pub fn of_role(
        role: &Role,
        token_id: Option<String>,
        tables: Option<&[String]>,
        topics: Option<&[String]>,
        subject: Option<String>,
        org: Option<String>,
    ) -> Self {
        Self {
            token_id,
            role: role.name.clone(),
            permissions: role.permissions.clone(),
            tables: tables.map_or_else(|| role.tables.clone(), <[String]>::to_vec),
            topics: topics
                .map_or_else(|| role.topics.clone(), <[String]>::to_vec)
                .into_iter()
                .filter_map(|t| with_subject(&t, subject.as_deref()))
                .collect(),
            mask: role.mask.clone(),
            subject,
            org,
        }
    }

    /// Whether it has `permission` (admin has all).
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(&Permission::Admin) || self.permissions.contains(&permission)
    }

    /// Whether it is an administrator.
    pub fn is_admin(&self) -> bool {
        self.permissions.contains(&Permission::Admin)
    }

    /// Whether `table` is within its grants. A glob that does not start with `_` never
    /// reaches a system table (a name starting with `_`), as `*` in a shell skips dotfiles.
    pub fn reaches_table(&self, table: &str) -> bool {
        if self.is_admin() {
            return true;
        }
        self.tables.iter().any(|g| table_glob_matches(g, table))
    }

    /// Whether column `column` of `table` is shown masked to it.
    pub fn masks(&self, table: &str, column: &str) -> bool {
        self.mask.iter().any(|m| match m.split_once('.') {
            Some((t, c)) => glob_matches(t, table) && glob_matches(c, column),
            None => false,
        })
    }

    /// Whether it may publish to `topic` (MQTT filter semantics on its topic grants).
    pub fn may_publish(&self, topic: &str) -> bool {
        if !self.can(Permission::Publish) {
            return false;
        }
        self.topics.iter().any(|f| topic_filter_matches(f, topic))
    }
}

/// The place of the token's subject in a role's topic filter: `devices/kiosk/{subject}/#`
/// grants a kiosk's token its own topics only.
pub const SUBJECT_PLACEHOLDER: &str = "{subject}";

/// Whether `subject` can stand for [`SUBJECT_PLACEHOLDER`] in a topic filter: one topic level,
/// no wildcards.
pub fn valid_topic_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= 64
        && subject
            .chars()
            .all(|c| !c.is_control() && !matches!(c, '/' | '+' | '#' | ',' | ' ' | '{' | '}'))
}

/// A topic filter with the subject in place of [`SUBJECT_PLACEHOLDER`]; None (no grant) when
/// the filter needs a subject and there is none fit for a topic level.
fn with_subject(filter: &str, subject: Option<&str>) -> Option<String> {
    if !filter.contains(SUBJECT_PLACEHOLDER) {
        return Some(filter.to_string());
    }
    let subject = subject.filter(|s| valid_topic_subject(s))?;
    Some(filter.replace(SUBJECT_PLACEHOLDER, subject))
}

fn validate_glob(g: &str) -> Result<(), String> {
    if g.is_empty() || g.len() > 256 || g.chars().any(|c| c.is_control() || c == ',') {
        return Err(format!(
            "invalid grant {g:?}: use names with * and ? wildcards"
        ));
    }
    Ok(())
}

/// A table glob matched against a table name, with the system-table rule.
pub fn table_glob_matches(glob: &str, table: &str) -> bool {
    if table.starts_with('_') && !glob.starts_with('_') {
        return false;
    }
    glob_matches(glob, table)
}

/// Shell-style glob: `*` any run of characters, `?` one character.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut gi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == n[ni]) {
            gi += 1;
            ni += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ni));
            gi += 1;
        } else if let Some((sg, sn)) = star {
            gi = sg + 1;
            ni = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// MQTT topic-filter matching (`+` one level, `#` the rest).
pub fn topic_filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("air_*", "air_quality"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a?r", "air"));
        assert!(!glob_matches("air_*", "noise"));
        assert!(glob_matches("*.fiscal_code", "*.fiscal_code"));
        assert!(glob_matches("*_fiscal_code", "guardian_fiscal_code"));
        assert!(!glob_matches("*_fiscal_code", "fiscal_code"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn system_tables_need_an_explicit_underscore_glob() {
        assert!(!table_glob_matches("*", "_tokens"));
        assert!(table_glob_matches("_*", "_tokens"));
        assert!(table_glob_matches("*", "air"));
    }

    #[test]
    fn a_kiosk_token_publishes_for_itself_only() {
        let roles = shipped_roles();
        let device = roles
            .iter()
            .find(|r| r.name == "kiosk-device")
            .expect("role");
        let k07 = Principal::of_role(device, None, None, None, Some("K07".into()), None);
        assert_eq!(k07.topics, vec!["devices/kiosk/K07/#".to_string()]);
        assert!(topic_filter_matches(
            &k07.topics[0],
            "devices/kiosk/K07/heartbeat"
        ));
        assert!(!topic_filter_matches(
            &k07.topics[0],
            "devices/kiosk/K08/heartbeat"
        ));
        // Without a subject (or with one that is not a topic level) it publishes nowhere.
        let none = Principal::of_role(device, None, None, None, None, None);
        assert!(none.topics.is_empty());
        let wild = Principal::of_role(device, None, None, None, Some("+".into()), None);
        assert!(wild.topics.is_empty());
        assert!(!valid_topic_subject("a/b"));
        assert!(valid_topic_subject("K07"));
    }

    #[test]
    fn topic_filters() {
        assert!(topic_filter_matches("ingest/#", "ingest/air/s1"));
        assert!(topic_filter_matches(
            "devices/kiosk/+/heartbeat",
            "devices/kiosk/k7/heartbeat"
        ));
        assert!(!topic_filter_matches(
            "devices/kiosk/+/heartbeat",
            "devices/kiosk/k7/tx"
        ));
        assert!(!topic_filter_matches("ingest/#", "bus/x"));
    }

    #[test]
    fn every_shipped_role_is_valid_and_named_once() {
        let roles = shipped_roles();
        let names: BTreeSet<_> = roles.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names.len(), roles.len());
        assert_eq!(roles.len(), 17);
        for r in &roles {
            r.validate().expect("valid");
        }
        for required in [
            "admin",
            "analyst",
            "planner",
            "gateway",
            "service",
            "council-secretariat",
            "councillor",
            "school-office",
            "school-staff",
            "kiosk-operator",
            "kiosk-device",
            "guardian",
            "citizen",
            "public",
            "bus-operator",
            "bus-publisher",
        ] {
            assert!(names.contains(required), "{required}");
        }
    }

    #[test]
    fn principals_reach_what_their_grants_say() {
        let roles = shipped_roles();
        let analyst = roles.iter().find(|r| r.name == "analyst").expect("analyst");
        let narrowed = Principal::of_role(analyst, None, Some(&["air_*".into()]), None, None, None);
        assert!(narrowed.reaches_table("air_quality"));
        assert!(!narrowed.reaches_table("noise"));
        assert!(!narrowed.reaches_table("_checkpoints"));
        assert!(narrowed.can(Permission::Query));
        assert!(!narrowed.can(Permission::Write));
        assert!(narrowed.masks("school_pupils", "guardian_fiscal_code"));
        assert!(!narrowed.masks("air", "pm25"));
        let admin = Principal::unrestricted();
        assert!(admin.reaches_table("_checkpoints"));
        assert!(admin.can(Permission::Guardian));
        let gateway = roles.iter().find(|r| r.name == "gateway").expect("gateway");
        let g = Principal::of_role(gateway, None, Some(&["air".into()]), None, None, None);
        assert!(g.may_publish("ingest/air/s1"));
        assert!(!g.may_publish("bus/council/x"));
    }
}
