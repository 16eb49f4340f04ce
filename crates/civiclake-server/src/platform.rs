//! The server's side of the `Platform` API: one handle per module, over the lake, the query
//! engine and the topic router.
//!
//! Appends are serialised per module by a lock held across the version check and the write,
//! so two appends to one stream cannot both pass the check. The last version of each stream
//! is cached in memory, loaded from the module's events table with SQL on first use (after a
//! restart, from the Delta files and the replayed WAL). A failed write drops the cached
//! version so the next append reloads it from the table.

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use civiclake_core::events::{self, EVENT_ID_COLUMN, STREAM_ID_COLUMN, VERSION_COLUMN};
use civiclake_core::{
    CloudEvent, EventEnvelope, ExpectedVersion, Module, ModuleRegistry, NewEvent, Platform,
    PlatformError, QueryBatches, Subscription, Topic, TopicFilter, TopicRouter, check_module_topic,
};
use civiclake_lake::Lake;
use civiclake_query::{QueryEngine, SqlScope};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A module's events: its registration and the cached last version of each stream, whose
/// lock serialises the module's appends.
#[derive(Debug)]
pub(crate) struct ModuleEvents {
    module: Module,
    versions: tokio::sync::Mutex<HashMap<String, u64>>,
}

impl ModuleEvents {
    pub(crate) fn new(module: Module) -> Self {
        Self {
            module,
            versions: tokio::sync::Mutex::new(HashMap::new()),
        }
    }
}

/// The `Platform` of one module.
#[derive(Debug)]
pub(crate) struct ModulePlatform {
    pub(crate) events: Arc<ModuleEvents>,
    pub(crate) lake: Arc<Lake>,
    pub(crate) engine: QueryEngine,
    pub(crate) router: TopicRouter,
    pub(crate) modules: Arc<ModuleRegistry>,
    /// The interoperability bus, once started: `bus/...` events are appended to its log.
    pub(crate) bus: Arc<std::sync::OnceLock<civiclake_bus::Bus>>,
}

/// A bus error as a Platform error, with the class of its HTTP status.
pub(crate) fn bus_error(e: civiclake_bus::BusError) -> PlatformError {
    use civiclake_core::ErrorClass;
    if matches!(e, civiclake_bus::BusError::Stopped) {
        return PlatformError::Closed;
    }
    let class = match e.http_status() {
        404 => ErrorClass::NotFound,
        409 => ErrorClass::Conflict,
        422 => ErrorClass::Limit,
        503 => ErrorClass::Unavailable,
        _ => ErrorClass::User,
    };
    PlatformError::Bus {
        class,
        message: e.to_string(),
    }
}

fn storage(e: civiclake_lake::Error) -> PlatformError {
    PlatformError::Storage {
        class: e.class(),
        message: e.to_string(),
    }
}

fn query_error(e: civiclake_query::Error) -> PlatformError {
    PlatformError::Query {
        class: e.class(),
        message: e.to_string(),
    }
}

/// `s` as a SQL string literal.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl ModulePlatform {
    fn table(&self) -> &str {
        self.events.module.events_table()
    }

    async fn sql(&self, sql: &str) -> Result<QueryBatches, PlatformError> {
        let result = self.engine.sql(sql).await.map_err(query_error)?;
        Ok(QueryBatches {
            schema: result.schema,
            batches: result.batches,
        })
    }

    /// The last version of `stream` in the events table (0 when it has no events).
    async fn stored_version(&self, stream: &str) -> Result<u64, PlatformError> {
        let answer = self
            .sql(&format!(
                "SELECT max(\"{VERSION_COLUMN}\") FROM \"{}\" WHERE \"{STREAM_ID_COLUMN}\" = {}",
                self.table(),
                sql_string(stream)
            ))
            .await?;
        let internal = |m: String| PlatformError::Storage {
            class: civiclake_core::ErrorClass::Internal,
            message: m,
        };
        let Some(batch) = answer.batches.iter().find(|b| b.num_rows() > 0) else {
            return Ok(0);
        };
        let column = cast(batch.column(0), &DataType::Int64)
            .map_err(|e| internal(format!("max(version) of {}: {e}", self.table())))?;
        let values = column
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| {
                internal(format!(
                    "max(version) of {} is not an integer",
                    self.table()
                ))
            })?;
        if values.is_null(0) {
            return Ok(0);
        }
        u64::try_from(values.value(0))
            .map_err(|_| internal(format!("negative version in {}", self.table())))
    }
}

#[async_trait::async_trait]
impl Platform for ModulePlatform {
    fn module(&self) -> &str {
        self.events.module.name()
    }

