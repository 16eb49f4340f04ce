use crate::acts::{
    Act, AnswerMode, AssignmentRole, Draft, Initiative, Opinion, OpinionKind, StepContext,
    StepRequest,
};
use crate::fees::{self, MonthlyFee};
use crate::iter::{ActKind, Status, next, reachable};
use crate::model::{FeePolicy, FeeRate, Member, Role, SameDay};
use crate::sessions::{
    Attendance, Ballot, ItemKind, Mode, Presence, Schedule, Session, SessionStatus, VoteKind,
    VoteOutcome, VoteRequest,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use std::collections::{BTreeMap, BTreeSet};

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The iter of the domain notes, edge by edge, written out independently of `iter::next`.
fn expected_edges(kind: ActKind) -> BTreeSet<(&'static str, &'static str)> {
    let mut e: Vec<(&str, &str)> = Vec::new();
    let committee = [
        ("ASSIGNED_TO_COMMITTEE", "ASSIGNED_TO_COMMITTEE"),
        ("ASSIGNED_TO_COMMITTEE", "ON_COMMITTEE_AGENDA"),
        ("ON_COMMITTEE_AGENDA", "FAVOURABLE"),
        ("ON_COMMITTEE_AGENDA", "UNFAVOURABLE"),
        ("ON_COMMITTEE_AGENDA", "FAVOURABLE_WITH_AMENDMENTS"),
        ("ON_COMMITTEE_AGENDA", "POSTPONED"),
        ("ON_COMMITTEE_AGENDA", "SENT_TO_OTHER_COMMITTEE"),
        ("POSTPONED", "ON_COMMITTEE_AGENDA"),
        ("SENT_TO_OTHER_COMMITTEE", "ON_COMMITTEE_AGENDA"),
        ("FAVOURABLE", "ASSIGNED_TO_COMMITTEE"),
        ("FAVOURABLE", "ON_COMMITTEE_AGENDA"),
        ("FAVOURABLE", "ON_COUNCIL_AGENDA"),
        ("UNFAVOURABLE", "ASSIGNED_TO_COMMITTEE"),
        ("UNFAVOURABLE", "ON_COMMITTEE_AGENDA"),
        ("UNFAVOURABLE", "ON_COUNCIL_AGENDA"),
        ("FAVOURABLE_WITH_AMENDMENTS", "ASSIGNED_TO_COMMITTEE"),
        ("FAVOURABLE_WITH_AMENDMENTS", "ON_COMMITTEE_AGENDA"),
        ("FAVOURABLE_WITH_AMENDMENTS", "ON_COUNCIL_AGENDA"),
        ("ON_COUNCIL_AGENDA", "APPROVED"),
        ("ON_COUNCIL_AGENDA", "REJECTED"),
        ("ON_COUNCIL_AGENDA", "COUNCIL_POSTPONED"),
        ("COUNCIL_POSTPONED", "ON_COUNCIL_AGENDA"),
    ];
    let open: &[&str] = match kind {
        ActKind::Proposal => {
            e.extend([
                ("DRAFT", "OPINIONS"),
                ("OPINIONS", "FILED"),
                ("FILED", "ASSIGNED_TO_COMMITTEE"),
                ("ON_COMMITTEE_AGENDA", "RETURNED_TO_OFFICE"),
                ("RETURNED_TO_OFFICE", "OPINIONS"),
                ("APPROVED", "IMMEDIATELY_ENFORCEABLE"),
                ("APPROVED", "PUBLISHED"),
                ("IMMEDIATELY_ENFORCEABLE", "PUBLISHED"),
                ("PUBLISHED", "ENFORCEABLE"),
            ]);
            e.extend(committee);
            &[
                "DRAFT",
                "OPINIONS",
                "FILED",
                "ASSIGNED_TO_COMMITTEE",
                "ON_COMMITTEE_AGENDA",
                "FAVOURABLE",
                "UNFAVOURABLE",
                "FAVOURABLE_WITH_AMENDMENTS",
                "POSTPONED",
                "RETURNED_TO_OFFICE",
                "SENT_TO_OTHER_COMMITTEE",
                "ON_COUNCIL_AGENDA",
                "COUNCIL_POSTPONED",
            ]
        }
        ActKind::Motion | ActKind::OrderOfTheDay | ActKind::Amendment => {
            e.extend([
                ("DRAFT", "FILED"),
                ("FILED", "ASSIGNED_TO_COMMITTEE"),
                ("FILED", "ON_COUNCIL_AGENDA"),
            ]);
            e.extend(committee);
            &[
                "DRAFT",
                "FILED",
                "ASSIGNED_TO_COMMITTEE",
                "ON_COMMITTEE_AGENDA",
                "FAVOURABLE",
                "UNFAVOURABLE",
                "FAVOURABLE_WITH_AMENDMENTS",
                "POSTPONED",
                "SENT_TO_OTHER_COMMITTEE",
                "ON_COUNCIL_AGENDA",
                "COUNCIL_POSTPONED",
            ]
        }
        ActKind::Question | ActKind::Interpellation => {
            e.extend([
                ("DRAFT", "FILED"),
                ("FILED", "ANSWERED"),
                ("FILED", "UNANSWERED"),
                ("UNANSWERED", "ANSWERED"),
            ]);
            &["DRAFT", "FILED", "UNANSWERED"]
        }
    };
    for s in open {
        e.push((s, "WITHDRAWN"));
        e.push((s, "LAPSED"));
    }
    e.into_iter().collect()
}

#[test]
fn every_step_of_every_kind_is_allowed_or_refused_as_in_the_domain_notes() {
    for kind in ActKind::ALL {
        let expected = expected_edges(kind);
        let mut allowed = BTreeSet::new();
        for from in Status::ALL {
            for to in Status::ALL {
                if next(kind, from).contains(&to) {
                    allowed.insert((from.as_str(), to.as_str()));
                }
            }
        }
        // Only statuses an act of the kind can reach matter; the others have no step.
        let reach: BTreeSet<&str> = reachable(kind).iter().map(|s| s.as_str()).collect();
        allowed.retain(|(from, _)| reach.contains(from));
        assert_eq!(allowed, expected, "{kind}");
        // 22 × 22 pairs each: what is not an edge is refused.
        let refused = Status::ALL.len() * Status::ALL.len() - expected.len();
        assert!(refused > 400, "{kind}: {refused}");
    }
    assert_eq!(
        reachable(ActKind::Question)
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        [
            "DRAFT",
            "FILED",
            "ANSWERED",
            "UNANSWERED",
            "WITHDRAWN",
            "LAPSED"
        ]
    );
    for s in Status::ALL {
        assert_eq!(Status::parse(s.as_str()), Some(s));
    }
}

fn no_committee(_: &str, _: NaiveDate) -> bool {
    false
}

fn committees(c: &str, _: NaiveDate) -> bool {
    matches!(c, "c1" | "c2" | "c3")
}

fn ctx(min: u32) -> StepContext<'static> {
    StepContext {
        min_signatures: min,
        answer_days: 30,
        committee_exists: &committees,
    }
}

