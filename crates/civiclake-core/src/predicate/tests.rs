//! Evaluation, binding, serialisation and pruning of row predicates.

use super::*;
use crate::schema::{field_column, tag_column, time_column};
use arrow::array::{Int64Array, StringDictionaryBuilder};
use arrow::datatypes::Int32Type;

const JAN_1: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        time_column(),
        tag_column("sensor"),
        field_column("pm25", DataType::Float64),
        field_column("count", DataType::Int64),
        field_column("ok", DataType::Boolean),
    ]));
    let mut sensors = StringDictionaryBuilder::<Int32Type>::new();
    for s in [Some("a1"), Some("b2"), None, Some("a1")] {
        sensors.append_option(s);
    }
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(vec![JAN_1 - 1, JAN_1, JAN_1 + 1, JAN_1 + 2])
                    .with_timezone("UTC"),
            ),
            Arc::new(sensors.finish()),
            Arc::new(Float64Array::from(vec![
                Some(10.0),
                None,
                Some(30.5),
                Some(2.0),
            ])),
            Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3), None])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
        ],
    )
    .unwrap()
}

fn matched(p: &RowPredicate) -> Vec<bool> {
    let b = batch();
    let bound = p.bind(&b.schema()).unwrap();
    bound
        .matches(&b)
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

#[test]
fn comparisons_on_every_column_type() {
    let time_lt = RowPredicate::compare("time", CompareOp::Lt, "2026-01-01T00:00:00Z");
    assert_eq!(matched(&time_lt), [true, false, false, false]);
    let time_ge = RowPredicate::compare("time", CompareOp::GtEq, Literal::Timestamp(JAN_1 + 1));
    assert_eq!(matched(&time_ge), [false, false, true, true]);
    assert_eq!(
        matched(&RowPredicate::eq("sensor", "a1")),
        [true, false, false, true]
    );
    // NULL != 'a1' is NULL, so the row with no sensor is not matched.
    let ne = RowPredicate::compare("sensor", CompareOp::NotEq, "a1");
    assert_eq!(matched(&ne), [false, true, false, false]);
    let gt = RowPredicate::compare("pm25", CompareOp::Gt, 5_i64);
    assert_eq!(matched(&gt), [true, false, true, false]);
    let le = RowPredicate::compare("count", CompareOp::LtEq, 2.5);
    assert_eq!(matched(&le), [true, true, false, false]);
    assert_eq!(
        matched(&RowPredicate::eq("ok", false)),
        [false, true, false, false]
    );
}

#[test]
fn null_logic_follows_sql() {
    assert_eq!(
        matched(&RowPredicate::is_null("pm25")),
        [false, true, false, false]
    );
    assert_eq!(
        matched(&RowPredicate::is_not_null("sensor")),
        [true, true, false, true]
    );
    // NOT (pm25 > 5): NULL stays NULL, so row 1 (pm25 NULL) is not matched.
    let not_gt = RowPredicate::compare("pm25", CompareOp::Gt, 5.0).not();
    assert_eq!(matched(&not_gt), [false, false, false, true]);
    // NULL OR TRUE is TRUE; NULL AND FALSE is FALSE.
    let or = RowPredicate::compare("pm25", CompareOp::Gt, 5.0).or(RowPredicate::eq("ok", false));
    assert_eq!(matched(&or), [true, true, true, false]);
    let in_list = RowPredicate::in_list("sensor", vec!["b2".into(), "zz".into()]);
    assert_eq!(matched(&in_list), [false, true, false, false]);
    let and = RowPredicate::eq("sensor", "a1").and(RowPredicate::compare(
        "time",
        CompareOp::Gt,
        Literal::Timestamp(JAN_1),
    ));
    assert_eq!(matched(&and), [false, false, false, true]);
}

#[test]
fn a_missing_column_reads_as_null() {
    let b = batch().project(&[0, 1]).unwrap();
    let p = RowPredicate::compare("pm25", CompareOp::Gt, 1.0);
    assert_eq!(p.evaluate(&b).unwrap().null_count(), 4);
    assert_eq!(p.matches(&b).unwrap().true_count(), 0);
    assert_eq!(
        RowPredicate::is_null("pm25")
            .matches(&b)
            .unwrap()
            .true_count(),
        4
    );
    assert_eq!(p.clone().not().matches(&b).unwrap().true_count(), 0);
}

#[test]
fn bind_reports_unknown_columns_and_type_mismatches() {
    let schema = batch().schema();
    assert_eq!(
        RowPredicate::eq("nope", 1_i64).bind(&schema).unwrap_err(),
        PredicateError::UnknownColumn("nope".into())
    );
    assert_eq!(
        RowPredicate::eq("pm25", "high")
            .bind(&schema)
            .unwrap_err()
            .to_string(),
        "column 'pm25' is float and cannot be compared with 'high'"
    );
    assert_eq!(
        RowPredicate::eq("sensor", 3_i64)
            .bind(&schema)
            .unwrap_err()
            .to_string(),
        "column 'sensor' is tag and cannot be compared with 3"
    );
    assert!(matches!(
        RowPredicate::compare("time", CompareOp::Lt, "yesterday").bind(&schema),
        Err(PredicateError::InvalidTimestamp(_))
    ));
    assert_eq!(
        RowPredicate::And(vec![]).bind(&schema).unwrap_err(),
        PredicateError::Empty("AND")
    );
    assert_eq!(
        RowPredicate::eq("pm25", f64::NAN)
            .bind(&schema)
            .unwrap_err()
            .to_string(),
        "NaN is not a finite number"
    );
    assert_eq!(
        Literal::parse_timestamp("2026-01-01"),
        Ok(Literal::Timestamp(JAN_1))
    );
    assert_eq!(
        Literal::parse_timestamp("2026-01-01 00:00:01.5"),
        Ok(Literal::Timestamp(JAN_1 + 1_500_000))
    );
    let bound = RowPredicate::compare("time", CompareOp::Lt, "2026-01-01T01:00:00+01:00")
        .bind(&schema)
        .unwrap();
    assert_eq!(bound, RowPredicate::time_before(JAN_1));
    // Unbound evaluation checks types too.
    let err = RowPredicate::eq("ok", 1_i64)
        .evaluate(&batch())
        .unwrap_err();
    assert!(matches!(err, PredicateError::TypeMismatch { .. }), "{err}");
}

#[test]
fn serde_round_trip_and_display() {
    let p = RowPredicate::time_before(JAN_1)
        .and(RowPredicate::in_list(
            "sensor",
            vec!["a1".into(), "o'k".into()],
        ))
        .and(RowPredicate::is_null("pm25").not());
    let json = serde_json::to_string(&p).unwrap();
    let back: RowPredicate = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    assert_eq!(
        p.to_string(),
        "(time < TIMESTAMP '2026-01-01T00:00:00.000000Z' AND sensor IN ('a1', 'o''k') AND NOT (pm25 IS NULL))"
    );
    assert_eq!(
        p.columns().into_iter().collect::<Vec<_>>(),
        ["pm25", "sensor", "time"]
    );
}

#[test]
fn time_range_test_is_conservative() {
    let p = RowPredicate::time_before(100);
    assert!(p.may_match_time_range(50, 200));
    assert!(!p.may_match_time_range(100, 200));
    let q = p.clone().and(RowPredicate::eq("sensor", "a"));
    assert!(!q.may_match_time_range(100, 200));
    let r = p.or(RowPredicate::eq("sensor", "a"));
    assert!(r.may_match_time_range(100, 200));
    let s = RowPredicate::compare("time", CompareOp::GtEq, Literal::Timestamp(300));
    assert!(!s.may_match_time_range(100, 299));
    assert!(s.may_match_time_range(100, 300));
}
