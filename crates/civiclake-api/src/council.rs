//! `/api/v1/council/...`: the council committees module. The secretariat runs committees
//! (councillors, seats, sessions, agendas, outcomes, attendance, votes, media, the iter of
//! every act, fee rates and rules); a councillor files and co-signs acts as themselves (a
//! `councillor` token with `--subject` = their councillor id); anyone reads what is public
//! (filed acts, public sessions) and the Open Civic Data export (`/api/v1/council/ocd/...`).
//!
//! Writes take `If-Match: "<version>"` (the act's, session's, committee's or councillor's
//! stream version, given back as `ETag`): a stale one is a 409, so two clerks cannot
//! overwrite each other. A body refused field by field is a 400 naming the `field`; a step
//! the iter does not allow is a 409 with `details: {current, allowed}`.

use crate::AppState;
use crate::auth::{Caller, MaybeCaller};
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use civiclake_auth::{Permission, Principal};
use civiclake_core::ErrorClass;
use civiclake_council::acts::{Act, Draft, Initiative, Opinion, StepRequest};
use civiclake_council::iter::{ActKind, Status};
use civiclake_council::model::{Committee, Councillor, FeePolicy, FeeRate, Member, SignatureRules};
use civiclake_council::service::ActSummary;
use civiclake_council::sessions::{
    Attendance, ItemOutcome, ItemRequest, Media, Schedule, Session, VoteRequest,
};
use civiclake_council::state::{Held, State as CouncilState};
use civiclake_council::{Council, CouncilServiceError, ocd};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

impl From<CouncilServiceError> for ApiError {
    fn from(e: CouncilServiceError) -> Self {
        let error = ApiError::new(e.class(), e.to_string());
        match &e {
            CouncilServiceError::Invalid(f) => error.with_field(f.field.clone()),
            CouncilServiceError::Step(s) => error.with_details(json!({
                "current": s.from.as_str(),
                "requested": s.to.as_str(),
                "allowed": s.allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            })),
            CouncilServiceError::Stale { actual, .. } => {
                error.with_details(json!({"version": actual}))
            }
            _ => error,
        }
    }
}

fn council(state: &AppState) -> Result<&Council, ApiError> {
    state.council.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorClass::Unavailable,
            "the council module is not running on this server",
        )
    })
}

/// The secretariat (and administrators) run the committees.
fn secretariat(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Permission::CouncilManage)
}

/// Who reads: the secretariat everything; a councillor everything filed and the drafts
/// they sign; anyone else what is public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader<'a> {
    Secretariat,
    Councillor(Option<&'a str>),
    Public,
}

fn reader(p: Option<&Principal>) -> Reader<'_> {
    match p {
        Some(p) if p.can(Permission::CouncilManage) => Reader::Secretariat,
        Some(p) if p.can(Permission::CouncilRead) => Reader::Councillor(p.subject.as_deref()),
        _ => Reader::Public,
    }
}

fn sees_act(r: Reader<'_>, act: &Act) -> bool {
    match r {
        Reader::Secretariat => true,
        Reader::Councillor(me) => {
            ocd::act_is_public(act)
                || me.is_some_and(|me| {
                    act.draft.first_signer.as_deref() == Some(me) || act.signatures.contains_key(me)
                })
        }
        Reader::Public => ocd::act_is_public(act),
    }
}

fn sees_session(r: Reader<'_>, s: &Session) -> bool {
    r != Reader::Public || ocd::session_is_public(s)
}

/// A councillor acting as themselves: their token's subject.
fn as_councillor(caller: &Caller, who: &str) -> Result<(), ApiError> {
    let p = &caller.0;
    if p.can(Permission::CouncilManage) {
        return Ok(());
    }
    if !p.can(Permission::CouncilRead) {
        return Err(ApiError::forbidden(format!(
            "role {} may not act in the council: it needs 'council-manage' or 'council-read' (a councillor)",
            p.role
        )));
    }
    match p.subject.as_deref() {
        Some(me) if me == who => Ok(()),
        Some(me) => Err(ApiError::forbidden(format!(
            "this token is councillor {me}'s and may not act as {who}"
        ))),
        None => Err(ApiError::forbidden(
            "this councillor token names no councillor (create it with --subject ID)",
        )),
    }
}