fn proposal() -> Act {
    Act::new(
        Draft {
            id: "p1".into(),
            kind: ActKind::Proposal,
            subject: "Regolamento del verde urbano".into(),
            text: String::new(),
            initiative: Initiative::Giunta,
            first_signer: None,
            office: Some("Ambiente".into()),
            amends: None,
            financial_effects: true,
        },
        at(2026, 1, 5, 9),
    )
}

fn to(s: Status) -> StepRequest {
    StepRequest {
        to: Some(s),
        ..StepRequest::default()
    }
}

/// Takes `req` at `t`, which must be allowed.
fn take(act: &mut Act, req: StepRequest, t: DateTime<Utc>, ctx: &StepContext<'_>) {
    let step = act
        .check_step(&req, t, ctx)
        .unwrap_or_else(|e| panic!("{:?} at {t}: {e}", req.to));
    act.apply_step(step);
}

fn refused(act: &Act, req: StepRequest, t: DateTime<Utc>, ctx: &StepContext<'_>) -> String {
    act.check_step(&req, t, ctx).unwrap_err().to_string()
}

#[test]
fn a_refused_step_names_the_current_status_and_the_allowed_ones() {
    let mut act = proposal();
    let c = ctx(1);
    take(&mut act, to(Status::Opinions), at(2026, 1, 6, 9), &c);
    let e = act
        .check_step(&to(Status::Approved), at(2026, 1, 7, 9), &c)
        .unwrap_err();
    assert_eq!(e.from, Status::Opinions);
    assert_eq!(
        e.allowed,
        [Status::Filed, Status::Withdrawn, Status::Lapsed]
    );
    assert_eq!(
        e.to_string(),
        "proposal p1 (not filed): a proposal cannot go from OPINIONS to APPROVED; allowed next: FILED, WITHDRAWN, LAPSED"
    );
    // A rule refusing a step the machine has names them too.
    let e = refused(&act, to(Status::Filed), at(2026, 1, 7, 9), &c);
    assert_eq!(
        e,
        "proposal p1 (not filed): cannot go from OPINIONS to FILED: the technical opinion (art. 49) is missing (allowed next: FILED, WITHDRAWN, LAPSED)"
    );
}

