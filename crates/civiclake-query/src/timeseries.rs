//! Time-series SQL functions, registered in every session by [`register_timeseries`]:
//!
//! * `time_bucket(interval, time [, origin] [, timezone])`: the start of the bucket that holds
//!   `time`. Intervals of hours, minutes, seconds... are cut in absolute time from `origin`
//!   (default the epoch), like `date_bin`; intervals of days and weeks in the local wall time
//!   of `timezone` (default `Europe/Rome`, so a day starts at local midnight whatever its
//!   length); months and years are calendar months of `timezone`. With an explicit
//!   `timezone` every interval is cut in local wall time. A bucket start that does not exist
//!   in local time (a spring-forward gap) is the first instant after the gap; one that exists
//!   twice (fall-back) is the earlier of the two.
//! * `locf(value) OVER (... ORDER BY ...)`: a NULL takes the last non-NULL value before it.
//! * `interpolate(value, time) OVER (... ORDER BY time)`: a NULL between two non-NULL values
//!   is interpolated linearly in `time` (a Float64 result).
//! * `first(value, time)` / `last(value, time)`: the value at the smallest / greatest time of
//!   the group (NULL values skipped).
//! * `value_at(value, time, t)`: the value at the greatest time that is not after `t` (with a
//!   join on `r.time <= e.time`, an ASOF join).

use chrono::{DateTime, Datelike, LocalResult, Months, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, TimestampMicrosecondArray, UInt32Array,
    new_empty_array, new_null_array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{nullif, take};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float64Type, IntervalMonthDayNano, IntervalUnit, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::function::{
    AccumulatorArgs, PartitionEvaluatorArgs, StateFieldsArgs, WindowUDFFieldArgs,
};
use datafusion::logical_expr::utils::{AggregateOrderSensitivity, format_state_name};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    PartitionEvaluator, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, WindowUDF, WindowUDFImpl,
};
use std::sync::Arc;

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;
/// The time zone of day, week, month and year buckets when none is given.
pub const DEFAULT_BUCKET_TIMEZONE: Tz = chrono_tz::Europe::Rome;
/// Default origin of whole-week buckets: Monday 2000-01-03 (local), so weeks start on Monday.
const WEEK_ORIGIN: i64 = 10_959 * MICROS_PER_DAY;
const UTC: &str = "UTC";

/// Registers `time_bucket`, `locf`, `interpolate`, `first`, `last` and `value_at` in `state`.
pub fn register_timeseries(state: &mut SessionState) -> Result<()> {
    state.register_udf(Arc::new(ScalarUDF::from(TimeBucket::new())))?;
    for pick in [Pick::First, Pick::Last, Pick::ValueAt] {
        state.register_udaf(Arc::new(AggregateUDF::from(PickUdaf::new(pick))))?;
    }
    state.register_udwf(Arc::new(WindowUDF::from(Locf::new())))?;
    state.register_udwf(Arc::new(WindowUDF::from(Interpolate::new())))?;
    Ok(())
}

/// The type every time argument is cast to, and `time_bucket` returns.
fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