/// A JSON body, refused with the path of the field that does not fit.
fn body<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let error = ApiError::bad_request(format!("{what}: {path}: {}", e.inner()));
        if path == "." {
            error
        } else {
            error.with_field(path)
        }
    })
}

/// `If-Match: "3"` (or `3`, `W/"3"`) as a version.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match: {text:?} is not a version: send the ETag you were given (\"3\")"
        ))
        .with_field("If-Match")
    })
}

fn caller_of(caller: &Caller, headers: &HeaderMap) -> Result<civiclake_council::Caller, ApiError> {
    let actor = match (&caller.0.subject, caller.0.can(Permission::CouncilManage)) {
        (Some(s), false) => format!("councillor:{s}"),
        _ => crate::bus::actor(&caller.0),
    };
    let mut c = civiclake_council::Caller::new(actor);
    c.if_match = if_match(headers)?;
    Ok(c)
}

/// `value` as JSON with `ETag: "<version>"`, and `status`.
fn tagged(status: StatusCode, version: u64, value: impl serde::Serialize) -> Response {
    let mut r = (status, Json(value)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn read_act(state: &CouncilState, id: &str, r: Reader<'_>) -> Result<Act, ApiError> {
    match state.acts.get(id) {
        Some(a) if sees_act(r, a) => Ok(a.clone()),
        _ => Err(ApiError::new(
            ErrorClass::NotFound,
            format!("no act '{id}'"),
        )),
    }
}

fn read_session(state: &CouncilState, id: &str, r: Reader<'_>) -> Result<Session, ApiError> {
    match state.sessions.get(id) {
        Some(s) if sees_session(r, s) => Ok(s.clone()),
        _ => Err(ApiError::new(
            ErrorClass::NotFound,
            format!("no session '{id}'"),
        )),
    }
}

// ---- councillors, committees, settings --------------------------------------------------

/// The councillors (their fiscal codes only for the secretariat).
#[utoipa::path(get, path = "/api/v1/council/councillors",
    responses((status = 200, description = "`[{id, name, group, term, from, to, version}]` (`fiscal_code` too for the secretariat)", body = Object)),
    tag = "council")]
pub(crate) async fn list_councillors(
    State(state): State<AppState>,
    caller: MaybeCaller,
) -> Result<Response, ApiError> {
    let full = reader(caller.0.as_ref()) == Reader::Secretariat;
    let list = council(&state)?
        .read(|s| {
            s.councillors
                .values()
                .map(|c| {
                    let mut v = json!(c);
                    if !full && let Some(o) = v.as_object_mut() {
                        o.remove("fiscal_code");
                    }
                    v
                })
                .collect::<Vec<_>>()
        })
        .await;
    Ok(Json(list).into_response())
}

/// Registers a councillor, or changes one (group, end of term).
#[utoipa::path(put, path = "/api/v1/council/councillors/{id}",
    params(("id" = String, Path, description = "The councillor's id")),
    request_body(content = Object, description = "`{id, name, fiscal_code, group, term, from: YYYY-MM-DD, to}`; `id` must match the path"),
    responses((status = 200, description = "The councillor (`ETag`: its version)", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn put_councillor(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let c: Councillor = body(&bytes, "the councillor")?;
    same_id(&c.id, &id)?;
    let out = council(&state)?
        .put_councillor(c, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, out.version, &out))
}

fn same_id(in_body: &str, in_path: &str) -> Result<(), ApiError> {
    if in_body == in_path {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "id: the body names {in_body:?}, the path {in_path:?}"
    ))
    .with_field("id"))
}

