#![no_main]
//! `civiclake_ingest::decode_phone_locations` never panics, whatever the payload.

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn pseudonymiser() -> Arc<civiclake_ingest::Pseudonymiser> {
    static P: OnceLock<Arc<civiclake_ingest::Pseudonymiser>> = OnceLock::new();
    P.get_or_init(|| {
        Arc::new(
            civiclake_ingest::Pseudonymiser::new(
                b"fuzzing-secret-0123456789".to_vec(),
                civiclake_ingest::Rotation::Daily,
            )
            .expect("a valid secret"),
        )
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let (mut opts, schemas, body) = civiclake_fuzz::setup(data);
    opts.pseudonymiser = Some(pseudonymiser());
    let _ = civiclake_ingest::decode_phone_locations(body, &opts, &schemas);
});