#[test]
fn a_proposal_goes_from_draft_to_enforceable_with_every_rule_checked() {
    let mut act = proposal();
    let c = ctx(1);
    take(&mut act, to(Status::Opinions), at(2026, 1, 6, 9), &c);
    act.opinions.push(Opinion {
        kind: OpinionKind::Technical,
        favourable: true,
        by: "Dirigente Ambiente".into(),
        note: None,
    });
    // Financial effects: the accounting opinion is needed too.
    assert!(refused(&act, to(Status::Filed), at(2026, 1, 7, 9), &c).contains("accounting opinion"));
    act.opinions.push(Opinion {
        kind: OpinionKind::Accounting,
        favourable: true,
        by: "Dirigente Bilancio".into(),
        note: None,
    });
    // Steps are in time order.
    assert!(
        refused(&act, to(Status::Filed), at(2026, 1, 5, 9), &c)
            .contains("before the act's last step")
    );
    take(&mut act, to(Status::Filed), at(2026, 1, 7, 9), &c);
    // Assignment needs an existing committee and a role; one lead only.
    let assign = |c: &str, role| StepRequest {
        to: Some(Status::AssignedToCommittee),
        committee: Some(c.into()),
        role: Some(role),
        ..StepRequest::default()
    };
    assert!(
        refused(
            &act,
            assign("c9", AssignmentRole::Lead),
            at(2026, 1, 8, 9),
            &c
        )
        .contains("no committee 'c9'")
    );
    let none = StepContext {
        committee_exists: &no_committee,
        ..c
    };
    assert!(
        refused(
            &act,
            assign("c1", AssignmentRole::Lead),
            at(2026, 1, 8, 9),
            &none
        )
        .contains("no committee")
    );
    take(
        &mut act,
        assign("c1", AssignmentRole::Lead),
        at(2026, 1, 8, 9),
        &c,
    );
    assert!(
        refused(
            &act,
            assign("c2", AssignmentRole::Lead),
            at(2026, 1, 8, 10),
            &c
        )
        .contains("'c1' is already its lead")
    );
    assert!(
        refused(
            &act,
            assign("c1", AssignmentRole::Advisory),
            at(2026, 1, 8, 10),
            &c
        )
        .contains("already assigned to 'c1'")
    );
    take(
        &mut act,
        assign("c2", AssignmentRole::Advisory),
        at(2026, 1, 8, 10),
        &c,
    );
    assert_eq!(
        act.assignments(),
        [
            ("c1".to_string(), AssignmentRole::Lead),
            ("c2".to_string(), AssignmentRole::Advisory)
        ]
    );
    // On an agenda only through a session's item, and only of an assigned committee.
    let agenda = |c: &str, s: &str| StepRequest {
        to: Some(Status::OnCommitteeAgenda),
        committee: Some(c.into()),
        session: Some(s.into()),
        item: Some(1),
        ..StepRequest::default()
    };
    assert!(
        refused(&act, to(Status::OnCommitteeAgenda), at(2026, 1, 9, 9), &c)
            .contains("through a session's agenda item")
    );
    assert!(
        refused(&act, agenda("c3", "s1"), at(2026, 1, 9, 9), &c).contains("not assigned to 'c3'")
    );
    take(&mut act, agenda("c2", "s1"), at(2026, 1, 9, 9), &c);
    let outcome = |s: Status, session: &str| StepRequest {
        to: Some(s),
        session: Some(session.into()),
        item: Some(1),
        ..StepRequest::default()
    };
    take(
        &mut act,
        outcome(Status::Postponed, "s1"),
        at(2026, 1, 9, 11),
        &c,
    );
    take(&mut act, agenda("c2", "s2"), at(2026, 1, 16, 9), &c);
    take(
        &mut act,
        outcome(Status::Unfavourable, "s2"),
        at(2026, 1, 16, 11),
        &c,
    );
    // The advisory committee's opinion is not the lead's: not yet to the council.
    assert!(
        refused(&act, to(Status::OnCouncilAgenda), at(2026, 1, 17, 9), &c)
            .contains("lead committee 'c1' has not given its opinion")
    );
    assert!(
        refused(&act, agenda("c2", "s3"), at(2026, 1, 20, 9), &c)
            .contains("'c2' has already given its opinion")
    );
    take(&mut act, agenda("c1", "s3"), at(2026, 1, 20, 9), &c);
    take(
        &mut act,
        outcome(Status::FavourableWithAmendments, "s3"),
        at(2026, 1, 20, 11),
        &c,
    );
    assert_eq!(
        act.committee_opinions(),
        BTreeMap::from([
            ("c1".to_string(), Status::FavourableWithAmendments),
            ("c2".to_string(), Status::Unfavourable)
        ])
    );
    take(
        &mut act,
        to(Status::OnCouncilAgenda),
        at(2026, 1, 26, 9),
        &c,
    );
    take(
        &mut act,
        to(Status::CouncilPostponed),
        at(2026, 1, 26, 18),
        &c,
    );
    take(&mut act, to(Status::OnCouncilAgenda), at(2026, 2, 2, 9), &c);
    assert!(
        refused(&act, to(Status::Approved), at(2026, 2, 2, 18), &c).contains("resolution number")
    );
    let approve = StepRequest {
        to: Some(Status::Approved),
        resolution_number: Some("DCC 14/2026".into()),
        ..StepRequest::default()
    };
    take(&mut act, approve, at(2026, 2, 2, 18), &c);
    // Decided: no withdrawal, no lapse.
    assert!(
        refused(&act, to(Status::Withdrawn), at(2026, 2, 3, 9), &c)
            .contains("allowed next: IMMEDIATELY_ENFORCEABLE, PUBLISHED")
    );
    take(&mut act, to(Status::Published), at(2026, 2, 5, 9), &c);
    // Published on 5 February: enforceable from the 15th (the 10th day after).
    let e = refused(&act, to(Status::Enforceable), at(2026, 2, 14, 12), &c);
    assert!(
        e.contains("enforceable from the 10th day after, 2026-02-15"),
        "{e}"
    );
    take(&mut act, to(Status::Enforceable), at(2026, 2, 15, 0), &c);
    assert_eq!(act.status, Status::Enforceable);
    assert!(next(ActKind::Proposal, act.status).is_empty());
    assert_eq!(act.steps.len(), 16);
}

