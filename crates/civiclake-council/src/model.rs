//! The people and bodies: councillors, committees and their members, and the settings the
//! secretariat keeps (fee rates, the fee policy, signature rules). Each is checked field by
//! field before it becomes an event.

use crate::CouncilError;
use crate::iter::ActKind;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Checks an id: 1–64 of `A-Z a-z 0-9 - _ .`.
pub fn check_id(field: &str, id: &str) -> Result<(), CouncilError> {
    if id.is_empty() || id.len() > 64 {
        return Err(CouncilError::field(
            field,
            "must be 1 to 64 characters".into(),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(CouncilError::field(
            field,
            format!("'{c}' is not allowed (letters, digits, '-', '_', '.')"),
        ));
    }
    Ok(())
}

/// Checks a text: not blank, at most `max` characters.
pub fn check_text(field: &str, text: &str, max: usize) -> Result<(), CouncilError> {
    if text.trim().is_empty() {
        return Err(CouncilError::field(field, "must not be empty".into()));
    }
    if text.chars().count() > max {
        return Err(CouncilError::field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

fn check_span(field: &str, from: NaiveDate, to: Option<NaiveDate>) -> Result<(), CouncilError> {
    match to {
        Some(to) if to < from => Err(CouncilError::field(
            field,
            format!("ends ({to}) before it starts ({from})"),
        )),
        _ => Ok(()),
    }
}

/// A councillor (consigliere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Councillor {
    pub id: String,
    pub name: String,
    /// Codice fiscale (the fees are paid against it).
    pub fiscal_code: String,
    /// Council group (gruppo consiliare).
    pub group: String,
    /// The term (legislatura), e.g. `2024-2029`.
    pub term: String,
    pub from: NaiveDate,
    #[serde(default)]
    pub to: Option<NaiveDate>,
}

impl Councillor {
    /// Checks every field; the fiscal code is normalised.
    pub fn check(&mut self) -> Result<(), CouncilError> {
        check_id("id", &self.id)?;
        check_text("name", &self.name, 200)?;
        let code = civiclake_pa::FiscalCode::parse(&self.fiscal_code)
            .map_err(|e| CouncilError::field("fiscal_code", e.to_string()))?;
        let Some(person) = code.person() else {
            return Err(CouncilError::field(
                "fiscal_code",
                "a councillor's code is a person's (16 characters)".into(),
            ));
        };
        self.fiscal_code = person.as_str().to_string();
        check_text("group", &self.group, 120)?;
        check_text("term", &self.term, 40)?;
        check_span("to", self.from, self.to)
    }

    /// In office on `day`.
    pub fn in_office(&self, day: NaiveDate) -> bool {
        self.from <= day && self.to.is_none_or(|t| day <= t)
    }
}

/// Kinds of committee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitteeKind {
    Permanent,
    Special,
    /// Control and guarantee (garanzia).
    Control,
}

/// A committee (commissione consiliare).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Committee {
    pub id: String,
    pub name: String,
    pub kind: CommitteeKind,
    pub term: String,
    /// Subject areas (materie).
    #[serde(default)]
    pub subjects: Vec<String>,
    pub from: NaiveDate,
    #[serde(default)]
    pub to: Option<NaiveDate>,
    /// Members needed for a quorum (numero legale); default: a majority of the voting
    /// members on the session's day.
    #[serde(default)]
    pub quorum: Option<u32>,
}

impl Committee {
    pub fn check(&self) -> Result<(), CouncilError> {
        check_id("id", &self.id)?;
        check_text("name", &self.name, 200)?;
        check_text("term", &self.term, 40)?;
        for (i, s) in self.subjects.iter().enumerate() {
            check_text(&format!("subjects[{i}]"), s, 120)?;
        }
        if self.quorum == Some(0) {
            return Err(CouncilError::field("quorum", "must be at least 1".into()));
        }
        check_span("to", self.from, self.to)
    }
}

/// Roles in a committee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    President,
    VicePresident,
    Secretary,
    Member,
    /// Invited: takes part, does not vote, does not count for the quorum.
    Invited,
}

impl Role {
    pub fn votes(self) -> bool {
        self != Role::Invited
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::President => "president",
            Role::VicePresident => "vice_president",
            Role::Secretary => "secretary",
            Role::Member => "member",
            Role::Invited => "invited",
        }
    }
}