fn exec_error(message: String) -> DataFusionError {
    DataFusionError::Execution(message)
}

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The cast of a time argument: any timestamp, date or text becomes `Timestamp(µs, UTC)`.
fn coerce_time(function: &str, what: &str, dt: &DataType) -> Result<DataType> {
    match dt {
        DataType::Timestamp(_, _)
        | DataType::Date32
        | DataType::Date64
        | DataType::Null
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => Ok(time_type()),
        DataType::Dictionary(_, v) if is_string(v) => Ok(time_type()),
        other => Err(plan_error(format!(
            "{function}: {what} must be a timestamp, got {other}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Bucket arithmetic
// ---------------------------------------------------------------------------------------------

/// How `time_bucket` cuts time (all values in microseconds).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bucketing {
    /// Fixed-width buckets of absolute time counted from the instant `origin`.
    Absolute { stride: i64, origin: i64 },
    /// Fixed-width buckets of local wall time of `tz` counted from the wall time `origin`
    /// (a wall time is written as the UTC instant with the same digits).
    Wall { stride: i64, origin: i64, tz: Tz },
    /// Buckets of `stride` calendar months of `tz` counted from the wall time `origin`.
    Months {
        stride: i64,
        origin: NaiveDateTime,
        tz: Tz,
    },
}

fn describe(interval: &IntervalMonthDayNano) -> String {
    format!(
        "{} months {} days {} ns",
        interval.months, interval.days, interval.nanoseconds
    )
}

/// The wall time of instant `t` in `tz`.
fn to_wall(t: i64, tz: &Tz) -> Result<i64, String> {
    let utc = DateTime::from_timestamp_micros(t)
        .ok_or_else(|| format!("time {t} µs is out of range"))?
        .naive_utc();
    let offset = i64::from(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc());
    t.checked_add(offset * MICROS_PER_SEC)
        .ok_or_else(|| format!("time {t} µs is out of range"))
}

fn naive(wall: i64) -> Result<NaiveDateTime, String> {
    DateTime::from_timestamp_micros(wall)
        .map(|d| d.naive_utc())
        .ok_or_else(|| format!("time {wall} µs is out of range"))
}

fn wall_micros(naive: &NaiveDateTime) -> i64 {
    naive.and_utc().timestamp_micros()
}

/// The instant of wall time `wall` in `tz`: the earlier one of an ambiguous wall time, the
/// first instant after the gap for one that does not exist.
fn from_wall(wall: i64, tz: &Tz) -> Result<i64, String> {
    match tz.from_local_datetime(&naive(wall)?) {
        LocalResult::Single(dt) => Ok(dt.timestamp_micros()),
        LocalResult::Ambiguous(a, b) => Ok(a.timestamp_micros().min(b.timestamp_micros())),
        LocalResult::None => {
            // In a gap: the first instant whose wall time is at or after `wall`. Offsets are
            // within ±16 h, so it lies within ±18 h of `wall` read as UTC.
            let span = 18 * 3600 * MICROS_PER_SEC;
            let overflow = || format!("time {wall} µs is out of range");
            let mut lo = wall.checked_sub(span).ok_or_else(overflow)?;
            let mut hi = wall.checked_add(span).ok_or_else(overflow)?;
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if to_wall(mid, tz)? >= wall {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            Ok(hi)
        }
    }
}

/// `origin + floor((t - origin) / stride) * stride`.
fn floor_to(t: i64, origin: i64, stride: i64) -> Result<i64, String> {
    let overflow = || format!("time {t} µs is too far from the origin {origin} µs");
    let diff = t.checked_sub(origin).ok_or_else(overflow)?;
    let steps = diff.div_euclid(stride);
    steps
        .checked_mul(stride)
        .and_then(|d| origin.checked_add(d))
        .ok_or_else(overflow)
}

fn add_months(origin: &NaiveDateTime, months: i64) -> Result<NaiveDateTime, String> {
    let n = u32::try_from(months.unsigned_abs())
        .map_err(|_| format!("{months} months is out of range"))?;
    let shifted = if months < 0 {
        origin.checked_sub_months(Months::new(n))
    } else {
        origin.checked_add_months(Months::new(n))
    };
    shifted.ok_or_else(|| format!("{months} months from {origin} is out of range"))
}

impl Bucketing {
    /// The bucketing of `interval` from the instant `origin` in time zone `tz` (None: not
    /// given).
    pub(crate) fn new(
        interval: IntervalMonthDayNano,
        origin: Option<i64>,
        tz: Option<Tz>,
    ) -> Result<Self, String> {
        let IntervalMonthDayNano {
            months,
            days,
            nanoseconds,
        } = interval;
        if months < 0 || days < 0 || nanoseconds < 0 || (months, days, nanoseconds) == (0, 0, 0) {
            return Err(format!(
                "the interval must be positive, got {}",
                describe(&interval)
            ));
        }
        if months > 0 {
            if days != 0 || nanoseconds != 0 {
                return Err(format!(
                    "an interval of months cannot also have days or hours, got {}",
                    describe(&interval)
                ));
            }
            let tz = tz.unwrap_or(DEFAULT_BUCKET_TIMEZONE);
            let origin = match origin {
                Some(o) => naive(to_wall(o, &tz)?)?,
                None => NaiveDateTime::default(),
            };
            return Ok(Self::Months {
                stride: i64::from(months),
                origin,
                tz,
            });
        }
        if nanoseconds % 1000 != 0 {
            return Err(format!(
                "the interval must be a whole number of microseconds, got {}",
                describe(&interval)
            ));
        }
        let stride = i64::from(days)
            .checked_mul(MICROS_PER_DAY)
            .and_then(|d| d.checked_add(nanoseconds / 1000))
            .ok_or_else(|| format!("the interval is too long, got {}", describe(&interval)))?;
        if days == 0 && tz.is_none() {
            return Ok(Self::Absolute {
                stride,
                origin: origin.unwrap_or(0),
            });
        }
        let tz = tz.unwrap_or(DEFAULT_BUCKET_TIMEZONE);
        let origin = match origin {
            Some(o) => to_wall(o, &tz)?,
            None if nanoseconds == 0 && days % 7 == 0 => WEEK_ORIGIN,
            None => 0,
        };
        Ok(Self::Wall { stride, origin, tz })
    }

    /// The start of the bucket of instant `t`.
    pub(crate) fn bucket(&self, t: i64) -> Result<i64, String> {
        match self {
            Self::Absolute { stride, origin } => floor_to(t, *origin, *stride),
            Self::Wall { stride, origin, tz } => {
                let wall = floor_to(to_wall(t, tz)?, *origin, *stride)?;
                from_wall(wall, tz)
            }
            Self::Months { stride, origin, tz } => {
                let wall = naive(to_wall(t, tz)?)?;
                let diff = i64::from(wall.year() - origin.year()) * 12 + i64::from(wall.month())
                    - i64::from(origin.month());
                let mut k = diff.div_euclid(*stride) * stride;
                let mut start = add_months(origin, k)?;
                while start > wall {
                    k -= stride;
                    start = add_months(origin, k)?;
                }
                loop {
                    let next = add_months(origin, k + stride)?;
                    if next > wall {
                        break;
                    }
                    k += stride;
                    start = next;
                }
                from_wall(wall_micros(&start), tz)
            }
        }
    }
}

fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "unknown time zone {name:?} (use an IANA name such as 'Europe/Rome'; \
                 an origin is a TIMESTAMP)"
        )
    })
}

// ---------------------------------------------------------------------------------------------
// time_bucket
// ---------------------------------------------------------------------------------------------

/// `time_bucket(interval, time [, origin] [, timezone])`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimeBucket {
    signature: Signature,
}