#[test]
fn an_immediately_enforceable_act_is_enforceable_once_published() {
    let mut act = proposal();
    let c = ctx(1);
    act.status = Status::Approved;
    take(
        &mut act,
        to(Status::ImmediatelyEnforceable),
        at(2026, 3, 2, 18),
        &c,
    );
    take(&mut act, to(Status::Published), at(2026, 3, 3, 9), &c);
    take(&mut act, to(Status::Enforceable), at(2026, 3, 3, 10), &c);
}

#[test]
fn a_proposal_sent_to_another_committee_is_assigned_there_in_the_same_role() {
    let mut act = proposal();
    let c = ctx(1);
    act.status = Status::Filed;
    take(
        &mut act,
        StepRequest {
            to: Some(Status::AssignedToCommittee),
            committee: Some("c1".into()),
            role: Some(AssignmentRole::Lead),
            ..StepRequest::default()
        },
        at(2026, 1, 8, 9),
        &c,
    );
    let agenda = StepRequest {
        to: Some(Status::OnCommitteeAgenda),
        committee: Some("c1".into()),
        session: Some("s1".into()),
        item: Some(2),
        ..StepRequest::default()
    };
    take(&mut act, agenda, at(2026, 1, 9, 9), &c);
    let send = |t: Option<&str>| StepRequest {
        to: Some(Status::SentToOtherCommittee),
        session: Some("s1".into()),
        item: Some(2),
        to_committee: t.map(str::to_string),
        ..StepRequest::default()
    };
    assert!(refused(&act, send(None), at(2026, 1, 9, 10), &c).contains("to_committee"));
    assert!(
        refused(&act, send(Some("c1")), at(2026, 1, 9, 10), &c)
            .contains("the committee that examined it")
    );
    take(&mut act, send(Some("c3")), at(2026, 1, 9, 10), &c);
    assert_eq!(
        act.assignments(),
        [("c3".to_string(), AssignmentRole::Lead)]
    );
    // Returned to the office: new opinions are needed before it is filed again.
    act.opinions.push(Opinion {
        kind: OpinionKind::Technical,
        favourable: false,
        by: "x".into(),
        note: None,
    });
    act.status = Status::ReturnedToOffice;
    take(&mut act, to(Status::Opinions), at(2026, 1, 12, 9), &c);
    assert!(act.opinions.is_empty());
}

