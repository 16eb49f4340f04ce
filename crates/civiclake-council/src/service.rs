//! The council service: every command of the secretariat and the councillors, checked
//! against the state, stored as events in `council_events` (with the stream's version as
//! the optimistic-concurrency check), applied to the state, written as rows of
//! [`crate::tables`] and told on the bus (`bus/council/acts/{id}`,
//! `bus/council/sessions/{id}`).
//!
//! Commands that move acts from a session (an act put on a committee's agenda, the
//! committee's outcome, a cancelled session postponing its acts) append to the session's
//! stream and then to each act's, under the service's lock: every check is done before the
//! first append.

use crate::CouncilError;
use crate::acts::{Act, AnswerMode, Draft, Opinion, Step, StepContext, StepRequest, local_day};
use crate::fees::{self, MonthlyFee};
use crate::iter::{ActKind, Status, StepError};
use crate::model::{Committee, Councillor, FeePolicy, FeeRate, Member, SameDay, SignatureRules};
use crate::sessions::{
    AgendaItem, Attendance, ItemKind, ItemOutcome, ItemRequest, Media, Schedule, Session,
    SessionStatus, VoteRequest,
};
use crate::state::{
    CONFIG_STREAM, CommitteeState, CouncillorState, Held, Left, Outcome, Scheduled, SignatureEvent,
    State, act_stream, committee_stream, councillor_stream, event, session_stream,
};
use crate::tables::{self, V};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use civiclake_core::{
    CloudEvent, ErrorClass, EventEnvelope, ExpectedVersion, NewEvent, Platform, PlatformError,
    Topic,
};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

/// The source of the module's CloudEvents.
pub const BUS_SOURCE: &str = "/civiclake/council";

/// CloudEvent types the module publishes.
pub mod bus_type {
    /// A step of an act's iter (`bus/council/acts/{id}`).
    pub const ACT_STEP: &str = "it.prato.council.ActStep";
    /// A session scheduled, convened, held or cancelled (`bus/council/sessions/{id}`).
    pub const SESSION: &str = "it.prato.council.SessionChanged";
}

/// The JSON schemas of the module's bus events (registered on the bus at start).
pub fn bus_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            bus_type::ACT_STEP,
            json!({
                "type": "object",
                "required": ["act", "kind", "from", "to", "at"],
                "properties": {
                    "act": {"type": "string"}, "label": {"type": "string"},
                    "kind": {"type": "string"}, "from": {"type": "string"},
                    "to": {"type": "string"}, "at": {"type": "string"},
                    "committee": {"type": ["string", "null"]}
                }
            }),
        ),
        (
            bus_type::SESSION,
            json!({
                "type": "object",
                "required": ["session", "committee", "status"],
                "properties": {
                    "session": {"type": "string"}, "committee": {"type": "string"},
                    "status": {"type": "string"}, "first_call": {"type": "string"}
                }
            }),
        ),
    ]
}

/// Settings of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CouncilConfig {
    /// Days a question waits for its answer before it may be marked UNANSWERED (art. 43
    /// TUEL: 30).
    pub answer_days: u64,
}

impl Default for CouncilConfig {
    fn default() -> Self {
        Self { answer_days: 30 }
    }
}

/// A failure of a council command.
#[derive(Debug, thiserror::Error)]
pub enum CouncilServiceError {
    /// Refused input, with the field (HTTP 400).
    #[error(transparent)]
    Invalid(#[from] CouncilError),
    /// A step the iter does not allow now, naming the current status and the allowed
    /// next ones (HTTP 409).
    #[error(transparent)]
    Step(#[from] StepError),
    /// The stream is at another version than the caller's `If-Match` (HTTP 409).
    #[error("{stream} is at version {actual}, not {expected}: reload it and try again")]
    Stale {
        stream: String,
        expected: u64,
        actual: u64,
    },
    /// A command that does not fit the thing's state (HTTP 409).
    #[error("{0}")]
    State(String),
    /// No such act, session, committee or councillor (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// Stored events that cannot be read back, a row that cannot be built (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl CouncilServiceError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CouncilServiceError::Invalid(_) => ErrorClass::User,
            CouncilServiceError::Step(_)
            | CouncilServiceError::Stale { .. }
            | CouncilServiceError::State(_) => ErrorClass::Conflict,
            CouncilServiceError::NotFound(_) => ErrorClass::NotFound,
            CouncilServiceError::Platform(e) => e.class(),
            CouncilServiceError::Internal(_) => ErrorClass::Internal,
        }
    }
}

type Result<T> = std::result::Result<T, CouncilServiceError>;

fn invalid(field: &str, reason: impl Into<String>) -> CouncilServiceError {
    CouncilServiceError::Invalid(CouncilError::field(field, reason.into()))
}

fn not_found(what: &str, id: &str) -> CouncilServiceError {
    CouncilServiceError::NotFound(format!("no {what} '{id}'"))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn month_of(day: NaiveDate) -> String {
    format!("{:04}-{:02}", day.year(), day.month())
}

/// Who asks, and since which version of the thing (`If-Match`).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The actor recorded on the events (a token's name, a councillor's id).
    pub actor: String,
    /// The stream version the caller saw; `None`: no check.
    pub if_match: Option<u64>,
    /// When what is recorded happened (an import of past records); `None`: now.
    pub at: Option<DateTime<Utc>>,
}

impl Caller {
    pub fn new(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            if_match: None,
            at: None,
        }
    }

    pub fn if_match(mut self, version: u64) -> Self {
        self.if_match = Some(version);
        self
    }

    /// Records what happened at `at` (not now).
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self
    }

    /// When the command's facts happened.
    pub fn now(&self) -> DateTime<Utc> {
        self.at.unwrap_or_else(Utc::now)
    }

    /// The same actor and time, without an `If-Match` (for the acts a session's command
    /// moves).
    fn without_if_match(&self) -> Self {
        Self {
            if_match: None,
            ..self.clone()
        }
    }
}

/// The council service (cheap to clone).
#[derive(Debug, Clone)]
pub struct Council {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    platform: Arc<dyn Platform>,
    config: CouncilConfig,
    state: Mutex<State>,
}

impl Council {
    /// Starts the service over the council module's `platform`: replays `council_events`
    /// (and the first time stores the default fee policy and signature rules). The tables
    /// of [`tables::tables`] must exist.
    pub async fn start(platform: Arc<dyn Platform>, config: CouncilConfig) -> Result<Self> {
        let council = Self {
            inner: Arc::new(Inner {
                platform,
                config,
                state: Mutex::new(State::default()),
            }),
        };
        council.load().await?;
        Ok(council)
    }

