//! The fleet of `civiclake serve --demo`: Prato's 17 kiosks (placed as in
//! `civiclake_sim::census::kiosks`), a year of their history — outages, peripheral faults,
//! transactions within opening hours — and the other channels' collections, generated in a
//! second or two from a fixed seed; then, live, heartbeats every interval and a transaction
//! now and then, published on the kiosks' own topics so they take the real path.

use super::liveness::{Change, PeripheralStatus};
use super::registry::{Kiosk, OpeningHours, Peripheral, PeripheralKind};
use super::service::{Collection, Fleet, FleetServiceError, month_of};
use super::transaction::{CheckedTransaction, Method, NoticePayment, Outcome, Transaction};
use civiclake_core::{CloudEvent, Platform, Topic};
use civiclake_pa::NoticeNumber;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The comune's fiscal code: the creditor of the demo's notices.
pub const CREDITOR: &str = "00337360978";
const S: i64 = 1_000_000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// A small seeded generator (SplitMix64): the same history on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Exponential with mean `mean`.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// An index by weights.
    pub fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len().saturating_sub(1)
    }
}

/// How busy a kiosk of this kind of place is: transactions per open hour, outages per
/// month.
fn profile(kind: &str) -> (f64, f64) {
    match kind {
        "town hall" => (7.0, 1.0),
        "municipal offices" => (5.0, 1.0),
        "station" => (3.5, 2.0),
        "square" => (2.5, 2.0),
        "library" => (3.0, 1.0),
        "cemetery" => (1.5, 1.5),
        "municipal police" => (2.0, 1.0),
        "hospital" => (2.5, 1.5),
        // The community centres: older hardware, fewer people.
        _ => (0.8, 3.5),
    }
}

fn hours(kind: &str) -> OpeningHours {
    const WEEK: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    match kind {
        "town hall" | "municipal offices" => {
            let mut h = OpeningHours::weekly(&WEEK[..5], &[("08:00", "19:00")]);
            h.days
                .insert("sat".into(), vec![["08:00".into(), "13:00".into()]]);
            h
        }
        "station" | "hospital" => OpeningHours::weekly(&WEEK, &[("06:00", "22:00")]),
        "square" => OpeningHours::weekly(&WEEK, &[("07:00", "21:00")]),
        "library" | "municipal police" => OpeningHours::weekly(&WEEK[..6], &[("08:30", "19:00")]),
        "cemetery" => OpeningHours::weekly(&WEEK, &[("08:00", "17:00")]),
        _ => OpeningHours::weekly(&WEEK[..5], &[("09:00", "13:00"), ("15:00", "18:30")]),
    }
}