fn motion(first: &str) -> Act {
    Act::new(
        Draft {
            id: "m1".into(),
            kind: ActKind::Motion,
            subject: "Piste ciclabili".into(),
            text: "Il consiglio impegna la giunta...".into(),
            initiative: Initiative::Councillors,
            first_signer: Some(first.into()),
            office: None,
            amends: None,
            financial_effects: false,
        },
        at(2026, 4, 1, 9),
    )
}

#[test]
fn co_signers_are_invited_sign_and_withdraw_within_the_minimum() {
    use crate::acts::Signature;
    let mut act = motion("c01");
    let c = ctx(3);
    assert!(
        act.check_invite("c02", "c03")
            .unwrap_err()
            .reason
            .contains("only the first signer")
    );
    assert!(act.check_invite("c01", "c01").is_err());
    assert!(
        act.check_sign("c02")
            .unwrap_err()
            .reason
            .contains("was not invited")
    );
    act.check_invite("c01", "c02").unwrap();
    act.signatures.insert("c02".into(), Signature::Invited);
    assert!(
        act.check_invite("c01", "c02")
            .unwrap_err()
            .reason
            .contains("invited already")
    );
    act.check_sign("c02").unwrap();
    act.signatures.insert("c02".into(), Signature::Signed);
    assert_eq!(act.signature_count(), 2);
    // The minimum is 3 for motions here.
    assert_eq!(
        refused(&act, to(Status::Filed), at(2026, 4, 2, 9), &c),
        "motion m1 (not filed): cannot go from DRAFT to FILED: a motion needs 3 signatures to be filed and has 2 (allowed next: FILED, WITHDRAWN, LAPSED)"
    );
    act.signatures.insert("c03".into(), Signature::Signed);
    take(&mut act, to(Status::Filed), at(2026, 4, 2, 9), &c);
    // Filed: co-signing is closed, and a withdrawal would leave 2 of the 3 needed.
    assert!(
        act.check_sign("c04")
            .unwrap_err()
            .reason
            .contains("co-signing is open until it is filed")
    );
    assert!(
        act.check_unsign("c03", 3)
            .unwrap_err()
            .reason
            .contains("would keep 2 signatures")
    );
    assert!(
        act.check_unsign("c01", 3)
            .unwrap_err()
            .reason
            .contains("the first signer withdraws the act")
    );
    act.check_unsign("c03", 2).unwrap();
    // A motion goes to the council without a committee.
    take(
        &mut act,
        to(Status::OnCouncilAgenda),
        at(2026, 4, 10, 9),
        &c,
    );
    take(&mut act, to(Status::Approved), at(2026, 4, 10, 18), &c);
    assert!(next(ActKind::Motion, act.status).is_empty());
    assert!(
        act.check_unsign("c02", 1)
            .unwrap_err()
            .reason
            .contains("signatures are final")
    );
}

#[test]
fn a_question_is_unanswered_only_after_its_deadline() {
    let mut act = motion("c01");
    act.draft.kind = ActKind::Question;
    let c = ctx(1);
    take(&mut act, to(Status::Filed), at(2026, 5, 4, 9), &c);
    // Filed on 4 May: due by 3 June.
    let e = refused(&act, to(Status::Unanswered), at(2026, 6, 3, 20), &c);
    assert!(e.contains("the answer is due by 2026-06-03"), "{e}");
    take(&mut act, to(Status::Unanswered), at(2026, 6, 4, 9), &c);
    assert!(refused(&act, to(Status::Answered), at(2026, 6, 10, 9), &c).contains("'answer'"));
    let answer = StepRequest {
        to: Some(Status::Answered),
        answer: Some(AnswerMode::Written),
        ..StepRequest::default()
    };
    take(&mut act, answer, at(2026, 6, 10, 9), &c);
    assert!(next(ActKind::Question, act.status).is_empty());
    assert!(refused(&act, to(Status::Withdrawn), at(2026, 6, 11, 9), &c).contains("iter is over"));
}