impl TimeBucket {
    pub(crate) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// Positions of the optional origin and time zone among the `arg_types`: with three
/// arguments, a text third argument is the time zone, anything else the origin.
fn optional_args(arg_types: &[DataType]) -> (Option<usize>, Option<usize>) {
    match arg_types.len() {
        3 if is_string(&arg_types[2]) => (None, Some(2)),
        3 => (Some(2), None),
        4 => (Some(2), Some(3)),
        _ => (None, None),
    }
}

fn interval_of(value: &ScalarValue) -> Option<Option<IntervalMonthDayNano>> {
    match value {
        ScalarValue::IntervalMonthDayNano(v) => Some(*v),
        ScalarValue::IntervalDayTime(v) => {
            Some(v.map(|v| {
                IntervalMonthDayNano::new(0, v.days, i64::from(v.milliseconds) * 1_000_000)
            }))
        }
        ScalarValue::IntervalYearMonth(v) => Some(v.map(|m| IntervalMonthDayNano::new(m, 0, 0))),
        _ => None,
    }
}

fn string_of(value: &ScalarValue) -> Option<Option<&str>> {
    match value {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            Some(v.as_deref())
        }
        _ => None,
    }
}

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=4).contains(&arg_types.len()) {
            return Err(plan_error(format!(
                "time_bucket takes 2 to 4 arguments (interval, time [, origin] [, timezone]), got {}",
                arg_types.len()
            )));
        }
        let interval = match &arg_types[0] {
            DataType::Interval(_) | DataType::Null => {
                DataType::Interval(IntervalUnit::MonthDayNano)
            }
            dt if is_string(dt) => DataType::Interval(IntervalUnit::MonthDayNano),
            other => {
                return Err(plan_error(format!(
                    "time_bucket: the first argument must be an INTERVAL, got {other}"
                )));
            }
        };
        let mut types = vec![interval, coerce_time("time_bucket", "time", &arg_types[1])?];
        let (origin, tz) = optional_args(arg_types);
        if let Some(i) = origin {
            types.push(coerce_time("time_bucket", "origin", &arg_types[i])?);
        }
        if let Some(i) = tz {
            match &arg_types[i] {
                dt if is_string(dt) => types.push(dt.clone()),
                DataType::Null => types.push(DataType::Utf8),
                other => {
                    return Err(plan_error(format!(
                        "time_bucket: the time zone must be text, got {other}"
                    )));
                }
            }
        }
        Ok(types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(time_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        // Literal arguments are checked when the query is planned.
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let interval = args
            .scalar_arguments
            .first()
            .copied()
            .flatten()
            .and_then(interval_of)
            .flatten();
        let (_, tz_at) = optional_args(&types);
        let tz = match tz_at.and_then(|i| args.scalar_arguments.get(i).copied().flatten()) {
            Some(v) => match string_of(v).flatten() {
                Some(name) => Some(parse_timezone(name).map_err(plan_error)?),
                None => None,
            },
            None => None,
        };
        if let Some(interval) = interval {
            Bucketing::new(interval, None, tz)
                .map_err(|e| plan_error(format!("time_bucket: {e}")))?;
        }
        Ok(Arc::new(Field::new(self.name(), time_type(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(ColumnarValue::data_type).collect();
        if !(2..=4).contains(&types.len()) {
            return Err(exec_error(format!(
                "time_bucket takes 2 to 4 arguments, got {}",
                types.len()
            )));
        }
        let scalar = |i: usize, what: &str| -> Result<&ScalarValue> {
            match &args.args[i] {
                ColumnarValue::Scalar(v) => Ok(v),
                ColumnarValue::Array(_) => Err(exec_error(format!(
                    "time_bucket: the {what} must be a constant"
                ))),
            }
        };
        let interval = interval_of(scalar(0, "interval")?).ok_or_else(|| {
            exec_error(format!(
                "time_bucket: the interval must be an INTERVAL, got {}",
                types[0]
            ))
        })?;
        let (origin_at, tz_at) = optional_args(&types);
        let origin = match origin_at {
            Some(i) => match scalar(i, "origin")? {
                ScalarValue::TimestampMicrosecond(v, _) => Some(*v),
                other => {
                    return Err(exec_error(format!(
                        "time_bucket: the origin must be a timestamp, got {}",
                        other.data_type()
                    )));
                }
            },
            None => None,
        };
        let tz = match tz_at {
            Some(i) => Some(string_of(scalar(i, "time zone")?).ok_or_else(|| {
                exec_error(format!(
                    "time_bucket: the time zone must be text, got {}",
                    types[i]
                ))
            })?),
            None => None,
        };
        // A NULL interval, origin or time zone: every bucket is NULL.
        let null = || match &args.args[1] {
            ColumnarValue::Array(a) => ColumnarValue::Array(new_null_array(&time_type(), a.len())),
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(None, Some(UTC.into())))
            }
        };
        let Some(interval) = interval else {
            return Ok(null());
        };
        let origin = match origin {
            Some(None) => return Ok(null()),
            Some(Some(o)) => Some(o),
            None => None,
        };
        let tz = match tz {
            Some(None) => return Ok(null()),
            Some(Some(name)) => Some(parse_timezone(name).map_err(exec_error)?),
            None => None,
        };
        let bucketing = Bucketing::new(interval, origin, tz)
            .map_err(|e| exec_error(format!("time_bucket: {e}")))?;
        let bucket = |t: i64| {
            bucketing
                .bucket(t)
                .map_err(|e| exec_error(format!("time_bucket: {e}")))
        };
        match &args.args[1] {
            ColumnarValue::Array(a) => {
                let times = a
                    .as_primitive_opt::<TimestampMicrosecondType>()
                    .ok_or_else(|| {
                        exec_error(format!(
                            "time_bucket: time must be a timestamp, got {}",
                            a.data_type()
                        ))
                    })?;
                let out: TimestampMicrosecondArray = times.try_unary(bucket)?;
                Ok(ColumnarValue::Array(Arc::new(out.with_timezone(UTC))))
            }
            ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, _)) => {
                let out = v.map(bucket).transpose()?;
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    out,
                    Some(UTC.into()),
                )))
            }
            ColumnarValue::Scalar(ScalarValue::Null) => Ok(null()),
            ColumnarValue::Scalar(other) => Err(exec_error(format!(
                "time_bucket: time must be a timestamp, got {}",
                other.data_type()
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// first, last, value_at
// ---------------------------------------------------------------------------------------------

/// Which row of a group an aggregate keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pick {
    /// The smallest time (ties: the first row seen).
    First,
    /// The greatest time (ties: the last row seen).
    Last,
    /// The greatest time not after the row's `t` (ties: the last row seen).
    ValueAt,
}

impl Pick {
    fn name(self) -> &'static str {
        match self {
            Pick::First => "first",
            Pick::Last => "last",
            Pick::ValueAt => "value_at",
        }
    }

    /// How partial states are merged: a `value_at` state already holds only times ≤ t.
    fn merged(self) -> Self {
        match self {
            Pick::First => Pick::First,
            Pick::Last | Pick::ValueAt => Pick::Last,
        }
    }

    /// Whether a row at `t` replaces the kept row at `best`.
    fn wins(self, t: i64, best: Option<i64>) -> bool {
        match (self, best) {
            (_, None) => true,
            (Pick::First, Some(b)) => t < b,
            (Pick::Last | Pick::ValueAt, Some(b)) => t >= b,
        }
    }

    fn arity(self) -> usize {
        match self {
            Pick::First | Pick::Last => 2,
            Pick::ValueAt => 3,
        }
    }
}

/// The argument columns of one batch (input or partial states).
struct PickRows<'a> {
    value: &'a ArrayRef,
    value_nulls: Option<NullBuffer>,
    time: &'a TimestampMicrosecondArray,
    at: Option<&'a TimestampMicrosecondArray>,
}

