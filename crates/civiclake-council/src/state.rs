//! The events of `council_events` and the state they project to. The state is rebuilt at
//! start by replaying every stream ([`State::apply`]); commands check against it and
//! append events, which are applied the same way.
//!
//! Streams: `config` (fee rates, fee policy, signature rules), `councillor-{id}`,
//! `committee-{id}` (the committee and its seats), `act-{id}` (draft, signatures, opinions,
//! steps), `session-{id}` (schedule, agenda, convocation, outcomes, attendance, votes,
//! media, held or cancelled).

use crate::acts::{Act, Draft, Opinion, Signature, Step};
use crate::model::{Committee, Councillor, FeePolicy, FeeRate, Member, SignatureRules};
use crate::sessions::{
    AgendaItem, Attendance, ItemOutcome, Media, Schedule, Session, SessionStatus, Vote,
};
use chrono::{DateTime, NaiveDate, Utc};
use civiclake_core::EventEnvelope;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Event types of `council_events`.
pub mod event {
    pub const FEE_RATE_SET: &str = "council.fee_rate_set";
    pub const FEE_POLICY_SET: &str = "council.fee_policy_set";
    pub const SIGNATURE_RULES_SET: &str = "council.signature_rules_set";
    pub const COUNCILLOR_REGISTERED: &str = "council.councillor_registered";
    pub const COMMITTEE_DEFINED: &str = "council.committee_defined";
    pub const MEMBER_SEATED: &str = "council.member_seated";
    pub const MEMBER_LEFT: &str = "council.member_left";
    pub const ACT_DRAFTED: &str = "council.act_drafted";
    pub const COSIGN_INVITED: &str = "council.cosign_invited";
    pub const COSIGNED: &str = "council.cosigned";
    pub const SIGNATURE_WITHDRAWN: &str = "council.signature_withdrawn";
    pub const OPINION_GIVEN: &str = "council.opinion_given";
    pub const ACT_STEP: &str = "council.act_step";
    pub const SESSION_SCHEDULED: &str = "council.session_scheduled";
    pub const ITEM_ADDED: &str = "council.item_added";
    pub const SESSION_CONVENED: &str = "council.session_convened";
    pub const SESSION_HELD: &str = "council.session_held";
    pub const SESSION_CANCELLED: &str = "council.session_cancelled";
    pub const ITEM_OUTCOME: &str = "council.item_outcome";
    pub const ATTENDANCE_RECORDED: &str = "council.attendance_recorded";
    pub const VOTE_RECORDED: &str = "council.vote_recorded";
    pub const MEDIA_ATTACHED: &str = "council.media_attached";
}

/// The stream of the settings.
pub const CONFIG_STREAM: &str = "config";

pub fn councillor_stream(id: &str) -> String {
    format!("councillor-{id}")
}
pub fn committee_stream(id: &str) -> String {
    format!("committee-{id}")
}
pub fn act_stream(id: &str) -> String {
    format!("act-{id}")
}
pub fn session_stream(id: &str) -> String {
    format!("session-{id}")
}

/// `council.session_scheduled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    #[serde(flatten)]
    pub schedule: Schedule,
    pub year: i32,
    pub number: u32,
}

/// `council.session_held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Held {
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
}

/// `council.item_outcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub item: u32,
    #[serde(flatten)]
    pub outcome: ItemOutcome,
}

/// `council.member_left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    pub councillor: String,
    pub to: NaiveDate,
}

/// Signature events: `by` invites `councillor`, or `councillor` signs or withdraws.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureEvent {
    pub councillor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A committee with its seats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommitteeState {
    #[serde(flatten)]
    pub committee: Committee,
    pub members: Vec<Member>,
    pub version: u64,
}

/// A councillor with the version of their stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CouncillorState {
    #[serde(flatten)]
    pub councillor: Councillor,
    pub version: u64,
}

