//! Heartbeats and liveness: a kiosk is offline after K missed beats; peripheral statuses are
//! kept as changes, not as every beat.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use super::FleetError;
use super::registry::PeripheralKind;

/// A peripheral's status as a heartbeat reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeripheralStatus {
    Online,
    Paused,
    Standby,
    Offline,
    NotReady,
    Disconnected,
}

impl PeripheralStatus {
    /// Its name in heartbeats and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            PeripheralStatus::Online => "online",
            PeripheralStatus::Paused => "paused",
            PeripheralStatus::Standby => "standby",
            PeripheralStatus::Offline => "offline",
            PeripheralStatus::NotReady => "not-ready",
            PeripheralStatus::Disconnected => "disconnected",
        }
    }

    /// Whether the peripheral cannot serve (a fault, not a pause or a standby).
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            PeripheralStatus::Offline | PeripheralStatus::NotReady | PeripheralStatus::Disconnected
        )
    }
}

/// A heartbeat's payload (`devices/kiosk/{id}/heartbeat`, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatPayload {
    /// When the kiosk sent it (RFC 3339); arrival time when missing.
    #[serde(default)]
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub software_version: Option<String>,
    /// Status per peripheral.
    #[serde(default)]
    pub peripherals: BTreeMap<PeripheralKind, PeripheralStatus>,
}

/// A heartbeat of a kiosk.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub kiosk: String,
    /// UTC microseconds.
    pub time: i64,
    pub software_version: Option<String>,
    pub peripherals: BTreeMap<PeripheralKind, PeripheralStatus>,
}

impl Heartbeat {
    /// Reads a heartbeat of `kiosk` from its JSON payload, received at `arrived` (UTC µs).
    pub fn parse(kiosk: &str, payload: &[u8], arrived: i64) -> Result<Self, FleetError> {
        let de = &mut serde_json::Deserializer::from_slice(payload);
        let p: HeartbeatPayload = serde_path_to_error::deserialize(de).map_err(|e| {
            // The failing field's path ("peripherals.printer"), or the whole payload.
            let path = e.path().to_string();
            let field = if path.is_empty() || path == "." {
                "heartbeat".to_string()
            } else {
                path
            };
            FleetError::field(&field, format!("not a heartbeat: {}", e.into_inner()))
        })?;
        Ok(Self {
            kiosk: kiosk.into(),
            time: p.time.map_or(arrived, |t| t.timestamp_micros()),
            software_version: p.software_version,
            peripherals: p.peripherals,
        })
    }
}

/// When a kiosk counts as offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessConfig {
    /// Seconds between two beats.
    pub interval_secs: u32,
    /// Beats missed before the kiosk is offline (K).
    pub missed_beats: u32,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            interval_secs: 30,
            missed_beats: 3,
        }
    }
}

impl LivenessConfig {
    fn interval(&self) -> i64 {
        i64::from(self.interval_secs.max(1)) * 1_000_000
    }
}

/// A change of a kiosk's state: what goes into `kiosk_events` and on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// Beats again (or for the first time) at `at`, after being offline since `since`.
    Online {
        kiosk: String,
        at: i64,
        since: Option<i64>,
    },
    /// Missed K beats: offline from the first missed beat, `at`, noticed at `noticed`.
    Offline {
        kiosk: String,
        at: i64,
        noticed: i64,
        last_beat: i64,
    },
    /// A peripheral's status changed at `at`.
    Peripheral {
        kiosk: String,
        peripheral: PeripheralKind,
        from: Option<PeripheralStatus>,
        to: PeripheralStatus,
        at: i64,
    },
}

#[derive(Debug, Clone)]
struct Live {
    last_beat: i64,
    /// Offline since (None: online).
    offline_since: Option<i64>,
    peripherals: BTreeMap<PeripheralKind, PeripheralStatus>,
    /// Beats are awaited from here at the earliest (the server's restart).
    watch_from: i64,
}

/// The liveness of every kiosk, from their beats and the clock.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    config: LivenessConfig,
    kiosks: HashMap<String, Live>,
}

/// A kiosk's current liveness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KioskLiveness {
    pub kiosk: String,
    pub online: bool,
    pub last_beat: i64,
    pub offline_since: Option<i64>,
    pub peripherals: BTreeMap<PeripheralKind, PeripheralStatus>,
}