    fn platform(&self) -> &dyn Platform {
        self.inner.platform.as_ref()
    }

    pub fn config(&self) -> CouncilConfig {
        self.inner.config
    }

    async fn load(&self) -> Result<()> {
        let state = rebuild(self.platform()).await?;
        let empty = state.config_version == 0;
        *self.inner.state.lock().await = state;
        if empty {
            let caller = Caller::new("civiclake");
            self.set_fee_policy(FeePolicy::default(), &caller).await?;
            self.set_signature_rules(SignatureRules::default(), &caller)
                .await?;
        }
        Ok(())
    }

    /// Reads the state with `f` (under the service's lock: keep `f` short).
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&*self.inner.state.lock().await)
    }

    /// A copy of the whole state (for reads and tests).
    pub async fn snapshot(&self) -> State {
        self.inner.state.lock().await.clone()
    }

    // ---- storing -------------------------------------------------------------------

    /// Appends `events` to `stream` at the version the state has (checked against the
    /// caller's `If-Match` first), applies them; returns the stored envelopes.
    async fn append(
        &self,
        state: &mut MutexGuard<'_, State>,
        stream: &str,
        caller: &Caller,
        mut events: Vec<NewEvent>,
    ) -> Result<Vec<EventEnvelope>> {
        if let Some(at) = caller.at {
            for e in events.iter_mut().filter(|e| e.time.is_none()) {
                e.time = Some(micros(at));
            }
        }
        let actual = state.version(stream);
        if let Some(expected) = caller.if_match
            && expected != actual
        {
            return Err(CouncilServiceError::Stale {
                stream: stream.to_string(),
                expected,
                actual,
            });
        }
        let expected = if actual == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(actual)
        };
        let stored = self
            .platform()
            .append_events(stream, expected, events)
            .await?;
        for e in &stored {
            state.apply(e).map_err(CouncilServiceError::Internal)?;
        }
        Ok(stored)
    }

    /// Appends one event of type `ty` (schema version 1) with `payload`, as [`Self::append`].
    async fn append_one(
        &self,
        state: &mut MutexGuard<'_, State>,
        stream: &str,
        caller: &Caller,
        ty: &str,
        payload: Value,
    ) -> Result<Vec<EventEnvelope>> {
        let event = NewEvent::new(ty, 1, &caller.actor, payload);
        self.append(state, stream, caller, vec![event]).await
    }

    async fn write(&self, table: &str, rows: &mut civiclake_core::rows::Rows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = rows
            .finish()
            .map_err(|e| CouncilServiceError::Internal(format!("{table}: {e}")))?;
        self.platform().write_rows(table, batch).await?;
        Ok(())
    }

    async fn publish(&self, topic: String, ty: &str, subject: &str, at: i64, data: Value) {
        let Ok(topic) = Topic::new(topic) else {
            return;
        };
        // The stream and its version: one event per change, the same id if told again.
        let id = format!("council-{}", data_id(&data));
        let event = CloudEvent::new(id, BUS_SOURCE, ty)
            .with_subject(subject.to_string())
            .with_time(at)
            .with_data(data);
        if let Err(e) = self.platform().publish(&topic, event).await {
            tracing::warn!(error = %e, r#type = ty, subject, "council: the bus did not take an event");
        }
    }

    // ---- settings ------------------------------------------------------------------

    /// Sets the fee rate of a committee from a date (replacing one from the same date).
    pub async fn set_fee_rate(&self, rate: FeeRate, caller: &Caller) -> Result<u64> {
        rate.check()?;
        let mut state = self.inner.state.lock().await;
        if !state.committees.contains_key(&rate.committee) {
            return Err(invalid(
                "committee",
                format!("there is no committee '{}'", rate.committee),
            ));
        }
        if let Some(o) = state
            .rates
            .iter()
            .find(|r| r.from != rate.from && r.overlaps(&rate))
        {
            return Err(invalid(
                "from",
                format!(
                    "overlaps the rate from {} ({} cents); end that one first",
                    o.from, o.cents
                ),
            ));
        }
        let stored = self
            .append_one(
                &mut state,
                CONFIG_STREAM,
                caller,
                event::FEE_RATE_SET,
                json!(rate),
            )
            .await?;
        let mut rows = tables::rows(tables::FEE_RATES);
        let from = rate.from.to_string();
        let to = rate.to.map(|t| t.to_string());
        rows.push(&[
            V::T(stored[0].time),
            V::S(Some(&rate.committee)),
            V::S(Some(&from)),
            V::S(to.as_deref()),
            V::I(Some(rate.cents as i64)),
            V::I(Some(stored[0].version as i64)),
        ]);
        self.write(tables::FEE_RATES, &mut rows).await?;
        Ok(state.config_version)
    }

    /// Sets the fee policy (same-day rule, monthly cap).
    pub async fn set_fee_policy(&self, policy: FeePolicy, caller: &Caller) -> Result<u64> {
        let mut state = self.inner.state.lock().await;
        let stored = self
            .append_one(
                &mut state,
                CONFIG_STREAM,
                caller,
                event::FEE_POLICY_SET,
                json!(policy),
            )
            .await?;
        let mut rows = tables::rows(tables::FEE_POLICY);
        rows.push(&[
            V::T(stored[0].time),
            V::B(Some(policy.same_day == SameDay::Once)),
            V::I(Some(policy.monthly_cap_cents as i64)),
            V::I(Some(stored[0].version as i64)),
        ]);
        self.write(tables::FEE_POLICY, &mut rows).await?;
        Ok(state.config_version)
    }

    /// Sets the signatures each kind of act needs to be filed.
    pub async fn set_signature_rules(&self, rules: SignatureRules, caller: &Caller) -> Result<u64> {
        rules.check()?;
        let mut state = self.inner.state.lock().await;
        self.append_one(
            &mut state,
            CONFIG_STREAM,
            caller,
            event::SIGNATURE_RULES_SET,
            json!(rules),
        )
        .await?;
        Ok(state.config_version)
    }

    // ---- councillors and committees ------------------------------------------------

    /// Registers a councillor, or updates one (a new group, the end of the term).
    pub async fn put_councillor(
        &self,
        mut councillor: Councillor,
        caller: &Caller,
    ) -> Result<CouncillorState> {
        councillor.check()?;
        let mut state = self.inner.state.lock().await;
        let stream = councillor_stream(&councillor.id);
        let stored = self
            .append_one(
                &mut state,
                &stream,
                caller,
                event::COUNCILLOR_REGISTERED,
                json!(councillor),
            )
            .await?;
        let mut rows = tables::rows(tables::COUNCILLORS);
        let (from, to) = (
            councillor.from.to_string(),
            councillor.to.map(|t| t.to_string()),
        );
        rows.push(&[
            V::T(stored[0].time),
            V::S(Some(&councillor.id)),
            V::S(Some(&councillor.group)),
            V::S(Some(&councillor.name)),
            V::S(Some(&councillor.term)),
            V::S(Some(&from)),
            V::S(to.as_deref()),
            V::I(Some(stored[0].version as i64)),
        ]);
        self.write(tables::COUNCILLORS, &mut rows).await?;
        state
            .councillors
            .get(&councillor.id)
            .cloned()
            .ok_or_else(|| not_found("councillor", &councillor.id))
    }

    /// Defines a committee, or updates one.
    pub async fn put_committee(
        &self,
        committee: Committee,
        caller: &Caller,
    ) -> Result<CommitteeState> {
        committee.check()?;
        let mut state = self.inner.state.lock().await;
        let stream = committee_stream(&committee.id);
        self.append_one(
            &mut state,
            &stream,
            caller,
            event::COMMITTEE_DEFINED,
            json!(committee),
        )
        .await?;
        state
            .committees
            .get(&committee.id)
            .cloned()
            .ok_or_else(|| not_found("committee", &committee.id))
    }

    /// Seats a councillor in a committee.
    pub async fn seat(
        &self,
        committee: &str,
        member: Member,
        caller: &Caller,
    ) -> Result<CommitteeState> {
        member.check()?;
        let mut state = self.inner.state.lock().await;
        let c = state
            .committees
            .get(committee)
            .ok_or_else(|| not_found("committee", committee))?;
        let Some(councillor) = state.councillors.get(&member.councillor) else {
            return Err(invalid(
                "councillor",
                format!("there is no councillor '{}'", member.councillor),
            ));
        };
        if !councillor.councillor.in_office(member.from) {
            return Err(invalid(
                "from",
                format!("{} is not in office on {}", member.councillor, member.from),
            ));
        }
        let overlaps = |m: &Member| {
            m.councillor == member.councillor
                && m.from <= member.to.unwrap_or(NaiveDate::MAX)
                && member.from <= m.to.unwrap_or(NaiveDate::MAX)
        };
        if c.members.iter().any(overlaps) {
            return Err(invalid(
                "councillor",
                format!(
                    "{} already has a seat in {committee} then",
                    member.councillor
                ),
            ));
        }
        if let Some(p) = &member.substitute_of {
            let principal = c
                .members
                .iter()
                .find(|m| &m.councillor == p && m.seated(member.from));
            match principal {
                None => {
                    return Err(invalid(
                        "substitute_of",
                        format!("{p} has no seat in {committee} on {}", member.from),
                    ));
                }
                Some(pm) if pm.substitute_of.is_some() => {
                    return Err(invalid("substitute_of", format!("{p} is a substitute")));
                }
                Some(_) => {
                    let group = |id: &str| state.councillors.get(id).map(|c| &c.councillor.group);
                    if group(p) != group(&member.councillor) {
                        return Err(invalid(
                            "substitute_of",
                            format!("a substitute is of the same group as {p}"),
                        ));
                    }
                }
            }
        }
        let group = councillor.councillor.group.clone();
        let stream = committee_stream(committee);
        let stored = self
            .append_one(
                &mut state,
                &stream,
                caller,
                event::MEMBER_SEATED,
                json!(member),
            )
            .await?;
        let mut rows = tables::rows(tables::MEMBERS);
        let from = NaiveDate::and_hms_opt(&member.from, 0, 0, 0)
            .map_or(stored[0].time, |d| d.and_utc().timestamp_micros());
        let to = member
            .to
            .and_then(|t| t.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp_micros());
        rows.push(&[
            V::T(from),
            V::S(Some(committee)),
            V::S(Some(&member.councillor)),
            V::S(Some(&group)),
            V::S(Some(member.role.as_str())),
            V::S(member.substitute_of.as_deref()),
            V::Ts(to),
        ]);
        self.write(tables::MEMBERS, &mut rows).await?;
        state
            .committees
            .get(committee)
            .cloned()
            .ok_or_else(|| not_found("committee", committee))
    }

    /// Ends a councillor's seat in a committee on `to`.
    pub async fn unseat(
        &self,
        committee: &str,
        councillor: &str,
        to: NaiveDate,
        caller: &Caller,
    ) -> Result<CommitteeState> {
        let mut state = self.inner.state.lock().await;
        let c = state
            .committees
            .get(committee)
            .ok_or_else(|| not_found("committee", committee))?;
        let Some(seat) = c
            .members
            .iter()
            .find(|m| m.councillor == councillor && m.to.is_none())
        else {
            return Err(not_found("open seat of", councillor));
        };
        if to < seat.from {
            return Err(invalid(
                "to",
                format!("is before the seat began ({})", seat.from),
            ));
        }
        let stream = committee_stream(committee);
        let left = Left {
            councillor: councillor.to_string(),
            to,
        };
        self.append_one(&mut state, &stream, caller, event::MEMBER_LEFT, json!(left))
            .await?;
        state
            .committees
            .get(committee)
            .cloned()
            .ok_or_else(|| not_found("committee", committee))
    }

    // ---- acts ----------------------------------------------------------------------

    fn councillor_in_office(state: &State, id: &str, day: NaiveDate, field: &str) -> Result<()> {
        match state.councillors.get(id) {
            Some(c) if c.councillor.in_office(day) => Ok(()),
            Some(_) => Err(invalid(field, format!("{id} is not in office on {day}"))),
            None => Err(invalid(field, format!("there is no councillor '{id}'"))),
        }
    }

    /// Drafts an act (its stream must not exist).
    pub async fn draft(&self, draft: Draft, caller: &Caller) -> Result<Act> {
        draft.check()?;
        let mut state = self.inner.state.lock().await;
        if state.acts.contains_key(&draft.id) {
            return Err(CouncilServiceError::State(format!(
                "there is an act '{}' already",
                draft.id
            )));
        }
        let today = local_day(caller.now());
        if let Some(s) = &draft.first_signer {
            Self::councillor_in_office(&state, s, today, "first_signer")?;
        }
        if let Some(a) = &draft.amends {
            match state.acts.get(a) {
                None => return Err(invalid("amends", format!("there is no act '{a}'"))),
                Some(act) if act.kind() == ActKind::Amendment || act.kind().is_question() => {
                    return Err(invalid(
                        "amends",
                        format!("a {} is not amended", act.kind()),
                    ));
                }
                Some(act)
                    if !crate::iter::next(act.kind(), act.status).contains(&Status::Withdrawn) =>
                {
                    return Err(invalid(
                        "amends",
                        format!("{} is {}: too late to amend", act.label(), act.status),
                    ));
                }
                Some(_) => {}
            }
        }
        let stream = act_stream(&draft.id);
        let stored = self
            .append_one(
                &mut state,
                &stream,
                caller,
                event::ACT_DRAFTED,
                json!(draft),
            )
            .await?;
        let act = state
            .acts
            .get(&draft.id)
            .cloned()
            .ok_or_else(|| not_found("act", &draft.id))?;
        self.act_row(&state, &act, stored[0].time).await?;
        Ok(act)
    }

    async fn act_row(&self, state: &State, act: &Act, at: i64) -> Result<()> {
        let group = act
            .draft
            .first_signer
            .as_ref()
            .and_then(|s| state.councillors.get(s))
            .map(|c| c.councillor.group.clone());
        let mut rows = tables::rows(tables::ACTS);
        rows.push(&[
            V::T(at),
            V::S(Some(act.id())),
            V::S(Some(act.kind().as_str())),
            V::S(Some(act.draft.initiative.as_str())),
            V::S(act.draft.first_signer.as_deref()),
            V::S(group.as_deref()),
            V::S(Some(&act.draft.subject)),
            V::I(act.number.map(i64::from)),
            V::I(act.year.map(i64::from)),
            V::S(act.draft.amends.as_deref()),
            V::I(Some(i64::from(act.signature_count()))),
            V::Ts(Some(micros(act.drafted_at))),
        ]);
        self.write(tables::ACTS, &mut rows).await
    }

    fn act<'s>(state: &'s State, id: &str) -> Result<&'s Act> {
        state.acts.get(id).ok_or_else(|| not_found("act", id))
    }

    /// The first signer `by` invites `councillor` to co-sign.
    pub async fn invite(
        &self,
        act: &str,
        by: &str,
        councillor: &str,
        caller: &Caller,
    ) -> Result<Act> {
        let mut state = self.inner.state.lock().await;
        let a = Self::act(&state, act)?;
        a.check_invite(by, councillor)?;
        Self::councillor_in_office(&state, councillor, local_day(caller.now()), "councillor")?;
        let sig = SignatureEvent {
            councillor: councillor.to_string(),
            by: Some(by.to_string()),
        };
        self.signature(&mut state, act, event::COSIGN_INVITED, sig, caller)
            .await
    }

    /// `councillor` co-signs (they were invited).
    pub async fn sign(&self, act: &str, councillor: &str, caller: &Caller) -> Result<Act> {
        let mut state = self.inner.state.lock().await;
        Self::act(&state, act)?.check_sign(councillor)?;
        let sig = SignatureEvent {
            councillor: councillor.to_string(),
            by: None,
        };
        self.signature(&mut state, act, event::COSIGNED, sig, caller)
            .await
    }

    /// `councillor` withdraws their co-signature.
    pub async fn unsign(&self, act: &str, councillor: &str, caller: &Caller) -> Result<Act> {
        let mut state = self.inner.state.lock().await;
        let a = Self::act(&state, act)?;
        let min = state.signature_rules.minimum(a.kind());
        a.check_unsign(councillor, min)?;
        let sig = SignatureEvent {
            councillor: councillor.to_string(),
            by: None,
        };
        self.signature(&mut state, act, event::SIGNATURE_WITHDRAWN, sig, caller)
            .await
    }

    async fn signature(
        &self,
        state: &mut MutexGuard<'_, State>,
        act: &str,
        ty: &str,
        sig: SignatureEvent,
        caller: &Caller,
    ) -> Result<Act> {
        let stream = act_stream(act);
        let stored = self
            .append_one(state, &stream, caller, ty, json!(sig))
            .await?;
        let a = Self::act(state, act)?.clone();
        if ty != event::COSIGN_INVITED {
            self.act_row(state, &a, stored[0].time).await?;
        }
        Ok(a)
    }

    /// Records an art. 49 opinion on a proposal in OPINIONS.
    pub async fn give_opinion(&self, act: &str, opinion: Opinion, caller: &Caller) -> Result<Act> {
        let mut state = self.inner.state.lock().await;
        Self::act(&state, act)?.check_opinion(&opinion)?;
        let stream = act_stream(act);
        self.append_one(
            &mut state,
            &stream,
            caller,
            event::OPINION_GIVEN,
            json!(opinion),
        )
        .await?;
        Ok(Self::act(&state, act)?.clone())
    }

    fn check_step(
        &self,
        state: &State,
        act: &Act,
        req: &StepRequest,
        at: DateTime<Utc>,
    ) -> Result<Step> {
        let committees = &state.committees;
        let exists = |c: &str, day: NaiveDate| {
            committees
                .get(c)
                .is_some_and(|c| c.committee.from <= day && c.committee.to.is_none_or(|t| day <= t))
        };
        let ctx = StepContext {
            min_signatures: state.signature_rules.minimum(act.kind()),
            answer_days: self.inner.config.answer_days,
            committee_exists: &exists,
        };
        let mut step = act.check_step(req, at, &ctx)?;
        if step.to == crate::iter::Status::Filed && act.number.is_none() {
            let year = local_day(at).year();
            let last = state
                .act_numbers
                .get(&(act.kind(), year))
                .copied()
                .unwrap_or(0);
            step.number = Some(last + 1);
            step.year = Some(year);
        }
        Ok(step)
    }

    /// Takes a step of an act's iter that is not a committee's (those come from sessions):
    /// filing, assignment, the council's agenda and decisions, publication, answers,
    /// withdrawal, lapse.
    pub async fn step(&self, act: &str, req: StepRequest, caller: &Caller) -> Result<Act> {
        let mut state = self.inner.state.lock().await;
        let a = Self::act(&state, act)?;
        if let Some(to) = req.to
            && (to == Status::OnCommitteeAgenda || to.is_committee_outcome())
        {
            return Err(StepError::rule(
                a.label(),
                a.kind(),
                a.status,
                to,
                "a committee's agenda and outcomes are recorded on its session (POST /sessions/{id}/items, /outcome)".into(),
            )
            .into());
        }
        let at = req.at.unwrap_or_else(|| caller.now());
        if at > Utc::now() + chrono::Duration::minutes(5) {
            return Err(invalid("at", "a step is recorded when it has happened"));
        }
        let step = self.check_step(&state, a, &req, at)?;
        self.store_steps(&mut state, vec![(act.to_string(), step)], caller)
            .await?;
        Ok(Self::act(&state, act)?.clone())
    }

    /// Appends `steps` (act, step) — already checked — to their acts' streams, writes
    /// their rows and tells the bus.
    async fn store_steps(
        &self,
        state: &mut MutexGuard<'_, State>,
        steps: Vec<(String, Step)>,
        caller: &Caller,
    ) -> Result<()> {
        let mut rows = tables::rows(tables::STEPS);
        let mut told = Vec::new();
        // `caller`'s If-Match is the act's for a step of its own; the session commands pass
        // a caller without one for the acts they move.
        for (act, step) in steps {
            let stream = act_stream(&act);
            let filed = step.number.is_some();
            let stored = self
                .append(
                    state,
                    &stream,
                    caller,
                    vec![
                        NewEvent::new(event::ACT_STEP, 1, &caller.actor, json!(step))
                            .at(micros(step.at)),
                    ],
                )
                .await?;
            let a = Self::act(state, &act)?.clone();
            rows.push(&[
                V::T(micros(step.at)),
                V::S(Some(&act)),
                V::S(Some(a.kind().as_str())),
                V::S(Some(step.from.as_str())),
                V::S(Some(step.to.as_str())),
                V::S(Some(step.body.as_str())),
                V::S(step.committee.as_deref().or(step.to_committee.as_deref())),
                V::I(Some(stored[0].version as i64)),
                V::S(step.session.as_deref()),
                V::I(step.item.map(i64::from)),
                V::S(step.role.map(|r| match r {
                    crate::acts::AssignmentRole::Lead => "lead",
                    crate::acts::AssignmentRole::Advisory => "advisory",
                })),
                V::S(step.resolution_number.as_deref()),
                V::S(step.note.as_deref()),
            ]);
            if filed {
                self.act_row(state, &a, micros(step.at)).await?;
            }
            told.push((a, step, stored[0].version));
        }
        self.write(tables::STEPS, &mut rows).await?;
        for (a, step, version) in told {
            self.publish(
                format!("bus/council/acts/{}", a.id()),
                bus_type::ACT_STEP,
                a.id(),
                micros(step.at),
                json!({
                    "act": a.id(), "version": version, "label": a.label(), "kind": a.kind().as_str(),
                    "from": step.from.as_str(), "to": step.to.as_str(),
                    "at": step.at.to_rfc3339(), "committee": step.committee,
                }),
            )
            .await;
        }
        Ok(())
    }

    // ---- sessions ------------------------------------------------------------------

    fn session<'s>(state: &'s State, id: &str) -> Result<&'s Session> {
        state
            .sessions
            .get(id)
            .ok_or_else(|| not_found("session", id))
    }

    /// Schedules a session (numbered in its committee's year).
    pub async fn schedule(&self, schedule: Schedule, caller: &Caller) -> Result<Session> {
        schedule.check()?;
        let mut state = self.inner.state.lock().await;
        if state.sessions.contains_key(&schedule.id) {
            return Err(CouncilServiceError::State(format!(
                "there is a session '{}' already",
                schedule.id
            )));
        }
        let day = local_day(schedule.first_call);
        match state.committees.get(&schedule.committee) {
            Some(c) if c.committee.from <= day && c.committee.to.is_none_or(|t| day <= t) => {}
            Some(_) => {
                return Err(invalid(
                    "first_call",
                    format!("{} does not sit on {day}", schedule.committee),
                ));
            }
            None => {
                return Err(invalid(
                    "committee",
                    format!("there is no committee '{}'", schedule.committee),
                ));
            }
        }
        let year = day.year();
        let number = state
            .session_numbers
            .get(&(schedule.committee.clone(), year))
            .copied()
            .unwrap_or(0)
            + 1;
        let scheduled = Scheduled {
            schedule: schedule.clone(),
            year,
            number,
        };
        let stream = session_stream(&schedule.id);
        let stored = self
            .append_one(
                &mut state,
                &stream,
                caller,
                event::SESSION_SCHEDULED,
                json!(scheduled),
            )
            .await?;
        self.session_changed(&state, &schedule.id, stored[0].time, stored[0].version)
            .await
    }

    /// Writes a session's row and tells the bus; gives the session.
    async fn session_changed(
        &self,
        state: &State,
        id: &str,
        at: i64,
        version: u64,
    ) -> Result<Session> {
        let s = Self::session(state, id)?.clone();
        let mut rows = tables::rows(tables::SESSIONS);
        let day = s.day();
        rows.push(&[
            V::T(at),
            V::S(Some(id)),
            V::S(Some(&s.schedule.committee)),
            V::S(Some(s.status.as_str())),
            V::I(Some(version as i64)),
            V::I(Some(i64::from(s.year))),
            V::I(Some(i64::from(s.number))),
            V::Ts(Some(micros(s.schedule.first_call))),
            V::Ts(s.started.map(micros)),
            V::Ts(s.ended.map(micros)),
            V::B(Some(s.schedule.public)),
            V::B(Some(s.schedule.online_link.is_some())),
            V::S(Some(&day.to_string())),
            V::S(Some(&month_of(day))),
        ]);
        self.write(tables::SESSIONS, &mut rows).await?;
        self.publish(
            format!("bus/council/sessions/{id}"),
            bus_type::SESSION,
            id,
            at,
            json!({
                "session": id, "version": version, "committee": s.schedule.committee, "status": s.status.as_str(),
                "first_call": s.schedule.first_call.to_rfc3339(),
            }),
        )
        .await;
        Ok(s)
    }

    /// Adds an item to a session's agenda (late once it is convened). An act examination
    /// puts its acts on the committee's agenda (a step of each).
    pub async fn add_item(
        &self,
        session: &str,
        req: ItemRequest,
        caller: &Caller,
    ) -> Result<Session> {
        req.check()?;
        let mut state = self.inner.state.lock().await;
        let s = Self::session(&state, session)?;
        s.check_status(
            &[SessionStatus::Scheduled, SessionStatus::Convened],
            "adding an item",
        )?;
        let position = s.items.iter().map(|i| i.position).max().unwrap_or(0) + 1;
        let committee = s.schedule.committee.clone();
        // An act is on the agenda from the convocation (or from when it is added, if that
        // is earlier), never before its own last step.
        let at = caller
            .at
            .unwrap_or_else(|| Utc::now().min(s.schedule.first_call));
        let mut steps = Vec::new();
        for (i, id) in req.acts.iter().enumerate() {
            let field = format!("acts[{i}]");
            let Some(act) = state.acts.get(id) else {
                return Err(invalid(&field, format!("there is no act '{id}'")));
            };
            match req.kind {
                ItemKind::ActExamination => {
                    if act.kind().is_question() {
                        return Err(invalid(
                            &field,
                            format!(
                                "{} is answered, not examined: use a question item",
                                act.label()
                            ),
                        ));
                    }
                    let step_req = StepRequest {
                        to: Some(Status::OnCommitteeAgenda),
                        committee: Some(committee.clone()),
                        session: Some(session.to_string()),
                        item: Some(position),
                        ..StepRequest::default()
                    };
                    let at = at.max(act.since());
                    steps.push((id.clone(), self.check_step(&state, act, &step_req, at)?));
                }
                ItemKind::Question
                    if !act.kind().is_question()
                        || !matches!(act.status, Status::Filed | Status::Unanswered) =>
                {
                    return Err(invalid(
                        &field,
                        format!(
                            "{} is not a question awaiting its answer ({})",
                            act.label(),
                            act.status
                        ),
                    ));
                }
                _ => {}
            }
        }
        let item = AgendaItem {
            position,
            kind: req.kind,
            title: req.title.clone(),
            acts: req.acts.clone(),
            late: s.status == SessionStatus::Convened,
            outcome: None,
        };
        let stream = session_stream(session);
        let stored = self
            .append_one(&mut state, &stream, caller, event::ITEM_ADDED, json!(item))
            .await?;
        self.item_row(&state, session, &item, stored[0].time)
            .await?;
        self.store_steps(&mut state, steps, &caller.without_if_match())
            .await?;
        Ok(Self::session(&state, session)?.clone())
    }

    async fn item_row(
        &self,
        state: &State,
        session: &str,
        item: &AgendaItem,
        at: i64,
    ) -> Result<()> {
        let s = Self::session(state, session)?;
        let mut rows = tables::rows(tables::ITEMS);
        let kind = serde_json::to_value(item.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let acts = item.acts.join(",");
        let o = item.outcome.as_ref();
        rows.push(&[
            V::T(at),
            V::S(Some(session)),
            V::S(Some(&s.schedule.committee)),
            V::S(Some(&kind)),
            V::I(Some(i64::from(item.position))),
            V::S(Some(&item.title)),
            V::S(Some(&acts)),
            V::B(Some(item.late)),
            V::S(o.map(|o| o.outcome.as_str())),
            V::Ts(o.and_then(|o| o.discussion_start).map(micros)),
            V::Ts(o.and_then(|o| o.discussion_end).map(micros)),
        ]);
        self.write(tables::ITEMS, &mut rows).await
    }

    /// Convenes a scheduled session (it needs an agenda).
    pub async fn convene(&self, session: &str, caller: &Caller) -> Result<Session> {
        let mut state = self.inner.state.lock().await;
        let s = Self::session(&state, session)?;
        s.check_status(&[SessionStatus::Scheduled], "convening")?;
        if s.items.is_empty() {
            return Err(CouncilServiceError::State(format!(
                "{} has no agenda item: add its agenda before convening it",
                s.label()
            )));
        }
        let stream = session_stream(session);
        let stored = self
            .append_one(
                &mut state,
                &stream,
                caller,
                event::SESSION_CONVENED,
                json!({}),
            )
            .await?;
        self.session_changed(&state, session, stored[0].time, stored[0].version)
            .await
    }

    /// Records that a convened session was held, from `started` to `ended`.
    pub async fn hold(&self, session: &str, held: Held, caller: &Caller) -> Result<Session> {
        if held.ended <= held.started {
            return Err(invalid("ended", "is not after the start"));
        }
        if held.ended > Utc::now() + chrono::Duration::minutes(5) {
            return Err(invalid(
                "ended",
                "a session is recorded held once it has ended",
            ));
        }
        let mut state = self.inner.state.lock().await;
        let s = Self::session(&state, session)?;
        s.check_status(&[SessionStatus::Convened], "holding")?;
        if held.started < s.schedule.first_call - chrono::Duration::hours(1) {
            return Err(invalid(
                "started",
                format!("is before the first call ({})", s.schedule.first_call),
            ));
        }
        let stream = session_stream(session);
        let stored = self
            .append(
                &mut state,
                &stream,
                caller,
                vec![
                    NewEvent::new(event::SESSION_HELD, 1, &caller.actor, json!(held))
                        .at(micros(held.ended)),
                ],
            )
            .await?;
        self.session_changed(&state, session, stored[0].time, stored[0].version)
            .await
    }

    /// Cancels a session not held yet; the acts on its agenda without an outcome are
    /// POSTPONED (to the committee's next session).
    pub async fn cancel(&self, session: &str, reason: &str, caller: &Caller) -> Result<Session> {
        crate::model::check_text("reason", reason, 1000)?;
        let mut state = self.inner.state.lock().await;
        let s = Self::session(&state, session)?;
        s.check_status(
            &[SessionStatus::Scheduled, SessionStatus::Convened],
            "cancelling",
        )?;
        if !s.attendance.is_empty() || !s.votes.is_empty() {
            return Err(CouncilServiceError::State(format!(
                "{} has attendance or votes recorded: it was held",
                s.label()
            )));
        }
        let at = caller.now();
        let mut steps = Vec::new();
        for item in s
            .items
            .iter()
            .filter(|i| i.kind == ItemKind::ActExamination && i.outcome.is_none())
        {
            for id in &item.acts {
                let act = Self::act(&state, id)?;
                if act.status != Status::OnCommitteeAgenda {
                    continue;
                }
                let req = StepRequest {
                    to: Some(Status::Postponed),
                    session: Some(session.to_string()),
                    item: Some(item.position),
                    note: Some(format!("session cancelled: {reason}")),
                    ..StepRequest::default()
                };
                steps.push((
                    id.clone(),
                    self.check_step(&state, act, &req, at.max(act.since()))?,
                ));
            }
        }
        let stream = session_stream(session);
        let stored = self
            .append_one(
                &mut state,
                &stream,
                caller,
                event::SESSION_CANCELLED,
                json!({"reason": reason}),
            )
            .await?;
        let out = self
            .session_changed(&state, session, stored[0].time, stored[0].version)
            .await?;
        self.store_steps(&mut state, steps, &caller.without_if_match())
            .await?;
        Ok(out)
    }

    /// Records the outcome of an agenda item. An act examination's outcome is the
    /// committee's (FAVOURABLE, POSTPONED, SENT_TO_OTHER_COMMITTEE...) and is a step of
    /// each of its acts; a question item's is ANSWERED (orally in committee).
    pub async fn record_outcome(
        &self,
        session: &str,
        item: u32,
        outcome: ItemOutcome,
        caller: &Caller,
    ) -> Result<Session> {
        let mut state = self.inner.state.lock().await;
        let s = Self::session(&state, session)?;
        s.check_status(
            &[SessionStatus::Convened, SessionStatus::Held],
            "recording an outcome",
        )?;
        let it = s.item(item)?.clone();
        if it.outcome.is_some() {
            return Err(CouncilServiceError::State(format!(
                "item {item} of {} has its outcome already",
                s.label()
            )));
        }
        if let (Some(a), Some(b)) = (outcome.discussion_start, outcome.discussion_end)
            && b < a
        {
            return Err(invalid(
                "discussion_end",
                "is before the discussion's start",
            ));
        }
        let at = outcome
            .discussion_end
            .or(s.ended)
            .unwrap_or_else(|| caller.now());
        // Without a discussion's end, the outcome's time is the session's (or now): never
        // before an act's own last step.
        let given = outcome.discussion_end.is_some();
        let implicit = |at: DateTime<Utc>, act: &Act| if given { at } else { at.max(act.since()) };
        let mut steps = Vec::new();
        match it.kind {
            ItemKind::ActExamination => {
                let to = Status::parse(&outcome.outcome)
                    .filter(|s| s.is_committee_outcome())
                    .ok_or_else(|| {
                        invalid(
                            "outcome",
                            format!(
                                "'{}' is not a committee's outcome (FAVOURABLE, UNFAVOURABLE, FAVOURABLE_WITH_AMENDMENTS, POSTPONED, RETURNED_TO_OFFICE, SENT_TO_OTHER_COMMITTEE)",
                                outcome.outcome
                            ),
                        )
                    })?;
                for id in &it.acts {
                    let act = Self::act(&state, id)?;
                    let req = StepRequest {
                        to: Some(to),
                        session: Some(session.to_string()),
                        item: Some(item),
                        to_committee: outcome.to_committee.clone(),
                        note: outcome.note.clone(),
                        ..StepRequest::default()
                    };
                    steps.push((
                        id.clone(),
                        self.check_step(&state, act, &req, implicit(at, act))?,
                    ));
                }
            }
            ItemKind::Question => {
                if outcome.outcome != "ANSWERED" && outcome.outcome != "NOT_DISCUSSED" {
                    return Err(invalid(
                        "outcome",
                        "a question item is ANSWERED or NOT_DISCUSSED",
                    ));
                }
                if outcome.outcome == "ANSWERED" {
                    for id in &it.acts {
                        let act = Self::act(&state, id)?;
                        let req = StepRequest {
                            to: Some(Status::Answered),
                            answer: Some(AnswerMode::OralCommittee),
                            session: Some(session.to_string()),
                            item: Some(item),
                            note: outcome.note.clone(),
                            ..StepRequest::default()
                        };
                        steps.push((
                            id.clone(),
                            self.check_step(&state, act, &req, implicit(at, act))?,
                        ));
                    }
                }
            }
            ItemKind::Hearing | ItemKind::Communication => {
                if outcome.outcome != "DISCUSSED" && outcome.outcome != "NOT_DISCUSSED" {
                    return Err(invalid(
                        "outcome",
                        "a hearing or communication is DISCUSSED or NOT_DISCUSSED",
                    ));
                }
                if outcome.to_committee.is_some() {
                    return Err(invalid(
                        "to_committee",
                        "only an act is sent to another committee",
                    ));
                }
            }
        }
        let stream = session_stream(session);
        let recorded = Outcome {
            item,
            outcome: outcome.clone(),
        };
        let stored = self
            .append_one(
                &mut state,
                &stream,
                caller,
                event::ITEM_OUTCOME,
                json!(recorded),
            )
            .await?;
        let updated = Self::session(&state, session)?.item(item)?.clone();
        self.item_row(&state, session, &updated, stored[0].time)
            .await?;
        self.store_steps(&mut state, steps, &caller.without_if_match())
            .await?;
        Ok(Self::session(&state, session)?.clone())
    }

    /// Records a member's attendance (again to correct it); remote presence comes through
    /// here too.
    pub async fn record_attendance(
        &self,
        session: &str,
        attendance: Attendance,
        caller: &Caller,
    ) -> Result<Session> {
        attendance.check()?;
        let mut state = self.inner.state.lock().await;
        let s = Self::session(&state, session)?;
        s.check_status(
            &[SessionStatus::Convened, SessionStatus::Held],
            "recording attendance",
        )?;
        let day = s.day();
        let Some(seat) = state
            .members(&s.schedule.committee)
            .iter()
            .find(|m| m.councillor == attendance.councillor && m.seated(day))
            .cloned()
        else {
            return Err(invalid(
                "councillor",
                format!(
                    "{} has no seat in {} on {day}",
                    attendance.councillor, s.schedule.committee
                ),
            ));
        };
        if attendance.presence == crate::sessions::Presence::Present
            && attendance.mode == Some(crate::sessions::Mode::Remote)
            && s.schedule.online_link.is_none()
        {
            return Err(invalid(
                "mode",
                format!(
                    "{} has no online link: nobody attends it remotely",
                    s.label()
                ),
            ));
        }
        let group = state
            .councillors
            .get(&attendance.councillor)
            .map(|c| c.councillor.group.clone());
        let committee = s.schedule.committee.clone();
        let time = micros(s.started.unwrap_or(s.schedule.first_call));
        let stream = session_stream(session);
        let stored = self
            .append_one(
                &mut state,
                &stream,
                caller,
                event::ATTENDANCE_RECORDED,
                json!(attendance),
            )
            .await?;
        let mut rows = tables::rows(tables::ATTENDANCE);
        let day_s = day.to_string();
        rows.push(&[
            V::T(time),
            V::S(Some(session)),
            V::S(Some(&committee)),
            V::S(Some(&attendance.councillor)),
            V::S(group.as_deref()),
            V::S(Some(attendance.presence.as_str())),
            V::S(attendance.mode.map(|m| m.as_str())),
            V::S(seat.substitute_of.as_deref()),
            V::Ts(attendance.arrival.map(micros)),
            V::Ts(attendance.leave.map(micros)),
            V::S(Some(&day_s)),
            V::S(Some(&month_of(day))),
            V::I(Some(stored[0].version as i64)),
        ]);
        self.write(tables::ATTENDANCE, &mut rows).await?;
        Ok(Self::session(&state, session)?.clone())
    }

    /// Records a vote on an agenda item, counted against the committee's quorum.
    pub async fn record_vote(
        &self,
        session: &str,
        req: VoteRequest,
        caller: &Caller,
    ) -> Result<Session> {
        let mut state = self.inner.state.lock().await;
        let s = Self::session(&state, session)?;
        s.check_status(
            &[SessionStatus::Convened, SessionStatus::Held],
            "recording a vote",
        )?;
        let committee = state
            .committees
            .get(&s.schedule.committee)
            .ok_or_else(|| not_found("committee", &s.schedule.committee))?;
        let at = req.at.or(s.ended).unwrap_or_else(|| caller.now());
        let vote = s.count_vote(&req, &committee.members, committee.committee.quorum, at)?;
        let acts = s.item(req.item)?.acts.join(",");
        let committee_id = s.schedule.committee.clone();
        let stream = session_stream(session);
        self.append_one(
            &mut state,
            &stream,
            caller,
            event::VOTE_RECORDED,
            json!(vote),
        )
        .await?;
        let mut rows = tables::rows(tables::VOTES);
        rows.push(&[
            V::T(micros(vote.at)),
            V::S(Some(session)),
            V::S(Some(&committee_id)),
            V::S(Some(vote.kind.as_str())),
            V::S(Some(vote.outcome.as_str())),
            V::I(Some(i64::from(vote.number))),
            V::I(Some(i64::from(vote.item))),
            V::S(Some(&acts)),
            V::S(vote.subject.as_deref()),
            V::I(Some(i64::from(vote.present))),
            V::I(Some(i64::from(vote.voting))),
            V::I(Some(i64::from(vote.yes))),
            V::I(Some(i64::from(vote.no))),
            V::I(Some(i64::from(vote.abstained))),
            V::I(Some(i64::from(vote.quorum))),
            V::B(Some(vote.quorum_reached)),
        ]);
        self.write(tables::VOTES, &mut rows).await?;
        let mut ballots = tables::rows(tables::BALLOTS);
        for (who, b) in &vote.votes {
            let group = state
                .councillors
                .get(who)
                .map(|c| c.councillor.group.clone());
            ballots.push(&[
                V::T(micros(vote.at)),
                V::S(Some(session)),
                V::S(Some(&committee_id)),
                V::S(Some(who)),
                V::S(group.as_deref()),
                V::S(Some(b.as_str())),
                V::I(Some(i64::from(vote.number))),
                V::I(Some(i64::from(vote.item))),
            ]);
        }
        self.write(tables::BALLOTS, &mut ballots).await?;
        Ok(Self::session(&state, session)?.clone())
    }

    /// Attaches a document or a recording to a session.
    pub async fn attach(&self, session: &str, media: Media, caller: &Caller) -> Result<Session> {
        media.check()?;
        let mut state = self.inner.state.lock().await;
        let s = Self::session(&state, session)?;
        for p in media.offsets.keys() {
            s.item(*p)?;
        }
        if media.kind == crate::sessions::MediaKind::Minutes {
            let last = s
                .media
                .iter()
                .rev()
                .find(|m| m.kind == crate::sessions::MediaKind::Minutes)
                .and_then(|m| m.phase);
            use crate::sessions::MinutesPhase::{Amended, Approved, Draft as D};
            let ok = matches!(
                (last, media.phase),
                (None, Some(D)) | (Some(D | Amended), Some(Amended | Approved))
            );
            if !ok {
                return Err(invalid(
                    "phase",
                    format!("minutes go draft → amended → approved (now: {last:?})"),
                ));
            }
        }
        let stream = session_stream(session);
        self.append_one(
            &mut state,
            &stream,
            caller,
            event::MEDIA_ATTACHED,
            json!(media),
        )
        .await?;
        Ok(Self::session(&state, session)?.clone())
    }

    // ---- reads ---------------------------------------------------------------------

    /// An act with its history.
    pub async fn get_act(&self, id: &str) -> Result<Act> {
        let state = self.inner.state.lock().await;
        Self::act(&state, id).cloned()
    }

    /// A session with its agenda, attendance, votes and media.
    pub async fn get_session(&self, id: &str) -> Result<Session> {
        let state = self.inner.state.lock().await;
        Self::session(&state, id).cloned()
    }

    /// The fees per councillor and month (computed from the state; the view
    /// `council_fees` gives the same from the tables).
    pub async fn fees(&self) -> Vec<MonthlyFee> {
        let state = self.inner.state.lock().await;
        let members = |c: &str| state.members(c);
        let sittings = fees::sittings(state.sessions.values(), &members, &state.rates);
        fees::monthly(&sittings, state.policy)
    }
}

