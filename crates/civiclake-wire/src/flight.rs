//! Arrow Flight SQL (`--flight-addr`): Arrow-native clients (ADBC, JDBC/ODBC Flight SQL
//! drivers, pyarrow) fetch results as Arrow record batches.
//!
//! Every call carries the token (`authorization: Bearer <token>`); it is checked on each
//! call, so the service keeps no session. Statements and prepared statements run through
//! [`QueryEngine::sql_in`] in a session of the token's scope (grants, masks, read-only
//! rules, memory and time limits of the HTTP API). A prepared statement's handle is its SQL
//! (and, once bound, its parameters as Arrow IPC), so any server instance can run it.
//! Metadata: `GetCatalogs` (`civiclake`), `GetDbSchemas` (`public`), `GetTables` (with
//! their Arrow schemas), `GetTableTypes`, `GetSqlInfo`.

use crate::error::status;
use crate::pg::DATABASE;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use civiclake_api::Auth;
use civiclake_auth::Permission;
use civiclake_query::{QueryEngine, SqlScope};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// The Flight SQL service.
#[derive(Clone)]
pub struct FlightSql {
    engine: QueryEngine,
    auth: Auth,
}

impl std::fmt::Debug for FlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSql").finish()
    }
}

/// A running Flight SQL endpoint.
#[derive(Debug)]
pub struct FlightServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FlightServer {
    /// Serves Flight SQL on `listener` until `shutdown` turns true.
    pub fn start(
        listener: TcpListener,
        engine: QueryEngine,
        auth: Auth,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let service = FlightServiceServer::new(FlightSql { engine, auth })
            .max_decoding_message_size(64 << 20);
        let task = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    // Without TCP_NODELAY a small answer (a flight info) waits for the
                    // client's delayed ACK: 40 ms per call on Linux.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async move {
                        let _ = shutdown.wait_for(|s| *s).await;
                    },
                )
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "Flight SQL endpoint stopped");
            }
        });
        tracing::info!(%addr, "Arrow Flight SQL endpoint is serving (bearer token)");
        Ok(Self { addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for it to stop (after `shutdown`).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

type DoGetStream = <FlightSql as FlightService>::DoGetStream;

fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "civiclake");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::FlightSqlServerCancel, false);
        // An empty info set cannot fail to build.
        match b.build() {
            Ok(info) => info,
            Err(_) => SqlInfoDataBuilder::new()
                .build()
                .unwrap_or_else(|_| unreachable!()),
        }
    })
}

/// `batches` as a Flight data stream with `schema` (the same as the flight info's).
fn stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    stream_rows(schema, futures::stream::iter(batches.into_iter().map(Ok)))
}

/// Rows as a Flight data stream with `schema` (the same as the flight info's).
fn stream_rows(
    schema: SchemaRef,
    batches: impl futures::Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
) -> Response<DoGetStream> {
    let batches = batches.map_err(|e| FlightError::Tonic(Box::new(e)));
    // Tags stay dictionary-encoded on the wire (each batch with its dictionary): a fetch of
    // tags is then as small as over HTTP, and nothing casts them to strings first.
    let flight = FlightDataEncoderBuilder::new()
        .with_dictionary_handling(DictionaryHandling::Resend)
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(flight) as Pin<Box<_>>)
}

/// The schema clients get: the planned types (tags as dictionary-encoded strings), every
/// column nullable — the same whether a statement is described or run (with its parameters
/// bound, the plan may encode a column otherwise: [`conform`] casts it), as Flight SQL
/// clients require.
fn flat(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    )
}

/// `batches` in `schema` (its columns cast to its types).
fn conform(batches: Vec<RecordBatch>, schema: &SchemaRef) -> Result<Vec<RecordBatch>, Status> {
    batches
        .into_iter()
        .map(|b| conform_batch(b, schema))
        .collect()
}

/// `b` in `schema` (its columns cast to its types).
fn conform_batch(b: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, Status> {
    if b.num_columns() != schema.fields().len() {
        return Err(Status::internal(
            "the result does not have the planned columns",
        ));
    }
    if b.schema() == *schema {
        return Ok(b);
    }
    let columns = b
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::internal(e.to_string()))?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Status::internal(e.to_string()))
}