/// Everything the events say, now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub councillors: BTreeMap<String, CouncillorState>,
    pub committees: BTreeMap<String, CommitteeState>,
    pub acts: BTreeMap<String, Act>,
    pub sessions: BTreeMap<String, Session>,
    pub rates: Vec<FeeRate>,
    pub policy: FeePolicy,
    pub signature_rules: SignatureRules,
    pub config_version: u64,
    /// The last number given to an act per kind and year.
    pub act_numbers: BTreeMap<(crate::iter::ActKind, i32), u32>,
    /// The last session number per committee and year.
    pub session_numbers: BTreeMap<(String, i32), u32>,
}

fn payload<T: DeserializeOwned>(e: &EventEnvelope) -> Result<T, String> {
    serde_json::from_value(e.payload.clone())
        .map_err(|err| format!("{} v{} ({}): {err}", e.stream_id, e.version, e.event_type))
}

fn micros_to_utc(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl State {
    /// The version of `stream` (0: no such stream).
    pub fn version(&self, stream: &str) -> u64 {
        let (kind, id) = stream.split_once('-').unwrap_or((stream, ""));
        match kind {
            "config" => self.config_version,
            "councillor" => self.councillors.get(id).map_or(0, |c| c.version),
            "committee" => self.committees.get(id).map_or(0, |c| c.version),
            "act" => self.acts.get(id).map_or(0, |a| a.version),
            "session" => self.sessions.get(id).map_or(0, |s| s.version),
            _ => 0,
        }
    }

    /// The members of `committee` (empty for an unknown one).
    pub fn members(&self, committee: &str) -> &[Member] {
        self.committees
            .get(committee)
            .map_or(&[], |c| c.members.as_slice())
    }

    /// Applies a stored event. An event that cannot be read is an error (the state would
    /// be wrong without it).
    pub fn apply(&mut self, e: &EventEnvelope) -> Result<(), String> {
        let id = e
            .stream_id
            .split_once('-')
            .map(|(_, id)| id.to_string())
            .unwrap_or_default();
        let missing = |what: &str| format!("{} v{}: no {what} '{id}'", e.stream_id, e.version);
        match e.event_type.as_str() {
            event::FEE_RATE_SET => {
                let rate: FeeRate = payload(e)?;
                self.rates
                    .retain(|r| !(r.committee == rate.committee && r.from == rate.from));
                self.rates.push(rate);
                self.config_version = e.version;
            }
            event::FEE_POLICY_SET => {
                self.policy = payload(e)?;
                self.config_version = e.version;
            }
            event::SIGNATURE_RULES_SET => {
                self.signature_rules = payload(e)?;
                self.config_version = e.version;
            }
            event::COUNCILLOR_REGISTERED => {
                let councillor: Councillor = payload(e)?;
                self.councillors.insert(
                    councillor.id.clone(),
                    CouncillorState {
                        councillor,
                        version: e.version,
                    },
                );
            }
            event::COMMITTEE_DEFINED => {
                let committee: Committee = payload(e)?;
                let entry = self
                    .committees
                    .entry(committee.id.clone())
                    .or_insert_with(|| CommitteeState {
                        committee: committee.clone(),
                        members: Vec::new(),
                        version: 0,
                    });
                entry.committee = committee;
                entry.version = e.version;
            }
            event::MEMBER_SEATED => {
                let member: Member = payload(e)?;
                let c = self
                    .committees
                    .get_mut(&id)
                    .ok_or_else(|| missing("committee"))?;
                c.members.push(member);
                c.version = e.version;
            }
            event::MEMBER_LEFT => {
                let left: Left = payload(e)?;
                let c = self
                    .committees
                    .get_mut(&id)
                    .ok_or_else(|| missing("committee"))?;
                for m in c
                    .members
                    .iter_mut()
                    .filter(|m| m.councillor == left.councillor && m.to.is_none())
                {
                    m.to = Some(left.to);
                }
                c.version = e.version;
            }
            event::ACT_DRAFTED => {
                let draft: Draft = payload(e)?;
                let mut act = Act::new(draft, micros_to_utc(e.time));
                act.version = e.version;
                self.acts.insert(id, act);
            }
            event::COSIGN_INVITED | event::COSIGNED | event::SIGNATURE_WITHDRAWN => {
                let sig: SignatureEvent = payload(e)?;
                let act = self.acts.get_mut(&id).ok_or_else(|| missing("act"))?;
                let s = match e.event_type.as_str() {
                    event::COSIGN_INVITED => Signature::Invited,
                    event::COSIGNED => Signature::Signed,
                    _ => Signature::Withdrawn,
                };
                act.signatures.insert(sig.councillor, s);
                act.version = e.version;
            }
            event::OPINION_GIVEN => {
                let opinion: Opinion = payload(e)?;
                let act = self.acts.get_mut(&id).ok_or_else(|| missing("act"))?;
                act.opinions.push(opinion);
                act.version = e.version;
            }
            event::ACT_STEP => {
                let step: Step = payload(e)?;
                let act = self.acts.get_mut(&id).ok_or_else(|| missing("act"))?;
                if let (Some(n), Some(y)) = (step.number, step.year) {
                    let last = self.act_numbers.entry((act.kind(), y)).or_insert(0);
                    *last = (*last).max(n);
                }
                act.apply_step(step);
                act.version = e.version;
            }
            event::SESSION_SCHEDULED => {
                let s: Scheduled = payload(e)?;
                let last = self
                    .session_numbers
                    .entry((s.schedule.committee.clone(), s.year))
                    .or_insert(0);
                *last = (*last).max(s.number);
                self.sessions.insert(
                    id,
                    Session {
                        schedule: s.schedule,
                        year: s.year,
                        number: s.number,
                        status: SessionStatus::Scheduled,
                        started: None,
                        ended: None,
                        cancelled_reason: None,
                        items: Vec::new(),
                        attendance: BTreeMap::new(),
                        votes: Vec::new(),
                        media: Vec::new(),
                        version: e.version,
                    },
                );
            }
            other => {
                let s = self
                    .sessions
                    .get_mut(&id)
                    .ok_or_else(|| missing("session"))?;
                match other {
                    event::ITEM_ADDED => s.items.push(payload::<AgendaItem>(e)?),
                    event::SESSION_CONVENED => s.status = SessionStatus::Convened,
                    event::SESSION_HELD => {
                        let h: Held = payload(e)?;
                        s.status = SessionStatus::Held;
                        s.started = Some(h.started);
                        s.ended = Some(h.ended);
                    }
                    event::SESSION_CANCELLED => {
                        let v: Value = payload(e)?;
                        s.status = SessionStatus::Cancelled;
                        s.cancelled_reason =
                            v.get("reason").and_then(Value::as_str).map(str::to_string);
                    }
                    event::ITEM_OUTCOME => {
                        let o: Outcome = payload(e)?;
                        let item = s
                            .items
                            .iter_mut()
                            .find(|i| i.position == o.item)
                            .ok_or_else(|| {
                                format!("{} v{}: no item {}", e.stream_id, e.version, o.item)
                            })?;
                        item.outcome = Some(o.outcome);
                    }
                    event::ATTENDANCE_RECORDED => {
                        let a: Attendance = payload(e)?;
                        s.attendance.insert(a.councillor.clone(), a);
                    }
                    event::VOTE_RECORDED => s.votes.push(payload::<Vote>(e)?),
                    event::MEDIA_ATTACHED => s.media.push(payload::<Media>(e)?),
                    unknown => {
                        return Err(format!(
                            "{} v{}: unknown event type {unknown}",
                            e.stream_id, e.version
                        ));
                    }
                }
                s.version = e.version;
            }
        }
        Ok(())
    }
}
