//! Sessions (sedute) of a committee: scheduled → convened → held | cancelled, the agenda,
//! attendance (physical or remote), votes with their quorum, and media (agenda, minutes,
//! recordings, attachments with SHA-256).

use crate::CouncilError;
use crate::acts::local_day;
use crate::model::{Member, check_id, check_text};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A session's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Scheduled,
    Convened,
    Held,
    Cancelled,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Scheduled => "scheduled",
            SessionStatus::Convened => "convened",
            SessionStatus::Held => "held",
            SessionStatus::Cancelled => "cancelled",
        }
    }
}

/// A session as scheduled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub id: String,
    pub committee: String,
    /// Prima convocazione.
    pub first_call: DateTime<Utc>,
    /// Seconda convocazione (when the first has no quorum).
    #[serde(default)]
    pub second_call: Option<DateTime<Utc>>,
    #[serde(default)]
    pub place: Option<String>,
    /// The link of an online or mixed session.
    #[serde(default)]
    pub online_link: Option<String>,
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

impl Schedule {
    pub fn check(&self) -> Result<(), CouncilError> {
        check_id("id", &self.id)?;
        check_id("committee", &self.committee)?;
        if let Some(s) = self.second_call
            && s <= self.first_call
        {
            return Err(CouncilError::field(
                "second_call",
                "comes after the first call".into(),
            ));
        }
        if let Some(p) = &self.place {
            check_text("place", p, 300)?;
        }
        if let Some(l) = &self.online_link
            && !(l.starts_with("https://") || l.starts_with("http://"))
        {
            return Err(CouncilError::field(
                "online_link",
                "must be an http(s) address".into(),
            ));
        }
        if self.place.is_none() && self.online_link.is_none() {
            return Err(CouncilError::field(
                "place",
                "a session has a place, an online link or both".into(),
            ));
        }
        Ok(())
    }
}

/// Kinds of agenda item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// Examination of one or more acts (their committee outcome moves their iter).
    ActExamination,
    /// A hearing (audizione).
    Hearing,
    Communication,
    /// Questions answered orally in committee.
    Question,
}

/// An agenda item asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    pub kind: ItemKind,
    pub title: String,
    #[serde(default)]
    pub acts: Vec<String>,
}

impl ItemRequest {
    pub fn check(&self) -> Result<(), CouncilError> {
        check_text("title", &self.title, 1000)?;
        for (i, a) in self.acts.iter().enumerate() {
            check_id(&format!("acts[{i}]"), a)?;
        }
        let needs_acts = matches!(self.kind, ItemKind::ActExamination | ItemKind::Question);
        if needs_acts && self.acts.is_empty() {
            return Err(CouncilError::field(
                "acts",
                "an act examination or a question item names its acts".into(),
            ));
        }
        if !needs_acts && !self.acts.is_empty() {
            return Err(CouncilError::field(
                "acts",
                "only act examinations and questions name acts".into(),
            ));
        }
        let mut seen = self.acts.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.acts.len() {
            return Err(CouncilError::field("acts", "an act is named twice".into()));
        }
        Ok(())
    }
}

/// An agenda item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgendaItem {
    /// 1, 2, ... in the order of the agenda.
    pub position: u32,
    pub kind: ItemKind,
    pub title: String,
    pub acts: Vec<String>,
    /// Added after the session was convened.
    pub late: bool,
    #[serde(default)]
    pub outcome: Option<ItemOutcome>,
}

/// What came of an agenda item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemOutcome {
    /// For an act examination, the committee's outcome (`FAVOURABLE`, `POSTPONED`...); for
    /// a question item `ANSWERED`; else `DISCUSSED` or `NOT_DISCUSSED`.
    pub outcome: String,
    #[serde(default)]
    pub discussion_start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub discussion_end: Option<DateTime<Utc>>,
    /// The committee an act is sent on to (`SENT_TO_OTHER_COMMITTEE`).
    #[serde(default)]
    pub to_committee: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

