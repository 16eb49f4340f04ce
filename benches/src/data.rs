//! Deterministic city sensor data as line protocol: random-walk pm25 with 0.1 resolution,
//! slowly draining batteries, rows in arrival order (all sensors for one minute, then the
//! next minute), as gateways send them.

const T0_NS: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const DISTRICTS: [&str; 6] = ["Centro", "Nord", "Est", "Sud", "Ovest", "Macrolotto"];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A step in -3..=3 tenths.
    fn step(&mut self) -> i64 {
        (self.next() % 7) as i64 - 3
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// How readings are valued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Values {
    /// As the shared performance anchors: pm25 = clip(15 + cumsum(N(0, 1.2)), 0, 150) at full
    /// f64 precision, battery = 100 - 0.01 * minute - sensor % 7.
    Full,
    /// As sensors report them: pm25 in tenths (random walk), battery in hundredths.
    Sensor,
}

/// `rows` rows (rounded down to whole requests) as request bodies of `batch` lines.
pub(crate) fn line_protocol_bodies(
    rows: usize,
    batch: usize,
    sensors: usize,
    values: Values,
) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    let mut pm = vec![150i64; sensors]; // tenths of µg/m³
    let mut walk = vec![15.0f64; sensors];
    let mut bodies = Vec::with_capacity(rows / batch + 1);
    let mut body = Vec::with_capacity(batch * 80);
    let mut in_body = 0;
    let total = rows / batch * batch;
    for k in 0..total {
        let s = k % sensors;
        let minute = (k / sensors) as i64;
        let district = DISTRICTS[s % DISTRICTS.len()];
        let time = T0_NS + minute * 60_000_000_000;
        let line = match values {
            Values::Sensor => {
                pm[s] = (pm[s] + rng.step()).clamp(0, 3000);
                let battery = 10_000 - minute / 10 - (s % 7) as i64 * 100; // hundredths of %
                format!(
                    "air,sensor=s{s:04},district={district} pm25={}.{},battery={}.{:02} {time}\n",
                    pm[s] / 10,
                    pm[s] % 10,
                    battery / 100,
                    battery % 100,
                )
            }
            Values::Full => {
                walk[s] += 1.2 * rng.normal();
                let pm25 = walk[s].clamp(0.0, 150.0);
                let battery = 100.0 - 0.01 * minute as f64 - (s % 7) as f64;
                format!(
                    "air,sensor=s{s:04},district={district} pm25={pm25:?},battery={battery:?} {time}\n"
                )
            }
        };
        body.extend_from_slice(line.as_bytes());
        in_body += 1;
        if in_body == batch {
            bodies.push(std::mem::replace(&mut body, Vec::with_capacity(batch * 80)));
            in_body = 0;
        }
    }
    bodies
}
