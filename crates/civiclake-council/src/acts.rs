//! Acts: what is filed (kind, subject, initiative, signers), the art. 49 opinions, the
//! committees it is assigned to, and its steps. [`Act::check_step`] decides whether a step
//! may be taken, with the state machine of [`crate::iter`] and the rules that need the act's
//! history (signatures, opinions, assignments, the 10 days of publication).

use crate::CouncilError;
use crate::iter::{ActKind, Body, Status, StepError, next};
use crate::model::{check_id, check_text};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who proposes an act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initiative {
    /// The Giunta (the mayor's executive).
    Giunta,
    /// One or more councillors (the first signer and co-signers).
    Councillors,
    /// Citizens (popular initiative, signatures gathered outside).
    Citizens,
}

impl Initiative {
    pub fn as_str(self) -> &'static str {
        match self {
            Initiative::Giunta => "giunta",
            Initiative::Councillors => "councillors",
            Initiative::Citizens => "citizens",
        }
    }
}

/// A new act, as drafted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    pub id: String,
    pub kind: ActKind,
    /// Oggetto.
    pub subject: String,
    #[serde(default)]
    pub text: String,
    pub initiative: Initiative,
    /// The councillor who signs first (councillors' initiative).
    #[serde(default)]
    pub first_signer: Option<String>,
    /// The proposing office (a Giunta's proposal).
    #[serde(default)]
    pub office: Option<String>,
    /// The act an amendment amends.
    #[serde(default)]
    pub amends: Option<String>,
    /// A proposal with effects on the budget needs the accounting opinion too (art. 49).
    #[serde(default)]
    pub financial_effects: bool,
}

impl Draft {
    pub fn check(&self) -> Result<(), CouncilError> {
        check_id("id", &self.id)?;
        check_text("subject", &self.subject, 1000)?;
        if self.text.chars().count() > 200_000 {
            return Err(CouncilError::field(
                "text",
                "must be at most 200000 characters".into(),
            ));
        }
        match (self.initiative, &self.first_signer) {
            (Initiative::Councillors, None) => {
                return Err(CouncilError::field(
                    "first_signer",
                    "a councillors' act needs its first signer".into(),
                ));
            }
            (Initiative::Giunta | Initiative::Citizens, Some(_)) => {
                return Err(CouncilError::field(
                    "first_signer",
                    format!(
                        "only a councillors' act has signers (this one is the {}'s)",
                        self.initiative.as_str()
                    ),
                ));
            }
            _ => {}
        }
        if self.kind != ActKind::Proposal
            && !(self.kind == ActKind::Amendment && self.initiative == Initiative::Giunta)
            && self.initiative != Initiative::Councillors
        {
            return Err(CouncilError::field(
                "initiative",
                format!("a {} is filed by councillors", self.kind),
            ));
        }
        match (self.kind, &self.amends) {
            (ActKind::Amendment, None) => {
                return Err(CouncilError::field(
                    "amends",
                    "an amendment names the act it amends".into(),
                ));
            }
            (ActKind::Amendment, Some(a)) => check_id("amends", a)?,
            (_, Some(_)) => {
                return Err(CouncilError::field(
                    "amends",
                    "only an amendment amends another act".into(),
                ));
            }
            _ => {}
        }
        if let Some(o) = &self.office {
            check_text("office", o, 200)?;
        }
        Ok(())
    }
}

/// A co-signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    Invited,
    Signed,
    Withdrawn,
}

/// The two opinions of art. 49 TUEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpinionKind {
    /// Regolarità tecnica (the head of the office).
    Technical,
    /// Regolarità contabile (the head of finance).
    Accounting,
}

/// An art. 49 opinion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opinion {
    pub kind: OpinionKind,
    pub favourable: bool,
    /// Who gave it (the head of the office).
    pub by: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// A committee's part in an act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentRole {
    /// Referente: examines it and reports to the council.
    Lead,
    /// Consultiva: gives an opinion.
    Advisory,
}

/// How a question was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMode {
    Written,
    OralCommittee,
    OralCouncil,
}