impl ItemOutcome {
    /// `outcome`, with no discussion times, other committee or note.
    pub fn new(outcome: &str) -> Self {
        Self {
            outcome: outcome.to_string(),
            discussion_start: None,
            discussion_end: None,
            to_committee: None,
            note: None,
        }
    }
}

/// Presence at a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Present,
    Absent,
    /// Absent with a justification.
    Justified,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Present => "present",
            Presence::Absent => "absent",
            Presence::Justified => "justified",
        }
    }
}

/// How a member took part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Physical,
    /// Online (the online-meeting service records it through the same command).
    Remote,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Physical => "physical",
            Mode::Remote => "remote",
        }
    }
}

/// A member's attendance at a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attendance {
    pub councillor: String,
    pub presence: Presence,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub arrival: Option<DateTime<Utc>>,
    #[serde(default)]
    pub leave: Option<DateTime<Utc>>,
}

impl Attendance {
    /// `councillor` present, in `mode` (no arrival or leave times).
    pub fn present(councillor: &str, mode: Mode) -> Self {
        Self {
            councillor: councillor.to_string(),
            presence: Presence::Present,
            mode: Some(mode),
            arrival: None,
            leave: None,
        }
    }

    /// `councillor` not there (`Absent` or `Justified`).
    pub fn away(councillor: &str, presence: Presence) -> Self {
        Self {
            councillor: councillor.to_string(),
            presence,
            mode: None,
            arrival: None,
            leave: None,
        }
    }

    pub fn check(&self) -> Result<(), CouncilError> {
        check_id("councillor", &self.councillor)?;
        match (self.presence, self.mode) {
            (Presence::Present, None) => {
                return Err(CouncilError::field(
                    "mode",
                    "a member present is there 'physical' or 'remote'".into(),
                ));
            }
            (Presence::Absent | Presence::Justified, Some(_)) => {
                return Err(CouncilError::field(
                    "mode",
                    "only a member present has a mode".into(),
                ));
            }
            _ => {}
        }
        if self.presence != Presence::Present && (self.arrival.is_some() || self.leave.is_some()) {
            return Err(CouncilError::field(
                "arrival",
                "only a member present arrives and leaves".into(),
            ));
        }
        if let (Some(a), Some(l)) = (self.arrival, self.leave)
            && l < a
        {
            return Err(CouncilError::field("leave", "is before the arrival".into()));
        }
        Ok(())
    }
}

/// Kinds of vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    /// By show of hands: counts only.
    Open,
    /// Appello nominale: every member's vote.
    RollCall,
    /// Secret ballot: counts only.
    Secret,
}

impl VoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VoteKind::Open => "open",
            VoteKind::RollCall => "roll_call",
            VoteKind::Secret => "secret",
        }
    }
}

/// A member's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ballot {
    Yes,
    No,
    Abstained,
}

impl Ballot {
    pub fn as_str(self) -> &'static str {
        match self {
            Ballot::Yes => "yes",
            Ballot::No => "no",
            Ballot::Abstained => "abstained",
        }
    }
}

/// A vote as recorded by the clerk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    pub item: u32,
    pub kind: VoteKind,
    /// What was voted (`the act 12/2026`, `amendment 3`).
    #[serde(default)]
    pub subject: Option<String>,
    /// Members present at the vote (roll call: taken from the votes when absent).
    #[serde(default)]
    pub present: Option<u32>,
    #[serde(default)]
    pub yes: Option<u32>,
    #[serde(default)]
    pub no: Option<u32>,
    #[serde(default)]
    pub abstained: Option<u32>,
    /// Roll call: each member's vote.
    #[serde(default)]
    pub votes: BTreeMap<String, Ballot>,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// A vote's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteOutcome {
    Approved,
    Rejected,
    /// Too few present (numero legale): the vote does not count.
    NoQuorum,
}

impl VoteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            VoteOutcome::Approved => "approved",
            VoteOutcome::Rejected => "rejected",
            VoteOutcome::NoQuorum => "no_quorum",
        }
    }
}

