//! The bus of `civiclake serve --demo`: a small catalog (the comune's air-quality sensors and
//! citizens' portal, the waste collector as an outside operator), the schemas of their event
//! types, a subscription that carries both to the portal (a topic of the embedded MQTT
//! broker), and a few events every few seconds — so the `bus` dashboard, `/bus` and the
//! ecosystem map show a living bus. Everything goes through the bus's own API; on a restart
//! the same catalog is saved again and the subscription kept.

use civiclake_bus::catalog::{Contact, OrgKind, Organisation, System};
use civiclake_bus::filter::EventFilter;
use civiclake_bus::subscription::{RetryPolicy, SubscriptionSpec, TargetSpec};
use civiclake_bus::{Bus, BusError};
use civiclake_core::CloudEvent;
use serde_json::json;
use std::time::Duration;
use tokio::sync::watch;

const ACTOR: &str = "demo";
/// An air-quality sensor above its alert threshold.
pub(crate) const AIR_ALERT: &str = "it.prato.ambiente.aria.SogliaSuperata";
/// A waste bin reported full.
pub(crate) const BIN_FULL: &str = "it.prato.rifiuti.CassonettoPieno";
const DISTRICTS: [&str; 5] = ["Centro", "Nord", "Est", "Sud", "Ovest"];
/// Time between two publishes.
const EVERY: Duration = Duration::from_secs(5);

fn contact(name: &str, email: &str) -> Vec<Contact> {
    vec![Contact {
        name: name.into(),
        role: None,
        email: Some(email.into()),
        phone: None,
    }]
}

fn system(name: &str, owner: &str, produces: &[&str], consumes: &[&str]) -> System {
    System {
        org: String::new(),
        id: String::new(),
        name: name.into(),
        owner: owner.into(),
        description: None,
        contacts: Vec::new(),
        produces: produces.iter().map(|s| s.to_string()).collect(),
        consumes: consumes.iter().map(|s| s.to_string()).collect(),
    }
}

/// Saves the demo's catalog, schemas and subscription.
async fn set_up(bus: &Bus) -> Result<(), BusError> {
    bus.put_organisation(
        ACTOR,
        "comune-prato",
        Organisation {
            id: String::new(),
            name: "Comune di Prato".into(),
            kind: OrgKind::Office,
            ipa_code: Some("c_g999".into()),
            description: Some("Demo: the comune's own systems".into()),
            contacts: contact("Servizi informativi (demo)", "si@example.org"),
        },
    )
    .await?;
    bus.put_organisation(
        ACTOR,
        "gestore-rifiuti",
        Organisation {
            id: String::new(),
            name: "Gestore rifiuti (demo)".into(),
            kind: OrgKind::Operator,
            ipa_code: None,
            description: Some("Demo: the waste collector, an outside operator".into()),
            contacts: contact("Centrale operativa (demo)", "centrale@example.org"),
        },
    )
    .await?;
    bus.put_system(
        ACTOR,
        "comune-prato",
        "sensori-aria",
        system("Rete sensori aria", "Ufficio ambiente", &[AIR_ALERT], &[]),
    )
    .await?;
    bus.put_system(
        ACTOR,
        "comune-prato",
        "portale",
        system(
            "Portale del cittadino",
            "Servizi informativi",
            &[],
            &[AIR_ALERT, BIN_FULL],
        ),
    )
    .await?;
    bus.put_system(
        ACTOR,
        "gestore-rifiuti",
        "raccolta",
        system(
            "Raccolta porta a porta",
            "Centrale operativa",
            &[BIN_FULL],
            &[],
        ),
    )
    .await?;
    bus.register_schema(
        ACTOR,
        AIR_ALERT,
        json!({"type": "object", "required": ["sensor", "district", "pm10", "threshold"],
               "properties": {"sensor": {"type": "string"}, "district": {"type": "string"},
                              "pm10": {"type": "number"}, "threshold": {"type": "number"}}}),
    )
    .await?;
    bus.register_schema(
        ACTOR,
        BIN_FULL,
        json!({"type": "object", "required": ["bin", "district", "fill_percent"],
               "properties": {"bin": {"type": "string"}, "district": {"type": "string"},
                              "fill_percent": {"type": "integer", "minimum": 0, "maximum": 100}}}),
    )
    .await?;
    let spec = SubscriptionSpec {
        name: "portale-avvisi".into(),
        owner: Some("comune-prato".into()),
        system: Some("portale".into()),
        description: Some("Demo: alerts and full bins to the citizens' portal".into()),
        filter: EventFilter {
            types: vec![AIR_ALERT.into(), BIN_FULL.into()],
            ..EventFilter::default()
        },
        transform: None,
        target: TargetSpec::Mqtt {
            topic: "bus/out/portale".into(),
        },
        retry: RetryPolicy::default(),
        lanes: 4,
        paused: false,
    };
    match bus.create_subscription(ACTOR, spec, false).await {
        Ok(_) | Err(BusError::Conflict(_)) => Ok(()),
        // Without the embedded broker there is no MQTT target: events still flow into the log.
        Err(BusError::Invalid(reason)) => {
            tracing::info!(reason, "demo bus: no subscription");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The `n`-th demo event (deterministic: a small linear congruential sequence).
pub(crate) fn event(n: u64, now_micros: i64) -> CloudEvent {
    let r = n
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        >> 33;
    let district = DISTRICTS[(r % 5) as usize];
    let (source, ty, data) = if n.is_multiple_of(3) {
        (
            "/gestore-rifiuti/raccolta",
            BIN_FULL,
            json!({"bin": format!("C-{:04}", r % 2000), "district": district,
                   "fill_percent": 80 + (r % 21)}),
        )
    } else {
        (
            "/comune-prato/sensori-aria",
            AIR_ALERT,
            json!({"sensor": format!("air-{:03}", r % 200), "district": district,
                   "pm10": 50.0 + (r % 400) as f64 / 10.0, "threshold": 50.0}),
        )
    };
    CloudEvent::new(format!("demo-{now_micros}-{n}"), source, ty)
        .with_subject(district.to_string())
        .with_time(now_micros)
        .with_data(data)
        .with_extension("partitionkey", json!(district))
}

/// Sets the demo bus up, then publishes a few events every [`EVERY`] until `stop`.
pub(crate) async fn run(bus: Bus, mut stop: watch::Receiver<bool>) {
    if let Err(e) = set_up(&bus).await {
        tracing::warn!(error = %e, "demo bus: cannot set up the catalog; no demo events");
        return;
    }
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = crate::demo::now_micros();
        let count = 1 + n % 3;
        let events: Vec<CloudEvent> = (0..count).map(|i| event(n + i, now)).collect();
        n += count;
        match bus.publish("demo", events).await {
            Ok(_) => {}
            Err(BusError::Stopped) => return,
            Err(e) => tracing::warn!(error = %e, "demo bus: publish failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_events_are_valid_and_in_their_namespace() {
        for n in 0..30 {
            let e = event(n, 1_767_225_600_000_000);
            e.validate().unwrap();
            let (org, _) = civiclake_bus::catalog::source_parts(&e.source).unwrap();
            assert!(["comune-prato", "gestore-rifiuti"].contains(&org));
            let data = e.data.as_ref().unwrap();
            if e.ty == BIN_FULL {
                let fill = data["fill_percent"].as_u64().unwrap();
                assert!((80..=100).contains(&fill), "{data}");
            } else {
                assert_eq!(e.ty, AIR_ALERT);
                assert!(data["pm10"].as_f64().unwrap() >= 50.0);
            }
        }
        assert_ne!(event(1, 0).data, event(2, 0).data);
    }
}