fn timestamps<'a>(array: &'a ArrayRef, function: &str) -> Result<&'a TimestampMicrosecondArray> {
    array
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| {
            exec_error(format!(
                "{function}: expected a timestamp, got {}",
                array.data_type()
            ))
        })
}

impl<'a> PickRows<'a> {
    fn new(arrays: &'a [ArrayRef], pick: Pick) -> Result<Self> {
        if arrays.len() != pick.arity() {
            return Err(exec_error(format!(
                "{} expects {} arguments, got {}",
                pick.name(),
                pick.arity(),
                arrays.len()
            )));
        }
        Ok(Self {
            value: &arrays[0],
            value_nulls: arrays[0].logical_nulls(),
            time: timestamps(&arrays[1], pick.name())?,
            at: match pick {
                Pick::ValueAt => Some(timestamps(&arrays[2], pick.name())?),
                Pick::First | Pick::Last => None,
            },
        })
    }

    fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether row `i` takes part: a value, a time, and for `value_at` a time not after t.
    fn valid(&self, i: usize, filter: Option<&BooleanArray>) -> bool {
        self.value_nulls.as_ref().is_none_or(|n| n.is_valid(i))
            && self.time.is_valid(i)
            && self
                .at
                .is_none_or(|at| at.is_valid(i) && self.time.value(i) <= at.value(i))
            && filter.is_none_or(|f| f.is_valid(i) && f.value(i))
    }
}