/// A councillor's seat in a committee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub councillor: String,
    pub role: Role,
    /// A substitute stands in for this member (same group) when they are absent.
    #[serde(default)]
    pub substitute_of: Option<String>,
    pub from: NaiveDate,
    #[serde(default)]
    pub to: Option<NaiveDate>,
}

impl Member {
    pub fn check(&self) -> Result<(), CouncilError> {
        check_id("councillor", &self.councillor)?;
        if let Some(s) = &self.substitute_of {
            check_id("substitute_of", s)?;
            if s == &self.councillor {
                return Err(CouncilError::field(
                    "substitute_of",
                    "a member cannot substitute themselves".into(),
                ));
            }
        }
        check_span("to", self.from, self.to)
    }

    /// Seated on `day`.
    pub fn seated(&self, day: NaiveDate) -> bool {
        self.from <= day && self.to.is_none_or(|t| day <= t)
    }

    /// A voting member on `day` (substitutes vote only in their member's place).
    pub fn voting_on(&self, day: NaiveDate) -> bool {
        self.seated(day) && self.role.votes() && self.substitute_of.is_none()
    }
}

/// The attendance fee (gettone) of a committee from a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRate {
    pub committee: String,
    pub from: NaiveDate,
    #[serde(default)]
    pub to: Option<NaiveDate>,
    pub cents: u64,
}

impl FeeRate {
    pub fn check(&self) -> Result<(), CouncilError> {
        check_id("committee", &self.committee)?;
        check_span("to", self.from, self.to)?;
        if self.cents > 100_000 {
            return Err(CouncilError::field(
                "cents",
                "an attendance fee above 1,000 euro is not plausible".into(),
            ));
        }
        Ok(())
    }

    pub fn covers(&self, day: NaiveDate) -> bool {
        self.from <= day && self.to.is_none_or(|t| day <= t)
    }

    /// Whether this rate and `other` (of the same committee) share a day.
    pub fn overlaps(&self, other: &FeeRate) -> bool {
        let end = |r: &FeeRate| r.to.unwrap_or(NaiveDate::MAX);
        self.committee == other.committee && self.from <= end(other) && other.from <= end(self)
    }
}

/// How several sittings on one day are paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameDay {
    /// Every sitting is paid.
    Each,
    /// One fee a day, the highest rate of the day's sittings.
    Once,
}

/// The fee rules of the comune's regulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeePolicy {
    pub same_day: SameDay,
    /// A councillor's fees in a month never exceed this (a quarter of the mayor's maximum
    /// indemnity, art. 82 c.2 TUEL).
    pub monthly_cap_cents: u64,
}

impl Default for FeePolicy {
    fn default() -> Self {
        // Prato (population ~195,000): the mayor's indemnity is 7,018.65 euro a month
        // (DM 119/2000 as raised by the 2022 budget law); a quarter of it.
        Self {
            same_day: SameDay::Once,
            monthly_cap_cents: 175_466,
        }
    }
}

/// Signatures an act of each kind needs to be filed (the first signer counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRules {
    pub minimum: BTreeMap<ActKind, u32>,
}

impl Default for SignatureRules {
    fn default() -> Self {
        Self {
            minimum: ActKind::ALL.into_iter().map(|k| (k, 1)).collect(),
        }
    }
}

impl SignatureRules {
    pub fn minimum(&self, kind: ActKind) -> u32 {
        self.minimum.get(&kind).copied().unwrap_or(1)
    }

    pub fn check(&self) -> Result<(), CouncilError> {
        for (k, n) in &self.minimum {
            if *n == 0 || *n > 64 {
                return Err(CouncilError::field(
                    &format!("minimum.{k}"),
                    "must be 1 to 64".into(),
                ));
            }
        }
        Ok(())
    }
}