/// A vote as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub number: u32,
    pub item: u32,
    pub kind: VoteKind,
    #[serde(default)]
    pub subject: Option<String>,
    pub at: DateTime<Utc>,
    pub present: u32,
    /// Yes + no (abstentions do not count as votes cast).
    pub voting: u32,
    pub yes: u32,
    pub no: u32,
    pub abstained: u32,
    /// Members needed for the quorum.
    pub quorum: u32,
    pub quorum_reached: bool,
    pub outcome: VoteOutcome,
    #[serde(default)]
    pub votes: BTreeMap<String, Ballot>,
}

/// Kinds of document or media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// The convocation with the agenda.
    Agenda,
    /// Verbale.
    Minutes,
    Recording,
    Attachment,
}

/// Phases of the minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinutesPhase {
    Draft,
    Amended,
    Approved,
}

/// A document or a recording of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    pub kind: MediaKind,
    pub url: String,
    /// Hex SHA-256 of the file (documents and attachments).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Minutes: draft → amended → approved.
    #[serde(default)]
    pub phase: Option<MinutesPhase>,
    /// Recording: where each agenda item starts, in seconds from the start.
    #[serde(default)]
    pub offsets: BTreeMap<u32, u32>,
    #[serde(default)]
    pub title: Option<String>,
}

impl Media {
    pub fn check(&self) -> Result<(), CouncilError> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://"))
            || self.url.len() > 2000
        {
            return Err(CouncilError::field(
                "url",
                "must be an http(s) address of at most 2000 characters".into(),
            ));
        }
        if let Some(h) = &self.sha256
            && (h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(CouncilError::field(
                "sha256",
                "must be 64 hexadecimal digits".into(),
            ));
        }
        if (self.kind == MediaKind::Minutes) != self.phase.is_some() {
            return Err(CouncilError::field(
                "phase",
                "minutes have a phase (draft, amended, approved); other media none".into(),
            ));
        }
        if self.kind != MediaKind::Recording && !self.offsets.is_empty() {
            return Err(CouncilError::field(
                "offsets",
                "only a recording has offsets".into(),
            ));
        }
        if matches!(
            self.kind,
            MediaKind::Agenda | MediaKind::Minutes | MediaKind::Attachment
        ) && self.sha256.is_none()
        {
            return Err(CouncilError::field(
                "sha256",
                "a document is stored with its SHA-256".into(),
            ));
        }
        Ok(())
    }
}

/// A session with all that happened in it (the projection of its stream).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    #[serde(flatten)]
    pub schedule: Schedule,
    pub year: i32,
    /// Its number in the committee's year.
    pub number: u32,
    pub status: SessionStatus,
    pub started: Option<DateTime<Utc>>,
    pub ended: Option<DateTime<Utc>>,
    pub cancelled_reason: Option<String>,
    pub items: Vec<AgendaItem>,
    pub attendance: BTreeMap<String, Attendance>,
    pub votes: Vec<Vote>,
    pub media: Vec<Media>,
    pub version: u64,
}

impl Session {
    pub fn id(&self) -> &str {
        &self.schedule.id
    }

    /// The session's day in Rome (of its start, else of its first call).
    pub fn day(&self) -> NaiveDate {
        local_day(self.started.unwrap_or(self.schedule.first_call))
    }

    pub fn label(&self) -> String {
        format!(
            "session {}/{} of {}",
            self.number, self.year, self.schedule.committee
        )
    }

    pub fn item(&self, position: u32) -> Result<&AgendaItem, CouncilError> {
        self.items
            .iter()
            .find(|i| i.position == position)
            .ok_or_else(|| {
                CouncilError::field(
                    "item",
                    format!("{} has no agenda item {position}", self.label()),
                )
            })
    }