/// `first(value, time)`, `last(value, time)`, `value_at(value, time, t)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PickUdaf {
    pick: Pick,
    signature: Signature,
}

impl PickUdaf {
    fn new(pick: Pick) -> Self {
        Self {
            pick,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// Dictionary values are picked as their plain type.
fn value_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Dictionary(_, v) => v.as_ref().clone(),
        other => other.clone(),
    }
}

impl AggregateUDFImpl for PickUdaf {
    fn name(&self) -> &str {
        self.pick.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.pick.name();
        if arg_types.len() != self.pick.arity() {
            let usage = match self.pick {
                Pick::First | Pick::Last => "(value, time)",
                Pick::ValueAt => "(value, time, t)",
            };
            return Err(plan_error(format!(
                "{name} takes {} arguments {usage}, got {}",
                self.pick.arity(),
                arg_types.len()
            )));
        }
        let mut types = vec![
            value_type(&arg_types[0]),
            coerce_time(name, "time", &arg_types[1])?,
        ];
        if self.pick == Pick::ValueAt {
            types.push(coerce_time(name, "t", &arg_types[2])?);
        }
        Ok(types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let value = arg_types
            .first()
            .ok_or_else(|| plan_error(format!("{} needs a value", self.pick.name())))?;
        Ok(value_type(value))
    }

    fn accumulator(&self, args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PickAccumulator {
            pick: self.pick,
            value: ScalarValue::try_from(args.return_type())?,
            time: None,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "value"),
                args.return_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "time"),
                time_type(),
                true,
            )),
        ])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs<'_>) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs<'_>,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let data_type = args.return_type().clone();
        Ok(Box::new(PickGroups {
            pick: self.pick,
            null: ScalarValue::try_from(&data_type)?,
            data_type,
            values: Vec::new(),
            times: Vec::new(),
            winners: Vec::new(),
            touched: Vec::new(),
            heap: 0,
        }))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }
}

