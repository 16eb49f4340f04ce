//! Attendance fees (gettoni di presenza): per councillor per month, for actual
//! participation in held sessions, at the committee's rate of the day, with the comune's
//! same-day rule and the monthly cap (art. 82 c.2 TUEL). A substitute is paid for a session
//! only when the member they stand in for was not present at it.
//!
//! The view `council_fees` (sql/council/fees.sql) computes the same from the tables.

use crate::model::{FeePolicy, FeeRate, Member, SameDay};
use crate::sessions::{Presence, Session, SessionStatus};
use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use std::collections::BTreeMap;

/// A sitting that counts for a fee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sitting {
    pub councillor: String,
    pub committee: String,
    pub session: String,
    pub day: NaiveDate,
    /// The committee's rate on that day (0 without one).
    pub rate_cents: u64,
    /// Standing in for this member.
    pub substitute_of: Option<String>,
}

/// A councillor's fees of a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthlyFee {
    pub councillor: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Sittings that count (actual participation).
    pub sittings: u32,
    /// Days with at least one.
    pub days: u32,
    /// Before the cap.
    pub gross_cents: u64,
    pub cap_cents: u64,
    /// What is paid: the gross, at most the cap.
    pub fee_cents: u64,
}

/// The sittings of `sessions` that count: members present at held sessions, substitutes
/// only in the absence of their member. `members` gives a committee's members.
pub fn sittings<'a>(
    sessions: impl IntoIterator<Item = &'a Session>,
    members: &dyn Fn(&str) -> &'a [Member],
    rates: &[FeeRate],
) -> Vec<Sitting> {
    let mut out = Vec::new();
    for s in sessions {
        if s.status != SessionStatus::Held {
            continue;
        }
        let committee = s.schedule.committee.as_str();
        let day = s.day();
        let seats = members(committee);
        let present = |who: &str| {
            s.attendance
                .get(who)
                .is_some_and(|a| a.presence == Presence::Present)
        };
        let rate = rates
            .iter()
            .find(|r| r.committee == committee && r.covers(day))
            .map_or(0, |r| r.cents);
        for (who, a) in &s.attendance {
            if a.presence != Presence::Present {
                continue;
            }
            let substitute_of = seats
                .iter()
                .find(|m| &m.councillor == who && m.seated(day))
                .and_then(|m| m.substitute_of.clone());
            if let Some(principal) = &substitute_of
                && present(principal)
            {
                continue;
            }
            out.push(Sitting {
                councillor: who.clone(),
                committee: committee.to_string(),
                session: s.id().to_string(),
                day,
                rate_cents: rate,
                substitute_of,
            });
        }
    }
    out
}

/// The fees per councillor and month of `sittings` under `policy`, sorted by councillor
/// and month.
pub fn monthly(sittings: &[Sitting], policy: FeePolicy) -> Vec<MonthlyFee> {
    // councillor → month → day → rates of the day's sittings
    let mut by: BTreeMap<&str, BTreeMap<String, BTreeMap<NaiveDate, Vec<u64>>>> = BTreeMap::new();
    for s in sittings {
        let month = format!("{:04}-{:02}", s.day.year(), s.day.month());
        by.entry(&s.councillor)
            .or_default()
            .entry(month)
            .or_default()
            .entry(s.day)
            .or_default()
            .push(s.rate_cents);
    }
    let mut out = Vec::new();
    for (councillor, months) in by {
        for (month, days) in months {
            let mut gross = 0u64;
            let mut count = 0u32;
            for rates in days.values() {
                count += rates.len() as u32;
                gross += match policy.same_day {
                    SameDay::Each => rates.iter().sum(),
                    SameDay::Once => rates.iter().copied().max().unwrap_or(0),
                };
            }
            out.push(MonthlyFee {
                councillor: councillor.to_string(),
                month,
                sittings: count,
                days: days.len() as u32,
                gross_cents: gross,
                cap_cents: policy.monthly_cap_cents,
                fee_cents: gross.min(policy.monthly_cap_cents),
            });
        }
    }
    out
}