/// The 17 kiosks: all take cards and print; the newer ones (offices, library, community
/// centres) also scan and hold video calls.
pub fn kiosks() -> Vec<Kiosk> {
    civiclake_sim::census::kiosks()
        .into_iter()
        .map(|p| {
            let newer = matches!(
                p.kind,
                "town hall" | "municipal offices" | "library" | "community centre"
            );
            let mut peripherals = vec![
                Peripheral {
                    kind: PeripheralKind::CardReader,
                    model: "Ingenico Self/2000".into(),
                },
                Peripheral {
                    kind: PeripheralKind::Printer,
                    model: "Custom VKP80III".into(),
                },
            ];
            let mut services: Vec<String> = [
                "pagopa",
                "tari",
                "canteen",
                "anagrafe-cert",
                "stato-civile-cert",
                "info",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if newer {
                peripherals.push(Peripheral {
                    kind: PeripheralKind::Scanner,
                    model: "Fujitsu fi-800R".into(),
                });
                peripherals.push(Peripheral {
                    kind: PeripheralKind::Camera,
                    model: "Logitech Rally".into(),
                });
                services.push("scan-upload".into());
                services.push("video-office".into());
            }
            Kiosk {
                id: p.id,
                name: p.name,
                lon: p.lon,
                lat: p.lat,
                host_site: p.kind.to_string(),
                opening_hours: hours(p.kind),
                peripherals,
                services,
                software_version: if newer { "3.0.2" } else { "2.4.1" }.into(),
            }
        })
        .collect()
}

/// A valid notice of the comune for `amount` cents.
fn notice(rng: &mut Rng, amount: u64) -> NoticePayment {
    let base = format!("{:013}", rng.next_u64() % 10_000_000_000_000);
    let number = NoticeNumber::new_aux3(2, &base)
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    NoticePayment {
        notice_number: number,
        creditor_fiscal_code: CREDITOR.into(),
        amount_cents: amount,
        qr: None,
    }
}

const OFFICES: [&str; 4] = ["anagrafe", "tributi", "servizi-sociali", "urp"];

/// One transaction of `kiosk` at `time`.
fn transaction(rng: &mut Rng, kiosk: &Kiosk, time: i64, seq: u64) -> Transaction {
    let weights: Vec<f64> = kiosk
        .services
        .iter()
        .map(|s| match s.as_str() {
            "pagopa" => 40.0,
            "tari" => 10.0,
            "canteen" => 9.0,
            "anagrafe-cert" => 14.0,
            "stato-civile-cert" => 5.0,
            "info" => 12.0,
            "scan-upload" => 6.0,
            "video-office" => 5.0,
            _ => 1.0,
        })
        .collect();
    let service = kiosk.services[rng.pick(&weights)].clone();
    let outcome = match rng.pick(&[92.0, 4.0, 4.0]) {
        0 => Outcome::Completed,
        1 => Outcome::Failed,
        _ => Outcome::Cancelled,
    };
    let mut tx = Transaction {
        id: format!("{}-{seq:07}", kiosk.id),
        time: chrono::DateTime::from_timestamp_micros(time).unwrap_or_default(),
        service: service.clone(),
        method: Method::None,
        outcome,
        duration_s: rng.range(30.0, 240.0).round(),
        amount_cents: 0,
        notices: Vec::new(),
        office: None,
        call_s: None,
        pages: None,
    };
    let (lo, hi) = match service.as_str() {
        "pagopa" => (1_500.0, 25_000.0),
        "tari" => (6_000.0, 45_000.0),
        "canteen" => (2_000.0, 12_000.0),
        _ => (0.0, 0.0),
    };
    if hi > 0.0 {
        let n = 1 + rng.pick(&[80.0, 15.0, 5.0]);
        tx.notices = (0..n)
            .map(|_| {
                let cents = (rng.range(lo, hi) / 50.0).round() as u64 * 50;
                notice(rng, cents.max(50))
            })
            .collect();
        tx.method = match rng.pick(&[45.0, 45.0, 10.0]) {
            0 => Method::Card,
            1 => Method::Contactless,
            _ => Method::App,
        };
        if outcome == Outcome::Completed {
            tx.amount_cents = tx.notices.iter().map(|n| n.amount_cents).sum();
        }
    }
    match service.as_str() {
        "scan-upload" => tx.pages = Some(1 + (rng.next_u64() % 6) as u32),
        "video-office" => {
            tx.office = Some(OFFICES[rng.pick(&[40.0, 30.0, 20.0, 10.0])].into());
            tx.duration_s = rng.range(180.0, 1_200.0).round();
            tx.call_s = Some((tx.duration_s - rng.range(20.0, 60.0)).max(0.0).round());
        }
        _ => {}
    }
    tx
}

/// The offline spans of a year for one kiosk: `(from, to)`, none in the last hour.
fn outages(rng: &mut Rng, per_month: f64, from: i64, now: i64) -> Vec<(i64, i64)> {
    let mut spans = Vec::new();
    let mean_gap = 30.0 * DAY as f64 / per_month;
    let mut t = from + rng.exp(mean_gap) as i64;
    while t < now - 2 * HOUR {
        // Most are short (a reboot, the network); a few wait for a technician.
        let minutes = if rng.unit() < 0.8 {
            rng.range(5.0, 90.0)
        } else {
            rng.range(180.0, 1_440.0)
        };
        let end = (t + (minutes * MIN as f64) as i64).min(now - HOUR);
        if end > t {
            spans.push((t, end));
        }
        t = end + rng.exp(mean_gap) as i64;
    }
    spans
}

/// The demo's history: the kiosks' changes and transactions from `now − days` to `now`.
pub fn history(
    kiosks: &[Kiosk],
    days: i64,
    now: i64,
    interval_s: i64,
) -> (Vec<Change>, Vec<Transaction>) {
    let mut rng = Rng::new(0x004B_105C);
    let start = now - days * DAY;
    let mut changes = Vec::new();
    let mut txs = Vec::new();
    for k in kiosks {
        let (rate, per_month) = profile(&k.host_site);
        changes.push(Change::Online {
            kiosk: k.id.clone(),
            at: start,
            since: None,
        });
        let down = outages(&mut rng, per_month, start, now);
        for (a, b) in &down {
            changes.push(Change::Offline {
                kiosk: k.id.clone(),
                at: *a,
                noticed: a + 2 * interval_s * S,
                last_beat: a - interval_s * S,
            });
            changes.push(Change::Online {
                kiosk: k.id.clone(),
                at: *b,
                since: Some(*a),
            });
        }
        // The printer runs out of paper now and then; the card reader loses its link.
        let mut faults = Vec::new();
        for (kind, status, per_month, hours) in [
            (
                PeripheralKind::Printer,
                PeripheralStatus::NotReady,
                3.0,
                4.0,
            ),
            (
                PeripheralKind::CardReader,
                PeripheralStatus::Disconnected,
                0.7,
                1.5,
            ),
        ] {
            let mut t = start + rng.exp(30.0 * DAY as f64 / per_month) as i64;
            while t < now - 4 * DAY {
                let end = t + (rng.exp(hours) * HOUR as f64) as i64 + 10 * MIN;
                faults.push((t, kind, Some(PeripheralStatus::Online), status));
                faults.push((end, kind, Some(status), PeripheralStatus::Online));
                t = end + rng.exp(30.0 * DAY as f64 / per_month) as i64;
            }
        }
        changes.push(Change::Peripheral {
            kiosk: k.id.clone(),
            peripheral: PeripheralKind::CardReader,
            from: None,
            to: PeripheralStatus::Online,
            at: start,
        });
        changes.push(Change::Peripheral {
            kiosk: k.id.clone(),
            peripheral: PeripheralKind::Printer,
            from: None,
            to: PeripheralStatus::Online,
            at: start,
        });
        for (at, peripheral, from, to) in faults {
            changes.push(Change::Peripheral {
                kiosk: k.id.clone(),
                peripheral,
                from,
                to,
                at,
            });
        }
        // Transactions: a Poisson process during opening hours while the kiosk is up.
        let open = k.opening_hours.open_between(start, now);
        let mut seq = 0u64;
        for (a, b) in open {
            let mut t = a + rng.exp(HOUR as f64 / rate) as i64;
            while t < b {
                if !down.iter().any(|(x, y)| *x <= t && t < *y) {
                    seq += 1;
                    txs.push(transaction(&mut rng, k, t, seq));
                }
                t += rng.exp(HOUR as f64 / rate) as i64;
            }
        }
    }
    // Per kiosk in time order (a peripheral fault may fall inside an outage).
    changes.sort_by(|a, b| {
        let key = |c: &Change| match c {
            Change::Online { kiosk, at, .. }
            | Change::Offline { kiosk, at, .. }
            | Change::Peripheral { kiosk, at, .. } => (kiosk.clone(), *at),
        };
        key(a).cmp(&key(b))
    });
    (changes, txs)
}

/// The other channels' collections per month, so that the kiosks take about 8 % of the
/// revenue but a far larger share of the payments (they carry no fee).
pub fn collections(txs: &[CheckedTransaction]) -> Vec<Collection> {
    let mut months: BTreeMap<(i32, u32), (u64, u64)> = BTreeMap::new();
    for c in txs {
        if c.tx.outcome == Outcome::Completed
            && c.tx.amount_cents > 0
            && let Some(m) = month_of(c.tx.time.timestamp_micros())
        {
            let e = months.entry(m).or_default();
            e.0 += c.tx.amount_cents;
            e.1 += 1;
        }
    }
    let mut out = Vec::new();
    for ((y, m), (cents, payments)) in months {
        // Kiosks: 8 % of the money, 40 % of the payments.
        let other_cents = cents as f64 * 92.0 / 8.0;
        let other_payments = payments as f64 * 60.0 / 40.0;
        for (channel, money, count) in [
            ("psp-online", 0.55, 0.50),
            ("bank-branch", 0.20, 0.15),
            ("post-office", 0.15, 0.20),
            ("app-io", 0.10, 0.15),
        ] {
            out.push(Collection {
                month: format!("{y:04}-{m:02}"),
                channel: channel.into(),
                amount_cents: (other_cents * money).round() as u64,
                transactions: (other_payments * count).round() as u64,
            });
        }
    }
    out
}

/// Seeds the fleet with the demo's kiosks and a year of history, unless kiosks are already
/// registered. Returns the number of transactions stored.
pub async fn seed(fleet: &Fleet) -> Result<Option<usize>, FleetServiceError> {
    if !fleet.kiosks().await.is_empty() {
        return Ok(None);
    }
    let now = chrono::Utc::now().timestamp_micros();
    let kiosks = kiosks();
    let interval = i64::from(fleet.config().liveness.interval_secs);
    let (changes, txs) = history(&kiosks, 365, now, interval);
    let catalog = fleet.catalog().await;
    let mut checked = Vec::with_capacity(txs.len());
    for tx in txs {
        let kiosk = kiosks
            .iter()
            .find(|k| tx.id.starts_with(&format!("{}-", k.id)))
            .map(|k| (k.id.clone(), k.services.clone()));
        if let Some((id, services)) = kiosk {
            checked.push(tx.check(&id, &services, &catalog)?);
        }
    }
    let collections = collections(&checked);
    let n = checked.len();
    fleet
        .import_history(&kiosks, now - 366 * DAY, &changes, checked, now)
        .await?;
    fleet.import_collections(&collections).await?;
    Ok(Some(n))
}

/// The live demo: every interval a heartbeat from each kiosk (a printer out of paper now
/// and then), and a transaction at a random kiosk every few seconds, published on
/// `devices/kiosk/{id}/...` like real kiosks over MQTT.
pub async fn live(
    platform: Arc<dyn Platform>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let kiosks = kiosks();
    let mut rng = Rng::new(chrono::Utc::now().timestamp_micros() as u64);
    let mut printer_out: BTreeMap<String, u32> = BTreeMap::new();
    let mut next_beat = tokio::time::Instant::now();
    let mut seq = 0u64;
    let tx_every = Duration::from_secs(4);
    loop {
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            _ = tokio::time::sleep(tx_every) => {}
        }
        let now = chrono::Utc::now().timestamp_micros();
        if tokio::time::Instant::now() >= next_beat {
            next_beat += interval;
            for k in &kiosks {
                let out = printer_out.entry(k.id.clone()).or_default();
                if *out > 0 {
                    *out -= 1;
                } else if rng.unit() < 0.01 {
                    *out = 10;
                }
                let printer = if *out > 0 { "not-ready" } else { "online" };
                let payload = json!({
                    "software_version": k.software_version,
                    "peripherals": {"card_reader": "online", "printer": printer},
                });
                send(platform.as_ref(), &k.id, "heartbeat", payload, now).await;
            }
        }
        let open: Vec<&Kiosk> = kiosks
            .iter()
            .filter(|k| !k.opening_hours.open_between(now, now + 1).is_empty())
            .collect();
        if open.is_empty() {
            continue;
        }
        let k = open[(rng.next_u64() % open.len() as u64) as usize];
        seq += 1;
        let tx = transaction(&mut rng, k, now, seq);
        let mut value = json!(tx);
        value["id"] = json!(format!("{}-live-{now}-{seq}", k.id));
        send(platform.as_ref(), &k.id, "transactions", value, now).await;
    }
}

