//! `civiclake serve --demo`: a simulated city streaming into the lake, for the shipped
//! dashboards to show something at once.
//!
//! 1,000 sensors of `civiclake-sim` (air, noise, traffic, parking, waste, in Prato's
//! synthetic districts) with their registry (`sensors`) and health (`sensor_status`). The
//! last 24 hours are written first, an hour per write, then every second what "arrived" in
//! that second. The simulation's start and how far it got are kept in
//! `<data>/demo/state.json`, so a restart on the same data continues where it stopped (the
//! simulated sensors are random walks from that start) instead of writing the day again; at
//! most the last second written before a crash can be written twice.

use civiclake_lake::Lake;
use civiclake_sim::{CityConfig, LiveCity, LiveOptions, LiveWindow, SENSORS_TABLE};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Sensors of the demo city.
pub(crate) const DEMO_SENSORS: u32 = 1000;
/// History written at the first start.
const BACKFILL: Duration = Duration::from_secs(24 * 3600);
/// Largest window written at once while catching up.
const CATCH_UP_STEP_MICROS: i64 = 3600 * 1_000_000;
/// A demo stopped for longer than this starts a new city (catching up would take long).
const MAX_GAP_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// What a restart needs to continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct DemoState {
    seed: u64,
    sensors: u32,
    start_micros: i64,
    position_micros: i64,
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo").join("state.json")
}

fn read_state(path: &Path) -> Option<DemoState> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_state(path: &Path, state: &DemoState) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(state).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn city_config(start_micros: i64) -> CityConfig {
    CityConfig {
        seed: 1,
        sensors: DEMO_SENSORS,
        days: 1,
        interval_secs: 60,
        start_micros,
        ..CityConfig::default()
    }
}

/// Writes a window's tables; `false` (after logging why) if the lake refused them.
async fn write_window(lake: &Lake, window: LiveWindow) -> bool {
    if window.tables.is_empty() {
        return true;
    }
    let batches = window
        .tables
        .into_iter()
        .map(|(t, b)| (t.to_string(), b))
        .collect();
    match lake.write(batches).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "demo data not written; retrying");
            false
        }
    }
}

/// Runs the demo city until `stop` turns true.
pub(crate) async fn run(lake: Arc<Lake>, data_dir: PathBuf, mut stop: watch::Receiver<bool>) {
    if let Err(e) = run_inner(&lake, &data_dir, &mut stop).await {
        tracing::error!(error = %e, "the demo city stopped");
    }
}

async fn run_inner(
    lake: &Lake,
    data_dir: &Path,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let path = state_path(data_dir);
    let now = now_micros();
    let previous = read_state(&path).filter(|s| {
        s.seed == 1 && s.sensors == DEMO_SENSORS && now - s.position_micros <= MAX_GAP_MICROS
    });
    let backfill = i64::try_from(BACKFILL.as_micros()).unwrap_or(MICROS_PER_DAY);
    let (mut state, fresh) = match previous {
        Some(s) => (s, false),
        None => {
            // The start is the midnight (UTC) before the backfill, so the random walks have
            // warmed up a little before the first row written.
            let from = now - backfill;
            let start = from - from.rem_euclid(MICROS_PER_DAY);
            (
                DemoState {
                    seed: 1,
                    sensors: DEMO_SENSORS,
                    start_micros: start,
                    position_micros: from,
                },
                true,
            )
        }
    };
    let mut city = {
        let start = state.start_micros;
        let position = state.position_micros;
        tokio::task::spawn_blocking(move || -> Result<LiveCity, String> {
            let mut city = LiveCity::new(city_config(start), LiveOptions::default())
                .map_err(|e| e.to_string())?;
            // Up to where the lake already is (or where the backfill starts): not written.
            let mut at = start;
            while at < position {
                at = (at + CATCH_UP_STEP_MICROS).min(position);
                city.advance_to(at).map_err(|e| e.to_string())?;
            }
            Ok(city)
        })
        .await
        .map_err(|e| e.to_string())??
    };
    if fresh {
        let sensors = city.city().sensors_batch().map_err(|e| e.to_string())?;
        lake.write(vec![(SENSORS_TABLE.to_string(), sensors)])
            .await
            .map_err(|e| format!("the sensors registry: {e}"))?;
        tracing::info!(
            sensors = DEMO_SENSORS,
            "demo city: writing the last 24 hours"
        );
    } else {
        tracing::info!(
            sensors = DEMO_SENSORS,
            "demo city: continuing where it stopped"
        );
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut caught_up = false;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let now = now_micros();
        let target = if now - state.position_micros > CATCH_UP_STEP_MICROS {
            state.position_micros + CATCH_UP_STEP_MICROS
        } else {
            now
        };
        if target > state.position_micros {
            let window = city.advance_to(target).map_err(|e| e.to_string())?;
            if !write_window(lake, window.clone()).await {
                // Retried as a whole, from the same generated window.
                retry_window(lake, window, stop).await;
                if *stop.borrow() {
                    return Ok(());
                }
            }
            state.position_micros = target;
            if let Err(e) = write_state(&path, &state) {
                tracing::warn!(error = %e, path = %path.display(), "demo state not saved");
            }
        }
        if now - state.position_micros > CATCH_UP_STEP_MICROS {
            // Still catching up: the next hour at once.
            tokio::task::yield_now().await;
            continue;
        }
        if !caught_up {
            caught_up = true;
            tracing::info!("demo city: live, a window a second");
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Writes `window` until the lake takes it or the server stops.
async fn retry_window(lake: &Lake, window: LiveWindow, stop: &mut watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        if write_window(lake, window.clone()).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = state_path(dir.path());
        assert_eq!(read_state(&path), None);
        let state = DemoState {
            seed: 1,
            sensors: DEMO_SENSORS,
            start_micros: 10,
            position_micros: 20,
        };
        write_state(&path, &state).expect("write");
        assert_eq!(read_state(&path), Some(state));
    }
}