#[test]
fn drafts_are_checked_field_by_field() {
    let mut d = motion("c01").draft;
    assert_eq!(d.check(), Ok(()));
    d.first_signer = None;
    assert_eq!(d.check().unwrap_err().field, "first_signer");
    let mut d = proposal().draft;
    d.first_signer = Some("c01".into());
    assert!(
        d.check()
            .unwrap_err()
            .reason
            .contains("only a councillors' act has signers")
    );
    let mut d = motion("c01").draft;
    d.initiative = Initiative::Giunta;
    d.first_signer = None;
    assert_eq!(
        d.check().unwrap_err().reason,
        "a motion is filed by councillors"
    );
    let mut d = motion("c01").draft;
    d.kind = ActKind::Amendment;
    assert_eq!(d.check().unwrap_err().field, "amends");
    d.amends = Some("p1".into());
    assert_eq!(d.check(), Ok(()));
    let mut d = motion("c01").draft;
    d.id = "m 1".into();
    assert_eq!(d.check().unwrap_err().field, "id");
    d.id = "m1".into();
    d.subject = "  ".into();
    assert_eq!(d.check().unwrap_err().field, "subject");
}

// ---- sessions, votes and fees ---------------------------------------------------------

fn seat(who: &str, role: Role, substitute_of: Option<&str>) -> Member {
    Member {
        councillor: who.into(),
        role,
        substitute_of: substitute_of.map(str::to_string),
        from: day(2024, 7, 1),
        to: None,
    }
}

/// Committee c1: 7 voting members (a01..a07), one invited (i01), one substitute of a01 (s01).
fn members() -> Vec<Member> {
    let mut m: Vec<Member> = (1..=7)
        .map(|i| {
            let role = if i == 1 {
                Role::President
            } else {
                Role::Member
            };
            seat(&format!("a0{i}"), role, None)
        })
        .collect();
    m.push(seat("i01", Role::Invited, None));
    m.push(seat("s01", Role::Member, Some("a01")));
    m
}

fn session(id: &str, committee: &str, start: DateTime<Utc>, status: SessionStatus) -> Session {
    Session {
        schedule: Schedule {
            id: id.into(),
            committee: committee.into(),
            first_call: start,
            second_call: None,
            place: Some("Sala Consiliare".into()),
            online_link: None,
            public: true,
        },
        year: 2026,
        number: 1,
        status,
        started: (status == SessionStatus::Held).then_some(start),
        ended: (status == SessionStatus::Held).then(|| start + chrono::Duration::hours(2)),
        cancelled_reason: None,
        items: vec![crate::sessions::AgendaItem {
            position: 1,
            kind: ItemKind::ActExamination,
            title: "Regolamento".into(),
            acts: vec!["p1".into()],
            late: false,
            outcome: None,
        }],
        attendance: BTreeMap::new(),
        votes: Vec::new(),
        media: Vec::new(),
        version: 1,
    }
}

fn present(s: &mut Session, who: &[&str]) {
    for w in who {
        s.attendance
            .insert(w.to_string(), Attendance::present(w, Mode::Physical));
    }
}

fn absent(s: &mut Session, who: &str, presence: Presence) {
    s.attendance
        .insert(who.into(), Attendance::away(who, presence));
}

