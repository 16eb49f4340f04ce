//! The module's tables beside `council_events`: one row per fact as it is recorded (a step
//! of an act, a session's change, an attendance, a vote...), in the lake's conventions. They
//! are what the SQL views of `sql/council/*.sql` read; later records of the same thing (a
//! corrected attendance) are new rows, and the views take the latest.

use arrow::datatypes::{DataType, Schema, SchemaRef};
pub use civiclake_core::rows::{Rows, V};
use civiclake_core::{field_column, tag_column, time_column};
use std::sync::Arc;

/// Acts as drafted and as filed (with their number): the latest row per act is current.
pub const ACTS: &str = "council_act_records";
/// One row per step of an act's iter.
pub const STEPS: &str = "council_act_steps";
/// Sessions: one row per change of status (scheduled, convened, held, cancelled); `time`
/// is when it was recorded, `version` orders the rows of a session.
pub const SESSIONS: &str = "council_session_records";
/// Agenda items and their outcomes.
pub const ITEMS: &str = "council_agenda_items";
/// Attendance as recorded (the latest per session and councillor counts).
pub const ATTENDANCE: &str = "council_attendance_records";
/// Votes, one row each.
pub const VOTES: &str = "council_votes";
/// Roll-call votes, one row per member.
pub const BALLOTS: &str = "council_ballots";
/// Councillors as registered or changed (no fiscal code: that stays in the events).
pub const COUNCILLORS: &str = "council_councillor_records";
/// Seats in committees (a councillor's group at the time).
pub const MEMBERS: &str = "council_members";
/// Fee rates per committee with their validity (`YYYY-MM-DD`, `time` when set).
pub const FEE_RATES: &str = "council_fee_rates";
/// The fee policy as set (the row of the highest `version`, the settings stream's, holds).
pub const FEE_POLICY: &str = "council_fee_policy";

fn f(name: &str, t: DataType) -> arrow::datatypes::Field {
    field_column(name, t)
}

/// The tables and their schemas (the server makes sure they exist at start).
pub fn tables() -> Vec<(&'static str, SchemaRef)> {
    use DataType::{Boolean, Int64, Utf8};
    let ts = || DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    let s = |cols: Vec<arrow::datatypes::Field>| Arc::new(Schema::new(cols));
    vec![
        (
            ACTS,
            s(vec![
                time_column(),
                tag_column("act_id"),
                tag_column("kind"),
                tag_column("initiative"),
                tag_column("first_signer"),
                tag_column("group"),
                f("subject", Utf8),
                f("number", Int64),
                f("year", Int64),
                f("amends", Utf8),
                f("signatures", Int64),
                f("drafted_at", ts()),
            ]),
        ),
        (
            STEPS,
            s(vec![
                time_column(),
                tag_column("act_id"),
                tag_column("kind"),
                tag_column("from_status"),
                tag_column("to_status"),
                tag_column("body"),
                tag_column("committee_id"),
                f("version", Int64),
                f("session_id", Utf8),
                f("item", Int64),
                f("role", Utf8),
                f("resolution_number", Utf8),
                f("note", Utf8),
            ]),
        ),
        (
            SESSIONS,
            s(vec![
                time_column(),
                tag_column("session_id"),
                tag_column("committee_id"),
                tag_column("status"),
                f("version", Int64),
                f("year", Int64),
                f("number", Int64),
                f("first_call", ts()),
                f("started", ts()),
                f("ended", ts()),
                f("public", Boolean),
                f("online", Boolean),
                f("local_day", Utf8),
                f("month", Utf8),
            ]),
        ),
        (
            ITEMS,
            s(vec![
                time_column(),
                tag_column("session_id"),
                tag_column("committee_id"),
                tag_column("kind"),
                f("item", Int64),
                f("title", Utf8),
                f("acts", Utf8),
                f("late", Boolean),
                f("outcome", Utf8),
                f("discussion_start", ts()),
                f("discussion_end", ts()),
            ]),
        ),
        (
            ATTENDANCE,
            s(vec![
                time_column(),
                tag_column("session_id"),
                tag_column("committee_id"),
                tag_column("councillor_id"),
                tag_column("group"),
                tag_column("presence"),
                tag_column("mode"),
                f("substitute_of", Utf8),
                f("arrival", ts()),
                f("leave", ts()),
                f("local_day", Utf8),
                f("month", Utf8),
                f("version", Int64),
            ]),
        ),
        (
            VOTES,
            s(vec![
                time_column(),
                tag_column("session_id"),
                tag_column("committee_id"),
                tag_column("kind"),
                tag_column("outcome"),
                f("vote", Int64),
                f("item", Int64),
                f("acts", Utf8),
                f("subject", Utf8),
                f("present", Int64),
                f("voting", Int64),
                f("yes", Int64),
                f("no", Int64),
                f("abstained", Int64),
                f("quorum", Int64),
                f("quorum_reached", Boolean),
            ]),
        ),
        (
            BALLOTS,
            s(vec![
                time_column(),
                tag_column("session_id"),
                tag_column("committee_id"),
                tag_column("councillor_id"),
                tag_column("group"),
                tag_column("ballot"),
                f("vote", Int64),
                f("item", Int64),
            ]),
        ),
        (
            COUNCILLORS,
            s(vec![
                time_column(),
                tag_column("councillor_id"),
                tag_column("group"),
                f("name", Utf8),
                f("term", Utf8),
                f("from", Utf8),
                f("to", Utf8),
                f("version", Int64),
            ]),
        ),
        (
            MEMBERS,
            s(vec![
                time_column(),
                tag_column("committee_id"),
                tag_column("councillor_id"),
                tag_column("group"),
                tag_column("role"),
                f("substitute_of", Utf8),
                f("seated_to", ts()),
            ]),
        ),
        (
            FEE_RATES,
            s(vec![
                time_column(),
                tag_column("committee_id"),
                f("valid_from", Utf8),
                f("valid_to", Utf8),
                f("rate_cents", Int64),
                f("version", Int64),
            ]),
        ),
        (
            FEE_POLICY,
            s(vec![
                time_column(),
                f("same_day_once", Boolean),
                f("monthly_cap_cents", Int64),
                f("version", Int64),
            ]),
        ),
    ]
}

