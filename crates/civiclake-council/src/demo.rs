//! The demo's term (`--demo`): 32 councillors in 8 groups, 6 committees of 9 members (with
//! a substitute each), their fee rates, and the last year of committee sessions with 150
//! acts moving through the iter — every record made through the service's commands, dated
//! in the past (so the views, the dashboard and the fees have a year to show). Seeded once:
//! a lake that already has councillors is left alone.

use crate::acts::{AssignmentRole, Draft, Initiative, Opinion, OpinionKind, StepRequest};
use crate::iter::{ActKind, Status};
use crate::model::{Committee, CommitteeKind, Councillor, FeeRate, Member, Role};
use crate::service::{Caller, Council, CouncilServiceError};
use crate::sessions::{
    Attendance, Ballot, ItemKind, ItemOutcome, ItemRequest, Mode, Presence, Schedule, VoteKind,
    VoteRequest,
};
use crate::state::Held;
use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use std::collections::BTreeMap;

/// The council's groups and their seats (32).
const GROUPS: [(&str, usize); 8] = [
    ("Partito Democratico", 12),
    ("Fratelli d'Italia", 7),
    ("Lega", 3),
    ("Lista civica Prato al centro", 3),
    ("Forza Italia", 2),
    ("Movimento 5 Stelle", 2),
    ("Alleanza Verdi e Sinistra", 2),
    ("Gruppo misto", 1),
];

const FIRST: [&str; 16] = [
    "Marco",
    "Giulia",
    "Luca",
    "Francesca",
    "Alessandro",
    "Chiara",
    "Matteo",
    "Sara",
    "Lorenzo",
    "Elena",
    "Andrea",
    "Martina",
    "Simone",
    "Valentina",
    "Federico",
    "Silvia",
];
const LAST: [&str; 16] = [
    "Bianchi",
    "Rossi",
    "Innocenti",
    "Gori",
    "Cecchi",
    "Bartolini",
    "Mazzoni",
    "Pieri",
    "Vannucci",
    "Lombardi",
    "Fioravanti",
    "Nesti",
    "Baldi",
    "Rindi",
    "Chiti",
    "Lenzi",
];

/// The committees: id, name, kind, subjects.
const COMMITTEES: [(&str, &str, CommitteeKind, &str); 6] = [
    (
        "c1",
        "I — Affari istituzionali",
        CommitteeKind::Permanent,
        "statuto, regolamenti, personale",
    ),
    (
        "c2",
        "II — Bilancio e finanze",
        CommitteeKind::Permanent,
        "bilancio, tributi, partecipate",
    ),
    (
        "c3",
        "III — Urbanistica e ambiente",
        CommitteeKind::Permanent,
        "urbanistica, ambiente, mobilità",
    ),
    (
        "c4",
        "IV — Servizi sociali e sanità",
        CommitteeKind::Permanent,
        "sociale, casa, sanità",
    ),
    (
        "c5",
        "V — Cultura, scuola e sport",
        CommitteeKind::Permanent,
        "cultura, scuola, sport",
    ),
    (
        "c6",
        "VI — Controllo e garanzia",
        CommitteeKind::Control,
        "controllo, trasparenza",
    ),
];

const SUBJECTS: [&str; 12] = [
    "Variazione di bilancio",
    "Regolamento per l'occupazione di suolo pubblico",
    "Piano operativo: variante",
    "Tariffe dei servizi a domanda individuale",
    "Convenzione per la gestione associata",
    "Regolamento del verde urbano",
    "Piano della mobilità sostenibile",
    "Contributi alle associazioni sportive",
    "Regolamento dei servizi educativi",
    "Acquisizione di un immobile al patrimonio",
    "Piano di zona dei servizi sociali",
    "Intitolazione di una piazza",
];