/// One group's pick (no GROUP BY, window use).
#[derive(Debug)]
struct PickAccumulator {
    pick: Pick,
    value: ScalarValue,
    time: Option<i64>,
}

impl PickAccumulator {
    fn absorb(&mut self, arrays: &[ArrayRef], pick: Pick) -> Result<()> {
        let rows = PickRows::new(arrays, pick)?;
        let mut best = None;
        for i in 0..rows.len() {
            if !rows.valid(i, None) {
                continue;
            }
            let t = rows.time.value(i);
            if pick.wins(t, self.time) {
                self.time = Some(t);
                best = Some(i);
            }
        }
        if let Some(i) = best {
            self.value = ScalarValue::try_from_array(rows.value, i)?;
        }
        Ok(())
    }
}

impl Accumulator for PickAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.absorb(values, self.pick)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.absorb(states, self.pick.merged())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::TimestampMicrosecond(self.time, Some(UTC.into())),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.value.size() - size_of_val(&self.value)
    }
}

const NO_ROW: usize = usize::MAX;

/// The picks of every group of a GROUP BY.
#[derive(Debug)]
struct PickGroups {
    pick: Pick,
    data_type: DataType,
    /// A NULL of `data_type`: the value of a group without rows.
    null: ScalarValue,
    values: Vec<ScalarValue>,
    times: Vec<Option<i64>>,
    /// Per group, the row of the current batch it keeps (NO_ROW: none); reset after a batch.
    winners: Vec<usize>,
    /// The groups with a winner in the current batch.
    touched: Vec<usize>,
    /// Heap bytes held by `values`.
    heap: usize,
}

fn heap_size(value: &ScalarValue) -> usize {
    value.size().saturating_sub(size_of::<ScalarValue>())
}

