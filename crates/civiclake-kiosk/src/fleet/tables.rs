//! The fleet's tables (read models and facts beside `kiosk_events`) and its SQL views.
//!
//! Every table follows the lake's conventions: a `time` column, tags (dictionary strings)
//! and fields. The views are the module's statistics; the dashboard `kiosk` reads them.

use arrow::datatypes::{DataType, Schema, SchemaRef};
use civiclake_core::{field_column, tag_column, time_column};
use std::sync::Arc;

/// One row per transaction (its `time` is when the kiosk says it started).
pub const TRANSACTIONS: &str = "kiosk_transactions";
/// One row per notice paid by a payment transaction.
pub const NOTICES: &str = "kiosk_transaction_notices";
/// Heartbeats rolled up per kiosk and minute (the beats themselves are not kept).
pub const HEARTBEATS: &str = "kiosk_heartbeats_1m";
/// Every change of a kiosk's state: online, offline, a peripheral's status.
pub const STATUS_CHANGES: &str = "kiosk_status_changes";
/// The registry as rows: one per registration or update of a kiosk.
pub const REGISTRY: &str = "kiosk_registry";
/// Per kiosk and day (Europe/Rome): minutes it should have been open, minutes of those it
/// was offline.
pub const AVAILABILITY: &str = "kiosk_availability_daily";
/// Heartbeats and transactions refused, with the reason (the module's dead letters).
pub const REFUSED: &str = "kiosk_refused";
/// The comune's collections through its other channels, per month (imported).
pub const COLLECTIONS: &str = "kiosk_channel_collections";

fn schema(columns: Vec<arrow::datatypes::Field>) -> SchemaRef {
    Arc::new(Schema::new(columns))
}

fn f(name: &str, t: DataType) -> arrow::datatypes::Field {
    field_column(name, t)
}

/// The fleet's tables and their schemas (the server makes sure they exist at start, so the
/// views and dashboards work before the first row).
pub fn tables() -> Vec<(&'static str, SchemaRef)> {
    use DataType::{Boolean, Float64, Int64, Utf8};
    vec![
        (
            TRANSACTIONS,
            schema(vec![
                time_column(),
                tag_column("kiosk_id"),
                tag_column("service"),
                tag_column("kind"),
                tag_column("method"),
                tag_column("outcome"),
                tag_column("via"),
                f("transaction_id", Utf8),
                f("amount_cents", Int64),
                f("duration_s", Float64),
                f("notices", Int64),
                f("office", Utf8),
                f("call_s", Float64),
                f("pages", Int64),
            ]),
        ),
        (
            NOTICES,
            schema(vec![
                time_column(),
                tag_column("kiosk_id"),
                tag_column("creditor"),
                tag_column("outcome"),
                f("transaction_id", Utf8),
                f("notice_number", Utf8),
                f("amount_cents", Int64),
            ]),
        ),
        (
            HEARTBEATS,
            schema(vec![
                time_column(),
                tag_column("kiosk_id"),
                f("beats", Int64),
                f("peripheral_faults", Int64),
                f("software_version", Utf8),
            ]),
        ),
        (
            STATUS_CHANGES,
            schema(vec![
                time_column(),
                tag_column("kiosk_id"),
                tag_column("change"),
                tag_column("peripheral"),
                f("status", Utf8),
                f("fault", Boolean),
                f("online", Boolean),
            ]),
        ),
        (
            REGISTRY,
            schema(vec![
                time_column(),
                tag_column("kiosk_id"),
                tag_column("host_site"),
                f("name", Utf8),
                f("lon", Float64),
                f("lat", Float64),
                f("services", Utf8),
                f("peripherals", Utf8),
                f("software_version", Utf8),
                f("retired", Boolean),
            ]),
        ),
        (
            AVAILABILITY,
            schema(vec![
                time_column(),
                tag_column("kiosk_id"),
                f("open_minutes", Float64),
                f("down_minutes", Float64),
            ]),
        ),
        (
            REFUSED,
            schema(vec![
                time_column(),
                tag_column("kiosk_id"),
                tag_column("what"),
                tag_column("via"),
                f("field", Utf8),
                f("reason", Utf8),
                f("payload", Utf8),
            ]),
        ),
        (
            COLLECTIONS,
            schema(vec![
                time_column(),
                tag_column("channel"),
                f("amount_cents", Int64),
                f("transactions", Int64),
            ]),
        ),
    ]
}

