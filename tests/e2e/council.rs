//! The council committees module in the server: a month of two committees (a proposal
//! from filing to enforceability, a motion rejected, sessions held and cancelled, votes,
//! attendance with a substitute), read back through the SQL views of `sql/council/*.sql`,
//! the fees against hand-computed figures, and the state rebuilt from `council_events`
//! after a restart equal to the live one.

use crate::platform::config;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use civiclake_council::acts::{
    AssignmentRole, Draft, Initiative, Opinion, OpinionKind, StepRequest,
};
use civiclake_council::iter::{ActKind, Status};
use civiclake_council::model::{
    Committee, CommitteeKind, Councillor, FeePolicy, FeeRate, Member, Role, SameDay,
};
use civiclake_council::sessions::{
    Attendance, Ballot, ItemKind, ItemOutcome, ItemRequest, Mode, Presence, Schedule, VoteKind,
    VoteRequest,
};
use civiclake_council::state::Held;
use civiclake_council::{Caller, Council, CouncilServiceError};
use civiclake_server::Server;
use std::collections::BTreeMap;

fn t(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0)
        .single()
        .expect("a time")
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).expect("a date")
}

/// A valid person's fiscal code for councillor number `n`.
fn fiscal_code(n: u32) -> String {
    let first15 = format!("RSSMRA8{}A{:02}G999", n % 10, n % 28 + 1);
    let check = civiclake_pa::compute_check_char(&first15).expect("a check character");
    format!("{first15}{check}")
}

/// The rows of `sql` as strings, by column name.
async fn rows(server: &Server, sql: &str) -> Vec<BTreeMap<String, String>> {
    let result = server
        .engine
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    let options = FormatOptions::default().with_null("null");
    for b in &result.batches {
        let formatters: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("a formatter"))
            .collect();
        for r in 0..b.num_rows() {
            let mut row = BTreeMap::new();
            for (i, f) in b.schema().fields().iter().enumerate() {
                row.insert(f.name().clone(), formatters[i].value(r).to_string());
            }
            out.push(row);
        }
    }
    out
}

fn cols(rows: &[BTreeMap<String, String>], names: &[&str]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| names.iter().map(|n| r[*n].clone()).collect())
        .collect()
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn people(council: &Council, clerk: &Caller) {
    let groups = [
        ("a01", "Partito Democratico"),
        ("a02", "Partito Democratico"),
        ("a03", "Partito Democratico"),
        ("s01", "Partito Democratico"),
        ("a04", "Fratelli d'Italia"),
        ("a05", "Fratelli d'Italia"),
        ("a06", "Lega"),
        ("a07", "Lista civica Prato"),
    ];
    for (n, (id, group)) in groups.iter().enumerate() {
        council
            .put_councillor(
                Councillor {
                    id: id.to_string(),
                    name: format!("Consigliere {id}"),
                    fiscal_code: fiscal_code(n as u32).to_lowercase(),
                    group: group.to_string(),
                    term: "2024-2029".into(),
                    from: NaiveDate::from_ymd_opt(2024, 6, 24).expect("a date"),
                    to: None,
                },
                clerk,
            )
            .await
            .expect("accepted");
    }
    let committee = |id: &str, name: &str| Committee {
        id: id.into(),
        name: name.into(),
        kind: CommitteeKind::Permanent,
        term: "2024-2029".into(),
        subjects: vec![name.to_lowercase()],
        from: NaiveDate::from_ymd_opt(2024, 7, 1).expect("a date"),
        to: None,
        quorum: None,
    };
    council
        .put_committee(committee("c1", "Bilancio"), clerk)
        .await
        .expect("accepted");
    council
        .put_committee(committee("c2", "Ambiente"), clerk)
        .await
        .expect("accepted");
    let seat = |who: &str, role, substitute_of: Option<&str>| Member {
        councillor: who.into(),
        role,
        substitute_of: substitute_of.map(str::to_string),
        from: NaiveDate::from_ymd_opt(2024, 7, 1).expect("a date"),
        to: None,
    };
    for (i, who) in ["a01", "a02", "a03", "a04", "a05", "a06", "a07"]
        .iter()
        .enumerate()
    {
        let role = if i == 0 {
            Role::President
        } else {
            Role::Member
        };
        council
            .seat("c1", seat(who, role, None), clerk)
            .await
            .expect("accepted");
    }
    // A second seat in the same committee is refused; a substitute of the same group is seated.
    let e = council
        .seat("c1", seat("a04", Role::Member, Some("a01")), clerk)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("already has a seat"), "{e}");
    council
        .seat("c1", seat("s01", Role::Member, Some("a01")), clerk)
        .await
        .expect("accepted");
    for who in ["a01", "a02", "a04"] {
        council
            .seat("c2", seat(who, Role::Member, None), clerk)
            .await
            .expect("accepted");
    }
    for (c, cents) in [("c1", 3000), ("c2", 2500)] {
        council
            .set_fee_rate(
                FeeRate {
                    committee: c.into(),
                    from: day(1, 1),
                    to: None,
                    cents,
                },
                clerk,
            )
            .await
            .expect("accepted");
    }
    council
        .set_fee_policy(
            FeePolicy {
                same_day: SameDay::Once,
                monthly_cap_cents: 5000,
            },
            clerk,
        )
        .await
        .expect("accepted");
}

fn step(to: Status) -> StepRequest {
    StepRequest {
        to: Some(to),
        ..StepRequest::default()
    }
}