    async fn append_events(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        new_events: Vec<NewEvent>,
    ) -> Result<Vec<EventEnvelope>, PlatformError> {
        events::validate_stream_id(stream)?;
        for e in &new_events {
            e.validate(self.events.module.upcasters())?;
        }
        let mut versions = self.events.versions.lock().await;
        let current = match versions.get(stream) {
            Some(v) => *v,
            None => {
                let v = self.stored_version(stream).await?;
                versions.insert(stream.to_string(), v);
                v
            }
        };
        expected.check(stream, current)?;
        if new_events.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_micros();
        let envelopes: Vec<EventEnvelope> = new_events
            .into_iter()
            .zip(current + 1..)
            .map(|(e, version)| e.into_envelope(stream, version, now))
            .collect();
        let batch = events::to_batch(&envelopes)?;
        match self
            .lake
            .write(vec![(self.table().to_string(), batch)])
            .await
        {
            Ok(_) => {
                versions.insert(stream.to_string(), current + envelopes.len() as u64);
                Ok(envelopes)
            }
            Err(e) => {
                versions.remove(stream);
                Err(storage(e))
            }
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<EventEnvelope>, PlatformError> {
        events::validate_stream_id(stream)?;
        let answer = self
            .sql(&format!(
                "SELECT * FROM \"{}\" WHERE \"{STREAM_ID_COLUMN}\" = {} AND \"{VERSION_COLUMN}\" >= {} \
                 ORDER BY \"{VERSION_COLUMN}\", \"{EVENT_ID_COLUMN}\"",
                self.table(),
                sql_string(stream),
                from_version.max(1)
            ))
            .await?;
        let upcasters = self.events.module.upcasters();
        let mut out = Vec::with_capacity(answer.num_rows());
        for batch in &answer.batches {
            for envelope in events::from_batch(batch)? {
                out.push(upcasters.upcast(envelope)?);
            }
        }
        Ok(out)
    }

    async fn read_all(&self) -> Result<Vec<EventEnvelope>, PlatformError> {
        let answer = self
            .sql(&format!(
                "SELECT * FROM \"{}\" ORDER BY \"{STREAM_ID_COLUMN}\", \"{VERSION_COLUMN}\", \"{EVENT_ID_COLUMN}\"",
                self.table(),
            ))
            .await?;
        let upcasters = self.events.module.upcasters();
        let mut out = Vec::with_capacity(answer.num_rows());
        for batch in &answer.batches {
            for envelope in events::from_batch(batch)? {
                out.push(upcasters.upcast(envelope)?);
            }
        }
        Ok(out)
    }

    /// Read-only SQL over the module's own tables and the shared data tables (not other
    /// modules' tables, not system tables): the catalog of the session holds nothing else.
    async fn query(&self, sql: &str) -> Result<QueryBatches, PlatformError> {
        let own = self.events.module.clone();
        let modules = self.modules.clone();
        let scope = SqlScope::restricted(
            Arc::new(move |t: &str| {
                own.owns_table(t) || (!t.starts_with('_') && modules.owner_of_table(t).is_none())
            }),
            None,
        );
        let result = self.engine.sql_as(sql, &scope).await.map_err(query_error)?;
        Ok(QueryBatches {
            schema: result.schema,
            batches: result.batches,
        })
    }

    async fn write_rows(&self, table: &str, batch: RecordBatch) -> Result<usize, PlatformError> {
        let module = &self.events.module;
        let refuse = |reason: String| PlatformError::TableNotAllowed {
            module: module.name().to_string(),
            table: table.to_string(),
            reason,
        };
        if table == module.events_table() {
            return Err(refuse(
                "it is the module's events table: events are appended with append_events".into(),
            ));
        }
        if !module.owns_table(table) {
            return Err(refuse(format!(
                "a module writes only its own tables ({}*)",
                module.table_prefix()
            )));
        }
        self.lake
            .write(vec![(table.to_string(), batch)])
            .await
            .map_err(storage)
    }

    async fn publish(&self, topic: &Topic, event: CloudEvent) -> Result<usize, PlatformError> {
        check_module_topic(self.module(), topic)?;
        event.validate()?;
        if topic.namespace() == "bus"
            && let Some(bus) = self.bus.get()
        {
            // Durable in the bus log (and checked against its type's schema) first.
            bus.publish(&format!("module:{}", self.module()), vec![event.clone()])
                .await
                .map_err(bus_error)?;
        }
        Ok(self.router.publish(topic, event)?)
    }

    async fn subscribe(&self, filter: &TopicFilter) -> Result<Subscription, PlatformError> {
        Ok(self.router.subscribe(filter.clone())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_double_their_quotes() {
        assert_eq!(sql_string("loan-1"), "'loan-1'");
        assert_eq!(sql_string("o'brien'; DROP"), "'o''brien''; DROP'");
        assert_eq!(sql_string(r"a\'b"), r"'a\''b'");
    }
}
