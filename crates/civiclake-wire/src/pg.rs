//! The PostgreSQL wire protocol (`--pg-addr`): psql, DBeaver, Grafana, Metabase, psycopg...
//!
//! Built on `pgwire` and `datafusion-postgres`: their SQL rewrites for what clients send,
//! their `pg_catalog` emulation, their `SET`/`SHOW`/transaction handling and Arrow → rows
//! encoding. What is ours: the password is a civiclake token (the user name is free); the
//! connection's session is the token's ([`QueryEngine::session_in_catalog`]: its granted
//! tables only, masked columns, its memory pool), built once the token is checked; every
//! query runs through [`QueryEngine::sql_in`] / [`QueryEngine::plan_in`] (the HTTP API's
//! limits and read-only rules); anything else than a query, `SET`/`SHOW`, a transaction
//! statement, a cursor or an administrator's `DELETE` is refused.

use crate::error::{pg_error, refused};
use civiclake_api::Auth;
use civiclake_auth::Permission;
use civiclake_query::{QueryEngine, QueryResult, SqlScope};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, LogicalPlan, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The database name clients connect to.
pub const DATABASE: &str = "civiclake";

/// What `version()` answers: clients read the PostgreSQL version from it.
fn version_text() -> String {
    format!(
        "PostgreSQL 16.6 (civiclake {}, Apache DataFusion {})",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    )
}

/// A running PostgreSQL endpoint.
#[derive(Debug)]
pub struct PgServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl PgServer {
    /// Serves the PostgreSQL protocol on `listener` until `shutdown` turns true (open
    /// connections are closed then).
    pub fn start(
        listener: TcpListener,
        engine: QueryEngine,
        auth: Auth,
        tls: Option<tokio_rustls::TlsAcceptor>,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, peer)) => {
                            let conn = Arc::new(Connection::new(engine.clone(), auth.clone()));
                            let tls = tls.clone();
                            connections.spawn(async move {
                                if let Err(e) =
                                    pgwire::tokio::process_socket(socket, tls, Handlers(conn)).await
                                {
                                    tracing::debug!(%peer, error = %e, "postgres connection ended");
                                }
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "postgres endpoint could not accept");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
                }
            }
            connections.abort_all();
        });
        tracing::info!(%addr, "PostgreSQL protocol endpoint is serving (database '{DATABASE}', a token as password)");
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

/// One client connection: before its token is checked it has no session and refuses
/// everything; then its session is the token's.
struct Connection {
    engine: QueryEngine,
    auth: Auth,
    /// Before authentication: an empty session whose only hook refuses everything.
    unauthenticated: Arc<DfSessionService>,
    session: OnceLock<Session>,
    params: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
}

struct Session {
    ctx: Arc<SessionContext>,
    service: Arc<DfSessionService>,
    scope: SqlScope,
}

impl Connection {
    fn new(engine: QueryEngine, auth: Auth) -> Self {
        let rules = Arc::new(Rules {
            engine: engine.clone(),
            scope: None,
        });
        Self {
            unauthenticated: Arc::new(DfSessionService::new_with_hooks(
                Arc::new(SessionContext::new()),
                vec![rules],
            )),
            engine,
            auth,
            session: OnceLock::new(),
            params: DefaultServerParameterProvider::default(),
            pids: RandomPidSecretKeyGenerator::default(),
        }
    }

    fn service(&self) -> &Arc<DfSessionService> {
        self.session
            .get()
            .map_or(&self.unauthenticated, |s| &s.service)
    }

    /// The token's session: its tables under the catalog `civiclake`, `pg_catalog`,
    /// `version()`.
    fn open(&self, scope: SqlScope) -> PgWireResult<Session> {
        let ctx = self
            .engine
            .session_in_catalog(&scope, DATABASE)
            .map_err(|e| pg_error(&e))?;
        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider).map_err(|e| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "XX000".into(),
                format!("could not set up pg_catalog: {e}"),
            )))
        })?;
        let text = version_text();
        ctx.register_udf(create_udf(
            "version",
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
        ));
        let ctx = Arc::new(ctx);
        let rules = Arc::new(Rules {
            engine: self.engine.clone(),
            scope: Some(scope.clone()),
        });
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            rules,
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        Ok(Session {
            service: Arc::new(DfSessionService::new_with_hooks(ctx.clone(), hooks)),
            ctx,
            scope,
        })
    }
}