fn info(
    schema: &Schema,
    ticket: Ticket,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor))
}

fn schema_bytes(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// A prepared statement's handle: its SQL, then its bound parameters as an Arrow IPC
/// stream (none yet: nothing after the SQL).
fn encode_handle(sql: &str, params: Option<&RecordBatch>) -> Result<prost::bytes::Bytes, Status> {
    let mut out = Vec::with_capacity(sql.len() + 4);
    out.extend_from_slice(&(sql.len() as u32).to_le_bytes());
    out.extend_from_slice(sql.as_bytes());
    if let Some(batch) = params {
        let mut w =
            datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
                .map_err(|e| Status::internal(e.to_string()))?;
        w.write(batch)
            .map_err(|e| Status::internal(e.to_string()))?;
        w.finish().map_err(|e| Status::internal(e.to_string()))?;
    }
    Ok(out.into())
}

fn decode_handle(handle: &[u8]) -> Result<(String, Option<ParamValues>), Status> {
    let bad = || Status::invalid_argument("not a prepared statement handle of this server");
    let len = handle
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(bad)? as usize;
    let sql = handle.get(4..4 + len).ok_or_else(bad)?;
    let sql = String::from_utf8(sql.to_vec()).map_err(|_| bad())?;
    let rest = &handle[4 + len..];
    if rest.is_empty() {
        return Ok((sql, None));
    }
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(rest, None)
        .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?;
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?;
        if batch.num_rows() == 0 {
            continue;
        }
        for column in batch.columns() {
            values.push(
                ScalarValue::try_from_array(column, 0)
                    .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?,
            );
        }
        break;
    }
    Ok((sql, Some(ParamValues::from(values))))
}

impl FlightSql {
    /// The caller's scope, from the bearer token of `metadata`.
    fn scope(&self, metadata: &tonic::metadata::MetadataMap) -> Result<SqlScope, Status> {
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim();
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header);
        if token.is_empty() && !self.auth.is_disabled() {
            return Err(Status::unauthenticated(
                "no token: send the header 'authorization: Bearer <token>'",
            ));
        }
        let principal = self
            .auth
            .authenticate(token)
            .map_err(|e| Status::unauthenticated(e.message().to_string()))?;
        if !principal.can(Permission::Query) {
            return Err(Status::permission_denied(format!(
                "role {} lacks the 'query' permission",
                principal.role
            )));
        }
        Ok(civiclake_api::auth::scope_of(&principal))
    }

    fn session(&self, scope: &SqlScope) -> Result<SessionContext, Status> {
        self.engine
            .session_in_catalog(scope, DATABASE)
            .map_err(|e| status(&e))
    }

    /// The schema of `sql`'s result (planned, not run; see [`flat`]) and of its parameters.
    async fn plan(&self, sql: &str, scope: &SqlScope) -> Result<(Schema, Schema), Status> {
        let ctx = self.session(scope)?;
        let (schema, params) = self
            .engine
            .describe_in(&ctx, sql, scope)
            .await
            .map_err(|e| status(&e))?;
        let fields: Vec<Field> = params
            .into_iter()
            .map(|(name, ty)| Field::new(name, ty.unwrap_or(DataType::Utf8), true))
            .collect();
        Ok((flat(&schema), Schema::new(fields)))
    }

    async fn run(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        scope: &SqlScope,
    ) -> Result<Response<DoGetStream>, Status> {
        // The flight info announced the planned schema: the rows come in it. Without
        // parameters the statement plans the same as it did then, so its result's schema is
        // that one (made nullable); with parameters bound a column may come out otherwise.
        let planned = match params {
            Some(_) => Some(self.plan(sql, scope).await?.0),
            None => None,
        };
        let is_delete = sql
            .trim_start()
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case("delete"));
        if is_delete && params.is_none() && scope.allows_deletes() {
            // An administrator's erasure: the engine's DELETE (buffer and files at once).
            let result = self
                .engine
                .sql_as(sql, scope)
                .await
                .map_err(|e| status(&e))?;
            let schema = Arc::new(flat(&result.schema));
            let batches = conform(result.batches, &schema)?;
            return Ok(stream(schema, batches));
        }
        // The rows go out as they are computed.
        let ctx = self.session(scope)?;
        let (result_schema, rows) = self
            .engine
            .stream_in(&ctx, sql, params, scope)
            .await
            .map_err(|e| status(&e))?;
        let schema = Arc::new(planned.unwrap_or_else(|| flat(&result_schema)));
        let conformed = schema.clone();
        let rows = rows.map(move |b| {
            b.map_err(|e| status(&e))
                .and_then(|b| conform_batch(b, &conformed))
        });
        Ok(stream_rows(schema, rows))
    }

    /// The tables (and views) the scope sees, with their schemas.
    async fn tables(&self, scope: &SqlScope) -> Result<Vec<(String, SchemaRef)>, Status> {
        let ctx = self.session(scope)?;
        let Some(schema) = ctx.catalog(DATABASE).and_then(|c| c.schema("public")) else {
            return Ok(Vec::new());
        };
        let mut names = schema.table_names();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            if let Ok(Some(table)) = schema.table(&name).await {
                out.push((name, table.schema()));
            }
        }
        Ok(out)
    }
}