impl Tracker {
    pub fn new(config: LivenessConfig) -> Self {
        Self {
            config,
            kiosks: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> LivenessConfig {
        self.config
    }

    /// Takes in a beat; returns the changes it makes (back online, peripheral statuses).
    /// A beat older than the kiosk's last one changes nothing.
    pub fn beat(&mut self, beat: &Heartbeat) -> Vec<Change> {
        let mut changes = Vec::new();
        let live = match self.kiosks.get_mut(&beat.kiosk) {
            Some(live) => {
                if beat.time < live.last_beat {
                    return changes;
                }
                if let Some(since) = live.offline_since.take() {
                    changes.push(Change::Online {
                        kiosk: beat.kiosk.clone(),
                        at: beat.time,
                        since: Some(since),
                    });
                }
                live.last_beat = beat.time;
                live
            }
            None => {
                changes.push(Change::Online {
                    kiosk: beat.kiosk.clone(),
                    at: beat.time,
                    since: None,
                });
                self.kiosks.entry(beat.kiosk.clone()).or_insert(Live {
                    last_beat: beat.time,
                    offline_since: None,
                    peripherals: BTreeMap::new(),
                    watch_from: 0,
                })
            }
        };
        for (kind, status) in &beat.peripherals {
            let before = live.peripherals.insert(*kind, *status);
            if before != Some(*status) {
                changes.push(Change::Peripheral {
                    kiosk: beat.kiosk.clone(),
                    peripheral: *kind,
                    from: before,
                    to: *status,
                    at: beat.time,
                });
            }
        }
        changes
    }

    /// The kiosks that have missed K beats by `now` go offline (sorted by kiosk).
    pub fn tick(&mut self, now: i64) -> Vec<Change> {
        let interval = self.config.interval();
        let k = i64::from(self.config.missed_beats.max(1));
        let mut changes = Vec::new();
        for (kiosk, live) in &mut self.kiosks {
            let from = live.last_beat.max(live.watch_from);
            if live.offline_since.is_none() && now >= from + k * interval {
                let at = from + interval;
                live.offline_since = Some(at);
                changes.push(Change::Offline {
                    kiosk: kiosk.clone(),
                    at,
                    noticed: now,
                    last_beat: live.last_beat,
                });
            }
        }
        changes.sort_by(|a, b| kiosk_of(a).cmp(kiosk_of(b)));
        changes
    }

    /// After a restart of the server at `now`: the kiosks online when it stopped are
    /// offline only if they miss K beats from `now` (the server's own downtime is not the
    /// kiosks').
    pub fn restart(&mut self, now: i64) {
        for live in self.kiosks.values_mut() {
            live.watch_from = live.watch_from.max(now);
        }
    }

    /// Replays a stored change (rebuilding the state at start).
    pub fn replay(&mut self, change: &Change) {
        match change {
            Change::Online { kiosk, at, .. } => {
                let live = self.kiosks.entry(kiosk.clone()).or_insert(Live {
                    last_beat: *at,
                    offline_since: None,
                    peripherals: BTreeMap::new(),
                    watch_from: 0,
                });
                live.last_beat = live.last_beat.max(*at);
                live.offline_since = None;
            }
            Change::Offline {
                kiosk,
                at,
                last_beat,
                ..
            } => {
                let live = self.kiosks.entry(kiosk.clone()).or_insert(Live {
                    last_beat: *last_beat,
                    offline_since: None,
                    peripherals: BTreeMap::new(),
                    watch_from: 0,
                });
                live.offline_since = Some(*at);
            }
            Change::Peripheral {
                kiosk,
                peripheral,
                to,
                at,
                ..
            } => {
                let live = self.kiosks.entry(kiosk.clone()).or_insert(Live {
                    last_beat: *at,
                    offline_since: None,
                    peripherals: BTreeMap::new(),
                    watch_from: 0,
                });
                live.peripherals.insert(*peripheral, *to);
            }
        }
    }

    /// Every kiosk's liveness, by id.
    pub fn snapshot(&self) -> Vec<KioskLiveness> {
        let mut out: Vec<KioskLiveness> = self
            .kiosks
            .iter()
            .map(|(kiosk, live)| KioskLiveness {
                kiosk: kiosk.clone(),
                online: live.offline_since.is_none(),
                last_beat: live.last_beat,
                offline_since: live.offline_since,
                peripherals: live.peripherals.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.kiosk.cmp(&b.kiosk));
        out
    }
}

fn kiosk_of(c: &Change) -> &str {
    match c {
        Change::Online { kiosk, .. }
        | Change::Offline { kiosk, .. }
        | Change::Peripheral { kiosk, .. } => kiosk,
    }
}
