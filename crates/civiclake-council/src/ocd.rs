//! Open Civic Data (<https://open-civic-data.readthedocs.io>) for export: acts as bills with
//! their actions, sessions as events with their agenda, votes as vote events, councillors
//! as people and committees as organizations. Only what is public goes out: acts once
//! filed, sessions marked public. Ids are `ocd-{type}/civiclake-{id}` (stable: the same act
//! gets the same id in every export).

use crate::acts::{Act, Initiative, Signature};
use crate::iter::Status;
use crate::sessions::{Session, SessionStatus, Vote, VoteOutcome};
use crate::state::{CommitteeState, CouncillorState, State};
use serde_json::{Value, json};

/// The council itself, as the organization acts are filed with.
pub const COUNCIL_NAME: &str = "Consiglio comunale di Prato";

/// Whether an act is public (filed: no longer a draft or awaiting its opinions).
pub fn act_is_public(act: &Act) -> bool {
    !matches!(act.status, Status::Draft | Status::Opinions)
}

/// Whether a session is public.
pub fn session_is_public(session: &Session) -> bool {
    session.schedule.public
}

pub fn bill_id(act: &str) -> String {
    format!("ocd-bill/civiclake-{act}")
}

pub fn event_id(session: &str) -> String {
    format!("ocd-event/civiclake-{session}")
}

pub fn vote_id(session: &str, number: u32) -> String {
    format!("ocd-vote/civiclake-{session}-{number}")
}

pub fn person_id(councillor: &str) -> String {
    format!("ocd-person/civiclake-{councillor}")
}

pub fn organization_id(committee: &str) -> String {
    format!("ocd-organization/civiclake-{committee}")
}

/// The OCD classifications of a step into `to`.
fn action_classification(to: Status) -> &'static [&'static str] {
    match to {
        Status::Filed => &["introduction"],
        Status::AssignedToCommittee | Status::SentToOtherCommittee => &["referral-committee"],
        Status::Favourable => &["committee-passage-favorable"],
        Status::FavourableWithAmendments => &["committee-passage-favorable", "amendment-passage"],
        Status::Unfavourable => &["committee-passage-unfavorable"],
        Status::Approved => &["passage"],
        Status::Rejected => &["failure"],
        Status::Withdrawn => &["withdrawal"],
        Status::Enforceable | Status::ImmediatelyEnforceable => &["became-law"],
        _ => &[],
    }
}

fn name_of(state: &State, councillor: &str) -> String {
    state
        .councillors
        .get(councillor)
        .map_or_else(|| councillor.to_string(), |c| c.councillor.name.clone())
}

fn committee_name(state: &State, committee: &str) -> String {
    state
        .committees
        .get(committee)
        .map_or_else(|| committee.to_string(), |c| c.committee.name.clone())
}

/// An act as an OCD bill (with its actions, sponsors and the votes on it).
pub fn bill(state: &State, act: &Act) -> Value {
    let mut sponsors = Vec::new();
    if let Some(first) = &act.draft.first_signer {
        sponsors.push(
            json!({"name": name_of(state, first), "entity_type": "person",
            "person_id": person_id(first), "primary": true, "classification": "primary"}),
        );
    }
    for (who, s) in &act.signatures {
        if *s == Signature::Signed {
            sponsors.push(json!({"name": name_of(state, who), "entity_type": "person",
                "person_id": person_id(who), "primary": false, "classification": "cosponsor"}));
        }
    }
    if act.draft.initiative != Initiative::Councillors {
        sponsors.push(json!({"name": act.draft.office.clone().unwrap_or_else(|| act.draft.initiative.as_str().to_string()),
            "entity_type": "organization", "primary": true, "classification": act.draft.initiative.as_str()}));
    }
    let actions: Vec<Value> = act
        .steps
        .iter()
        .map(|s| {
            let org = match &s.committee {
                Some(c) if s.body == crate::iter::Body::Committee => {
                    json!({"name": committee_name(state, c), "id": organization_id(c)})
                }
                _ => json!({"name": COUNCIL_NAME}),
            };
            json!({
                "date": s.at.to_rfc3339(),
                "description": s.to.as_str(),
                "classification": action_classification(s.to),
                "organization": org,
                "extras": {"from": s.from.as_str(), "body": s.body.as_str(),
                    "session": s.session, "item": s.item, "resolution_number": s.resolution_number},
            })
        })
        .collect();
    let votes: Vec<String> = state
        .sessions
        .values()
        .filter(|s| session_is_public(s))
        .flat_map(|s| {
            s.votes.iter().filter_map(move |v| {
                let item = s.items.iter().find(|i| i.position == v.item)?;
                item.acts
                    .iter()
                    .any(|a| a == act.id())
                    .then(|| vote_id(s.id(), v.number))
            })
        })
        .collect();
    json!({
        "id": bill_id(act.id()),
        "identifier": match (act.number, act.year) {
            (Some(n), Some(y)) => format!("{n}/{y}"),
            _ => act.id().to_string(),
        },
        "title": act.draft.subject,
        "classification": [act.kind().ocd_classification()],
        "from_organization": {"name": COUNCIL_NAME},
        "sponsorships": sponsors,
        "actions": actions,
        "related_bills": act.draft.amends.iter().map(|a| json!({"identifier": a, "relation_type": "amends", "bill_id": bill_id(a)})).collect::<Vec<_>>(),
        "votes": votes,
        "extras": {"status": act.status.as_str(), "kind": act.kind().as_str(), "version": act.version},
    })
}