async fn send(platform: &dyn Platform, kiosk: &str, what: &str, data: serde_json::Value, now: i64) {
    let Ok(topic) = Topic::new(format!("devices/kiosk/{kiosk}/{what}")) else {
        return;
    };
    let event = CloudEvent::new(
        format!("demo-{kiosk}-{what}-{now}"),
        "/civiclake/demo/kiosk",
        "it.prato.kiosk.DeviceMessage",
    )
    .with_time(now)
    .with_data(data);
    if let Err(e) = platform.publish(&topic, event).await {
        tracing::debug!(error = %e, "demo kiosk message not published");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::registry::default_catalog;

    #[test]
    fn the_demo_year_is_valid_and_plausible() {
        let kiosks = kiosks();
        assert_eq!(kiosks.len(), 17);
        let catalog = default_catalog();
        for k in &kiosks {
            k.check(&catalog).expect("a valid kiosk");
        }
        // 2026-11-01 00:00 UTC.
        let now = 1_793_491_200 * S;
        let (changes, txs) = history(&kiosks, 365, now, 30);
        let again = history(&kiosks, 365, now, 30);
        assert_eq!(txs.len(), again.1.len(), "the same seed, the same year");
        assert!(
            (40_000..250_000).contains(&txs.len()),
            "{} transactions",
            txs.len()
        );
        let mut checked = Vec::new();
        for tx in txs {
            let k = kiosks
                .iter()
                .find(|k| tx.id.starts_with(&format!("{}-", k.id)))
                .expect("its kiosk");
            assert!(tx.time.timestamp_micros() < now);
            checked.push(tx.check(&k.id, &k.services, &catalog).expect("valid"));
        }
        let offline = changes
            .iter()
            .filter(|c| matches!(c, Change::Offline { .. }))
            .count();
        assert!((100..1_000).contains(&offline), "{offline} outages");
        // Kiosks take 8 % of the money.
        let cols = collections(&checked);
        let kiosk: u64 = checked.iter().map(|c| c.tx.amount_cents).sum();
        let other: u64 = cols.iter().map(|c| c.amount_cents).sum();
        let share = kiosk as f64 / (kiosk + other) as f64;
        assert!((share - 0.08).abs() < 0.001, "{share}");
    }
}