impl PickGroups {
    fn absorb(
        &mut self,
        arrays: &[ArrayRef],
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
        pick: Pick,
    ) -> Result<()> {
        // New groups hold a NULL, whose heap (a time zone name...) is counted too.
        let added = total_num_groups.saturating_sub(self.values.len());
        self.heap += added * heap_size(&self.null);
        self.values.resize(total_num_groups, self.null.clone());
        self.times.resize(total_num_groups, None);
        self.winners.resize(total_num_groups, NO_ROW);
        let rows = PickRows::new(arrays, pick)?;
        for (i, &g) in group_indices.iter().enumerate() {
            if !rows.valid(i, filter) {
                continue;
            }
            let t = rows.time.value(i);
            if pick.wins(t, self.times[g]) {
                self.times[g] = Some(t);
                if self.winners[g] == NO_ROW {
                    self.touched.push(g);
                }
                self.winners[g] = i;
            }
        }
        let mut touched = std::mem::take(&mut self.touched);
        for &g in &touched {
            let value = ScalarValue::try_from_array(rows.value, self.winners[g])?;
            self.winners[g] = NO_ROW;
            self.heap = (self.heap + heap_size(&value)).saturating_sub(heap_size(&self.values[g]));
            self.values[g] = value;
        }
        touched.clear();
        self.touched = touched;
        Ok(())
    }

    fn take_values(&mut self, emit_to: EmitTo) -> Result<(ArrayRef, Vec<Option<i64>>)> {
        let values = emit_to.take_needed(&mut self.values);
        let times = emit_to.take_needed(&mut self.times);
        let _ = emit_to.take_needed(&mut self.winners);
        let taken: usize = values.iter().map(heap_size).sum();
        self.heap = self.heap.saturating_sub(taken);
        let array = if values.is_empty() {
            new_empty_array(&self.data_type)
        } else {
            ScalarValue::iter_to_array(values)?
        };
        Ok((array, times))
    }
}

impl GroupsAccumulator for PickGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.absorb(
            values,
            group_indices,
            opt_filter,
            total_num_groups,
            self.pick,
        )
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.take_values(emit_to)?.0)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (values, times) = self.take_values(emit_to)?;
        let times = TimestampMicrosecondArray::from(times).with_timezone(UTC);
        Ok(vec![values, Arc::new(times)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let pick = self.pick.merged();
        self.absorb(values, group_indices, None, total_num_groups, pick)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = PickRows::new(values, self.pick)?;
        let time: ArrayRef = Arc::new(rows.time.clone().with_timezone(UTC));
        if self.data_type == DataType::Null {
            return Ok(vec![Arc::clone(&values[0]), time]);
        }
        let dropped: BooleanArray = (0..rows.len())
            .map(|i| Some(!rows.valid(i, opt_filter)))
            .collect();
        Ok(vec![nullif(values[0].as_ref(), &dropped)?, time])
    }

    fn size(&self) -> usize {
        self.values.capacity() * size_of::<ScalarValue>()
            + self.heap
            + self.times.capacity() * size_of::<Option<i64>>()
            + (self.winners.capacity() + self.touched.capacity()) * size_of::<usize>()
    }
}

// ---------------------------------------------------------------------------------------------
// locf, interpolate
// ---------------------------------------------------------------------------------------------

/// `locf(value) OVER (...)`: last observation carried forward.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Locf {
    signature: Signature,
}

impl Locf {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl WindowUDFImpl for Locf {
    fn name(&self) -> &str {
        "locf"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs<'_>,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(LocfEvaluator))
    }

    fn field(&self, field_args: WindowUDFFieldArgs<'_>) -> Result<FieldRef> {
        let input = field_args
            .get_input_field(0)
            .ok_or_else(|| plan_error("locf takes one argument".into()))?;
        Ok(Arc::new(Field::new(
            field_args.name(),
            input.data_type().clone(),
            true,
        )))
    }
}

#[derive(Debug)]
struct LocfEvaluator;

impl PartitionEvaluator for LocfEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let value = values
            .first()
            .ok_or_else(|| exec_error("locf takes one argument".into()))?;
        let Some(nulls) = value.logical_nulls() else {
            return Ok(Arc::clone(value));
        };
        let mut last = None;
        let mut indices = Vec::with_capacity(num_rows);
        for i in 0..num_rows {
            if nulls.is_valid(i) {
                last =
                    Some(u32::try_from(i).map_err(|_| {
                        exec_error("locf: a partition has more than 2^32 rows".into())
                    })?);
            }
            indices.push(last);
        }
        Ok(take(value.as_ref(), &UInt32Array::from(indices), None)?)
    }
}