    /// Checks that the session is `one of` the statuses, for `what`.
    pub fn check_status(&self, allowed: &[SessionStatus], what: &str) -> Result<(), CouncilError> {
        if allowed.contains(&self.status) {
            return Ok(());
        }
        let list: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        Err(CouncilError::field(
            "status",
            format!(
                "{} is {}: {what} needs it {}",
                self.label(),
                self.status.as_str(),
                list.join(" or ")
            ),
        ))
    }

    /// Counts a vote: checks it against the committee's voting members on the session's
    /// day, derives a roll call's counts from its votes, and decides the outcome.
    pub fn count_vote(
        &self,
        req: &VoteRequest,
        members: &[Member],
        quorum_rule: Option<u32>,
        at: DateTime<Utc>,
    ) -> Result<Vote, CouncilError> {
        self.item(req.item)?;
        let day = self.day();
        let voting_members = members.iter().filter(|m| m.voting_on(day)).count() as u32;
        let quorum = quorum_rule.unwrap_or(voting_members / 2 + 1);
        let (present, yes, no, abstained) = match req.kind {
            VoteKind::RollCall => {
                if req.votes.is_empty() {
                    return Err(CouncilError::field(
                        "votes",
                        "a roll call lists each member's vote".into(),
                    ));
                }
                for who in req.votes.keys() {
                    let seated = members
                        .iter()
                        .any(|m| &m.councillor == who && m.seated(day) && m.role.votes());
                    if !seated {
                        return Err(CouncilError::field(
                            &format!("votes.{who}"),
                            format!(
                                "{who} is not a voting member of {}",
                                self.schedule.committee
                            ),
                        ));
                    }
                    if let Some(a) = self.attendance.get(who)
                        && a.presence != Presence::Present
                    {
                        return Err(CouncilError::field(
                            &format!("votes.{who}"),
                            format!("{who} is recorded {}", a.presence.as_str()),
                        ));
                    }
                }
                let count = |b: Ballot| req.votes.values().filter(|v| **v == b).count() as u32;
                let (y, n, a) = (
                    count(Ballot::Yes),
                    count(Ballot::No),
                    count(Ballot::Abstained),
                );
                for (field, given, counted) in [
                    ("yes", req.yes, y),
                    ("no", req.no, n),
                    ("abstained", req.abstained, a),
                ] {
                    if let Some(g) = given
                        && g != counted
                    {
                        return Err(CouncilError::field(
                            field,
                            format!("says {g} but the roll call has {counted}"),
                        ));
                    }
                }
                let present = req.present.unwrap_or(y + n + a);
                (present, y, n, a)
            }
            VoteKind::Open | VoteKind::Secret => {
                if !req.votes.is_empty() {
                    return Err(CouncilError::field(
                        "votes",
                        format!("a {} vote has counts only", req.kind.as_str()),
                    ));
                }
                let need = |f: &str, v: Option<u32>| {
                    v.ok_or_else(|| CouncilError::field(f, "is required".into()))
                };
                (
                    need("present", req.present)?,
                    need("yes", req.yes)?,
                    need("no", req.no)?,
                    need("abstained", req.abstained)?,
                )
            }
        };
        if yes + no + abstained > present {
            return Err(CouncilError::field(
                "present",
                format!(
                    "{present} present cannot cast {} votes and abstentions",
                    yes + no + abstained
                ),
            ));
        }
        if present > voting_members {
            return Err(CouncilError::field(
                "present",
                format!(
                    "{present} present but {} has {voting_members} voting members",
                    self.schedule.committee
                ),
            ));
        }
        let quorum_reached = present >= quorum;
        let outcome = if !quorum_reached {
            VoteOutcome::NoQuorum
        } else if yes > no {
            VoteOutcome::Approved
        } else {
            VoteOutcome::Rejected
        };
        Ok(Vote {
            number: self.votes.len() as u32 + 1,
            item: req.item,
            kind: req.kind,
            subject: req.subject.clone(),
            at,
            present,
            voting: yes + no,
            yes,
            no,
            abstained,
            quorum,
            quorum_reached,
            outcome,
            votes: req.votes.clone(),
        })
    }
}
