//! Readings as Arrow record batches, one table at a time.

use crate::SimError;
use crate::city::{Reading, Readings, Value};
use crate::kinds::Kind;
use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use std::collections::VecDeque;
use std::sync::Arc;

enum ValueBuilder {
    Float(Float64Builder),
    Int(Int64Builder),
}

/// Builds the record batches of one table from readings.
pub(crate) struct TableBuilder {
    pub(crate) kind: Kind,
    pub(crate) rows: usize,
    time: TimestampMicrosecondBuilder,
    sensor: StringDictionaryBuilder<Int32Type>,
    district: StringDictionaryBuilder<Int32Type>,
    values: Vec<ValueBuilder>,
    battery: Float64Builder,
    status: StringBuilder,
}

impl TableBuilder {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            kind,
            rows: 0,
            time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            sensor: StringDictionaryBuilder::new(),
            district: StringDictionaryBuilder::new(),
            values: kind
                .fields()
                .iter()
                .map(|f| {
                    if f.count {
                        ValueBuilder::Int(Int64Builder::new())
                    } else {
                        ValueBuilder::Float(Float64Builder::new())
                    }
                })
                .collect(),
            battery: Float64Builder::new(),
            status: StringBuilder::new(),
        }
    }

    /// Adds a reading (of this builder's kind).
    pub(crate) fn append(&mut self, r: &Reading) {
        self.time.append_value(r.time_micros);
        self.sensor.append_value(&*r.sensor);
        self.district.append_value(r.district);
        for (builder, value) in self.values.iter_mut().zip(r.values.iter()) {
            match (builder, value) {
                (ValueBuilder::Float(x), Some(v)) => x.append_value(v.as_f64()),
                (ValueBuilder::Int(x), Some(Value::Int(v))) => x.append_value(*v),
                (ValueBuilder::Int(x), Some(Value::Float(v))) => x.append_value(v.round() as i64),
                (ValueBuilder::Float(x), None) => x.append_null(),
                (ValueBuilder::Int(x), None) => x.append_null(),
            }
        }
        self.battery.append_value(r.battery);
        self.status.append_value(r.status.as_str());
        self.rows += 1;
    }

    /// The rows added since the last call, as a batch of the kind's schema.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, SimError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.sensor.finish()),
            Arc::new(self.district.finish()),
        ];
        for v in &mut self.values {
            columns.push(match v {
                ValueBuilder::Float(b) => Arc::new(b.finish()),
                ValueBuilder::Int(b) => Arc::new(b.finish()),
            });
        }
        columns.push(Arc::new(self.battery.finish()));
        columns.push(Arc::new(self.status.finish()));
        self.rows = 0;
        Ok(RecordBatch::try_new(self.kind.schema(), columns)?)
    }
}

/// Record batches of the lake's column conventions, per table, in arrival order within each
/// table (see [`crate::City::record_batches`]). A table's batch is yielded when it holds
/// `batch_rows` rows; the rest at the end.
pub struct RecordBatches<'a> {
    readings: Readings<'a>,
    builders: Vec<TableBuilder>,
    batch_rows: usize,
    ready: VecDeque<(Kind, RecordBatch)>,
    done: bool,
}

impl std::fmt::Debug for RecordBatches<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatches")
            .field("batch_rows", &self.batch_rows)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a> RecordBatches<'a> {
    pub(crate) fn new(readings: Readings<'a>, batch_rows: usize) -> Self {
        Self {
            readings,
            builders: Kind::ALL.iter().map(|&k| TableBuilder::new(k)).collect(),
            batch_rows: batch_rows.max(1),
            ready: VecDeque::new(),
            done: false,
        }
    }
}

impl Iterator for RecordBatches<'_> {
    type Item = Result<(Kind, RecordBatch), SimError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Some(Ok(b));
            }
            if self.done {
                return None;
            }
            let Some(r) = self.readings.next() else {
                self.done = true;
                for b in &mut self.builders {
                    if b.rows > 0 {
                        match b.finish() {
                            Ok(batch) => self.ready.push_back((b.kind, batch)),
                            Err(e) => return Some(Err(e)),
                        }
                    }
                }
                continue;
            };
            let Some(b) = self.builders.iter_mut().find(|b| b.kind == r.kind) else {
                continue;
            };
            b.append(&r);
            if b.rows >= self.batch_rows {
                return Some(b.finish().map(|batch| (r.kind, batch)));
            }
        }
    }
}