/// `interpolate(value, time) OVER (... ORDER BY time)`: linear interpolation of NULLs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Interpolate {
    signature: Signature,
}

impl Interpolate {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl WindowUDFImpl for Interpolate {
    fn name(&self) -> &str {
        "interpolate"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, time] = arg_types else {
            return Err(plan_error(format!(
                "interpolate takes 2 arguments (value, time), got {}",
                arg_types.len()
            )));
        };
        if !(value.is_numeric() || value == &DataType::Null) {
            return Err(plan_error(format!(
                "interpolate: the value must be numeric, got {value}"
            )));
        }
        let time = if time.is_numeric() {
            DataType::Float64
        } else {
            coerce_time("interpolate", "time", time)?
        };
        Ok(vec![DataType::Float64, time])
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs<'_>,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(InterpolateEvaluator))
    }

    fn field(&self, field_args: WindowUDFFieldArgs<'_>) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Float64,
            true,
        )))
    }
}

#[derive(Debug)]
struct InterpolateEvaluator;

/// The positions on the x axis: timestamps as microseconds, numbers as they are.
fn positions(time: &ArrayRef) -> Result<Vec<Option<f64>>> {
    if let Some(t) = time.as_primitive_opt::<TimestampMicrosecondType>() {
        // Exact up to 2^53 µs (the year 2255).
        return Ok(t.iter().map(|v| v.map(|v| v as f64)).collect());
    }
    if let Some(t) = time.as_primitive_opt::<Float64Type>() {
        return Ok(t.iter().collect());
    }
    Err(exec_error(format!(
        "interpolate: time must be a timestamp or a number, got {}",
        time.data_type()
    )))
}

/// Fills each NULL of `values` that has a value before and after it (both with a position)
/// by linear interpolation in `x`; a NULL whose position is NULL stays NULL.
fn interpolate(values: &[Option<f64>], x: &[Option<f64>]) -> Vec<Option<f64>> {
    // The rows that anchor the interpolation: a value and a position, as (x, value).
    let anchor = |i: usize| match (x[i], values[i]) {
        (Some(x), Some(v)) => Some((x, v)),
        _ => None,
    };
    let mut next = vec![None; values.len()];
    let mut following = None;
    for i in (0..values.len()).rev() {
        next[i] = following;
        if let Some(a) = anchor(i) {
            following = Some(a);
        }
    }
    let mut previous = None;
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        let filled = match (values[i], previous, next[i], x[i]) {
            (Some(v), _, _, _) => Some(v),
            (None, Some((xp, vp)), Some((xn, _)), Some(_)) if xn == xp => Some(vp),
            (None, Some((xp, vp)), Some((xn, vn)), Some(xi)) => {
                Some(vp + (vn - vp) * (xi - xp) / (xn - xp))
            }
            _ => None,
        };
        if let Some(a) = anchor(i) {
            previous = Some(a);
        }
        out.push(filled);
    }
    out
}

impl PartitionEvaluator for InterpolateEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], _num_rows: usize) -> Result<ArrayRef> {
        let [value, time] = values else {
            return Err(exec_error("interpolate takes 2 arguments".into()));
        };
        let value = value.as_primitive_opt::<Float64Type>().ok_or_else(|| {
            exec_error(format!(
                "interpolate: the value must be Float64, got {}",
                value.data_type()
            ))
        })?;
        let v: Vec<Option<f64>> = value.iter().collect();
        let x = positions(time)?;
        Ok(Arc::new(Float64Array::from(interpolate(&v, &x))))
    }
}

#[cfg(test)]
mod tests;