/// The schema of `table` (empty for another name).
pub fn schema_of(table: &str) -> SchemaRef {
    tables()
        .into_iter()
        .find(|(name, _)| *name == table)
        .map_or_else(|| Arc::new(Schema::empty()), |(_, s)| s)
}

/// A row builder for `table`.
pub fn rows(table: &str) -> Rows {
    Rows::new(schema_of(table))
}

/// A view of the module, read from `sql/council/*.sql`: its name, SQL, the tables it
/// reads and what it answers (the file's `-- view:`, `-- tables:` and `-- description:`
/// header lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub name: String,
    pub sql: String,
    pub tables: Vec<String>,
    pub description: String,
}

/// The SQL files of the views, in the order they are registered.
const VIEW_FILES: [(&str, &str); 7] = [
    ("acts.sql", include_str!("../../../sql/council/acts.sql")),
    ("iter.sql", include_str!("../../../sql/council/iter.sql")),
    (
        "sessions.sql",
        include_str!("../../../sql/council/sessions.sql"),
    ),
    (
        "attendance.sql",
        include_str!("../../../sql/council/attendance.sql"),
    ),
    ("fees.sql", include_str!("../../../sql/council/fees.sql")),
    ("stats.sql", include_str!("../../../sql/council/stats.sql")),
    (
        "dissent.sql",
        include_str!("../../../sql/council/dissent.sql"),
    ),
];

/// Reads a view file: header lines `-- view: name`, `-- tables: a, b`,
/// `-- description: ...`, then the SQL.
pub fn parse_view(file: &str, text: &str) -> Result<View, String> {
    let mut name = None;
    let mut tables = None;
    let mut description = None;
    let mut sql = String::new();
    for line in text.lines() {
        let header = line.strip_prefix("-- ").and_then(|l| l.split_once(':'));
        match header {
            Some(("view", v)) => name = Some(v.trim().to_string()),
            Some(("tables", v)) => {
                tables = Some(
                    v.split(',')
                        .map(|t| t.trim().to_string())
                        .collect::<Vec<_>>(),
                )
            }
            Some(("description", v)) => description = Some(v.trim().to_string()),
            _ if line.starts_with("--") => {}
            _ => {
                sql.push_str(line);
                sql.push('\n');
            }
        }
    }
    let need = |what: &str| format!("{file}: no '-- {what}:' line");
    let sql = sql.trim().trim_end_matches(';').to_string();
    if sql.is_empty() {
        return Err(format!("{file}: no SQL"));
    }
    Ok(View {
        name: name.ok_or_else(|| need("view"))?,
        sql,
        tables: tables.ok_or_else(|| need("tables"))?,
        description: description.ok_or_else(|| need("description"))?,
    })
}

/// The module's views.
pub fn views() -> Result<Vec<View>, String> {
    VIEW_FILES
        .iter()
        .map(|(file, text)| parse_view(file, text))
        .collect()
}