#[test]
fn a_vote_is_counted_against_the_quorum_of_the_voting_members() {
    let m = members();
    let s = session("s1", "c1", at(2026, 3, 2, 15), SessionStatus::Held);
    let open = |present, yes, no, abstained| VoteRequest {
        item: 1,
        kind: VoteKind::Open,
        subject: None,
        present: Some(present),
        yes: Some(yes),
        no: Some(no),
        abstained: Some(abstained),
        votes: BTreeMap::new(),
        at: None,
    };
    // 7 voting members (the invited and the substitute do not count): quorum 4.
    let v = s
        .count_vote(&open(4, 2, 1, 1), &m, None, at(2026, 3, 2, 16))
        .unwrap();
    assert_eq!(
        (v.quorum, v.quorum_reached, v.voting, v.outcome),
        (4, true, 3, VoteOutcome::Approved)
    );
    let v = s
        .count_vote(&open(3, 3, 0, 0), &m, None, at(2026, 3, 2, 16))
        .unwrap();
    assert_eq!(v.outcome, VoteOutcome::NoQuorum);
    let v = s
        .count_vote(&open(5, 2, 2, 1), &m, None, at(2026, 3, 2, 16))
        .unwrap();
    assert_eq!(v.outcome, VoteOutcome::Rejected);
    // The committee's own quorum rule wins.
    let v = s
        .count_vote(&open(4, 4, 0, 0), &m, Some(5), at(2026, 3, 2, 16))
        .unwrap();
    assert_eq!((v.quorum, v.outcome), (5, VoteOutcome::NoQuorum));
    assert_eq!(
        s.count_vote(&open(3, 2, 2, 0), &m, None, at(2026, 3, 2, 16))
            .unwrap_err()
            .field,
        "present"
    );
    assert_eq!(
        s.count_vote(&open(8, 2, 2, 0), &m, None, at(2026, 3, 2, 16))
            .unwrap_err()
            .field,
        "present"
    );
    let mut no_item = open(4, 2, 1, 1);
    no_item.item = 9;
    assert_eq!(
        s.count_vote(&no_item, &m, None, at(2026, 3, 2, 16))
            .unwrap_err()
            .field,
        "item"
    );
    // A roll call: counts from the ballots, voters must be voting members present.
    let roll = |votes: &[(&str, Ballot)]| VoteRequest {
        item: 1,
        kind: VoteKind::RollCall,
        subject: Some("p1".into()),
        present: None,
        yes: None,
        no: None,
        abstained: None,
        votes: votes.iter().map(|(w, b)| (w.to_string(), *b)).collect(),
        at: None,
    };
    let v = s
        .count_vote(
            &roll(&[
                ("a01", Ballot::Yes),
                ("a02", Ballot::Yes),
                ("a03", Ballot::No),
                ("a04", Ballot::Abstained),
            ]),
            &m,
            None,
            at(2026, 3, 2, 16),
        )
        .unwrap();
    assert_eq!(
        (v.present, v.yes, v.no, v.abstained, v.outcome),
        (4, 2, 1, 1, VoteOutcome::Approved)
    );
    let e = s
        .count_vote(&roll(&[("i01", Ballot::Yes)]), &m, None, at(2026, 3, 2, 16))
        .unwrap_err();
    assert_eq!(e.field, "votes.i01");
    let mut s2 = s.clone();
    absent(&mut s2, "a02", Presence::Justified);
    let e = s2
        .count_vote(&roll(&[("a02", Ballot::Yes)]), &m, None, at(2026, 3, 2, 16))
        .unwrap_err();
    assert_eq!(e.reason, "a02 is recorded justified");
    let mut wrong = roll(&[("a01", Ballot::Yes)]);
    wrong.yes = Some(2);
    assert_eq!(
        s.count_vote(&wrong, &m, None, at(2026, 3, 2, 16))
            .unwrap_err()
            .to_string(),
        "yes: says 2 but the roll call has 1"
    );
}

fn rates() -> Vec<FeeRate> {
    vec![
        FeeRate {
            committee: "c1".into(),
            from: day(2026, 1, 1),
            to: Some(day(2026, 3, 15)),
            cents: 3000,
        },
        FeeRate {
            committee: "c1".into(),
            from: day(2026, 3, 16),
            to: None,
            cents: 3500,
        },
        FeeRate {
            committee: "c2".into(),
            from: day(2026, 1, 1),
            to: None,
            cents: 2500,
        },
    ]
}