/// The handlers of one connection.
struct Handlers(Arc<Connection>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.0.clone()
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

#[async_trait::async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let database = LoginInfo::from_client_info(client)
                    .database()
                    .map(str::to_string);
                if let Some(db) = database
                    && db != DATABASE
                {
                    return Err(fatal(
                        "3D000",
                        format!("database \"{db}\" does not exist: connect to \"{DATABASE}\""),
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let user = LoginInfo::from_client_info(client)
                    .user()
                    .unwrap_or_default()
                    .to_string();
                let principal = self.auth.authenticate(&password.password).map_err(|e| {
                    fatal(
                        "28P01",
                        format!(
                            "password authentication failed for user \"{user}\": give a civiclake token as the password ({})",
                            e.message()
                        ),
                    )
                })?;
                if !principal.can(Permission::Query) {
                    return Err(fatal(
                        "42501",
                        format!("role {} lacks the 'query' permission", principal.role),
                    ));
                }
                let session = self.open(civiclake_api::auth::scope_of(&principal))?;
                if self.session.set(session).is_err() {
                    return Err(fatal("08P01", "authenticated twice".into()));
                }
                let (pid, key) = self.pids.generate(client);
                client.set_pid_and_secret_key(pid, key);
                finish_authentication(client, &self.params).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        SimpleQueryHandler::do_query(self.service().as_ref(), client, query).await
    }
}

#[async_trait::async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.service().query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(session) = self.session.get() else {
            return Err(not_authenticated());
        };
        if let (_, Some((statement, plan))) = &portal.statement.statement
            && is_query(statement)
        {
            let params = bind(portal, plan)?;
            let plan = plan
                .clone()
                .replace_params_with_values(&params)
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
            let result = self
                .engine
                .plan_in(&session.ctx, plan, &session.scope)
                .await
                .map_err(|e| pg_error(&e))?;
            return encode(result, &portal.result_column_format, client.metadata());
        }
        ExtendedQueryHandler::do_query(session.service.as_ref(), client, portal, max_rows).await
    }
}

/// The values of a portal's `$n` parameters, typed as the plan infers them (the client's
/// declared types win).
fn bind<S: Clone>(portal: &Portal<S>, plan: &LogicalPlan) -> PgWireResult<ParamValues> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let mut ordered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .map(|(name, ty)| {
            let n = name
                .trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX);
            (n, ty)
        })
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    let refs: Vec<Option<&DataType>> = ordered.iter().map(|(_, t)| t.as_ref()).collect();
    deserialize_parameters(portal, &refs)
}

/// A result as rows of the protocol, in the client's format.
fn encode(
    result: QueryResult,
    format: &Format,
    metadata: &std::collections::HashMap<String, String>,
) -> PgWireResult<Response> {
    let options = Arc::new(FormatOptions::from_client_metadata(metadata));
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &result.schema,
        format,
        Some(options),
    )?);
    let for_rows = fields.clone();
    let rows = result
        .batches
        .into_iter()
        .flat_map(move |b| encode_recordbatch(for_rows.clone(), b));
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(rows),
    )))
}

fn not_authenticated() -> PgWireError {
    fatal(
        "28000",
        "not authenticated: give a civiclake token as the password".into(),
    )
}

fn is_query(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::Execute { .. }
    )
}

/// `PREPARE name AS <query>`: the session keeps the plan for `EXECUTE` (psql's way to
/// send a parameterised query).
fn prepares_a_query(statement: &Statement) -> bool {
    matches!(statement, Statement::Prepare { statement, .. } if is_query(statement) && !matches!(**statement, Statement::Execute { .. }))
}

/// Statements the other hooks answer (settings, transactions, cursors).
fn answered_by_hooks(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowStatus { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
    )
}

/// The first hook of a session: queries run through the engine (grants, limits, read-only
/// rules of every entry point), an administrator's `DELETE` through the engine's delete,
/// settings and transactions go on to the other hooks, anything else is refused.
struct Rules {
    engine: QueryEngine,
    /// None before authentication: everything is refused.
    scope: Option<SqlScope>,
}

impl Rules {
    fn check(&self, statement: &Statement) -> Option<PgWireResult<()>> {
        let Some(scope) = &self.scope else {
            return Some(Err(not_authenticated()));
        };
        if is_query(statement) || answered_by_hooks(statement) || prepares_a_query(statement) {
            return None;
        }
        if matches!(statement, Statement::Delete(_)) && scope.allows_deletes() {
            return None;
        }
        Some(Err(refused(statement, scope)))
    }
}

#[async_trait::async_trait]
impl QueryHook for Rules {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(Err(e)) = self.check(statement) {
            return Some(Err(e));
        }
        let scope = self.scope.as_ref()?;
        if is_query(statement) {
            let result = self
                .engine
                .sql_in(session_context, &statement.to_string(), None, scope)
                .await;
            return Some(match result {
                Ok(result) => encode(result, &Format::UnifiedText, client.metadata()),
                Err(e) => Err(pg_error(&e)),
            });
        }
        if matches!(statement, Statement::Delete(_)) {
            let result = self.engine.sql_as(&statement.to_string(), scope).await;
            return Some(match result {
                Ok(result) => Ok(Response::Execution(
                    Tag::new("DELETE").with_rows(deleted_rows(&result)),
                )),
                Err(e) => Err(pg_error(&e)),
            });
        }
        None
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match self.check(statement) {
            Some(Err(e)) => Some(Err(e)),
            _ if matches!(statement, Statement::Delete(_)) => {
                Some(Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    "0A000".into(),
                    "DELETE runs as a simple query (without parameters) on this protocol".into(),
                )))))
            }
            _ => None,
        }
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}

/// The `count` of a delete's answer.
fn deleted_rows(result: &QueryResult) -> usize {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::UInt64Type;
    result
        .batches
        .first()
        .and_then(|b| b.column_by_name("count"))
        .and_then(|c| {
            c.as_primitive_opt::<UInt64Type>()
                .map(|a| a.value(0) as usize)
                .or_else(|| {
                    c.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                        .map(|a| a.value(0) as usize)
                })
        })
        .unwrap_or(0)
}