/// A step asked for: where to, when, and what it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    pub to: Option<Status>,
    /// When it happened (default: now).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// The committee (assignment; agenda and outcomes come from the session).
    #[serde(default)]
    pub committee: Option<String>,
    /// Lead or advisory (assignment).
    #[serde(default)]
    pub role: Option<AssignmentRole>,
    /// The committee an act is sent on to (SENT_TO_OTHER_COMMITTEE).
    #[serde(default)]
    pub to_committee: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub item: Option<u32>,
    /// The council's resolution number (APPROVED proposals).
    #[serde(default)]
    pub resolution_number: Option<String>,
    /// ANSWERED.
    #[serde(default)]
    pub answer: Option<AnswerMode>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A step taken (the payload of `council.act_step`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at: DateTime<Utc>,
    pub from: Status,
    pub to: Status,
    pub body: Body,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AssignmentRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_committee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerMode>,
    /// The act's number and year, given when it is filed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the checks of a step need from outside the act.
#[derive(Clone, Copy)]
pub struct StepContext<'a> {
    /// Signatures needed to file an act of this kind.
    pub min_signatures: u32,
    /// Days a question waits for its answer before it is UNANSWERED.
    pub answer_days: u64,
    /// Whether a committee exists (and is active on the step's day).
    pub committee_exists: &'a dyn Fn(&str, NaiveDate) -> bool,
}

impl std::fmt::Debug for StepContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("min_signatures", &self.min_signatures)
            .field("answer_days", &self.answer_days)
            .finish_non_exhaustive()
    }
}

/// An act with its history (the projection of its stream).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Act {
    #[serde(flatten)]
    pub draft: Draft,
    pub status: Status,
    pub drafted_at: DateTime<Utc>,
    pub number: Option<u32>,
    pub year: Option<i32>,
    pub signatures: BTreeMap<String, Signature>,
    /// The art. 49 opinions given since the act last entered OPINIONS.
    pub opinions: Vec<Opinion>,
    pub steps: Vec<Step>,
    /// The version of its stream (for `If-Match`).
    pub version: u64,
}

/// Europe/Rome's date of `at`.
pub fn local_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono_tz::Europe::Rome).date_naive()
}