/// The committees with their seats.
#[utoipa::path(get, path = "/api/v1/council/committees",
    responses((status = 200, description = "`[{id, name, kind, term, subjects, from, to, quorum, members: [{councillor, role, substitute_of, from, to}], version}]`", body = Object)),
    tag = "council")]
pub(crate) async fn list_committees(State(state): State<AppState>) -> Result<Response, ApiError> {
    let list = council(&state)?
        .read(|s| s.committees.values().cloned().collect::<Vec<_>>())
        .await;
    Ok(Json(list).into_response())
}

/// Defines a committee, or changes one.
#[utoipa::path(put, path = "/api/v1/council/committees/{id}",
    params(("id" = String, Path, description = "The committee's id")),
    request_body(content = Object, description = "`{id, name, kind: permanent|special|control, term, subjects: [..], from, to, quorum}`"),
    responses((status = 200, description = "The committee (`ETag`: its version)", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn put_committee(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let c: Committee = body(&bytes, "the committee")?;
    same_id(&c.id, &id)?;
    let out = council(&state)?
        .put_committee(c, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, out.version, &out))
}

/// Seats a councillor in a committee (a substitute names whom they stand in for).
#[utoipa::path(post, path = "/api/v1/council/committees/{id}/members",
    params(("id" = String, Path, description = "The committee's id")),
    request_body(content = Object, description = "`{councillor, role: president|vice_president|secretary|member|invited, substitute_of, from, to}`"),
    responses((status = 201, description = "The committee with its seats", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn seat_member(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let m: Member = body(&bytes, "the seat")?;
    let out = council(&state)?
        .seat(&id, m, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::CREATED, out.version, &out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndSeat {
    to: chrono::NaiveDate,
}

/// Ends a councillor's seat in a committee.
#[utoipa::path(post, path = "/api/v1/council/committees/{id}/members/{councillor}/end",
    params(("id" = String, Path, description = "The committee's id"), ("councillor" = String, Path, description = "The councillor's id")),
    request_body(content = Object, description = "`{to: YYYY-MM-DD}`"),
    responses((status = 200, description = "The committee with its seats", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn end_seat(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, councillor)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let e: EndSeat = body(&bytes, "the end of the seat")?;
    let out = council(&state)?
        .unseat(&id, &councillor, e.to, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, out.version, &out))
}

/// The settings: fee rates, the fee policy, the signatures each kind of act needs.
#[utoipa::path(get, path = "/api/v1/council/settings",
    responses((status = 200, description = "`{fee_rates: [{committee, from, to, cents}], fee_policy: {same_day: once|each, monthly_cap_cents}, signature_rules: {minimum: {kind: n}}, version}`", body = Object)),
    tag = "council")]
pub(crate) async fn get_settings(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (v, version) = council(&state)?
        .read(|s| {
            (
                json!({"fee_rates": s.rates, "fee_policy": s.policy, "signature_rules": s.signature_rules, "version": s.config_version}),
                s.config_version,
            )
        })
        .await;
    Ok(tagged(StatusCode::OK, version, v))
}

/// Sets a committee's attendance fee from a date (replacing the one from the same date).
#[utoipa::path(post, path = "/api/v1/council/settings/fee-rates",
    request_body(content = Object, description = "`{committee, from, to, cents}`"),
    responses((status = 200, description = "`{version}`", body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn set_fee_rate(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let r: FeeRate = body(&bytes, "the fee rate")?;
    let v = council(&state)?
        .set_fee_rate(r, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, v, json!({"version": v})))
}

/// Sets the fee policy: the same-day rule and the monthly cap.
#[utoipa::path(put, path = "/api/v1/council/settings/fee-policy",
    request_body(content = Object, description = "`{same_day: once|each, monthly_cap_cents}`"),
    responses((status = 200, description = "`{version}`", body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn set_fee_policy(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let p: FeePolicy = body(&bytes, "the fee policy")?;
    let v = council(&state)?
        .set_fee_policy(p, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, v, json!({"version": v})))
}

/// Sets the signatures each kind of act needs to be filed.
#[utoipa::path(put, path = "/api/v1/council/settings/signature-rules",
    request_body(content = Object, description = "`{minimum: {proposal: 1, motion: 3, ...}}`"),
    responses((status = 200, description = "`{version}`", body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn set_signature_rules(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let r: SignatureRules = body(&bytes, "the signature rules")?;
    let v = council(&state)?
        .set_signature_rules(r, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, v, json!({"version": v})))
}

// ---- acts ------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct ActFilter {
    /// Only acts in this status (`FILED`).
    status: Option<String>,
    /// Only acts of this kind (`motion`).
    kind: Option<String>,
}

/// The acts the caller may see, with their status now.
#[utoipa::path(get, path = "/api/v1/council/acts", params(ActFilter),
    responses((status = 200, description = "`[{id, label, kind, subject, status, since, version}]`", body = Object), (status = 400, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn list_acts(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Query(filter): Query<ActFilter>,
) -> Result<Response, ApiError> {
    let status = match &filter.status {
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status: {s:?} is not a status of the iter (FILED, APPROVED, ...)"
            ))
            .with_field("status")
        })?),
        None => None,
    };
    let kind = match &filter.kind {
        Some(k) => Some(serde_json::from_value::<ActKind>(json!(k)).map_err(|_| {
            ApiError::bad_request(format!("kind: {k:?} is not a kind of act (proposal, motion, order_of_the_day, question, interpellation, amendment)")).with_field("kind")
        })?),
        None => None,
    };
    let r = reader(caller.0.as_ref());
    let list = council(&state)?
        .read(|s| {
            s.acts
                .values()
                .filter(|a| sees_act(r, a))
                .filter(|a| status.is_none_or(|x| a.status == x))
                .filter(|a| kind.is_none_or(|k| a.kind() == k))
                .map(ActSummary::from)
                .collect::<Vec<_>>()
        })
        .await;
    Ok(Json(list).into_response())
}

/// An act with its signatures, opinions and every step of its iter, and what may follow.
#[utoipa::path(get, path = "/api/v1/council/acts/{id}",
    params(("id" = String, Path, description = "The act's id")),
    responses((status = 200, description = "The act (`ETag`: its version); `next`: the statuses allowed next", body = Object),
        (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn get_act(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = reader(caller.0.as_ref());
    let act = council(&state)?.read(|s| read_act(s, &id, r)).await?;
    Ok(act_response(StatusCode::OK, &act))
}

fn act_response(status: StatusCode, act: &Act) -> Response {
    let mut v = json!(act);
    if let Some(o) = v.as_object_mut() {
        o.insert("label".into(), json!(act.label()));
        o.insert(
            "next".into(),
            json!(civiclake_council::iter::next(act.kind(), act.status)),
        );
    }
    tagged(status, act.version, v)
}

/// Drafts an act: the secretariat for anyone, a councillor as its first signer.
#[utoipa::path(post, path = "/api/v1/council/acts",
    request_body(content = Object, description = "`{id, kind: proposal|motion|order_of_the_day|question|interpellation|amendment, subject, text, initiative: giunta|councillors|citizens, first_signer, office, amends, financial_effects}`"),
    responses((status = 201, description = "The act, in DRAFT", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn draft_act(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let d: Draft = body(&bytes, "the act")?;
    if !caller.0.can(Permission::CouncilManage) {
        match (&d.first_signer, d.initiative) {
            (Some(first), Initiative::Councillors) => as_councillor(&caller, first)?,
            _ => {
                return Err(ApiError::forbidden(
                    "a councillor drafts the acts they sign first; the secretariat drafts the Giunta's and the citizens'",
                ));
            }
        }
    }
    let act = council(&state)?
        .draft(d, &caller_of(&caller, &headers)?)
        .await?;
    Ok(act_response(StatusCode::CREATED, &act))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invitation {
    councillor: String,
}

fn first_signer(state: &CouncilState, id: &str) -> Result<String, ApiError> {
    state
        .acts
        .get(id)
        .map(|a| a.draft.first_signer.clone().unwrap_or_default())
        .ok_or_else(|| ApiError::new(ErrorClass::NotFound, format!("no act '{id}'")))
}

/// The first signer invites a councillor to co-sign.
#[utoipa::path(post, path = "/api/v1/council/acts/{id}/invitations",
    params(("id" = String, Path, description = "The act's id")),
    request_body(content = Object, description = "`{councillor}`"),
    responses((status = 201, description = "The act", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let i: Invitation = body(&bytes, "the invitation")?;
    let c = council(&state)?;
    let first = c.read(|s| first_signer(s, &id)).await?;
    as_councillor(&caller, &first)?;
    let act = c
        .invite(&id, &first, &i.councillor, &caller_of(&caller, &headers)?)
        .await?;
    Ok(act_response(StatusCode::CREATED, &act))
}

/// A councillor co-signs an act they were invited to (as themselves).
#[utoipa::path(post, path = "/api/v1/council/acts/{id}/signatures",
    params(("id" = String, Path, description = "The act's id")),
    request_body(content = Object, description = "`{councillor}` (a councillor's token: their own id)"),
    responses((status = 201, description = "The act", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn sign(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let i: Invitation = body(&bytes, "the signature")?;
    as_councillor(&caller, &i.councillor)?;
    let act = council(&state)?
        .sign(&id, &i.councillor, &caller_of(&caller, &headers)?)
        .await?;
    Ok(act_response(StatusCode::CREATED, &act))
}

/// A councillor withdraws their co-signature.
#[utoipa::path(delete, path = "/api/v1/council/acts/{id}/signatures/{councillor}",
    params(("id" = String, Path, description = "The act's id"), ("councillor" = String, Path, description = "The co-signer")),
    responses((status = 200, description = "The act", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn unsign(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, councillor)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    as_councillor(&caller, &councillor)?;
    let act = council(&state)?
        .unsign(&id, &councillor, &caller_of(&caller, &headers)?)
        .await?;
    Ok(act_response(StatusCode::OK, &act))
}

/// Records an art. 49 opinion on a proposal awaiting its opinions.
#[utoipa::path(post, path = "/api/v1/council/acts/{id}/opinions",
    params(("id" = String, Path, description = "The act's id")),
    request_body(content = Object, description = "`{kind: technical|accounting, favourable, by, note}`"),
    responses((status = 201, description = "The act", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn give_opinion(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let o: Opinion = body(&bytes, "the opinion")?;
    let act = council(&state)?
        .give_opinion(&id, o, &caller_of(&caller, &headers)?)
        .await?;
    Ok(act_response(StatusCode::CREATED, &act))
}

/// Takes a step of an act's iter (filing, assignment to a committee, the council's agenda
/// and decision, publication, enforceability, answers, withdrawal, lapse). A committee's
/// agenda and outcomes are recorded on its session. The first signer may file and
/// withdraw their own act; every other step is the secretariat's.
#[utoipa::path(post, path = "/api/v1/council/acts/{id}/steps",
    params(("id" = String, Path, description = "The act's id")),
    request_body(content = Object, description = "`{to: STATUS, at, committee, role: lead|advisory, resolution_number, answer: written|oral_committee|oral_council, note}`"),
    responses((status = 201, description = "The act after the step", body = Object),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not allowed now (`details: {current, requested, allowed}`) or a stale If-Match (`details: {version}`)", body = ErrorBody)),
    tag = "council")]
pub(crate) async fn take_step(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: StepRequest = body(&bytes, "the step")?;
    let c = council(&state)?;
    if !caller.0.can(Permission::CouncilManage) {
        let first = c.read(|s| first_signer(s, &id)).await?;
        if !matches!(req.to, Some(Status::Filed | Status::Withdrawn)) {
            return Err(ApiError::forbidden(
                "a councillor files and withdraws their own acts; the other steps are the secretariat's",
            ));
        }
        as_councillor(&caller, &first)?;
    }
    if req.to.is_none() {
        return Err(ApiError::bad_request("to: the status to go to is required").with_field("to"));
    }
    let act = c.step(&id, req, &caller_of(&caller, &headers)?).await?;
    Ok(act_response(StatusCode::CREATED, &act))
}

// ---- sessions --------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct SessionFilter {
    /// Only this committee's sessions.
    committee: Option<String>,
}

/// The sessions the caller may see (public ones for the public).
#[utoipa::path(get, path = "/api/v1/council/sessions", params(SessionFilter),
    responses((status = 200, description = "`[{id, committee, year, number, first_call, status, started, ended, public, items, version}]`", body = Object)),
    tag = "council")]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Query(filter): Query<SessionFilter>,
) -> Result<Response, ApiError> {
    let r = reader(caller.0.as_ref());
    let list = council(&state)?
        .read(|s| {
            s.sessions
                .values()
                .filter(|x| sees_session(r, x))
                .filter(|x| filter.committee.as_ref().is_none_or(|c| &x.schedule.committee == c))
                .map(|x| {
                    json!({"id": x.id(), "committee": x.schedule.committee, "year": x.year, "number": x.number,
                        "first_call": x.schedule.first_call, "status": x.status, "started": x.started, "ended": x.ended,
                        "public": x.schedule.public, "items": x.items.len(), "version": x.version})
                })
                .collect::<Vec<_>>()
        })
        .await;
    Ok(Json(list).into_response())
}

/// A session with its agenda, attendance, votes and media.
#[utoipa::path(get, path = "/api/v1/council/sessions/{id}",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, description = "The session (`ETag`: its version)", body = Object), (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn get_session(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = reader(caller.0.as_ref());
    let s = council(&state)?.read(|st| read_session(st, &id, r)).await?;
    Ok(tagged(StatusCode::OK, s.version, &s))
}

/// Schedules a session of a committee (numbered in the committee's year).
#[utoipa::path(post, path = "/api/v1/council/sessions",
    request_body(content = Object, description = "`{id, committee, first_call, second_call, place, online_link, public}`"),
    responses((status = 201, description = "The session, scheduled", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn schedule_session(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let s: Schedule = body(&bytes, "the session")?;
    let out = council(&state)?
        .schedule(s, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::CREATED, out.version, &out))
}

/// Adds an agenda item (late once convened); an act examination puts its acts on the
/// committee's agenda.
#[utoipa::path(post, path = "/api/v1/council/sessions/{id}/items",
    params(("id" = String, Path, description = "The session's id")),
    request_body(content = Object, description = "`{kind: act_examination|hearing|communication|question, title, acts: [act ids]}`"),
    responses((status = 201, description = "The session", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn add_item(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let i: ItemRequest = body(&bytes, "the agenda item")?;
    let out = council(&state)?
        .add_item(&id, i, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::CREATED, out.version, &out))
}

/// Convenes a scheduled session (it needs its agenda).
#[utoipa::path(post, path = "/api/v1/council/sessions/{id}/convene",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, description = "The session, convened", body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn convene(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let out = council(&state)?
        .convene(&id, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, out.version, &out))
}

/// Records that a convened session was held, with its actual start and end.
#[utoipa::path(post, path = "/api/v1/council/sessions/{id}/held",
    params(("id" = String, Path, description = "The session's id")),
    request_body(content = Object, description = "`{started, ended}` (RFC 3339)"),
    responses((status = 200, description = "The session, held", body = Object), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn hold(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let h: Held = body(&bytes, "the sitting")?;
    let out = council(&state)?
        .hold(&id, h, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, out.version, &out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    reason: String,
}

/// Cancels a session not yet held; its acts without an outcome are POSTPONED.
#[utoipa::path(post, path = "/api/v1/council/sessions/{id}/cancel",
    params(("id" = String, Path, description = "The session's id")),
    request_body(content = Object, description = "`{reason}`"),
    responses((status = 200, description = "The session, cancelled", body = Object), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let c: Cancel = body(&bytes, "the cancellation")?;
    let out = council(&state)?
        .cancel(&id, &c.reason, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, out.version, &out))
}

/// Records the outcome of an agenda item: a committee's outcome for an act examination
/// (each act takes the step), ANSWERED for a question, DISCUSSED for the others.
#[utoipa::path(post, path = "/api/v1/council/sessions/{id}/items/{item}/outcome",
    params(("id" = String, Path, description = "The session's id"), ("item" = u32, Path, description = "The item's position")),
    request_body(content = Object, description = "`{outcome, discussion_start, discussion_end, to_committee, note}`"),
    responses((status = 200, description = "The session", body = Object), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn record_outcome(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, item)): Path<(String, u32)>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let o: ItemOutcome = body(&bytes, "the outcome")?;
    let out = council(&state)?
        .record_outcome(&id, item, o, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, out.version, &out))
}

/// Records a member's attendance (again to correct it); remote presence too.
#[utoipa::path(post, path = "/api/v1/council/sessions/{id}/attendance",
    params(("id" = String, Path, description = "The session's id")),
    request_body(content = Object, description = "`{councillor, presence: present|absent|justified, mode: physical|remote, arrival, leave}`"),
    responses((status = 200, description = "The session", body = Object), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn record_attendance(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let a: Attendance = body(&bytes, "the attendance")?;
    let out = council(&state)?
        .record_attendance(&id, a, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::OK, out.version, &out))
}

/// Records a vote on an agenda item (counts, or each member's vote for a roll call).
#[utoipa::path(post, path = "/api/v1/council/sessions/{id}/votes",
    params(("id" = String, Path, description = "The session's id")),
    request_body(content = Object, description = "`{item, kind: open|roll_call|secret, subject, present, yes, no, abstained, votes: {councillor: yes|no|abstained}, at}`"),
    responses((status = 201, description = "The session", body = Object), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn record_vote(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let v: VoteRequest = body(&bytes, "the vote")?;
    let out = council(&state)?
        .record_vote(&id, v, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::CREATED, out.version, &out))
}

/// Attaches a document (agenda, minutes draft → amended → approved, attachment, with its
/// SHA-256) or a recording (with each item's offset) to a session.
#[utoipa::path(post, path = "/api/v1/council/sessions/{id}/media",
    params(("id" = String, Path, description = "The session's id")),
    request_body(content = Object, description = "`{kind: agenda|minutes|recording|attachment, url, sha256, phase, offsets: {item: seconds}, title}`"),
    responses((status = 201, description = "The session", body = Object), (status = 400, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn attach_media(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    secretariat(&caller)?;
    let m: Media = body(&bytes, "the media")?;
    let out = council(&state)?
        .attach(&id, m, &caller_of(&caller, &headers)?)
        .await?;
    Ok(tagged(StatusCode::CREATED, out.version, &out))
}

/// Attendance fees per councillor and month (the secretariat; a councillor their own).
#[utoipa::path(get, path = "/api/v1/council/fees",
    responses((status = 200, description = "`[{councillor, month, sittings, days, gross_cents, cap_cents, fee_cents}]`", body = Object), (status = 403, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn fees(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let own = match reader(Some(&caller.0)) {
        Reader::Secretariat => None,
        Reader::Councillor(Some(me)) => Some(me.to_string()),
        _ => {
            return Err(ApiError::forbidden(format!(
                "role {} may not read attendance fees: the secretariat, or a councillor their own",
                caller.0.role
            )));
        }
    };
    let list: Vec<_> = council(&state)?
        .fees()
        .await
        .into_iter()
        .filter(|f| own.as_ref().is_none_or(|me| &f.councillor == me))
        .collect();
    Ok(Json(list).into_response())
}

// ---- Open Civic Data --------------------------------------------------------------------

/// Filed acts as Open Civic Data bills, with their actions and votes.
#[utoipa::path(get, path = "/api/v1/council/ocd/bills",
    responses((status = 200, description = "`{results: [bill]}` (Open Civic Data)", body = Object)),
    tag = "council")]
pub(crate) async fn ocd_bills(State(state): State<AppState>) -> Result<Response, ApiError> {
    let v = council(&state)?
        .read(|s| {
            s.acts
                .values()
                .filter(|a| ocd::act_is_public(a))
                .map(|a| ocd::bill(s, a))
                .collect::<Vec<Value>>()
        })
        .await;
    Ok(Json(json!({"results": v})).into_response())
}

/// One filed act as an Open Civic Data bill.
#[utoipa::path(get, path = "/api/v1/council/ocd/bills/{id}",
    params(("id" = String, Path, description = "The act's id")),
    responses((status = 200, description = "The bill", body = Object), (status = 404, body = ErrorBody)),
    tag = "council")]
pub(crate) async fn ocd_bill(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let v = council(&state)?
        .read(|s| read_act(s, &id, Reader::Public).map(|a| ocd::bill(s, &a)))
        .await?;
    Ok(Json(v).into_response())
}

/// Public sessions as Open Civic Data events with their agendas.
#[utoipa::path(get, path = "/api/v1/council/ocd/events",
    responses((status = 200, description = "`{results: [event]}` (Open Civic Data)", body = Object)),
    tag = "council")]
pub(crate) async fn ocd_events(State(state): State<AppState>) -> Result<Response, ApiError> {
    let v = council(&state)?
        .read(|s| {
            s.sessions
                .values()
                .filter(|x| ocd::session_is_public(x))
                .map(|x| ocd::event(s, x))
                .collect::<Vec<Value>>()
        })
        .await;
    Ok(Json(json!({"results": v})).into_response())
}

/// The votes of public sessions as Open Civic Data vote events.
#[utoipa::path(get, path = "/api/v1/council/ocd/votes",
    responses((status = 200, description = "`{results: [vote event]}` (Open Civic Data)", body = Object)),
    tag = "council")]
pub(crate) async fn ocd_votes(State(state): State<AppState>) -> Result<Response, ApiError> {
    let v = council(&state)?
        .read(|s| {
            s.sessions
                .values()
                .filter(|x| ocd::session_is_public(x))
                .flat_map(|x| x.votes.iter().map(move |v| ocd::vote(s, x, v)))
                .collect::<Vec<Value>>()
        })
        .await;
    Ok(Json(json!({"results": v})).into_response())
}

/// Councillors as Open Civic Data people, committees as organizations.
#[utoipa::path(get, path = "/api/v1/council/ocd/people",
    responses((status = 200, description = "`{results: [person]}` (Open Civic Data)", body = Object)),
    tag = "council")]
pub(crate) async fn ocd_people(State(state): State<AppState>) -> Result<Response, ApiError> {
    let v = council(&state)?
        .read(|s| {
            s.councillors
                .values()
                .map(|c| ocd::person(s, c))
                .collect::<Vec<Value>>()
        })
        .await;
    Ok(Json(json!({"results": v})).into_response())
}

/// Committees as Open Civic Data organizations.
#[utoipa::path(get, path = "/api/v1/council/ocd/organizations",
    responses((status = 200, description = "`{results: [organization]}` (Open Civic Data)", body = Object)),
    tag = "council")]
pub(crate) async fn ocd_organizations(State(state): State<AppState>) -> Result<Response, ApiError> {
    let v = council(&state)?
        .read(|s| {
            s.committees
                .values()
                .map(ocd::organization)
                .collect::<Vec<Value>>()
        })
        .await;
    Ok(Json(json!({"results": v})).into_response())
}