/// `act-{id}-v{version}` or `session-{id}-v{version}` of a bus event's data.
fn data_id(data: &Value) -> String {
    let version = data.get("version").and_then(Value::as_u64).unwrap_or(0);
    match (data.get("act"), data.get("session")) {
        (Some(Value::String(a)), _) => format!("act-{a}-v{version}"),
        (_, Some(Value::String(s))) => format!("session-{s}-v{version}"),
        _ => format!("v{version}"),
    }
}

/// Replays the module's events into a state, in one read of its events table: settings,
/// people and committees first (acts and sessions refer to them), each stream in version
/// order.
pub async fn rebuild(platform: &dyn Platform) -> Result<State> {
    let events = platform.read_all().await?;
    let rank = |s: &str| match s.split_once('-').map_or(s, |(k, _)| k) {
        "config" => 0,
        "councillor" => 1,
        "committee" => 2,
        "act" => 3,
        _ => 4,
    };
    let mut order: Vec<&EventEnvelope> = events.iter().collect();
    // Stable: the versions of a stream stay in order.
    order.sort_by_key(|e| rank(&e.stream_id));
    let mut state = State::default();
    for e in order {
        state.apply(e).map_err(|err| {
            CouncilServiceError::Internal(format!("replaying {}: {err}", e.stream_id))
        })?;
    }
    Ok(state)
}

/// A serialisable summary of an act for listings.
#[derive(Debug, Clone, Serialize)]
pub struct ActSummary {
    pub id: String,
    pub label: String,
    pub kind: ActKind,
    pub subject: String,
    pub status: Status,
    pub since: DateTime<Utc>,
    pub version: u64,
}

impl From<&Act> for ActSummary {
    fn from(a: &Act) -> Self {
        Self {
            id: a.id().to_string(),
            label: a.label(),
            kind: a.kind(),
            subject: a.draft.subject.clone(),
            status: a.status,
            since: a.since(),
            version: a.version,
        }
    }
}