/// The schema of one of [`tables`].
pub(crate) fn schema_of(table: &str) -> SchemaRef {
    tables()
        .into_iter()
        .find(|(name, _)| *name == table)
        .map(|(_, s)| s)
        .unwrap_or_else(|| Arc::new(Schema::empty()))
}

pub(crate) use civiclake_core::rows::{Rows, V};

/// A row builder for `table`, one of [`tables`].
pub(crate) fn rows(table: &str) -> Rows {
    Rows::new(schema_of(table))
}

/// A view of the module: its name, SQL, the tables it reads and what it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub name: &'static str,
    pub sql: String,
    pub tables: Vec<&'static str>,
    pub description: &'static str,
}

/// The fleet's statistics as SQL views (days and months are UTC).
pub fn views() -> Vec<View> {
    let per = |unit: &str| {
        format!(
            "SELECT date_trunc('{unit}', time) AS time, kiosk_id, service, kind, \
             count(*) AS transactions, \
             count(*) FILTER (WHERE outcome = 'completed') AS completed, \
             count(*) FILTER (WHERE outcome <> 'completed') AS not_completed, \
             coalesce(sum(amount_cents) FILTER (WHERE outcome = 'completed'), 0) AS revenue_cents, \
             avg(duration_s) AS mean_duration_s \
             FROM {TRANSACTIONS} GROUP BY 1, 2, 3, 4"
        )
    };
    vec![
        View {
            name: "kiosk_transactions_hourly",
            sql: per("hour"),
            tables: vec![TRANSACTIONS],
            description: "Transactions per kiosk, service and hour: count, completed, revenue (cents) and mean duration",
        },
        View {
            name: "kiosk_transactions_daily",
            sql: per("day"),
            tables: vec![TRANSACTIONS],
            description: "Transactions per kiosk, service and day (UTC): count, completed, revenue (cents) and mean duration",
        },
        View {
            name: "kiosk_revenue_monthly",
            sql: format!(
                "SELECT date_trunc('month', time) AS time, kiosk_id, \
                 count(*) FILTER (WHERE kind = 'payment' AND outcome = 'completed') AS payments, \
                 coalesce(sum(notices) FILTER (WHERE kind = 'payment' AND outcome = 'completed'), 0) AS notices_paid, \
                 coalesce(sum(amount_cents) FILTER (WHERE outcome = 'completed'), 0) AS revenue_cents, \
                 count(*) AS transactions \
                 FROM {TRANSACTIONS} GROUP BY 1, 2"
            ),
            tables: vec![TRANSACTIONS],
            description: "Per kiosk and month: completed payments, notices paid, revenue (cents), all transactions",
        },
        View {
            name: "kiosk_revenue_share",
            sql: format!(
                "WITH k AS (SELECT date_trunc('month', time) AS month, \
                   coalesce(sum(amount_cents) FILTER (WHERE kind = 'payment' AND outcome = 'completed'), 0) AS kiosk_cents, \
                   count(*) FILTER (WHERE kind = 'payment' AND outcome = 'completed') AS kiosk_payments \
                   FROM {TRANSACTIONS} GROUP BY 1), \
                 o AS (SELECT date_trunc('month', time) AS month, sum(amount_cents) AS other_cents, \
                   sum(transactions) AS other_payments \
                   FROM {COLLECTIONS} WHERE channel <> 'kiosk' GROUP BY 1) \
                 SELECT k.month AS time, k.kiosk_cents, k.kiosk_payments, o.other_cents, o.other_payments, \
                   CAST(k.kiosk_cents AS DOUBLE) / CAST(k.kiosk_cents + o.other_cents AS DOUBLE) AS revenue_share, \
                   CAST(k.kiosk_payments AS DOUBLE) / CAST(k.kiosk_payments + o.other_payments AS DOUBLE) AS payment_share \
                 FROM k JOIN o ON k.month = o.month"
            ),
            tables: vec![TRANSACTIONS, COLLECTIONS],
            description: "Per month: the kiosks' collections against the other channels' (imported in kiosk_channel_collections), as shares of revenue and of payments",
        },
        View {
            name: "kiosk_availability_monthly",
            sql: format!(
                "SELECT date_trunc('month', time) AS time, kiosk_id, \
                 sum(open_minutes) AS open_minutes, sum(down_minutes) AS down_minutes, \
                 CASE WHEN sum(open_minutes) > 0 THEN 1.0 - sum(down_minutes) / sum(open_minutes) END AS availability \
                 FROM {AVAILABILITY} GROUP BY 1, 2"
            ),
            tables: vec![AVAILABILITY],
            description: "Per kiosk and month: 1 − minutes offline within opening hours / opening minutes (from the finished days)",
        },
        View {
            name: "kiosk_peripheral_faults",
            sql: format!(
                "SELECT date_trunc('day', time) AS time, kiosk_id, peripheral, status, count(*) AS faults \
                 FROM {STATUS_CHANGES} WHERE change = 'peripheral' AND fault GROUP BY 1, 2, 3, 4"
            ),
            tables: vec![STATUS_CHANGES],
            description: "Per kiosk, peripheral and day: how many times it went into a fault status (offline, not-ready, disconnected)",
        },
        View {
            name: "kiosk_video_calls",
            sql: format!(
                "SELECT date_trunc('month', time) AS time, kiosk_id, office, count(*) AS calls, \
                 count(*) FILTER (WHERE outcome = 'completed') AS completed, \
                 coalesce(sum(call_s), 0) / 60.0 AS call_minutes \
                 FROM {TRANSACTIONS} WHERE kind = 'video_call' GROUP BY 1, 2, 3"
            ),
            tables: vec![TRANSACTIONS],
            description: "Video calls with an office per kiosk and month: calls, completed, minutes of call",
        },
        View {
            name: "kiosk_current",
            sql: format!(
                "SELECT kiosk_id, last_value(name ORDER BY time) AS name, \
                 last_value(host_site ORDER BY time) AS host_site, \
                 last_value(lon ORDER BY time) AS lon, last_value(lat ORDER BY time) AS lat, \
                 last_value(services ORDER BY time) AS services, \
                 last_value(software_version ORDER BY time) AS software_version, \
                 max(time) AS updated \
                 FROM {REGISTRY} GROUP BY kiosk_id HAVING NOT last_value(retired ORDER BY time)"
            ),
            tables: vec![REGISTRY],
            description: "The registry now: each kiosk in service with its latest name, place, services and software",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn rows_fill_every_column_of_the_table() {
        let mut rows = rows(AVAILABILITY);
        rows.push(&[
            V::T(1_000),
            V::S(Some("K01")),
            V::F(Some(600.0)),
            V::F(Some(12.5)),
        ]);
        // A value of the wrong kind is a null, not a panic.
        rows.push(&[V::T(2_000), V::S(Some("K02")), V::I(Some(1)), V::F(None)]);
        assert!(!rows.is_empty());
        let batch = rows.finish().expect("batch");
        assert!(rows.is_empty());
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), schema_of(AVAILABILITY));
        let open = batch
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .expect("f64");
        assert_eq!(open.value(0), 600.0);
        assert!(open.is_null(1));
    }

    #[test]
    fn every_view_reads_only_the_fleet_tables() {
        let names: Vec<&str> = tables().iter().map(|(n, _)| *n).collect();
        for v in views() {
            assert!(v.name.starts_with("kiosk_"), "{}", v.name);
            for t in &v.tables {
                assert!(names.contains(t), "{} reads {t}", v.name);
                assert!(v.sql.contains(t), "{} names {t}", v.name);
            }
            assert!(!names.contains(&v.name), "{} is also a table", v.name);
        }
    }
}