/// A small deterministic generator (the demo is the same every time).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// 15:00 of `day` in Rome (UTC+1/+2), as UTC.
fn at(day: NaiveDate, hour: u32) -> DateTime<Utc> {
    chrono_tz::Europe::Rome
        .from_local_datetime(&day.and_hms_opt(hour, 0, 0).unwrap_or_default())
        .earliest()
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

fn fiscal_code(n: usize) -> String {
    let first15 = format!(
        "{}{}{:02}{}{:02}G999",
        ["RSS", "BNC", "GRI", "CCH"][n % 4],
        ["MRA", "GLI", "LCU", "FRN"][n / 4 % 4],
        60 + n % 30,
        ['A', 'B', 'C', 'D', 'E', 'H', 'L', 'M', 'P', 'R', 'S', 'T'][n % 12],
        1 + n % 28
    );
    match civiclake_pa::compute_check_char(&first15) {
        Ok(c) => format!("{first15}{c}"),
        Err(_) => first15,
    }
}

/// Where an act is in the demo's plan.
#[derive(Debug, Clone)]
struct Plan {
    id: String,
    kind: ActKind,
    /// The day of its next step.
    next: NaiveDate,
    /// Its lead committee.
    committee: &'static str,
    /// An advisory committee, for some proposals.
    advisory: Option<&'static str>,
}

/// Seeds the demo term unless the council has councillors already; gives the acts made.
pub async fn seed(council: &Council) -> Result<Option<usize>, CouncilServiceError> {
    if council.read(|s| !s.councillors.is_empty()).await {
        return Ok(None);
    }
    let today = Utc::now().date_naive();
    let start = today.checked_sub_days(Days::new(365)).unwrap_or(today);
    let term_start = start.checked_sub_days(Days::new(60)).unwrap_or(start);
    let clerk = |day: NaiveDate, hour: u32| Caller::new("demo-segreteria").at(at(day, hour));
    let mut rng = Rng(0x5eed_c0de_2026);

    // Councillors and groups.
    let mut ids = Vec::new();
    let mut by_group: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut n = 0;
    for (group, seats) in GROUPS {
        for _ in 0..seats {
            let id = format!("cc{:02}", n + 1);
            let c = Councillor {
                id: id.clone(),
                name: format!("{} {}", FIRST[n % 16], LAST[(n * 7 + n / 16) % 16]),
                fiscal_code: fiscal_code(n),
                group: group.to_string(),
                term: "2024-2029".into(),
                from: term_start,
                to: None,
            };
            council.put_councillor(c, &clerk(term_start, 9)).await?;
            by_group.entry(group).or_default().push(id.clone());
            ids.push((id, group));
            n += 1;
        }
    }
    // Committees of 9: seats in proportion, the first seat of each committee presides; a
    // substitute of the largest group.
    for (k, (id, name, kind, subjects)) in COMMITTEES.iter().enumerate() {
        let committee = Committee {
            id: id.to_string(),
            name: name.to_string(),
            kind: *kind,
            term: "2024-2029".into(),
            subjects: subjects.split(", ").map(str::to_string).collect(),
            from: term_start,
            to: None,
            quorum: None,
        };
        council
            .put_committee(committee, &clerk(term_start, 10))
            .await?;
        let mut seated = Vec::new();
        for i in 0..9 {
            let (who, _) = &ids[(k * 5 + i * 3) % ids.len()];
            if seated.contains(who) {
                continue;
            }
            let role = match seated.len() {
                0 => Role::President,
                1 => Role::VicePresident,
                2 => Role::Secretary,
                _ => Role::Member,
            };
            let m = Member {
                councillor: who.clone(),
                role,
                substitute_of: None,
                from: term_start,
                to: None,
            };
            council.seat(id, m, &clerk(term_start, 11)).await?;
            seated.push(who.clone());
        }
        // A substitute from the first member's group, not already seated.
        let principal = seated[0].clone();
        let group = ids.iter().find(|(i, _)| *i == principal).map(|(_, g)| *g);
        if let Some(sub) = group
            .and_then(|g| by_group.get(g))
            .and_then(|list| list.iter().find(|c| !seated.contains(c)))
        {
            let m = Member {
                councillor: sub.clone(),
                role: Role::Member,
                substitute_of: Some(principal),
                from: term_start,
                to: None,
            };
            council.seat(id, m, &clerk(term_start, 11)).await?;
        }
        let rate = FeeRate {
            committee: id.to_string(),
            from: term_start,
            to: None,
            cents: if *kind == CommitteeKind::Control {
                3000
            } else {
                3600
            },
        };
        council.set_fee_rate(rate, &clerk(term_start, 12)).await?;
    }

    // 150 acts drafted through the year.
    let mut plans: Vec<Plan> = Vec::new();
    for i in 0..150u64 {
        let kind = match i % 10 {
            0..=4 => ActKind::Proposal,
            5 | 6 => ActKind::Motion,
            7 => ActKind::OrderOfTheDay,
            8 => ActKind::Question,
            _ => ActKind::Interpellation,
        };
        let day = start
            .checked_add_days(Days::new(i * 355 / 150 + rng.below(3)))
            .unwrap_or(start);
        let committee = COMMITTEES[rng.below(5) as usize].0;
        let first = &ids[rng.below(ids.len() as u64) as usize].0;
        let (initiative, first_signer, office) = if kind == ActKind::Proposal {
            (
                Initiative::Giunta,
                None,
                Some("Servizi della Giunta".to_string()),
            )
        } else {
            (Initiative::Councillors, Some(first.clone()), None)
        };
        let subject = format!(
            "{} ({})",
            SUBJECTS[rng.below(SUBJECTS.len() as u64) as usize],
            i + 1
        );
        let id = format!("{}-{}", kind.as_str().replace('_', "-"), i + 1);
        let draft = Draft {
            id: id.clone(),
            kind,
            subject,
            text: String::new(),
            initiative,
            first_signer: first_signer.clone(),
            office,
            amends: None,
            financial_effects: rng.chance(40),
        };
        council.draft(draft, &clerk(day, 9)).await?;
        if let Some(first) = &first_signer
            && rng.chance(60)
        {
            // A colleague of another group co-signs.
            let co = &ids[rng.below(ids.len() as u64) as usize].0;
            if co != first {
                council.invite(&id, first, co, &clerk(day, 10)).await?;
                council.sign(&id, co, &clerk(day, 11)).await?;
            }
        }
        plans.push(Plan {
            id,
            kind,
            next: day
                .checked_add_days(Days::new(1 + rng.below(3)))
                .unwrap_or(day),
            committee,
            advisory: (kind == ActKind::Proposal && rng.chance(30))
                .then(|| COMMITTEES[(rng.below(5) as usize + 1) % 5].0),
        });
    }

    // Day by day: the acts' own steps, each committee's session every other week on its
    // weekday, the council every other Monday.
    let weekdays = [
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Fri,
    ];
    let mut day = start;
    let mut session_no = 0;
    while day < today {
        let week = (day - start).num_days() / 7;
        for plan in plans.iter_mut().filter(|p| p.next <= day) {
            advance(council, plan, day, &mut rng).await?;
        }
        for (k, (committee, ..)) in COMMITTEES.iter().enumerate() {
            if day.weekday() == weekdays[k] && week % 2 == (k as i64) % 2 {
                session_no += 1;
                sit(council, committee, day, session_no, &mut rng).await?;
            }
        }
        if day.weekday() == Weekday::Mon && week % 2 == 0 {
            council_sitting(council, day, &mut rng).await?;
        }
        day = day.succ_opt().unwrap_or(today);
    }
    Ok(Some(plans.len()))
}

/// An act's own next step on `day` (those that wait for a session or the council wait).
async fn advance(
    council: &Council,
    plan: &mut Plan,
    day: NaiveDate,
    rng: &mut Rng,
) -> Result<(), CouncilServiceError> {
    let clerk = Caller::new("demo-segreteria").at(at(day, 12));
    let act = council.get_act(&plan.id).await?;
    let later = |d: u64| day.checked_add_days(Days::new(d)).unwrap_or(day);
    let step = |to: Status| StepRequest {
        to: Some(to),
        ..StepRequest::default()
    };
    match act.status {
        Status::Draft if plan.kind == ActKind::Proposal => {
            council
                .step(&plan.id, step(Status::Opinions), &clerk)
                .await?;
            plan.next = later(2 + rng.below(6));
        }
        Status::Opinions => {
            for kind in [OpinionKind::Technical, OpinionKind::Accounting] {
                if kind == OpinionKind::Accounting && !act.draft.financial_effects {
                    continue;
                }
                let by = match kind {
                    OpinionKind::Technical => "Dirigente del servizio",
                    OpinionKind::Accounting => "Dirigente del servizio finanziario",
                };
                let o = Opinion {
                    kind,
                    favourable: true,
                    by: by.into(),
                    note: None,
                };
                council.give_opinion(&plan.id, o, &clerk).await?;
            }
            council.step(&plan.id, step(Status::Filed), &clerk).await?;
            plan.next = later(1 + rng.below(4));
        }
        Status::Draft => {
            council.step(&plan.id, step(Status::Filed), &clerk).await?;
            plan.next = later(2 + rng.below(10));
        }
        Status::Filed if plan.kind.is_question() => {
            // Answered in writing within the 30 days, mostly; some late.
            if rng.chance(80) {
                let req = StepRequest {
                    to: Some(Status::Answered),
                    answer: Some(crate::acts::AnswerMode::Written),
                    ..StepRequest::default()
                };
                council.step(&plan.id, req, &clerk).await?;
                plan.next = NaiveDate::MAX;
            } else {
                plan.next = later(35);
                let deadline = act.since().date_naive().checked_add_days(Days::new(31));
                if deadline.is_some_and(|d| day > d) {
                    council
                        .step(&plan.id, step(Status::Unanswered), &clerk)
                        .await?;
                }
            }
        }
        Status::Unanswered => {
            let req = StepRequest {
                to: Some(Status::Answered),
                answer: Some(crate::acts::AnswerMode::OralCouncil),
                ..StepRequest::default()
            };
            council.step(&plan.id, req, &clerk).await?;
            plan.next = NaiveDate::MAX;
        }
        Status::Filed if plan.kind != ActKind::Proposal && rng.chance(50) => {
            // Straight to the council (it picks it up at its next sitting).
            plan.next = NaiveDate::MAX;
        }
        Status::Filed => {
            let req = StepRequest {
                to: Some(Status::AssignedToCommittee),
                committee: Some(plan.committee.to_string()),
                role: Some(AssignmentRole::Lead),
                ..StepRequest::default()
            };
            council.step(&plan.id, req, &clerk).await?;
            if let Some(advisory) = plan.advisory.filter(|a| *a != plan.committee) {
                let req = StepRequest {
                    to: Some(Status::AssignedToCommittee),
                    committee: Some(advisory.to_string()),
                    role: Some(AssignmentRole::Advisory),
                    ..StepRequest::default()
                };
                council.step(&plan.id, req, &clerk).await?;
            }
            // Its committees and the council move it on; after the council, its publication.
            plan.next = later(1);
        }
        // Published on the albo a few days after the council's approval (one in five
        // declared immediately enforceable first), enforceable on the 10th day after.
        Status::Approved if plan.kind == ActKind::Proposal => {
            if act.since() + chrono::Duration::days(3) <= at(day, 12) {
                if rng.chance(20) {
                    council
                        .step(&plan.id, step(Status::ImmediatelyEnforceable), &clerk)
                        .await?;
                }
                council
                    .step(&plan.id, step(Status::Published), &clerk)
                    .await?;
                plan.next = later(10);
            } else {
                plan.next = later(1);
            }
        }
        Status::Published => {
            council
                .step(&plan.id, step(Status::Enforceable), &clerk)
                .await?;
            plan.next = NaiveDate::MAX;
        }
        // Waiting for a session or the council: looked at again tomorrow.
        status if !crate::iter::is_terminal(plan.kind, status) => plan.next = later(1),
        _ => plan.next = NaiveDate::MAX,
    }
    Ok(())
}

/// A committee's session on `day`: scheduled and convened five days before with the acts
/// waiting for it, held at 15:00, attendance, a vote per act and its outcome. One in
/// twenty is cancelled.
async fn sit(
    council: &Council,
    committee: &str,
    day: NaiveDate,
    n: u32,
    rng: &mut Rng,
) -> Result<(), CouncilServiceError> {
    let before = day.checked_sub_days(Days::new(5)).unwrap_or(day);
    let clerk = |d: NaiveDate, h: u32| Caller::new("demo-segreteria").at(at(d, h));
    let waiting: Vec<String> = council
        .read(|s| {
            s.acts
                .values()
                .filter(|a| {
                    let assigned = a.assignments().iter().any(|(c, _)| c == committee);
                    let ready = matches!(
                        a.status,
                        Status::AssignedToCommittee
                            | Status::Postponed
                            | Status::SentToOtherCommittee
                    ) || (a.status.is_opinion()
                        && !a.committee_opinions().contains_key(committee));
                    assigned && ready && a.since() <= at(before, 9)
                })
                .map(|a| a.id().to_string())
                .take(4)
                .collect()
        })
        .await;
    let id = format!("s{n:04}");
    let schedule = Schedule {
        id: id.clone(),
        committee: committee.to_string(),
        first_call: at(day, 15),
        second_call: Some(at(day, 16)),
        place: Some("Palazzo Comunale, sala delle commissioni".into()),
        online_link: n
            .is_multiple_of(3)
            .then(|| format!("https://meet.comune.prato.it/{id}")),
        public: committee != "c6" || n.is_multiple_of(2),
    };
    council.schedule(schedule, &clerk(before, 9)).await?;
    for act in &waiting {
        let item = ItemRequest {
            kind: ItemKind::ActExamination,
            title: council.get_act(act).await?.draft.subject,
            acts: vec![act.clone()],
        };
        council.add_item(&id, item, &clerk(before, 10)).await?;
    }
    if waiting.is_empty() || rng.chance(25) {
        let item = ItemRequest {
            kind: if rng.chance(50) {
                ItemKind::Hearing
            } else {
                ItemKind::Communication
            },
            title: "Comunicazioni e audizioni".into(),
            acts: Vec::new(),
        };
        council.add_item(&id, item, &clerk(before, 10)).await?;
    }
    if rng.chance(5) {
        council
            .cancel(&id, "mancanza del numero legale previsto", &clerk(day, 9))
            .await?;
        return Ok(());
    }
    council.convene(&id, &clerk(before, 11)).await?;
    let minutes = 60 + rng.below(90) as i64;
    let started = at(day, 15) + chrono::Duration::minutes(rng.below(20) as i64);
    let ended = started + chrono::Duration::minutes(minutes);
    let after = Caller::new("demo-segreteria").at(ended);
    council.hold(&id, Held { started, ended }, &after).await?;
    let members = council.read(|s| s.members(committee).to_vec()).await;
    let mut present = Vec::new();
    let online = n.is_multiple_of(3);
    for m in members.iter().filter(|m| m.substitute_of.is_none()) {
        let r = rng.below(100);
        let a = if r < 84 {
            present.push(m.councillor.clone());
            let mode = if online && rng.chance(30) {
                Mode::Remote
            } else {
                Mode::Physical
            };
            Attendance::present(&m.councillor, mode)
        } else {
            let presence = if r < 95 {
                Presence::Justified
            } else {
                Presence::Absent
            };
            Attendance::away(&m.councillor, presence)
        };
        council.record_attendance(&id, a, &after).await?;
    }
    for m in members.iter().filter(|m| m.substitute_of.is_some()) {
        let principal_away = m
            .substitute_of
            .as_ref()
            .is_some_and(|p| !present.contains(p));
        if principal_away && rng.chance(70) {
            let a = Attendance::present(&m.councillor, Mode::Physical);
            council.record_attendance(&id, a, &after).await?;
        }
    }
    let session = council.get_session(&id).await?;
    for item in &session.items {
        if item.kind != ItemKind::ActExamination {
            let o = ItemOutcome::new("DISCUSSED");
            council
                .record_outcome(&id, item.position, o, &after)
                .await?;
            continue;
        }
        let voters = present.len() as u32;
        let vote = if rng.chance(25) {
            // A roll call: each member's vote (most with the majority, some not).
            let votes = present
                .iter()
                .map(|who| {
                    let r = rng.below(100);
                    let b = if r < 70 {
                        Ballot::Yes
                    } else if r < 94 {
                        Ballot::No
                    } else {
                        Ballot::Abstained
                    };
                    (who.clone(), b)
                })
                .collect();
            VoteRequest {
                item: item.position,
                kind: VoteKind::RollCall,
                subject: Some(item.title.clone()),
                present: Some(voters),
                yes: None,
                no: None,
                abstained: None,
                votes,
                at: None,
            }
        } else {
            let yes = voters * (55 + rng.below(40) as u32) / 100;
            let abstained = (voters - yes).min(rng.below(2) as u32);
            VoteRequest {
                item: item.position,
                kind: VoteKind::Open,
                subject: Some(item.title.clone()),
                present: Some(voters),
                yes: Some(yes),
                no: Some(voters - yes - abstained),
                abstained: Some(abstained),
                votes: BTreeMap::new(),
                at: None,
            }
        };
        council.record_vote(&id, vote, &after).await?;
        let r = rng.below(100);
        let outcome = if r < 62 {
            "FAVOURABLE"
        } else if r < 77 {
            "FAVOURABLE_WITH_AMENDMENTS"
        } else if r < 83 {
            "UNFAVOURABLE"
        } else {
            "POSTPONED"
        };
        let o = ItemOutcome::new(outcome);
        council
            .record_outcome(&id, item.position, o, &after)
            .await?;
    }
    Ok(())
}

/// The council's sitting on `day`: what the committees have given their opinion on (the
/// lead's) and the motions filed for it go on its agenda and are decided.
async fn council_sitting(
    council: &Council,
    day: NaiveDate,
    rng: &mut Rng,
) -> Result<(), CouncilServiceError> {
    let before = Caller::new("demo-segreteria").at(at(day, 9));
    let sitting = Caller::new("demo-segreteria").at(at(day, 21));
    let ready: Vec<String> = council
        .read(|s| {
            s.acts
                .values()
                .filter(|a| a.since() <= at(day, 9))
                .filter(|a| match a.status {
                    Status::CouncilPostponed => true,
                    Status::Filed => !a.kind().is_question() && a.kind() != ActKind::Proposal,
                    st if st.is_opinion() => {
                        let lead = a
                            .assignments()
                            .into_iter()
                            .find(|(_, r)| *r == AssignmentRole::Lead);
                        let opinions = a.committee_opinions();
                        lead.is_some_and(|(c, _)| opinions.contains_key(&c))
                            && a.assignments()
                                .iter()
                                .all(|(c, _)| opinions.contains_key(c))
                    }
                    _ => false,
                })
                .map(|a| a.id().to_string())
                .collect()
        })
        .await;
    let mut number = council
        .read(|s| {
            s.acts
                .values()
                .filter(|a| {
                    a.status == Status::Approved
                        || a.steps.iter().any(|x| x.resolution_number.is_some())
                })
                .count()
        })
        .await;
    for id in ready {
        let act = council.get_act(&id).await?;
        let agenda = StepRequest {
            to: Some(Status::OnCouncilAgenda),
            ..StepRequest::default()
        };
        council.step(&id, agenda, &before).await?;
        let r = rng.below(100);
        let to = if r < 8 {
            Status::CouncilPostponed
        } else if r < 16 {
            Status::Rejected
        } else {
            Status::Approved
        };
        let resolution_number =
            (to == Status::Approved && act.kind() == ActKind::Proposal).then(|| {
                number += 1;
                format!("DCC {number}/{}", day.year())
            });
        let req = StepRequest {
            to: Some(to),
            resolution_number,
            ..StepRequest::default()
        };
        council.step(&id, req, &sitting).await?;
    }
    Ok(())
}