fn present(who: &str, mode: Mode) -> Attendance {
    Attendance::present(who, mode)
}

fn away(who: &str, presence: Presence) -> Attendance {
    Attendance::away(who, presence)
}

fn schedule(id: &str, committee: &str, first_call: DateTime<Utc>, online: bool) -> Schedule {
    Schedule {
        id: id.into(),
        committee: committee.into(),
        first_call,
        second_call: Some(first_call + chrono::Duration::hours(1)),
        place: Some("Palazzo Comunale, sala consiliare".into()),
        online_link: online.then(|| "https://meet.comune.prato.it/c".to_string()),
        public: true,
    }
}

/// The month: returns the council's state afterwards.
async fn a_month(council: &Council) {
    let clerk = |m, d, h| Caller::new("segreteria").at(t(m, d, h));
    people(council, &clerk(1, 10, 9)).await;

    // A Giunta's proposal: opinions, filed (numbered 1/2026), assigned to both committees.
    council
        .draft(
            Draft {
                id: "p1".into(),
                kind: ActKind::Proposal,
                subject: "Variazione di bilancio 2026".into(),
                text: "Il Consiglio comunale delibera...".into(),
                initiative: Initiative::Giunta,
                first_signer: None,
                office: Some("Servizio Bilancio".into()),
                amends: None,
                financial_effects: true,
            },
            &clerk(2, 1, 9),
        )
        .await
        .expect("accepted");
    council
        .step("p1", step(Status::Opinions), &clerk(2, 2, 9))
        .await
        .expect("accepted");
    for (kind, by) in [
        (OpinionKind::Technical, "Dirigente Bilancio"),
        (OpinionKind::Accounting, "Ragioniere capo"),
    ] {
        council
            .give_opinion(
                "p1",
                Opinion {
                    kind,
                    favourable: true,
                    by: by.into(),
                    note: None,
                },
                &clerk(2, 4, 9),
            )
            .await
            .expect("accepted");
    }
    let filed = council
        .step("p1", step(Status::Filed), &clerk(2, 6, 9))
        .await
        .expect("accepted");
    assert_eq!(filed.label(), "proposal 1/2026");
    for (c, role, d) in [
        ("c1", AssignmentRole::Lead, 10),
        ("c2", AssignmentRole::Advisory, 11),
    ] {
        let req = StepRequest {
            committee: Some(c.into()),
            role: Some(role),
            ..step(Status::AssignedToCommittee)
        };
        council
            .step("p1", req, &clerk(2, d, 9))
            .await
            .expect("accepted");
    }
    // A committee's outcome cannot be given outside a session.
    let e = council
        .step("p1", step(Status::Favourable), &clerk(2, 12, 9))
        .await
        .expect_err("refused");
    assert!(matches!(e, CouncilServiceError::Step(_)), "{e}");
    assert!(e.to_string().contains("recorded on its session"), "{e}");

    // A motion of a04, co-signed by a05.
    council
        .draft(
            Draft {
                id: "m1".into(),
                kind: ActKind::Motion,
                subject: "Gratuità dei parcheggi del centro".into(),
                text: String::new(),
                initiative: Initiative::Councillors,
                first_signer: Some("a04".into()),
                office: None,
                amends: None,
                financial_effects: false,
            },
            &clerk(2, 3, 9),
        )
        .await
        .expect("accepted");
    let e = council
        .sign("m1", "a05", &clerk(2, 3, 10))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("was not invited"), "{e}");
    council
        .invite("m1", "a04", "a05", &clerk(2, 3, 10))
        .await
        .expect("accepted");
    let m1 = council
        .sign("m1", "a05", &clerk(2, 3, 11))
        .await
        .expect("accepted");
    assert_eq!(m1.signature_count(), 2);
    // Someone else's stale view of the motion is refused.
    let e = council
        .step("m1", step(Status::Filed), &clerk(2, 4, 9).if_match(1))
        .await
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        "act-m1 is at version 3, not 1: reload it and try again"
    );
    council
        .step(
            "m1",
            step(Status::Filed),
            &clerk(2, 4, 9).if_match(m1.version),
        )
        .await
        .expect("accepted");

    // Session s1 of c1 on 2 March: p1 examined, favourable; a vote; the substitute s01 is
    // there with a01 (so not paid).
    council
        .schedule(schedule("s1", "c1", t(3, 2, 9), false), &clerk(2, 20, 9))
        .await
        .expect("accepted");
    council
        .add_item(
            "s1",
            ItemRequest {
                kind: ItemKind::ActExamination,
                title: "Variazione di bilancio".into(),
                acts: vec!["p1".into()],
            },
            &clerk(2, 20, 9),
        )
        .await
        .expect("accepted");
    assert_eq!(
        council.get_act("p1").await.expect("accepted").status,
        Status::OnCommitteeAgenda
    );
    council
        .convene("s1", &clerk(2, 21, 9))
        .await
        .expect("accepted");
    council
        .hold(
            "s1",
            Held {
                started: t(3, 2, 9),
                ended: t(3, 2, 11),
            },
            &clerk(3, 2, 11),
        )
        .await
        .expect("accepted");
    for a in [
        present("a01", Mode::Physical),
        present("a02", Mode::Physical),
        present("a03", Mode::Physical),
        present("a04", Mode::Physical),
        away("a05", Presence::Absent),
        away("a06", Presence::Justified),
        present("s01", Mode::Physical),
    ] {
        council
            .record_attendance("s1", a, &clerk(3, 2, 11))
            .await
            .expect("accepted");
    }
    // No online link: nobody attends s1 remotely.
    let e = council
        .record_attendance("s1", present("a07", Mode::Remote), &clerk(3, 2, 11))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("no online link"), "{e}");
    council
        .record_attendance("s1", present("a07", Mode::Physical), &clerk(3, 2, 11))
        .await
        .expect("accepted");
    let vote = VoteRequest {
        item: 1,
        kind: VoteKind::Open,
        subject: Some("parere sulla proposta 1/2026".into()),
        present: Some(5),
        yes: Some(4),
        no: Some(1),
        abstained: Some(0),
        votes: BTreeMap::new(),
        at: Some(t(3, 2, 10)),
    };
    let s1 = council
        .record_vote("s1", vote, &clerk(3, 2, 11))
        .await
        .expect("accepted");
    assert_eq!(s1.votes[0].quorum, 4);
    // A roll call on an amendment: a01 votes against the rest of the Partito Democratico.
    let ballots = [
        ("a01", Ballot::Yes),
        ("a02", Ballot::No),
        ("a03", Ballot::No),
        ("a04", Ballot::Yes),
        ("a07", Ballot::Abstained),
    ];
    let roll_call = VoteRequest {
        item: 1,
        kind: VoteKind::RollCall,
        subject: Some("emendamento 1".into()),
        present: Some(6),
        yes: None,
        no: None,
        abstained: None,
        votes: ballots.iter().map(|(w, b)| (w.to_string(), *b)).collect(),
        at: Some(t(3, 2, 10)),
    };
    let s1 = council
        .record_vote("s1", roll_call, &clerk(3, 2, 11))
        .await
        .expect("accepted");
    assert_eq!(
        (
            s1.votes[1].yes,
            s1.votes[1].no,
            s1.votes[1].abstained,
            s1.votes[1].present
        ),
        (2, 2, 1, 6)
    );
    council
        .record_outcome(
            "s1",
            1,
            ItemOutcome {
                outcome: "FAVOURABLE".into(),
                discussion_start: Some(t(3, 2, 9)),
                discussion_end: Some(t(3, 2, 10)),
                to_committee: None,
                note: None,
            },
            &clerk(3, 2, 11),
        )
        .await
        .expect("accepted");

    // Session s2 of c2 the same afternoon, online too: unfavourable, a roll call.
    council
        .schedule(schedule("s2", "c2", t(3, 2, 15), true), &clerk(2, 20, 10))
        .await
        .expect("accepted");
    council
        .add_item(
            "s2",
            ItemRequest {
                kind: ItemKind::ActExamination,
                title: "Parere consultivo".into(),
                acts: vec!["p1".into()],
            },
            &clerk(3, 2, 12),
        )
        .await
        .expect("accepted");
    council
        .convene("s2", &clerk(3, 2, 12))
        .await
        .expect("accepted");
    council
        .hold(
            "s2",
            Held {
                started: t(3, 2, 15),
                ended: t(3, 2, 16),
            },
            &clerk(3, 2, 16),
        )
        .await
        .expect("accepted");
    council
        .record_attendance("s2", present("a01", Mode::Remote), &clerk(3, 2, 16))
        .await
        .expect("accepted");
    council
        .record_attendance("s2", present("a02", Mode::Physical), &clerk(3, 2, 16))
        .await
        .expect("accepted");
    council
        .record_attendance("s2", away("a04", Presence::Absent), &clerk(3, 2, 16))
        .await
        .expect("accepted");
    let roll = |votes: &[(&str, Ballot)]| VoteRequest {
        item: 1,
        kind: VoteKind::RollCall,
        subject: None,
        present: None,
        yes: None,
        no: None,
        abstained: None,
        votes: votes.iter().map(|(w, b)| (w.to_string(), *b)).collect(),
        at: None,
    };
    let e = council
        .record_vote(
            "s2",
            roll(&[("a01", Ballot::No), ("a04", Ballot::Yes)]),
            &clerk(3, 2, 16),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.to_string(), "votes.a04: a04 is recorded absent");
    council
        .record_vote(
            "s2",
            roll(&[("a01", Ballot::No), ("a02", Ballot::No)]),
            &clerk(3, 2, 16),
        )
        .await
        .expect("accepted");
    council
        .record_outcome("s2", 1, ItemOutcome::new("UNFAVOURABLE"), &clerk(3, 2, 16))
        .await
        .expect("accepted");

    // Session s3 of c1 on 9 March: a hearing; a01 justified, so s01 stands in (paid).
    council
        .schedule(schedule("s3", "c1", t(3, 9, 9), false), &clerk(3, 3, 9))
        .await
        .expect("accepted");
    council
        .add_item(
            "s3",
            ItemRequest {
                kind: ItemKind::Hearing,
                title: "Audizione del collegio dei revisori".into(),
                acts: vec![],
            },
            &clerk(3, 3, 9),
        )
        .await
        .expect("accepted");
    council
        .convene("s3", &clerk(3, 3, 9))
        .await
        .expect("accepted");
    council
        .hold(
            "s3",
            Held {
                started: t(3, 9, 9),
                ended: t(3, 9, 10),
            },
            &clerk(3, 9, 10),
        )
        .await
        .expect("accepted");
    council
        .record_attendance("s3", away("a01", Presence::Justified), &clerk(3, 9, 10))
        .await
        .expect("accepted");
    council
        .record_attendance("s3", present("a02", Mode::Physical), &clerk(3, 9, 10))
        .await
        .expect("accepted");
    council
        .record_attendance("s3", present("s01", Mode::Physical), &clerk(3, 9, 10))
        .await
        .expect("accepted");
    council
        .record_outcome("s3", 1, ItemOutcome::new("DISCUSSED"), &clerk(3, 9, 10))
        .await
        .expect("accepted");

    // Session s4 of c1 is cancelled.
    council
        .schedule(schedule("s4", "c1", t(3, 16, 9), false), &clerk(3, 10, 9))
        .await
        .expect("accepted");
    council
        .add_item(
            "s4",
            ItemRequest {
                kind: ItemKind::Communication,
                title: "Comunicazioni del presidente".into(),
                acts: vec![],
            },
            &clerk(3, 10, 9),
        )
        .await
        .expect("accepted");
    council
        .cancel("s4", "assenza del presidente", &clerk(3, 12, 9))
        .await
        .expect("accepted");

    // The council: p1 approved and published, enforceable on the 10th day; m1 rejected.
    council
        .step("p1", step(Status::OnCouncilAgenda), &clerk(3, 20, 9))
        .await
        .expect("accepted");
    let approve = StepRequest {
        resolution_number: Some("DCC 21/2026".into()),
        ..step(Status::Approved)
    };
    council
        .step("p1", approve, &clerk(3, 23, 18))
        .await
        .expect("accepted");
    council
        .step("p1", step(Status::Published), &clerk(3, 25, 9))
        .await
        .expect("accepted");
    let e = council
        .step("p1", step(Status::Enforceable), &clerk(4, 3, 9))
        .await
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains("enforceable from the 10th day after, 2026-04-04"),
        "{e}"
    );
    council
        .step("p1", step(Status::Enforceable), &clerk(4, 4, 9))
        .await
        .expect("accepted");
    council
        .step("m1", step(Status::OnCouncilAgenda), &clerk(3, 20, 9))
        .await
        .expect("accepted");
    council
        .step("m1", step(Status::Rejected), &clerk(3, 23, 19))
        .await
        .expect("accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_committees_in_views_fees_and_a_rebuilt_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&config(dir.path())).await.expect("start");
    let council = server.council().expect("council module").clone();
    a_month(&council).await;

    let acts = rows(&server, "SELECT * FROM council_acts ORDER BY act_id").await;
    assert_eq!(
        cols(
            &acts,
            &[
                "act_id",
                "kind",
                "number",
                "year",
                "status",
                "resolution_number",
                "signatures",
                "group",
                "closed",
                "stale"
            ]
        ),
        [
            sv(&[
                "m1",
                "motion",
                "1",
                "2026",
                "REJECTED",
                "null",
                "2",
                "Fratelli d'Italia",
                "true",
                "false"
            ]),
            sv(&[
                "p1",
                "proposal",
                "1",
                "2026",
                "ENFORCEABLE",
                "DCC 21/2026",
                "0",
                "null",
                "true",
                "false"
            ]),
        ]
    );
    let iter = rows(&server, "SELECT to_status, committee_id, days_since_previous FROM council_iter WHERE act_id = 'p1' ORDER BY step").await;
    assert_eq!(
        cols(&iter, &["to_status", "committee_id", "days_since_previous"]),
        [
            sv(&["OPINIONS", "null", "1.0"]),
            sv(&["FILED", "null", "4.0"]),
            sv(&["ASSIGNED_TO_COMMITTEE", "c1", "4.0"]),
            sv(&["ASSIGNED_TO_COMMITTEE", "c2", "1.0"]),
            sv(&["ON_COMMITTEE_AGENDA", "c1", "9.0"]),
            sv(&["FAVOURABLE", "c1", "10.041666666666666"]),
            sv(&["ON_COMMITTEE_AGENDA", "c2", "0.08333333333333333"]),
            sv(&["UNFAVOURABLE", "c2", "0.16666666666666666"]),
            sv(&["ON_COUNCIL_AGENDA", "null", "17.708333333333332"]),
            sv(&["APPROVED", "null", "3.375"]),
            sv(&["PUBLISHED", "null", "1.625"]),
            sv(&["ENFORCEABLE", "null", "10.0"]),
        ]
    );
    let sessions = rows(
        &server,
        "SELECT * FROM council_sessions ORDER BY session_id",
    )
    .await;
    assert_eq!(
        cols(
            &sessions,
            &[
                "session_id",
                "committee_id",
                "status",
                "number",
                "duration_min",
                "items",
                "present",
                "votes",
                "local_day"
            ]
        ),
        [
            sv(&[
                "s1",
                "c1",
                "held",
                "1",
                "120.0",
                "1",
                "6",
                "2",
                "2026-03-02"
            ]),
            sv(&["s2", "c2", "held", "1", "60.0", "1", "2", "1", "2026-03-02"]),
            sv(&["s3", "c1", "held", "2", "60.0", "1", "2", "0", "2026-03-09"]),
            sv(&[
                "s4",
                "c1",
                "cancelled",
                "3",
                "null",
                "1",
                "0",
                "0",
                "2026-03-16"
            ]),
        ]
    );
    let attendance = rows(&server, "SELECT * FROM council_attendance WHERE councillor_id IN ('a01', 'a02') ORDER BY committee_id, councillor_id").await;
    assert_eq!(
        cols(
            &attendance,
            &[
                "committee_id",
                "councillor_id",
                "sessions",
                "present",
                "remote",
                "justified",
                "attendance"
            ]
        ),
        [
            sv(&["c1", "a01", "2", "1", "0", "1", "0.5"]),
            sv(&["c1", "a02", "2", "2", "0", "0", "1.0"]),
            sv(&["c2", "a01", "1", "1", "1", "0", "1.0"]),
            sv(&["c2", "a02", "1", "1", "0", "0", "1.0"]),
        ]
    );
    // Fees, by hand (rates: c1 30.00, c2 25.00; one fee a day; cap 50.00):
    // a01: 2 Mar c1 + c2 → 30.00 (9 Mar justified). a02: 2 Mar 30.00 + 9 Mar 30.00 = 60.00,
    // capped at 50.00. a03, a04, a07: 2 Mar 30.00 (a04 was absent from c2). s01: only 9 Mar
    // (on 2 Mar a01 was present) 30.00. a05, a06: nothing.
    let expected = [
        ["a01", "2", "1", "3000", "3000", "false"],
        ["a02", "3", "2", "6000", "5000", "true"],
        ["a03", "1", "1", "3000", "3000", "false"],
        ["a04", "1", "1", "3000", "3000", "false"],
        ["a07", "1", "1", "3000", "3000", "false"],
        ["s01", "1", "1", "3000", "3000", "false"],
    ];
    let fees = rows(
        &server,
        "SELECT * FROM council_fees WHERE month = '2026-03' ORDER BY councillor_id",
    )
    .await;
    assert_eq!(
        cols(
            &fees,
            &[
                "councillor_id",
                "sittings",
                "days",
                "gross_cents",
                "fee_cents",
                "capped"
            ]
        ),
        expected.iter().map(|r| sv(r)).collect::<Vec<_>>()
    );
    let computed: Vec<Vec<String>> = council
        .fees()
        .await
        .iter()
        .map(|f| {
            vec![
                f.councillor.clone(),
                f.sittings.to_string(),
                f.days.to_string(),
                f.gross_cents.to_string(),
                f.fee_cents.to_string(),
                (f.gross_cents > f.cap_cents).to_string(),
            ]
        })
        .collect();
    assert_eq!(computed, expected.iter().map(|r| sv(r)).collect::<Vec<_>>());
    let stats = rows(&server, "SELECT * FROM council_stats ORDER BY committee_id").await;
    assert_eq!(
        cols(
            &stats,
            &[
                "committee_id",
                "year",
                "sessions_held",
                "sessions_cancelled",
                "mean_duration_min",
                "votes",
                "acts_examined",
                "favourable",
                "unfavourable"
            ]
        ),
        [
            sv(&["c1", "2026", "2", "1", "90.0", "2", "1", "1", "0"]),
            sv(&["c2", "2026", "1", "0", "60.0", "1", "1", "0", "1"]),
        ]
    );

    // Flushed to Delta, the tables answer the same (every council table can be flushed).
    server.lake.flush().await.expect("flush");
    assert_eq!(server.lake.buffered_rows(), 0, "every row flushed to Delta");
    let after = rows(
        &server,
        "SELECT * FROM council_fees WHERE month = '2026-03' ORDER BY councillor_id",
    )
    .await;
    assert_eq!(after, fees);
    assert_eq!(
        rows(
            &server,
            "SELECT * FROM council_sessions ORDER BY session_id"
        )
        .await,
        sessions
    );

    // Votes against one's own group, over the roll calls: a01 in s1 (the Partito
    // Democratico's majority voted no); a02 and a01 together in s2.
    let dissent = rows(
        &server,
        "SELECT * FROM council_group_dissent ORDER BY councillor_id",
    )
    .await;
    assert_eq!(
        cols(&dissent, &["councillor_id", "roll_calls", "against_group"]),
        [
            sv(&["a01", "2", "1"]),
            sv(&["a02", "2", "0"]),
            sv(&["a03", "1", "0"]),
            sv(&["a04", "1", "0"]),
            sv(&["a07", "1", "0"]),
        ]
    );

    // The state rebuilt from the events after a restart is the live one.
    let live = council.snapshot().await;
    assert_eq!(live.acts.len(), 2);
    assert_eq!(live.sessions.len(), 4);
    // The service holds the lake (and its lock) until it is dropped.
    drop(council);
    server.stop().await.expect("stop");
    let server = Server::start(&config(dir.path())).await.expect("restart");
    let rebuilt = server.council().expect("council").snapshot().await;
    assert_eq!(rebuilt, live);
    server.stop().await.expect("stop");
}

