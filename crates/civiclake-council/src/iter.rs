//! The iter of an act: its statuses and which step may follow which, per kind of act
//! (`../shared/domain/council.md`). An act's status is never edited: it is the `to` of its
//! last step, and every step is checked here first.
//!
//! Resolution proposals:
//! ```text
//! DRAFT → OPINIONS (art. 49) → FILED → ASSIGNED_TO_COMMITTEE (lead | advisory)
//!  → ON_COMMITTEE_AGENDA → FAVOURABLE | UNFAVOURABLE | FAVOURABLE_WITH_AMENDMENTS
//!                        | POSTPONED (next session) | RETURNED_TO_OFFICE | SENT_TO_OTHER_COMMITTEE
//!  → ON_COUNCIL_AGENDA → APPROVED | REJECTED | WITHDRAWN | COUNCIL_POSTPONED
//!  APPROVED → [IMMEDIATELY_ENFORCEABLE, art. 134 c.4] → PUBLISHED (albo pretorio, art. 124)
//!           → ENFORCEABLE (the 10th day after publication, art. 134 c.3)
//!  LAPSED (end of term) and WITHDRAWN from every step before the council's decision
//! ```
//! The notes' two POSTPONED are told apart: `POSTPONED` is the committee's (to its next
//! session), `COUNCIL_POSTPONED` the council's. Motions, orders of the day and amendments go
//! DRAFT → FILED → (committee, optional) → ON_COUNCIL_AGENDA → APPROVED | REJECTED; questions
//! and interpellations DRAFT → FILED → ANSWERED, or UNANSWERED once past the deadline (and
//! ANSWERED late after that).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActKind {
    /// Proposta di deliberazione.
    Proposal,
    /// Mozione.
    Motion,
    /// Ordine del giorno.
    OrderOfTheDay,
    /// Interrogazione.
    Question,
    /// Interpellanza.
    Interpellation,
    /// Emendamento (to another act).
    Amendment,
}

impl ActKind {
    pub const ALL: [ActKind; 6] = [
        ActKind::Proposal,
        ActKind::Motion,
        ActKind::OrderOfTheDay,
        ActKind::Question,
        ActKind::Interpellation,
        ActKind::Amendment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActKind::Proposal => "proposal",
            ActKind::Motion => "motion",
            ActKind::OrderOfTheDay => "order_of_the_day",
            ActKind::Question => "question",
            ActKind::Interpellation => "interpellation",
            ActKind::Amendment => "amendment",
        }
    }

    /// Questions and interpellations: answered, not voted.
    pub fn is_question(self) -> bool {
        matches!(self, ActKind::Question | ActKind::Interpellation)
    }

    /// The Open Civic Data classification of a bill of this kind.
    pub fn ocd_classification(self) -> &'static str {
        match self {
            ActKind::Proposal => "proposal",
            ActKind::Motion => "motion",
            ActKind::OrderOfTheDay => "resolution",
            ActKind::Question | ActKind::Interpellation => "question",
            ActKind::Amendment => "amendment",
        }
    }
}

impl fmt::Display for ActKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status of the iter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Draft,
    Opinions,
    Filed,
    AssignedToCommittee,
    OnCommitteeAgenda,
    Favourable,
    Unfavourable,
    FavourableWithAmendments,
    /// The committee postponed it to its next session.
    Postponed,
    ReturnedToOffice,
    SentToOtherCommittee,
    OnCouncilAgenda,
    Approved,
    Rejected,
    /// The council postponed it.
    CouncilPostponed,
    ImmediatelyEnforceable,
    Published,
    Enforceable,
    Answered,
    Unanswered,
    Withdrawn,
    Lapsed,
}