fn ticket_of(cmd: &impl ProstMessageExt) -> Ticket {
    Ticket::new(cmd.as_any().encode_to_vec())
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(request.metadata())?;
        let (schema, _) = self.plan(&query.query, &scope).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into_bytes().into(),
        };
        let info = info(
            &schema,
            Ticket::new(ticket.as_any().encode_to_vec()),
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let scope = self.scope(request.metadata())?;
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the ticket is not SQL text"))?;
        self.run(&sql, None, &scope).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let scope = self.scope(request.metadata())?;
        let (schema, params) = self.plan(&query.query, &scope).await?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: encode_handle(&query.query, None)?,
            dataset_schema: schema_bytes(&schema)?,
            parameter_schema: schema_bytes(&params)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.scope(request.metadata())?;
        let (sql, _) = decode_handle(&query.prepared_statement_handle)?;
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                request.into_inner().map_err(FlightError::from),
            )
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?;
        let params = batches.iter().find(|b| b.num_rows() > 0);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(encode_handle(&sql, params)?),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(request.metadata())?;
        let (sql, _) = decode_handle(&cmd.prepared_statement_handle)?;
        let (schema, _) = self.plan(&sql, &scope).await?;
        Ok(Response::new(info(
            &schema,
            ticket_of(&cmd),
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let scope = self.scope(request.metadata())?;
        let (sql, params) = decode_handle(&cmd.prepared_statement_handle)?;
        self.run(&sql, params, &scope).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles hold everything: nothing to free.
        self.scope(request.metadata())?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(request.metadata())?;
        let schema = query.into_builder().schema();
        Ok(Response::new(info(
            &schema,
            ticket_of(&query),
            request.into_inner(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.scope(request.metadata())?;
        let mut b = query.into_builder();
        b.append(DATABASE);
        let schema = b.schema();
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(stream(schema, vec![batch]))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(info(
            &schema,
            ticket_of(&query),
            request.into_inner(),
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.scope(request.metadata())?;
        let mut b = query.into_builder();
        b.append(DATABASE, "public");
        let schema = b.schema();
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(stream(schema, vec![batch]))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(info(
            &schema,
            ticket_of(&query),
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let scope = self.scope(request.metadata())?;
        let tables = self.tables(&scope).await?;
        let mut b = query.into_builder();
        for (name, table_schema) in tables {
            b.append(DATABASE, "public", name, "TABLE", &table_schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let schema = b.schema();
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(stream(schema, vec![batch]))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(request.metadata())?;
        let schema = Schema::new(vec![Field::new("table_type", DataType::Utf8, false)]);
        Ok(Response::new(info(
            &schema,
            ticket_of(&query),
            request.into_inner(),
        )?))
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.scope(request.metadata())?;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "table_type",
            DataType::Utf8,
            false,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![
                "TABLE",
            ]))],
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(stream(schema, vec![batch]))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(request.metadata())?;
        let schema = query.clone().into_builder(sql_info()).schema();
        Ok(Response::new(info(
            &schema,
            ticket_of(&query),
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.scope(request.metadata())?;
        let b = query.into_builder(sql_info());
        let schema = b.schema();
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(stream(schema, vec![batch]))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