/// A request against the server: method, path, token, body, If-Match; gives the status,
/// the JSON body and the ETag.
struct Http<'a> {
    server: &'a crate::server::TestServer,
    client: reqwest::blocking::Client,
}

impl Http<'_> {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
        if_match: Option<&str>,
    ) -> (u16, serde_json::Value, Option<String>) {
        let url = format!("{}{path}", self.server.url);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut r = self.client.request(method, url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        if let Some(m) = if_match {
            r = r.header("if-match", m);
        }
        let resp = r.send().expect("a response");
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, value, etag)
    }
}

#[test]
fn a_proposal_from_filing_to_enforceability_through_the_http_api() {
    use crate::auth::{last_line, token_cmd};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let clerk = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "council-secretariat"],
    ));
    let a04 = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "councillor", "--subject", "a04"],
    ));
    let a05 = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "councillor", "--subject", "a05"],
    ));
    let analyst = last_line(&token_cmd(dir.path(), &["create", "--role", "analyst"]));
    let server = crate::server::TestServer::start_secure(dir.path(), &[]);
    let http = Http {
        server: &server,
        client: crate::server::TestServer::client(),
    };
    let clerk = Some(clerk.as_str());
    let ok = |(s, v, _): (u16, serde_json::Value, Option<String>), want: u16| {
        assert_eq!(s, want, "{v}");
        v
    };

    for (n, (id, group)) in [
        ("a04", "Fratelli d'Italia"),
        ("a05", "Fratelli d'Italia"),
        ("a01", "Partito Democratico"),
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"id": id, "name": format!("Consigliere {id}"), "fiscal_code": fiscal_code(n as u32),
            "group": group, "term": "2024-2029", "from": "2024-06-24"});
        ok(
            http.call(
                "PUT",
                &format!("/api/v1/council/councillors/{id}"),
                clerk,
                Some(body),
                None,
            ),
            200,
        );
    }
    // Field-level validation: the bad fiscal code, the unknown field.
    let (s, v, _) = http.call(
        "PUT",
        "/api/v1/council/councillors/x1",
        clerk,
        Some(json!({"id": "x1", "name": "X", "fiscal_code": "RSSMRA80A01G999X", "group": "G", "term": "t", "from": "2024-06-24"})),
        None,
    );
    assert_eq!((s, v["field"].as_str()), (400, Some("fiscal_code")), "{v}");
    let (s, v, _) = http.call(
        "PUT",
        "/api/v1/council/councillors/x1",
        clerk,
        Some(json!({"id": "x1", "name": "X", "fiscal_code": "RSSMRA80A01G999X", "group": "G", "term": "t", "from": "2024-06-24", "colour": "red"})),
        None,
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("colour"), "{v}");
    // A councillor may not run committees.
    let (s, _, _) = http.call(
        "PUT",
        "/api/v1/council/committees/c1",
        Some(&a04),
        Some(json!({})),
        None,
    );
    assert_eq!(s, 403);
    ok(
        http.call(
            "PUT",
            "/api/v1/council/committees/c1",
            clerk,
            Some(json!({"id": "c1", "name": "Bilancio", "kind": "permanent", "term": "2024-2029", "from": "2024-07-01"})),
            None,
        ),
        200,
    );
    for who in ["a01", "a04", "a05"] {
        ok(
            http.call(
                "POST",
                "/api/v1/council/committees/c1/members",
                clerk,
                Some(json!({"councillor": who, "role": "member", "from": "2024-07-01"})),
                None,
            ),
            201,
        );
    }

    // A councillor drafts a motion as its first signer (not as someone else), invites a
    // colleague, who signs; the draft is not public yet.
    let motion = json!({"id": "m1", "kind": "motion", "subject": "Piste ciclabili", "initiative": "councillors", "first_signer": "a04"});
    let (s, _, _) = http.call(
        "POST",
        "/api/v1/council/acts",
        Some(&a05),
        Some(motion.clone()),
        None,
    );
    assert_eq!(s, 403);
    let v = ok(
        http.call(
            "POST",
            "/api/v1/council/acts",
            Some(&a04),
            Some(motion),
            None,
        ),
        201,
    );
    assert_eq!(v["status"], "DRAFT");
    assert_eq!(v["next"], json!(["FILED", "WITHDRAWN", "LAPSED"]));
    let (s, _, _) = http.call("GET", "/api/v1/council/acts/m1", None, None, None);
    assert_eq!(s, 404, "a draft is not public");
    ok(
        http.call(
            "POST",
            "/api/v1/council/acts/m1/invitations",
            Some(&a04),
            Some(json!({"councillor": "a05"})),
            None,
        ),
        201,
    );
    let (s, _, _) = http.call(
        "POST",
        "/api/v1/council/acts/m1/signatures",
        Some(&a04),
        Some(json!({"councillor": "a05"})),
        None,
    );
    assert_eq!(s, 403, "nobody signs for another");
    let (_, v, etag) = http.call(
        "POST",
        "/api/v1/council/acts/m1/signatures",
        Some(&a05),
        Some(json!({"councillor": "a05"})),
        None,
    );
    assert_eq!(v["signatures"]["a05"], "signed", "{v}");
    assert_eq!(etag.as_deref(), Some("\"3\""));
    // Filed by its first signer; a stale If-Match is a 409 naming the version.
    let (s, v, _) = http.call(
        "POST",
        "/api/v1/council/acts/m1/steps",
        Some(&a04),
        Some(json!({"to": "FILED"})),
        Some("\"2\""),
    );
    assert_eq!((s, &v["details"]["version"]), (409, &json!(3)), "{v}");
    let v = ok(
        http.call(
            "POST",
            "/api/v1/council/acts/m1/steps",
            Some(&a04),
            Some(json!({"to": "FILED"})),
            Some("\"3\""),
        ),
        201,
    );
    assert_eq!(v["label"], "motion 1/2026");
    // ... but the council's decision is not a councillor's step.
    let (s, _, _) = http.call(
        "POST",
        "/api/v1/council/acts/m1/steps",
        Some(&a04),
        Some(json!({"to": "ON_COUNCIL_AGENDA"})),
        None,
    );
    assert_eq!(s, 403);

    // The Giunta's proposal: from DRAFT to ENFORCEABLE.
    ok(
        http.call(
            "POST",
            "/api/v1/council/acts",
            clerk,
            Some(json!({"id": "p1", "kind": "proposal", "subject": "Regolamento del verde", "initiative": "giunta", "office": "Ambiente"})),
            None,
        ),
        201,
    );
    let step = |to: &str, extra: serde_json::Value| {
        let mut b = json!({"to": to});
        if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        http.call(
            "POST",
            "/api/v1/council/acts/p1/steps",
            clerk,
            Some(b),
            None,
        )
    };
    ok(step("OPINIONS", json!({})), 201);
    // A refused step names the current status and what is allowed.
    let (s, v, _) = step("APPROVED", json!({}));
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        v["details"],
        json!({"current": "OPINIONS", "requested": "APPROVED", "allowed": ["FILED", "WITHDRAWN", "LAPSED"]})
    );
    let (s, v, _) = step("FILED", json!({}));
    assert_eq!(s, 409);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("technical opinion"),
        "{v}"
    );
    ok(
        http.call(
            "POST",
            "/api/v1/council/acts/p1/opinions",
            clerk,
            Some(json!({"kind": "technical", "favourable": true, "by": "Dirigente Ambiente"})),
            None,
        ),
        201,
    );
    ok(step("FILED", json!({})), 201);
    ok(
        step(
            "ASSIGNED_TO_COMMITTEE",
            json!({"committee": "c1", "role": "lead"}),
        ),
        201,
    );
    let (s, v, _) = step(
        "ASSIGNED_TO_COMMITTEE",
        json!({"committee": "c1", "role": "chief"}),
    );
    assert_eq!((s, v["field"].as_str()), (400, Some("role")), "{v}");

    // The committee's session: agenda, convened, held, attendance, a vote, the outcome.
    // Everything happens in the next few minutes (a step is refused more than 5 minutes
    // ahead of the clock): the session sits a minute from now, for a minute.
    let now = Utc::now();
    let minutes = |m| now + chrono::Duration::minutes(m);
    let start = minutes(1);
    ok(
        http.call(
            "POST",
            "/api/v1/council/sessions",
            clerk,
            Some(json!({"id": "s1", "committee": "c1", "first_call": start, "place": "Sala consiliare", "public": true})),
            None,
        ),
        201,
    );
    let v = ok(
        http.call(
            "POST",
            "/api/v1/council/sessions/s1/items",
            clerk,
            Some(json!({"kind": "act_examination", "title": "Regolamento", "acts": ["p1"]})),
            None,
        ),
        201,
    );
    assert_eq!(v["items"][0]["late"], false);
    ok(
        http.call(
            "POST",
            "/api/v1/council/sessions/s1/convene",
            clerk,
            None,
            None,
        ),
        200,
    );
    ok(
        http.call(
            "POST",
            "/api/v1/council/sessions/s1/held",
            clerk,
            Some(json!({"started": start, "ended": minutes(2)})),
            None,
        ),
        200,
    );
    for (who, presence) in [("a01", "present"), ("a04", "present"), ("a05", "absent")] {
        let mode = (presence == "present").then_some("physical");
        ok(
            http.call(
                "POST",
                "/api/v1/council/sessions/s1/attendance",
                clerk,
                Some(json!({"councillor": who, "presence": presence, "mode": mode})),
                None,
            ),
            200,
        );
    }
    let v = ok(
        http.call(
            "POST",
            "/api/v1/council/sessions/s1/votes",
            clerk,
            Some(json!({"item": 1, "kind": "roll_call", "votes": {"a01": "yes", "a04": "no"}})),
            None,
        ),
        201,
    );
    // 3 voting members: the quorum is 2, and 2 were present.
    assert_eq!(v["votes"][0]["quorum"], 2);
    assert_eq!(v["votes"][0]["outcome"], "rejected");
    ok(
        http.call(
            "POST",
            "/api/v1/council/sessions/s1/items/1/outcome",
            clerk,
            Some(json!({"outcome": "FAVOURABLE_WITH_AMENDMENTS"})),
            None,
        ),
        200,
    );
    let (s, v, _) = http.call(
        "POST",
        "/api/v1/council/sessions/s1/items/1/outcome",
        clerk,
        Some(json!({"outcome": "FAVOURABLE"})),
        None,
    );
    assert_eq!(s, 409, "{v}");

    // The council: on its agenda, approved, published, enforceable.
    ok(step("ON_COUNCIL_AGENDA", json!({"at": minutes(3)})), 201);
    ok(
        step(
            "APPROVED",
            json!({"at": minutes(3), "resolution_number": "DCC 7/2026"}),
        ),
        201,
    );
    ok(
        step("IMMEDIATELY_ENFORCEABLE", json!({"at": minutes(3)})),
        201,
    );
    ok(step("PUBLISHED", json!({"at": minutes(4)})), 201);
    let v = ok(step("ENFORCEABLE", json!({"at": minutes(4)})), 201);
    assert_eq!(v["status"], "ENFORCEABLE");
    assert_eq!(v["next"], json!([]));
    let path: Vec<&str> = v["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x["to"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        path,
        [
            "OPINIONS",
            "FILED",
            "ASSIGNED_TO_COMMITTEE",
            "ON_COMMITTEE_AGENDA",
            "FAVOURABLE_WITH_AMENDMENTS",
            "ON_COUNCIL_AGENDA",
            "APPROVED",
            "IMMEDIATELY_ENFORCEABLE",
            "PUBLISHED",
            "ENFORCEABLE"
        ]
    );

    // Anyone reads what is public, as Open Civic Data too.
    let v = ok(
        http.call("GET", "/api/v1/council/acts", None, None, None),
        200,
    );
    let ids: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["m1", "p1"]);
    let v = ok(
        http.call("GET", "/api/v1/council/ocd/bills/p1", None, None, None),
        200,
    );
    assert_eq!(v["id"], "ocd-bill/civiclake-p1");
    assert_eq!(v["identifier"], "1/2026");
    let classes: Vec<&str> = v["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .flat_map(|x| x["classification"].as_array().into_iter().flatten())
                .filter_map(|c| c.as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        classes,
        [
            "introduction",
            "referral-committee",
            "committee-passage-favorable",
            "amendment-passage",
            "passage",
            "became-law",
            "became-law"
        ]
    );
    assert_eq!(v["votes"], json!(["ocd-vote/civiclake-s1-1"]));
    let v = ok(
        http.call("GET", "/api/v1/council/ocd/votes", None, None, None),
        200,
    );
    assert_eq!(v["results"][0]["result"], "fail");
    assert_eq!(
        v["results"][0]["counts"][0],
        json!({"option": "yes", "value": 1})
    );
    let v = ok(
        http.call("GET", "/api/v1/council/ocd/events", None, None, None),
        200,
    );
    assert_eq!(v["results"][0]["status"], "passed");
    assert_eq!(
        v["results"][0]["agenda"][0]["related_entities"][0]["entity_id"],
        "ocd-bill/civiclake-p1"
    );
    // Councillors' fiscal codes are the secretariat's only.
    let v = ok(
        http.call("GET", "/api/v1/council/councillors", None, None, None),
        200,
    );
    assert!(v[0].get("fiscal_code").is_none(), "{v}");
    let v = ok(
        http.call("GET", "/api/v1/council/councillors", clerk, None, None),
        200,
    );
    assert!(v[0]["fiscal_code"].is_string(), "{v}");
    // Fees: a councillor sees their own only; an analyst none.
    let v = ok(
        http.call("GET", "/api/v1/council/fees", Some(&a04), None, None),
        200,
    );
    assert!(
        v.as_array()
            .is_some_and(|a| a.iter().all(|f| f["councillor"] == "a04")),
        "{v}"
    );
    let (s, _, _) = http.call("GET", "/api/v1/council/fees", Some(&analyst), None, None);
    assert_eq!(s, 403);
    // And through SQL: the analyst reads the views.
    let (s, v, _) = http.call(
        "POST",
        "/api/v1/query",
        Some(&analyst),
        Some(json!({"sql": "SELECT act_id, status FROM council_acts ORDER BY act_id"})),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!([{"act_id": "m1", "status": "FILED"}, {"act_id": "p1", "status": "ENFORCEABLE"}])
    );
    // Every council route is in the OpenAPI document.
    let v = ok(
        http.call("GET", "/api/v1/openapi.json", None, None, None),
        200,
    );
    let paths: Vec<&String> = v["paths"]
        .as_object()
        .map(|p| {
            p.keys()
                .filter(|k| k.starts_with("/api/v1/council"))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(paths.len(), 34, "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_term_is_a_year_of_six_committees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&config(dir.path())).await.expect("start");
    let council = server.council().expect("council module").clone();
    let started = std::time::Instant::now();
    assert_eq!(
        civiclake_council::demo::seed(&council)
            .await
            .expect("seeded"),
        Some(150)
    );
    eprintln!("demo council seeded in {:?}", started.elapsed());
    // Once only.
    assert_eq!(
        civiclake_council::demo::seed(&council)
            .await
            .expect("seeded"),
        None
    );
    let state = council.snapshot().await;
    assert_eq!(state.councillors.len(), 32);
    assert_eq!(state.committees.len(), 6);
    assert!(
        state.committees.values().all(|c| c.members.len() == 10),
        "9 members and a substitute each"
    );
    assert_eq!(state.acts.len(), 150);
    let held = state
        .sessions
        .values()
        .filter(|s| s.status == civiclake_council::sessions::SessionStatus::Held)
        .count();
    assert!((120..=160).contains(&held), "{held} sessions held");
    let count = |sql: &str| {
        let server = &server;
        let sql = sql.to_string();
        async move { rows(server, &sql).await[0]["n"].clone() }
    };
    // Acts in every part of the iter: enforceable, rejected, answered, still open.
    let by_status = rows(
        &server,
        "SELECT status, count(*) AS n FROM council_acts GROUP BY status ORDER BY status",
    )
    .await;
    let statuses: Vec<&str> = by_status.iter().map(|r| r["status"].as_str()).collect();
    for s in ["ENFORCEABLE", "REJECTED", "ANSWERED", "APPROVED"] {
        assert!(statuses.contains(&s), "{s} in {by_status:?}");
    }
    assert_eq!(
        count("SELECT count(*) AS n FROM council_iter WHERE days_since_previous < 0").await,
        "0"
    );
    // Fees never above the cap; the views agree with the service.
    assert_eq!(
        count("SELECT count(*) AS n FROM council_fees WHERE fee_cents > cap_cents").await,
        "0"
    );
    let sql_total = count("SELECT sum(fee_cents) AS n FROM council_fees").await;
    let rust_total: u64 = council.fees().await.iter().map(|f| f.fee_cents).sum();
    assert_eq!(sql_total, rust_total.to_string());
    // Some of the demo's votes are roll calls, a few against the voter's group.
    assert_ne!(
        count("SELECT sum(against_group) AS n FROM council_group_dissent").await,
        "0"
    );
    // A year over two calendar years: every committee in the statistics.
    assert_eq!(
        count("SELECT count(DISTINCT committee_id) AS n FROM council_stats").await,
        "6"
    );
    eprintln!("{by_status:?}");
    drop(council);
    server.stop().await.expect("stop");
}