impl Status {
    pub const ALL: [Status; 22] = [
        Status::Draft,
        Status::Opinions,
        Status::Filed,
        Status::AssignedToCommittee,
        Status::OnCommitteeAgenda,
        Status::Favourable,
        Status::Unfavourable,
        Status::FavourableWithAmendments,
        Status::Postponed,
        Status::ReturnedToOffice,
        Status::SentToOtherCommittee,
        Status::OnCouncilAgenda,
        Status::Approved,
        Status::Rejected,
        Status::CouncilPostponed,
        Status::ImmediatelyEnforceable,
        Status::Published,
        Status::Enforceable,
        Status::Answered,
        Status::Unanswered,
        Status::Withdrawn,
        Status::Lapsed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "DRAFT",
            Status::Opinions => "OPINIONS",
            Status::Filed => "FILED",
            Status::AssignedToCommittee => "ASSIGNED_TO_COMMITTEE",
            Status::OnCommitteeAgenda => "ON_COMMITTEE_AGENDA",
            Status::Favourable => "FAVOURABLE",
            Status::Unfavourable => "UNFAVOURABLE",
            Status::FavourableWithAmendments => "FAVOURABLE_WITH_AMENDMENTS",
            Status::Postponed => "POSTPONED",
            Status::ReturnedToOffice => "RETURNED_TO_OFFICE",
            Status::SentToOtherCommittee => "SENT_TO_OTHER_COMMITTEE",
            Status::OnCouncilAgenda => "ON_COUNCIL_AGENDA",
            Status::Approved => "APPROVED",
            Status::Rejected => "REJECTED",
            Status::CouncilPostponed => "COUNCIL_POSTPONED",
            Status::ImmediatelyEnforceable => "IMMEDIATELY_ENFORCEABLE",
            Status::Published => "PUBLISHED",
            Status::Enforceable => "ENFORCEABLE",
            Status::Answered => "ANSWERED",
            Status::Unanswered => "UNANSWERED",
            Status::Withdrawn => "WITHDRAWN",
            Status::Lapsed => "LAPSED",
        }
    }

    /// The status called `s` (`FILED`).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The outcomes a committee gives an act it examined.
    pub fn is_committee_outcome(self) -> bool {
        matches!(
            self,
            Status::Favourable
                | Status::Unfavourable
                | Status::FavourableWithAmendments
                | Status::Postponed
                | Status::ReturnedToOffice
                | Status::SentToOtherCommittee
        )
    }

    /// A committee's opinion (not binding: the act moves on).
    pub fn is_opinion(self) -> bool {
        matches!(
            self,
            Status::Favourable | Status::Unfavourable | Status::FavourableWithAmendments
        )
    }

    /// The council's decisions on an act on its agenda.
    pub fn is_council_outcome(self) -> bool {
        matches!(
            self,
            Status::Approved | Status::Rejected | Status::CouncilPostponed | Status::Withdrawn
        )
    }

    /// Who takes the step into this status.
    pub fn body(self) -> Body {
        match self {
            Status::Draft | Status::Opinions | Status::ReturnedToOffice => Body::Office,
            Status::Filed | Status::AssignedToCommittee => Body::Secretariat,
            Status::OnCommitteeAgenda
            | Status::Favourable
            | Status::Unfavourable
            | Status::FavourableWithAmendments
            | Status::Postponed
            | Status::SentToOtherCommittee => Body::Committee,
            Status::OnCouncilAgenda
            | Status::Approved
            | Status::Rejected
            | Status::CouncilPostponed
            | Status::ImmediatelyEnforceable => Body::Council,
            Status::Published | Status::Enforceable => Body::Albo,
            Status::Answered | Status::Unanswered => Body::Giunta,
            Status::Withdrawn => Body::Signers,
            Status::Lapsed => Body::Secretariat,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who takes a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The proposing office (drafts, art. 49 opinions).
    Office,
    /// The council's secretariat (filing, assignment, end of term).
    Secretariat,
    Committee,
    Council,
    /// The online notice board (albo pretorio).
    Albo,
    /// The mayor or an assessor answering a question.
    Giunta,
    /// The act's signers (withdrawal).
    Signers,
}

impl Body {
    pub fn as_str(self) -> &'static str {
        match self {
            Body::Office => "office",
            Body::Secretariat => "secretariat",
            Body::Committee => "committee",
            Body::Council => "council",
            Body::Albo => "albo",
            Body::Giunta => "giunta",
            Body::Signers => "signers",
        }
    }
}