impl Act {
    pub fn new(draft: Draft, at: DateTime<Utc>) -> Self {
        Self {
            draft,
            status: Status::Draft,
            drafted_at: at,
            number: None,
            year: None,
            signatures: BTreeMap::new(),
            opinions: Vec::new(),
            steps: Vec::new(),
            version: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.draft.id
    }

    pub fn kind(&self) -> ActKind {
        self.draft.kind
    }

    /// How people call it: `proposal 12/2026`, or `motion m-7 (draft)` before filing.
    pub fn label(&self) -> String {
        match (self.number, self.year) {
            (Some(n), Some(y)) => format!("{} {n}/{y}", self.kind()),
            _ => format!("{} {} (not filed)", self.kind(), self.id()),
        }
    }

    /// Signatures: the first signer's and the co-signers' still standing.
    pub fn signature_count(&self) -> u32 {
        let first = u32::from(self.draft.first_signer.is_some());
        first
            + self
                .signatures
                .values()
                .filter(|s| **s == Signature::Signed)
                .count() as u32
    }

    /// When it reached its current status.
    pub fn since(&self) -> DateTime<Utc> {
        self.steps.last().map_or(self.drafted_at, |s| s.at)
    }

    /// The committees it is assigned to, with their role.
    pub fn assignments(&self) -> Vec<(String, AssignmentRole)> {
        let mut out: Vec<(String, AssignmentRole)> = Vec::new();
        for s in &self.steps {
            match s.to {
                Status::AssignedToCommittee => {
                    if let (Some(c), Some(r)) = (&s.committee, s.role) {
                        out.push((c.clone(), r));
                    }
                }
                Status::SentToOtherCommittee => {
                    if let (Some(from), Some(to)) = (&s.committee, &s.to_committee) {
                        let role = out
                            .iter()
                            .find(|(c, _)| c == from)
                            .map_or(AssignmentRole::Advisory, |(_, r)| *r);
                        out.retain(|(c, _)| c != from);
                        out.push((to.clone(), role));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The committees that gave their opinion (FAVOURABLE...), the last one each.
    pub fn committee_opinions(&self) -> BTreeMap<String, Status> {
        let mut out = BTreeMap::new();
        for s in &self.steps {
            if s.to.is_opinion()
                && let Some(c) = &s.committee
            {
                out.insert(c.clone(), s.to);
            }
        }
        out
    }

    /// The committee whose agenda it is on (ON_COMMITTEE_AGENDA).
    pub fn on_agenda_of(&self) -> Option<&str> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.to == Status::OnCommitteeAgenda)
            .and_then(|s| s.committee.as_deref())
    }

    fn step_of(&self, to: Status) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.to == to)
    }

    /// Checks `req` against the state machine and the act's history; gives the step to
    /// store. `at` is the step's time (the request's, or now).
    pub fn check_step(
        &self,
        req: &StepRequest,
        at: DateTime<Utc>,
        ctx: &StepContext<'_>,
    ) -> Result<Step, StepError> {
        let from = self.status;
        let kind = self.kind();
        let Some(to) = req.to else {
            return Err(StepError::rule(
                self.label(),
                kind,
                from,
                from,
                "no status to go to ('to')".into(),
            ));
        };
        if !next(kind, from).contains(&to) {
            return Err(StepError::not_allowed(self.label(), kind, from, to));
        }
        let refuse = |reason: String| Err(StepError::rule(self.label(), kind, from, to, reason));
        if at < self.since() {
            return refuse(format!(
                "it happened at {at}, before the act's last step ({})",
                self.since()
            ));
        }
        let day = local_day(at);
        let mut step = Step {
            at,
            from,
            to,
            body: to.body(),
            committee: None,
            role: None,
            to_committee: None,
            session: req.session.clone(),
            item: req.item,
            resolution_number: None,
            answer: None,
            number: None,
            year: None,
            note: req.note.clone(),
        };
        if let Some(n) = &req.note
            && n.chars().count() > 2000
        {
            return refuse("the note is longer than 2000 characters".into());
        }
        match to {
            Status::Filed => {
                let have = self.signature_count();
                if self.draft.initiative == Initiative::Councillors && have < ctx.min_signatures {
                    return refuse(format!(
                        "a {kind} needs {} signatures to be filed and has {have}",
                        ctx.min_signatures
                    ));
                }
                if kind == ActKind::Proposal {
                    let has = |k: OpinionKind| self.opinions.iter().any(|o| o.kind == k);
                    if !has(OpinionKind::Technical) {
                        return refuse("the technical opinion (art. 49) is missing".into());
                    }
                    if self.draft.financial_effects && !has(OpinionKind::Accounting) {
                        return refuse(
                            "the act has financial effects and the accounting opinion (art. 49) is missing"
                                .into(),
                        );
                    }
                }
            }
            Status::AssignedToCommittee => {
                let Some(c) = &req.committee else {
                    return refuse("name the committee ('committee')".into());
                };
                let Some(role) = req.role else {
                    return refuse(
                        "say whether the committee is 'lead' or 'advisory' ('role')".into(),
                    );
                };
                if !(ctx.committee_exists)(c, day) {
                    return refuse(format!("there is no committee '{c}' on {day}"));
                }
                let assigned = self.assignments();
                if assigned.iter().any(|(x, _)| x == c) {
                    return refuse(format!("it is already assigned to '{c}'"));
                }
                if role == AssignmentRole::Lead
                    && let Some((lead, _)) =
                        assigned.iter().find(|(_, r)| *r == AssignmentRole::Lead)
                {
                    return refuse(format!("'{lead}' is already its lead committee"));
                }
                step.committee = Some(c.clone());
                step.role = Some(role);
            }
            Status::OnCommitteeAgenda => {
                let (Some(c), Some(_), Some(_)) = (&req.committee, &req.session, req.item) else {
                    return refuse(
                        "an act goes on a committee's agenda through a session's agenda item"
                            .into(),
                    );
                };
                if !self.assignments().iter().any(|(x, _)| x == c) {
                    return refuse(format!("it is not assigned to '{c}'"));
                }
                if from.is_opinion() && self.committee_opinions().contains_key(c) {
                    return refuse(format!("'{c}' has already given its opinion"));
                }
                step.committee = Some(c.clone());
            }
            s if s.is_committee_outcome() => {
                let Some(c) = self.on_agenda_of() else {
                    return refuse("it is on no committee's agenda".into());
                };
                if req.session.is_none() || req.item.is_none() {
                    return refuse(
                        "a committee's outcome is recorded on the session's agenda item".into(),
                    );
                }
                step.committee = Some(c.to_string());
                if s == Status::SentToOtherCommittee {
                    let Some(t) = &req.to_committee else {
                        return refuse("name the committee it is sent to ('to_committee')".into());
                    };
                    if t == c {
                        return refuse("it is sent to the committee that examined it".into());
                    }
                    if !(ctx.committee_exists)(t, day) {
                        return refuse(format!("there is no committee '{t}' on {day}"));
                    }
                    if self.assignments().iter().any(|(x, _)| x == t) {
                        return refuse(format!("it is already assigned to '{t}'"));
                    }
                    step.to_committee = Some(t.clone());
                }
            }
            Status::OnCouncilAgenda if kind == ActKind::Proposal => {
                let assigned = self.assignments();
                let opinions = self.committee_opinions();
                match assigned.iter().find(|(_, r)| *r == AssignmentRole::Lead) {
                    None => return refuse("it has no lead committee".into()),
                    Some((lead, _)) if !opinions.contains_key(lead) => {
                        return refuse(format!(
                            "its lead committee '{lead}' has not given its opinion"
                        ));
                    }
                    _ => {}
                }
            }
            Status::Approved if kind == ActKind::Proposal => match &req.resolution_number {
                Some(n) if !n.trim().is_empty() && n.len() <= 40 => {
                    step.resolution_number = Some(n.trim().to_string());
                }
                _ => {
                    return refuse(
                        "an approved proposal has its resolution number ('resolution_number')"
                            .into(),
                    );
                }
            },
            Status::Enforceable => {
                let immediate = self.step_of(Status::ImmediatelyEnforceable).is_some();
                if let Some(p) = self.step_of(Status::Published)
                    && !immediate
                {
                    let published = local_day(p.at);
                    let Some(from_day) = published.checked_add_days(Days::new(10)) else {
                        return refuse("the publication date is out of range".into());
                    };
                    if day < from_day {
                        return refuse(format!(
                            "published on {published}, it is enforceable from the 10th day after, {from_day} (art. 134 c.3)"
                        ));
                    }
                }
            }
            Status::Answered => {
                let Some(a) = req.answer else {
                    return refuse(
                        "say how it was answered ('answer': written, oral_committee, oral_council)"
                            .into(),
                    );
                };
                step.answer = Some(a);
            }
            Status::Unanswered => {
                let filed = self
                    .step_of(Status::Filed)
                    .map_or(self.drafted_at, |s| s.at);
                let deadline = local_day(filed)
                    .checked_add_days(Days::new(ctx.answer_days))
                    .unwrap_or(NaiveDate::MAX);
                if day <= deadline {
                    return refuse(format!(
                        "the answer is due by {deadline} ({} days after filing)",
                        ctx.answer_days
                    ));
                }
            }
            _ => {}
        }
        Ok(step)
    }

    /// Applies a stored step.
    pub fn apply_step(&mut self, step: Step) {
        if let (Some(n), Some(y)) = (step.number, step.year) {
            self.number = Some(n);
            self.year = Some(y);
        }
        if step.to == Status::Opinions {
            // Back from the office: the text changed, its opinions are given again.
            self.opinions.clear();
        }
        self.status = step.to;
        self.steps.push(step);
    }

    /// Checks an invitation to co-sign by `by` (the first signer) of `councillor`.
    pub fn check_invite(&self, by: &str, councillor: &str) -> Result<(), CouncilError> {
        self.check_signing_open()?;
        if self.draft.first_signer.as_deref() != Some(by) {
            return Err(CouncilError::field(
                "by",
                format!(
                    "only the first signer invites co-signers of {}",
                    self.label()
                ),
            ));
        }
        if self.draft.first_signer.as_deref() == Some(councillor) {
            return Err(CouncilError::field(
                "councillor",
                "the first signer has signed already".into(),
            ));
        }
        match self.signatures.get(councillor) {
            Some(Signature::Invited) => Err(CouncilError::field(
                "councillor",
                format!("{councillor} is invited already"),
            )),
            Some(Signature::Signed) => Err(CouncilError::field(
                "councillor",
                format!("{councillor} has signed already"),
            )),
            _ => Ok(()),
        }
    }

    /// Checks `councillor`'s signature (they were invited).
    pub fn check_sign(&self, councillor: &str) -> Result<(), CouncilError> {
        self.check_signing_open()?;
        match self.signatures.get(councillor) {
            Some(Signature::Invited) => Ok(()),
            Some(Signature::Signed) => Err(CouncilError::field(
                "councillor",
                format!("{councillor} has signed already"),
            )),
            _ => Err(CouncilError::field(
                "councillor",
                format!(
                    "{councillor} was not invited to co-sign {} (the first signer invites)",
                    self.label()
                ),
            )),
        }
    }

    /// Checks the withdrawal of `councillor`'s signature: while the act is undecided, and
    /// not below the minimum once it is filed.
    pub fn check_unsign(&self, councillor: &str, min: u32) -> Result<(), CouncilError> {
        if self.draft.first_signer.as_deref() == Some(councillor) {
            return Err(CouncilError::field(
                "councillor",
                "the first signer withdraws the act, not their signature".into(),
            ));
        }
        if self.signatures.get(councillor) != Some(&Signature::Signed) {
            return Err(CouncilError::field(
                "councillor",
                format!("{councillor} has not signed {}", self.label()),
            ));
        }
        if !next(self.kind(), self.status).contains(&Status::Withdrawn) {
            return Err(CouncilError::field(
                "councillor",
                format!(
                    "{} is {}: its signatures are final",
                    self.label(),
                    self.status
                ),
            ));
        }
        let left = self.signature_count() - 1;
        if self.status != Status::Draft && self.status != Status::Opinions && left < min {
            return Err(CouncilError::field(
                "councillor",
                format!(
                    "{} is filed and would keep {left} signatures, below the {min} it needs",
                    self.label()
                ),
            ));
        }
        Ok(())
    }

    fn check_signing_open(&self) -> Result<(), CouncilError> {
        if self.draft.initiative != Initiative::Councillors {
            return Err(CouncilError::field(
                "councillor",
                format!(
                    "a {}'s act has no co-signers",
                    self.draft.initiative.as_str()
                ),
            ));
        }
        if !matches!(self.status, Status::Draft | Status::Opinions) {
            return Err(CouncilError::field(
                "councillor",
                format!(
                    "{} is {}: co-signing is open until it is filed",
                    self.label(),
                    self.status
                ),
            ));
        }
        Ok(())
    }

    /// Checks an art. 49 opinion (while the proposal is in OPINIONS, once per kind).
    pub fn check_opinion(&self, opinion: &Opinion) -> Result<(), CouncilError> {
        if self.kind() != ActKind::Proposal {
            return Err(CouncilError::field(
                "kind",
                format!(
                    "art. 49 opinions are given on proposals, not on a {}",
                    self.kind()
                ),
            ));
        }
        if self.status != Status::Opinions {
            return Err(CouncilError::field(
                "kind",
                format!("{} is {}, not OPINIONS", self.label(), self.status),
            ));
        }
        if self.opinions.iter().any(|o| o.kind == opinion.kind) {
            return Err(CouncilError::field(
                "kind",
                "this opinion was given already".into(),
            ));
        }
        check_text("by", &opinion.by, 200)
    }
}