/// March 2026 (Rome): c1 on 2, 9, 16 and 23 March; c2 on 2 March in the evening and on 9
/// March; a cancelled c1 session on 30 March.
fn march() -> (Vec<Session>, BTreeMap<String, Vec<Member>>) {
    let mut s1 = session("s1", "c1", at(2026, 3, 2, 9), SessionStatus::Held);
    present(&mut s1, &["a01", "a02", "a03", "s01"]); // a01 there: s01 is not paid
    let mut s2 = session("s2", "c2", at(2026, 3, 2, 16), SessionStatus::Held);
    present(&mut s2, &["a01", "a02"]);
    let mut s3 = session("s3", "c1", at(2026, 3, 9, 9), SessionStatus::Held);
    present(&mut s3, &["a02", "s01"]); // a01 absent: s01 stands in, paid
    absent(&mut s3, "a01", Presence::Justified);
    let mut s4 = session("s4", "c2", at(2026, 3, 9, 16), SessionStatus::Held);
    present(&mut s4, &["a02"]);
    let mut s5 = session("s5", "c1", at(2026, 3, 16, 9), SessionStatus::Held);
    present(&mut s5, &["a02"]);
    let mut s6 = session("s6", "c1", at(2026, 3, 23, 9), SessionStatus::Held);
    present(&mut s6, &["a02"]);
    let mut s7 = session("s7", "c1", at(2026, 3, 30, 9), SessionStatus::Convened);
    present(&mut s7, &["a02"]); // not held: no fee
    let mut m = BTreeMap::new();
    m.insert("c1".to_string(), members());
    m.insert(
        "c2".to_string(),
        vec![
            seat("a01", Role::Member, None),
            seat("a02", Role::Member, None),
        ],
    );
    (vec![s1, s2, s3, s4, s5, s6, s7], m)
}

fn fee(councillor: &str, sittings: u32, days: u32, gross: u64, cap: u64) -> MonthlyFee {
    MonthlyFee {
        councillor: councillor.into(),
        month: "2026-03".into(),
        sittings,
        days,
        gross_cents: gross,
        cap_cents: cap,
        fee_cents: gross.min(cap),
    }
}

#[test]
fn fees_follow_the_same_day_rule_the_cap_and_the_substitutes() {
    let (sessions, members) = march();
    let by = |c: &str| members.get(c).map_or(&[][..], Vec::as_slice);
    let sittings = fees::sittings(&sessions, &by, &rates());
    let once = FeePolicy {
        same_day: SameDay::Once,
        monthly_cap_cents: 15_000,
    };
    // a01: 2 Mar c1 (30.00) + c2 (25.00) → once a day: 30.00.
    // a02: 2 Mar 30.00|25.00 → 30.00; 9 Mar 30.00|25.00 → 30.00; 16 Mar 35.00 (new rate);
    //      23 Mar 35.00: 130.00.
    // a03: 2 Mar 30.00. s01: 9 Mar only (on 2 Mar a01 was there): 30.00.
    assert_eq!(
        fees::monthly(&sittings, once),
        [
            fee("a01", 2, 1, 3000, 15_000),
            fee("a02", 6, 4, 13_000, 15_000),
            fee("a03", 1, 1, 3000, 15_000),
            fee("s01", 1, 1, 3000, 15_000),
        ]
    );
    // Every sitting paid: a01 55.00; a02 55.00 + 55.00 + 35.00 + 35.00 = 180.00, capped at
    // 150.00.
    let each = FeePolicy {
        same_day: SameDay::Each,
        monthly_cap_cents: 15_000,
    };
    let out = fees::monthly(&sittings, each);
    assert_eq!(out[0], fee("a01", 2, 1, 5500, 15_000));
    assert_eq!(out[1], fee("a02", 6, 4, 18_000, 15_000));
    assert_eq!(out[1].fee_cents, 15_000);
    // The substitute's sitting names whom they stood in for.
    let s01: Vec<_> = sittings.iter().filter(|s| s.councillor == "s01").collect();
    assert_eq!(s01.len(), 1);
    assert_eq!(
        (s01[0].session.as_str(), s01[0].substitute_of.as_deref()),
        ("s3", Some("a01"))
    );
}

#[test]
fn the_shipped_views_parse_and_read_only_the_module_tables() {
    let views = crate::tables::views().unwrap();
    let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "council_acts",
            "council_iter",
            "council_sessions",
            "council_attendance",
            "council_fees",
            "council_stats",
            "council_group_dissent"
        ]
    );
    let tables: Vec<&str> = crate::tables::tables().iter().map(|(t, _)| *t).collect();
    for v in &views {
        assert!(!v.description.is_empty());
        for t in &v.tables {
            assert!(tables.contains(&t.as_str()), "{}: {t}", v.name);
            assert!(
                v.sql.contains(t.as_str()),
                "{}: {t} listed but not read",
                v.name
            );
        }
    }
    assert_eq!(
        crate::tables::parse_view("x.sql", "-- view: x\nSELECT 1").unwrap_err(),
        "x.sql: no '-- tables:' line"
    );
}