/// The statuses that may follow `from` for an act of `kind` (the state machine, before the
/// checks that need the act's history, see [`crate::acts::Act::check_step`]).
pub fn next(kind: ActKind, from: Status) -> Vec<Status> {
    use Status::*;
    let mut out: Vec<Status> = match (kind, from) {
        (ActKind::Proposal, Draft) => vec![Opinions],
        (ActKind::Proposal, Opinions) => vec![Filed],
        (ActKind::Proposal, ReturnedToOffice) => vec![Opinions],
        (_, Draft) => vec![Filed],
        (k, Filed) if k.is_question() => vec![Answered, Unanswered],
        (k, Unanswered) if k.is_question() => vec![Answered],
        (ActKind::Proposal, Filed) => vec![AssignedToCommittee],
        (_, Filed) => vec![AssignedToCommittee, OnCouncilAgenda],
        (k, AssignedToCommittee) if !k.is_question() => {
            vec![AssignedToCommittee, OnCommitteeAgenda]
        }
        (k, OnCommitteeAgenda) if !k.is_question() => {
            let mut v = vec![
                Favourable,
                Unfavourable,
                FavourableWithAmendments,
                Postponed,
                SentToOtherCommittee,
            ];
            if k == ActKind::Proposal {
                v.push(ReturnedToOffice);
            }
            v
        }
        (k, Postponed) if !k.is_question() => vec![OnCommitteeAgenda],
        (k, SentToOtherCommittee) if !k.is_question() => vec![OnCommitteeAgenda],
        (k, Favourable | Unfavourable | FavourableWithAmendments) if !k.is_question() => {
            vec![AssignedToCommittee, OnCommitteeAgenda, OnCouncilAgenda]
        }
        (k, OnCouncilAgenda) if !k.is_question() => vec![Approved, Rejected, CouncilPostponed],
        (k, CouncilPostponed) if !k.is_question() => vec![OnCouncilAgenda],
        (ActKind::Proposal, Approved) => vec![ImmediatelyEnforceable, Published],
        (ActKind::Proposal, ImmediatelyEnforceable) => vec![Published],
        (ActKind::Proposal, Published) => vec![Enforceable],
        _ => vec![],
    };
    if !is_decided(from) {
        out.push(Withdrawn);
        out.push(Lapsed);
    }
    out
}

/// Decided: the council voted, the question was answered, the act was withdrawn or lapsed.
/// Then it can no longer be withdrawn or lapse (an approved proposal is still published).
fn is_decided(s: Status) -> bool {
    matches!(
        s,
        Status::Approved
            | Status::ImmediatelyEnforceable
            | Status::Published
            | Status::Enforceable
            | Status::Rejected
            | Status::Answered
            | Status::Withdrawn
            | Status::Lapsed
    )
}

/// True when no step can follow `s`.
pub fn is_terminal(kind: ActKind, s: Status) -> bool {
    next(kind, s).is_empty()
}

/// The statuses an act of `kind` can ever be in, from `DRAFT` (for the API's description
/// and the tests).
pub fn reachable(kind: ActKind) -> Vec<Status> {
    let mut seen = vec![Status::Draft];
    let mut i = 0;
    while i < seen.len() {
        for n in next(kind, seen[i]) {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        i += 1;
    }
    seen.sort();
    seen
}

/// A step refused by the state machine or by the act's history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{act}: {reason}")]
pub struct StepError {
    /// The act (`proposal 12/2026`, or its id before filing).
    pub act: String,
    pub from: Status,
    pub to: Status,
    /// What is allowed next from `from`.
    pub allowed: Vec<Status>,
    pub reason: String,
}

impl StepError {
    /// A step `from → to` that the state machine does not have.
    pub fn not_allowed(act: String, kind: ActKind, from: Status, to: Status) -> Self {
        let allowed = next(kind, from);
        let list = if allowed.is_empty() {
            "none, the act's iter is over".to_string()
        } else {
            allowed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Self {
            reason: format!("a {kind} cannot go from {from} to {to}; allowed next: {list}"),
            act,
            from,
            to,
            allowed,
        }
    }

    /// A step the state machine has, refused by a rule (`reason`).
    pub fn rule(act: String, kind: ActKind, from: Status, to: Status, reason: String) -> Self {
        let allowed = next(kind, from);
        let list = allowed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            reason: format!("cannot go from {from} to {to}: {reason} (allowed next: {list})"),
            act,
            from,
            to,
            allowed,
        }
    }
}