/// A session as an OCD event with its agenda.
pub fn event(state: &State, s: &Session) -> Value {
    let status = match s.status {
        SessionStatus::Scheduled => "tentative",
        SessionStatus::Convened => "confirmed",
        SessionStatus::Held => "passed",
        SessionStatus::Cancelled => "cancelled",
    };
    let agenda: Vec<Value> = s
        .items
        .iter()
        .map(|i| {
            let related: Vec<Value> = i
                .acts
                .iter()
                .map(|a| json!({"entity_type": "bill", "entity_id": bill_id(a), "entity_name": a}))
                .collect();
            json!({
                "order": i.position.to_string(),
                "description": i.title,
                "classification": [serde_json::to_value(i.kind).unwrap_or(Value::Null)],
                "related_entities": related,
                "notes": i.outcome.iter().map(|o| o.outcome.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let media: Vec<Value> = s
        .media
        .iter()
        .map(|m| json!({"note": m.title, "classification": serde_json::to_value(m.kind).unwrap_or(Value::Null), "links": [{"url": m.url}]}))
        .collect();
    json!({
        "id": event_id(s.id()),
        "name": format!("{} — seduta n. {}/{}", committee_name(state, &s.schedule.committee), s.number, s.year),
        "classification": "committee-meeting",
        "start_date": s.started.unwrap_or(s.schedule.first_call).to_rfc3339(),
        "end_date": s.ended.map(|e| e.to_rfc3339()),
        "status": status,
        "location": {"name": s.schedule.place, "url": s.schedule.online_link},
        "participants": [{"entity_type": "organization", "name": committee_name(state, &s.schedule.committee),
            "entity_id": organization_id(&s.schedule.committee), "note": "host"}],
        "agenda": agenda,
        "media": media,
    })
}

/// A vote as an OCD vote event.
pub fn vote(state: &State, s: &Session, v: &Vote) -> Value {
    let bill = s
        .items
        .iter()
        .find(|i| i.position == v.item)
        .and_then(|i| i.acts.first())
        .map(|a| bill_id(a));
    let result = match v.outcome {
        VoteOutcome::Approved => "pass",
        VoteOutcome::Rejected | VoteOutcome::NoQuorum => "fail",
    };
    let votes: Vec<Value> = v
        .votes
        .iter()
        .map(|(who, b)| json!({"option": b.as_str(), "voter_name": name_of(state, who), "voter_id": person_id(who)}))
        .collect();
    json!({
        "id": vote_id(s.id(), v.number),
        "identifier": format!("{}-{}", s.id(), v.number),
        "motion_text": v.subject.clone().unwrap_or_else(|| format!("punto {}", v.item)),
        "start_date": v.at.to_rfc3339(),
        "result": result,
        "organization": {"name": committee_name(state, &s.schedule.committee), "id": organization_id(&s.schedule.committee)},
        "event_id": event_id(s.id()),
        "bill_id": bill,
        "counts": [
            {"option": "yes", "value": v.yes},
            {"option": "no", "value": v.no},
            {"option": "abstain", "value": v.abstained},
            {"option": "not voting", "value": v.present - v.yes - v.no - v.abstained},
        ],
        "votes": votes,
        "extras": {"kind": v.kind.as_str(), "present": v.present, "quorum": v.quorum, "quorum_reached": v.quorum_reached},
    })
}

/// A councillor as an OCD person, with their committee seats.
pub fn person(state: &State, c: &CouncillorState) -> Value {
    let id = &c.councillor.id;
    let memberships: Vec<Value> = state
        .committees
        .values()
        .flat_map(|com| {
            com.members.iter().filter(|m| &m.councillor == id).map(move |m| {
                json!({"organization_id": organization_id(&com.committee.id), "organization_name": com.committee.name,
                    "role": m.role.as_str(), "start_date": m.from.to_string(), "end_date": m.to.map(|t| t.to_string())})
            })
        })
        .collect();
    json!({
        "id": person_id(id),
        "name": c.councillor.name,
        "party": [{"name": c.councillor.group}],
        "memberships": memberships,
        "extras": {"term": c.councillor.term, "start_date": c.councillor.from.to_string(),
            "end_date": c.councillor.to.map(|t| t.to_string())},
    })
}

/// A committee as an OCD organization.
pub fn organization(c: &CommitteeState) -> Value {
    json!({
        "id": organization_id(&c.committee.id),
        "name": c.committee.name,
        "classification": "committee",
        "parent": {"name": COUNCIL_NAME},
        "founding_date": c.committee.from.to_string(),
        "dissolution_date": c.committee.to.map(|t| t.to_string()),
        "memberships": c.members.iter().map(|m| json!({"person_id": person_id(&m.councillor), "role": m.role.as_str(),
            "start_date": m.from.to_string(), "end_date": m.to.map(|t| t.to_string()),
            "substitute_of": m.substitute_of.as_ref().map(|s| person_id(s))})).collect::<Vec<_>>(),
        "extras": {"kind": serde_json::to_value(c.committee.kind).unwrap_or(Value::Null), "term": c.committee.term, "subjects": c.committee.subjects},
    })
}
